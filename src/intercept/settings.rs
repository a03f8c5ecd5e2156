//! `[intercept]`: the certificate authority interception mints with, and
//! the leaf cache. Which tunnels are intercepted is the policy's say
//! (`action = "intercept"`); without a CA, no tunnel can be.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{invalid, nonzero, Invalid};

/// TLS interception.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InterceptConfig {
    /// The CA certificate (PEM) clients trust; `gatehouse ca init` makes one.
    pub ca_cert: Option<PathBuf>,
    /// Its private key (PEM): refused at start-up if group- or world-readable.
    pub ca_key: Option<PathBuf>,
    /// Most minted leaf certificates kept (one per name).
    pub leaf_cache: u64,
    /// A minted leaf is re-minted after this long (an upstream renewal shows).
    #[serde(with = "humantime_serde")]
    pub leaf_ttl: Duration,
}

impl Default for InterceptConfig {
    fn default() -> Self {
        Self {
            ca_cert: None,
            ca_key: None,
            leaf_cache: 10_000,
            leaf_ttl: Duration::from_secs(3600),
        }
    }
}

impl InterceptConfig {
    /// Both CA files or neither; a cache of at least one leaf.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.ca_cert.is_some() != self.ca_key.is_some() {
            return Err(invalid(
                "intercept.ca_key",
                "give both intercept.ca_cert and intercept.ca_key, or neither",
            ));
        }
        if self.leaf_cache == 0 {
            return Err(invalid("intercept.leaf_cache", "must be at least 1"));
        }
        nonzero(&[("intercept.leaf_ttl", self.leaf_ttl)])
    }
}
