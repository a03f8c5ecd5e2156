//! The local realm: users and groups in a TOML file, passwords as argon2 hashes.
//!
//! ```toml
//! [users.alice]
//! password = "$argon2id$v=19$..."   # written by `gatehouse passwd`
//! groups = ["staff", "telephony"]
//!
//! [groups.telephony]
//! member_of = ["Skype Users"]       # nesting: telephony members are Skype Users
//! ```

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Deserialize;

use super::config::LocalRealmConfig;
use super::RealmVerdict;
use crate::auth::identity::{fold, normalise, Group, Identity};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: HashMap<String, LocalUser>,
    #[serde(default)]
    groups: HashMap<String, LocalGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalUser {
    password: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalGroup {
    #[serde(default)]
    member_of: Vec<String>,
}

pub struct LocalRealm {
    name: Arc<str>,
    cfg: LocalRealmConfig,
    users: HashMap<String, Arc<(String, Identity)>>,
}

impl LocalRealm {
    pub fn load(cfg: &LocalRealmConfig) -> Result<Self, String> {
        let path = &cfg.users_file;
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("users file {}: {e}", path.display()))?;
        let file: UsersFile = toml_edit::de::from_str(&text)
            .map_err(|e| format!("users file {}: {e}", path.display()))?;
        let name: Arc<str> = cfg.name.as_str().into();
        let groups: HashMap<String, &LocalGroup> =
            file.groups.iter().map(|(g, def)| (fold(g), def)).collect();
        let mut users = HashMap::new();
        for (login, u) in file.users {
            PasswordHash::new(&u.password).map_err(|e| {
                format!(
                    "users file {}: user {login:?}: password is not an argon2 hash: {e}",
                    path.display()
                )
            })?;
            let key = normalise(&login, false, cfg.case_insensitive);
            let identity = Identity {
                user: key.clone(),
                realm: name.clone(),
                dn: None,
                groups: expand(&u.groups, &groups),
            };
            users.insert(key, Arc::new((u.password, identity)));
        }
        Ok(Self {
            name,
            cfg: cfg.clone(),
            users,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    fn find(&self, user: &str) -> Option<&Arc<(String, Identity)>> {
        self.users.get(&normalise(
            user,
            self.cfg.strip_domain,
            self.cfg.case_insensitive,
        ))
    }

    /// Checks a password. Hashing is CPU work: it runs off the async threads.
    pub async fn verify(&self, user: &str, password: &str) -> RealmVerdict {
        let Some(entry) = self.find(user).cloned() else {
            return RealmVerdict::UnknownUser;
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let hash = PasswordHash::new(&entry.0).ok()?;
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .ok()?;
            Some(entry.1.clone())
        })
        .await
        .ok()
        .flatten();
        match ok {
            Some(identity) => RealmVerdict::Verified(Arc::new(identity)),
            None => RealmVerdict::BadPassword,
        }
    }

    /// The user's identity without a password (for single sign-on mappings).
    pub fn lookup(&self, user: &str) -> Option<Arc<Identity>> {
        self.find(user).map(|e| Arc::new(e.1.clone()))
    }
}

/// Direct groups plus every group reachable through `member_of`, cycles cut.
/// Group names are one name whatever their case (`groups` is keyed by [`fold`]).
fn expand(direct: &[String], groups: &HashMap<String, &LocalGroup>) -> Vec<Group> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    let mut frontier: Vec<(String, bool)> = direct.iter().map(|g| (g.clone(), false)).collect();
    while let Some((g, nested)) = frontier.pop() {
        let key = fold(&g);
        if !seen.insert(key.clone()) {
            continue;
        }
        if let Some(parent) = groups.get(&key) {
            frontier.extend(parent.member_of.iter().map(|p| (p.clone(), true)));
        }
        out.push(Group {
            name: g,
            dn: None,
            nested,
        });
    }
    out
}

/// `gatehouse passwd`: adds or updates `user` in the users file with an argon2
/// hash of `password`, keeping the file's comments and other entries.
pub fn set_password(
    users_file: &Path,
    user: &str,
    password: &str,
    groups: Option<&[String]>,
) -> Result<(), String> {
    if user.trim().is_empty() || user.contains(':') || user.chars().any(char::is_control) {
        return Err("user name must be non-empty, without ':' or control characters".into());
    }
    if password.is_empty() {
        return Err("empty passwords are not allowed".into());
    }
    let text = match std::fs::read_to_string(users_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("{}: {e}", users_file.display())),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("{}: {e}", users_file.display()))?;
    let salt = SaltString::encode_b64(&random_salt()).map_err(|e| e.to_string())?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| e.to_string())?
        .to_string();
    let users = doc.entry("users").or_insert(toml_edit::table());
    let users = users.as_table_mut().ok_or("`users` is not a table")?;
    users.set_implicit(true);
    let entry = users.entry(user).or_insert(toml_edit::table());
    let entry = entry.as_table_mut().ok_or("user entry is not a table")?;
    entry["password"] = toml_edit::value(hash);
    if let Some(groups) = groups {
        let mut arr = toml_edit::Array::new();
        groups.iter().for_each(|g| arr.push(g.as_str()));
        entry["groups"] = toml_edit::value(arr);
    } else if !entry.contains_key("groups") {
        entry["groups"] = toml_edit::value(toml_edit::Array::new());
    }
    let tmp = users_file.with_extension("toml.tmp");
    std::fs::write(&tmp, doc.to_string()).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, users_file).map_err(|e| format!("{}: {e}", users_file.display()))
}

fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    // The OS RNG failing is not something a proxy can recover from.
    getrandom::fill(&mut salt).expect("operating system random number generator");
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realm(dir: &Path) -> LocalRealm {
        let cfg = LocalRealmConfig {
            name: "local".into(),
            users_file: dir.join("users.toml"),
            case_insensitive: true,
            strip_domain: true,
        };
        LocalRealm::load(&cfg).unwrap()
    }

    #[tokio::test]
    async fn passwd_then_verify_with_nested_groups() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users.toml");
        std::fs::write(&file, "# demo users\n[groups.telephony]\nmember_of = [\"Skype Users\"]\n[groups.\"Skype Users\"]\nmember_of = [\"telephony\"]\n").unwrap();
        set_password(
            &file,
            "Alice",
            "s3cret pw",
            Some(&["telephony".into(), "staff".into()]),
        )
        .unwrap();
        set_password(&file, "bob", "bobpw", None).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# demo users"), "comments kept: {text}");
        assert!(!text.contains("s3cret"));
        let r = realm(dir.path());
        let RealmVerdict::Verified(id) = r.verify("CORP\\alice", "s3cret pw").await else {
            panic!("alice")
        };
        assert_eq!(id.user, "alice");
        assert!(id.in_group("staff") && id.in_group("telephony") && id.in_group("skype users"));
        assert!(id
            .groups
            .iter()
            .any(|g| g.name == "Skype Users" && g.nested));
        assert_eq!(r.verify("alice", "wrong").await, RealmVerdict::BadPassword);
        assert_eq!(r.verify("nobody", "x").await, RealmVerdict::UnknownUser);
        // Updating a password replaces it.
        set_password(&file, "bob", "newpw", None).unwrap();
        let r = realm(dir.path());
        assert!(matches!(
            r.verify("bob", "newpw").await,
            RealmVerdict::Verified(_)
        ));
        assert_eq!(r.verify("bob", "bobpw").await, RealmVerdict::BadPassword);
    }

    #[test]
    fn refuses_plaintext_passwords_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("users.toml"),
            "[users.eve]\npassword = \"plain\"\n",
        )
        .unwrap();
        let cfg = LocalRealmConfig {
            name: "local".into(),
            users_file: dir.path().join("users.toml"),
            case_insensitive: true,
            strip_domain: true,
        };
        let e = LocalRealm::load(&cfg).err().unwrap();
        assert!(e.contains("eve") && e.contains("argon2"), "{e}");
    }

    #[test]
    fn passwd_refuses_empty_password() {
        let dir = tempfile::tempdir().unwrap();
        assert!(set_password(&dir.path().join("u.toml"), "x", "", None).is_err());
        assert!(set_password(&dir.path().join("u.toml"), "a:b", "pw", None).is_err());
    }
}
