//! `[admin]`: the metrics and health listener.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{nonzero, Invalid};

/// The admin listener; off unless `address` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; never a proxy address.
    pub address: Option<SocketAddr>,
    /// `/readyz` waits this long for each directory realm's probe.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: None,
            probe_timeout: Duration::from_secs(2),
        }
    }
}

impl AdminConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        nonzero(&[("admin.probe_timeout", self.probe_timeout)])
    }
}
