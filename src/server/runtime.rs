//! Start-up: the configuration's [`Snapshot`] and the authenticator over
//! its realms, for `gatehouse run`, `check` and `explain`.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::policy::Policy;
use crate::snapshot::{BuildError, Snapshot};

/// What is valid but probably not meant: said by `check` and logged at start-up.
pub fn warnings(config: &Config, policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    if !config.detection.enabled {
        if let Some(rule) = policy.detection_rule() {
            out.push(format!(
                "policy rule {rule:?} looks at what detection finds (protocol, sni, fingerprints) \
                 but [detection] enabled = false: it never matches"
            ));
        }
    }
    out
}

/// A config, built.
pub struct Runtime {
    /// Everything the config names, built.
    pub snapshot: Snapshot,
    /// The authenticator (its settings need a restart; the realms it checks
    /// against come from the snapshot in force).
    pub auth: Authenticator,
}

impl Runtime {
    /// Builds everything the config names; nothing listens yet.
    pub fn build(config: Arc<Config>) -> Result<Self, BuildError> {
        let snapshot = Snapshot::build(config.clone(), None)?;
        Ok(Self {
            auth: Authenticator::new(&config.auth)?,
            snapshot,
        })
    }
}
