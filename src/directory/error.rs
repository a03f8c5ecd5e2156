//! Why a realm could not be built (at start, on reload, for `gatehouse
//! check`) and why `gatehouse passwd` could not write a users file. Each
//! error names the file and, for realm files, the key.

use std::path::PathBuf;

/// A realm file, users file or directory setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RealmError {
    /// The realm file is missing or not valid TOML for its `kind`.
    #[error("realm file {}: {source}", path.display())]
    File {
        /// The realm file.
        path: PathBuf,
        /// figment's account of it, naming the key.
        source: Box<figment::Error>,
    },
    /// A key of the realm file has a value that is not allowed.
    #[error("realm file {}: key `{key}`: {why}", path.display())]
    Key {
        /// The realm file.
        path: PathBuf,
        /// The offending key.
        key: &'static str,
        /// What is allowed.
        why: String,
    },
    /// The users file cannot be read.
    #[error("users file {}: {source}", path.display())]
    UsersRead {
        /// The users file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The users file is not valid TOML for a users file.
    #[error("users file {}: {source}", path.display())]
    UsersSyntax {
        /// The users file.
        path: PathBuf,
        /// The parser's account of it.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Two entries of the users file are one name.
    #[error("users file {}, {clash}", path.display())]
    SameName {
        /// The users file.
        path: PathBuf,
        /// Which two.
        clash: NameClash,
    },
    /// A user's `password` is not an argon2 hash.
    #[error("users file {}: user {login:?}: password is not an argon2 hash: {why}", path.display())]
    NotAHash {
        /// The users file.
        path: PathBuf,
        /// The user, as written in the file.
        login: String,
        /// The hash parser's reason.
        why: argon2::password_hash::Error,
    },
    /// `bind_password_file` cannot be read, or others than its owner can.
    #[error("realm {realm}: bind_password_file {source}")]
    BindPasswordFile {
        /// The realm's name.
        realm: String,
        /// Why.
        source: crate::settings::SecretError,
    },
    /// `bind_password_env` names a variable that is not set.
    #[error("realm {realm}: environment variable {var} is not set")]
    BindPasswordEnv {
        /// The realm's name.
        realm: String,
        /// The variable named by `bind_password_env`.
        var: String,
    },
    /// `ca_file` holds no usable certificate.
    #[error("ca_file {}: {why}", path.display())]
    CaFile {
        /// The file named by `ca_file`.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the TLS settings.
    #[error("{0}")]
    Tls(#[from] rustls::Error),
    /// The operating system gave no random numbers (for the decoy hash).
    #[error("random numbers: {0}")]
    Random(getrandom::Error),
    /// argon2 could not hash (the decoy password).
    #[error("{0}")]
    Hashing(argon2::password_hash::Error),
}

/// Two keys of a users-file table that are one name once normalised.
#[derive(Debug, thiserror::Error)]
#[error(
    "line {line}: {kind} {name:?} is the same name as {first:?} on line {first_line} (names are \
     compared case-insensitively): keep one"
)]
pub struct NameClash {
    /// `user` or `group`.
    pub kind: &'static str,
    /// The later of the two.
    pub name: String,
    /// Its line.
    pub line: usize,
    /// The earlier of the two.
    pub first: String,
    /// Its line.
    pub first_line: usize,
}

/// Why `gatehouse passwd` did not set a password.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// The user name cannot be a key of the users file.
    #[error("user name must be non-empty, without ':' or control characters")]
    BadName,
    /// An empty password could never be used (the realm refuses it).
    #[error("empty passwords are not allowed")]
    EmptyPassword,
    /// Reading or writing the users file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The users file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The users file is not valid TOML.
    #[error("{}: {source}", path.display())]
    Syntax {
        /// The users file.
        path: PathBuf,
        /// The parser's account of it.
        source: toml_edit::TomlError,
    },
    /// The users file's `users` (or the user's entry) is not a table.
    #[error("{0} is not a table")]
    NotATable(&'static str),
    /// Several entries are this one user in other cases.
    #[error("{}: {names:?} are one user: keep one", path.display())]
    SameUser {
        /// The users file.
        path: PathBuf,
        /// The entries, as written.
        names: Vec<String>,
    },
    /// argon2 could not hash the password.
    #[error("{0}")]
    Hashing(argon2::password_hash::Error),
}
