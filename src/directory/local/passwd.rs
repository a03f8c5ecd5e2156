//! `gatehouse passwd`: writes a user's argon2 hash into a local realm's
//! users file, keeping its comments, without ever leaving it half-written
//! or readable by others.

use std::path::Path;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;

use super::random_salt;
use crate::directory::error::PasswdError;
use crate::directory::identity::fold;

/// `gatehouse passwd`: adds or updates `user` in the users file with an argon2
/// hash of `password`, keeping the file's comments and other entries.
///
/// An existing entry that is the same name in another case (`Alice` for
/// `alice`) is the one updated, as the realm would take them for one user.
/// The file holds password hashes: it is written whole to a new file with
/// mode 0600 (or the old file's mode, if stricter) and owner kept, then
/// renamed over the old one, so no reader sees it half-written or readable.
pub fn set_password(
    users_file: &Path,
    user: &str,
    password: &str,
    groups: Option<&[String]>,
) -> Result<(), PasswdError> {
    if user.trim().is_empty() || user.contains(':') || user.chars().any(char::is_control) {
        return Err(PasswdError::BadName);
    }
    if password.is_empty() {
        return Err(PasswdError::EmptyPassword);
    }
    let io = |source| PasswdError::Io {
        path: users_file.into(),
        source,
    };
    let (text, meta) = match std::fs::read_to_string(users_file) {
        Ok(t) => (t, Some(std::fs::metadata(users_file).map_err(io)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(io(e)),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|source| PasswdError::Syntax {
        path: users_file.into(),
        source,
    })?;
    let salt = SaltString::encode_b64(&random_salt()).map_err(PasswdError::Hashing)?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(PasswdError::Hashing)?
        .to_string();
    let users = doc.entry("users").or_insert(toml_edit::table());
    let users = users
        .as_table_mut()
        .ok_or(PasswdError::NotATable("`users`"))?;
    users.set_implicit(true);
    let same: Vec<String> = users
        .iter()
        .map(|(k, _)| k.to_string())
        .filter(|k| fold(k) == fold(user))
        .collect();
    let key = match same.as_slice() {
        [] => user.to_string(),
        [one] => one.clone(),
        _ => {
            return Err(PasswdError::SameUser {
                path: users_file.into(),
                names: same,
            })
        }
    };
    let entry = users.entry(&key).or_insert(toml_edit::table());
    let entry = entry
        .as_table_mut()
        .ok_or(PasswdError::NotATable("user entry"))?;
    entry["password"] = toml_edit::value(hash);
    if let Some(groups) = groups {
        let mut arr = toml_edit::Array::new();
        groups.iter().for_each(|g| arr.push(g.as_str()));
        entry["groups"] = toml_edit::value(arr);
    } else if !entry.contains_key("groups") {
        entry["groups"] = toml_edit::value(toml_edit::Array::new());
    }
    replace_file(users_file, meta.as_ref(), doc.to_string().as_bytes()).map_err(io)
}

/// Writes `bytes` to a new private file beside `path` and renames it over
/// `path`: mode 0600 at most (less if `old` was stricter), `old`'s owner.
fn replace_file(path: &Path, old: Option<&std::fs::Metadata>, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Created 0600 by tempfile, under a name no one else can predict.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    if let Some(old) = old {
        let f = tmp.as_file();
        f.set_permissions(std::fs::Permissions::from_mode(old.mode() & 0o600))?;
        let mine = f.metadata()?;
        if (mine.uid(), mine.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::fchown(f, Some(old.uid()), Some(old.gid()))?;
        }
    }
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
