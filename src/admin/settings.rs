//! `[admin]`: the metrics and health listener.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{invalid, nonzero, Invalid};

/// The admin listener; off unless `address` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served; never a proxy address.
    pub address: Option<SocketAddr>,
    /// `/readyz` waits this long for each directory realm's probe.
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
    /// Admin connections open at once; beyond this: 503 and closed. A
    /// scraper or a health checker that leaks connections cannot exhaust
    /// the process's descriptors through this port.
    pub max_connections: usize,
    /// Admin connections from one client address (IPv6: per /64); beyond this: 503.
    pub max_connections_per_address: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            address: None,
            probe_timeout: Duration::from_secs(2),
            max_connections: 64,
            max_connections_per_address: 16,
        }
    }
}

impl AdminConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(1..=100_000).contains(&self.max_connections) {
            return Err(invalid(
                "admin.max_connections",
                "must be between 1 and 100000",
            ));
        }
        if self.max_connections_per_address == 0 {
            return Err(invalid(
                "admin.max_connections_per_address",
                "must be at least 1",
            ));
        }
        nonzero(&[("admin.probe_timeout", self.probe_timeout)])
    }
}
