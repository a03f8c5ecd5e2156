//! What every module's settings share: the error a validation gives, naming
//! the config key, so `config` can aggregate the modules' checks without the
//! modules depending on `config`.

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

/// Every duration in `list` is longer than zero.
pub fn nonzero(list: &[(&'static str, Duration)]) -> Result<(), Invalid> {
    match list.iter().find(|(_, d)| d.is_zero()) {
        Some((key, _)) => Err(invalid(key, "must be longer than zero")),
        None => Ok(()),
    }
}
