//! `[forward]`: absolute-form requests forwarded to origin servers.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{invalid, nonzero, Invalid};

/// Absolute-form requests forwarded to origin servers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Time to connect to the origin.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for the origin to send its response head.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// An idle pooled connection is closed after this.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Most idle pooled connections per origin.
    pub pool_max_idle_per_host: usize,
    /// Pseudonym used in our `Via` entry; a request already carrying it is a loop.
    pub via_pseudonym: String,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            via_pseudonym: "gatehouse".into(),
        }
    }
}

impl ForwardConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        nonzero(&[
            ("forward.connect_timeout", self.connect_timeout),
            ("forward.response_timeout", self.response_timeout),
        ])?;
        let via = &self.via_pseudonym;
        if via.is_empty()
            || !via
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(invalid(
                "forward.via_pseudonym",
                "must be a non-empty token of letters, digits, '-', '.', '_'",
            ));
        }
        Ok(())
    }
}
