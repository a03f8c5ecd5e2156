//! `gatehouse replay`: recorded access logs re-decided under a new policy,
//! before it is reloaded. Each line is read back into the facts it records
//! ([`line`]), judged by the proxy's own pure [`crate::proxy::plan`] under
//! the new policy ([`judge`]), and compared with the decision the line
//! records; facts no line records are never guessed ([`unknown`]). The
//! files stream through a reader thread and a pool of workers over bounded
//! queues ([`run`]), so memory stays flat over gigabytes, and the counts
//! ([`tally`]) merge in any order.

mod judge;
mod line;
pub mod run;
mod tally;
mod unknown;

use std::net::SocketAddr;

use crate::config::Config;
use crate::policy::{LoadError, Policy};
use crate::proxy::plan::Settings;
use crate::resolve::Refused;
use crate::tunnel::settings::Ports;

/// The new policy and the settings a plan depends on, from the config.
pub struct Replayer {
    /// The policy replayed against.
    pub policy: Policy,
    connect_ports: Ports,
    refused: Refused,
    listening: Vec<SocketAddr>,
    auth_required: bool,
    detection: bool,
}

impl Replayer {
    /// The config's settings with the policy file `policy` in place of its own
    /// (the config's `allowed_groups` and categories kept).
    pub fn new(config: &Config, policy: &std::path::Path) -> Result<Self, LoadError> {
        let mut cfg = config.policy.clone();
        cfg.file = Some(policy.to_path_buf());
        Ok(Self {
            policy: Policy::load(&cfg)?,
            connect_ports: config.tunnel.allowed_ports.clone(),
            refused: Refused::new(&config.destinations.refuse),
            listening: config.listener.addresses.clone(),
            auth_required: config.auth.required,
            detection: config.detection.enabled,
        })
    }

    /// A policy with these settings, nothing refused and no listener (tests).
    pub fn from_parts(
        policy: Policy,
        connect_ports: Ports,
        auth_required: bool,
        detection: bool,
    ) -> Self {
        Self {
            policy,
            connect_ports,
            refused: Refused::new(&[]),
            listening: Vec::new(),
            auth_required,
            detection,
        }
    }

    /// The plan's settings, borrowed.
    pub fn settings(&self) -> Settings<'_> {
        Settings {
            connect_ports: &self.connect_ports,
            refused: &self.refused,
            listening: &self.listening,
            auth_required: self.auth_required,
            detection: self.detection,
        }
    }

    /// Replays one line into `tally`.
    pub fn replay(
        &self,
        scan: &mut unknown::Scanner,
        fields: &line::ElffFields,
        text: &str,
        tally: &mut tally::Tally,
    ) {
        let l = match line::parse(text, fields) {
            Ok(None) => return,
            Ok(Some(l)) => l,
            Err(line::Malformed(why)) => {
                tally.lines += 1;
                tally.malformed(text.trim_end(), why);
                return;
            }
        };
        tally.lines += 1;
        let Some(old) = judge::old(&l) else {
            tally.not_policy += 1;
            return;
        };
        let new = judge::new(&self.policy, &self.settings(), scan, &l);
        tally.add(text.trim_end(), old, new.verdict, new.unknown);
    }
}

#[cfg(test)]
#[path = "replay/replay_tests.rs"]
mod tests;
