//! `[resolver]` (how names become addresses) and `[destinations]`
//! (addresses no request may reach).

use serde::Deserialize;

use crate::settings::{invalid, Invalid};

/// How destination names become addresses.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    /// Static names, checked first (like /etc/hosts, per proxy).
    pub hosts: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
    /// Ask the system resolver for names not in `hosts`.
    pub system: bool,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            hosts: Default::default(),
            system: true,
        }
    }
}

/// Destinations refused before the policy is asked.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DestinationsConfig {
    /// No request reaches an address in these ranges, whatever the policy
    /// says: if any address a destination resolves to is in one, 403
    /// `destination_refused`. The default keeps clients off link-local
    /// addresses, where cloud metadata services hand out credentials
    /// (169.254.169.254), and off 0.0.0.0/8 (which Linux dials as this host).
    pub refuse: Vec<ipnet::IpNet>,
}

impl Default for DestinationsConfig {
    fn default() -> Self {
        Self {
            refuse: ["169.254.0.0/16", "fe80::/10", "0.0.0.0/8"]
                .iter()
                .map(|s| s.parse().expect("constant CIDRs"))
                .collect(),
        }
    }
}

impl ResolverConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some((name, _)) = self.hosts.iter().find(|(_, ips)| ips.is_empty()) {
            return Err(invalid(
                "resolver.hosts",
                format!("{name:?} has no address"),
            ));
        }
        for name in self.hosts.keys() {
            // Requests are looked up by their canonical host: a key that is an
            // address, or not a host name at all, would never be found.
            match super::host::canonical(name) {
                Ok(super::Host::Name(_)) => {}
                _ => {
                    return Err(invalid(
                        "resolver.hosts",
                        format!("{name:?} is not a host name"),
                    ))
                }
            }
        }
        Ok(())
    }
}
