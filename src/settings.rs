//! What every module's settings share: the error a validation gives, naming
//! the config key, so `config` can aggregate the modules' checks without the
//! modules depending on `config`.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A settings value refused by its module's validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {problem}")]
pub struct Invalid {
    /// The full key, `section.name`.
    pub key: &'static str,
    /// What is wrong and what is accepted.
    pub problem: String,
}

/// An [`Invalid`] for `key`.
pub fn invalid(key: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        key,
        problem: problem.into(),
    }
}

/// Why a secret file (a key, a password) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// It cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Others than its owner can read it.
    #[error("{}: readable by group or others (mode {mode:o}); chmod 600 it", path.display())]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Checks that only `path`'s owner can read it — every secret file the
/// proxy or its commands take (keys, password files) goes through here.
pub fn check_private(path: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError::Exposed {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// A password from a private file ([`check_private`]), its trailing line
/// break dropped.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// Every duration in `list` is longer than zero.
pub fn nonzero(list: &[(&'static str, Duration)]) -> Result<(), Invalid> {
    match list.iter().find(|(_, d)| d.is_zero()) {
        Some((key, _)) => Err(invalid(key, "must be longer than zero")),
        None => Ok(()),
    }
}
