//! Why a policy could not be loaded: each variant names where (file,
//! layer, rule and field, or list file and line).

use std::path::PathBuf;

use super::lists::ListError;

/// A policy mistake, located by layer, rule and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct PolicyError {
    /// `FILE: layer "L", rule "R", field `F``.
    pub place: String,
    /// What is wrong.
    pub message: String,
}

/// A [`PolicyError`] at `place`.
pub fn err(place: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        place: place.to_string(),
        message: message.into(),
    }
}

/// Why [`Policy::load`](super::Policy::load) refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The policy file could not be read.
    #[error("policy {}: {source}", path.display())]
    Read {
        /// The policy file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The policy file is not valid TOML of the policy's shape.
    #[error("policy {source_name}: {message}")]
    Syntax {
        /// The policy file, or `policy` for text.
        source_name: String,
        /// The parser's message (it names the line).
        message: String,
    },
    /// A rule, object or layer is wrong.
    #[error(transparent)]
    Rule(#[from] PolicyError),
    /// A list file could not be read, or a line of it is not an entry.
    #[error("policy {policy}: {source}")]
    List {
        /// The policy file naming the list.
        policy: String,
        /// The file and line.
        source: ListError,
    },
    /// The category database is wrong.
    #[error(transparent)]
    Categories(#[from] super::categories::CategoryError),
}
