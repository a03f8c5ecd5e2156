//! Name resolution for both forwarded requests and tunnels: a static table
//! first (like Squid's `hosts_file`), then, if allowed, the system resolver.
//!
//! A destination is resolved exactly once per request, before the policy
//! decides; the decision and the connection both use that one answer, so a
//! name cannot resolve to one address for the check and another for the
//! dial (DNS rebinding). Hosts arrive canonical ([`host::canonical`]).
//!
//! Turning the system resolver off makes a proxy that resolves only what its
//! config names — useful in locked-down sites and in the test lab, where no
//! query may leave the machine.

pub mod host;
pub(crate) mod settings;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

pub use host::Host;
use settings::ResolverConfig;

/// Most addresses kept from one answer: every one kept is checked and may be
/// dialled, the rest are dropped unseen.
pub const MAX_ADDRESSES: usize = 16;

/// Destination names to addresses: `[resolver] hosts` first, then the system resolver if enabled.
#[derive(Debug, Clone)]
pub struct Resolver {
    hosts: Arc<HashMap<String, Vec<IpAddr>>>,
    system: bool,
}

impl Resolver {
    /// A resolver with these settings.
    pub fn new(cfg: &ResolverConfig) -> Self {
        let hosts = cfg
            .hosts
            .iter()
            .map(|(name, ips)| {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                (name, ips.iter().map(|ip| host::fold(*ip)).collect())
            })
            .collect();
        Self {
            hosts: Arc::new(hosts),
            system: cfg.system,
        }
    }

    /// The addresses of `host`: the literal itself, a configured name, or —
    /// when allowed — whatever the system resolver says. IPv4-mapped IPv6
    /// answers are folded to IPv4, duplicates dropped, at most
    /// [`MAX_ADDRESSES`] kept, in the resolver's order.
    pub async fn resolve(&self, host: &Host) -> io::Result<Vec<IpAddr>> {
        let name = match host {
            Host::Ip(ip) => return Ok(vec![host::fold(*ip)]),
            Host::Name(n) => n,
        };
        if let Some(ips) = self.hosts.get(name) {
            return Ok(ips.clone());
        }
        if !self.system {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} is not in resolver.hosts and the system resolver is off"),
            ));
        }
        let mut out: Vec<IpAddr> = Vec::new();
        for a in tokio::net::lookup_host((name.as_str(), 0)).await? {
            let ip = host::fold(a.ip());
            if !out.contains(&ip) && out.len() < MAX_ADDRESSES {
                out.push(ip);
            }
        }
        if out.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{name} has no address"),
            ));
        }
        Ok(out)
    }
}

/// Destinations no request may reach whatever the policy says
/// (`destinations.refuse`: link-local and cloud metadata by default).
#[derive(Debug, Clone, Default)]
pub struct Refused(Vec<IpNet>);

impl Refused {
    /// The refused ranges, normalised.
    pub fn new(nets: &[IpNet]) -> Self {
        Self(nets.iter().map(IpNet::trunc).collect())
    }

    /// The first of `addrs` in a refused range, if any.
    pub fn find(&self, addrs: &[IpAddr]) -> Option<IpAddr> {
        addrs
            .iter()
            .copied()
            .find(|ip| self.0.iter().any(|n| n.contains(ip)))
    }
}

/// `addrs` with `port`, in order, for dialling.
pub fn with_port(addrs: &[IpAddr], port: u16) -> Vec<SocketAddr> {
    addrs.iter().map(|ip| SocketAddr::new(*ip, port)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(system: bool) -> Resolver {
        let mut hosts = HashMap::new();
        hosts.insert(
            "Origin.Example.Test".to_string(),
            vec!["127.0.0.2".parse().unwrap()],
        );
        hosts.insert(
            "mapped.example.test.".to_string(),
            vec!["::ffff:10.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        );
        Resolver::new(&ResolverConfig { hosts, system })
    }

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn literals_and_table_need_no_resolver() {
        let r = resolver(false);
        let h = |s: &str| host::canonical(s).unwrap();
        assert_eq!(
            r.resolve(&h("127.0.0.9")).await.unwrap(),
            ips(&["127.0.0.9"])
        );
        assert_eq!(r.resolve(&h("[::1]")).await.unwrap(), ips(&["::1"]));
        assert_eq!(
            r.resolve(&h("origin.example.TEST")).await.unwrap(),
            ips(&["127.0.0.2"])
        );
        assert_eq!(
            r.resolve(&h("mapped.example.test")).await.unwrap(),
            ips(&["10.0.0.1", "::1"])
        );
    }

    #[tokio::test]
    async fn unknown_name_fails_without_system_resolver() {
        let e = resolver(false)
            .resolve(&Host::Name("elsewhere.example.test".into()))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn refused_ranges_find_any_address() {
        let r = Refused::new(&[
            "169.254.0.0/16".parse().unwrap(),
            "fe80::1/10".parse().unwrap(),
        ]);
        assert_eq!(r.find(&ips(&["10.0.0.1"])), None);
        assert_eq!(
            r.find(&ips(&["10.0.0.1", "169.254.169.254"])),
            Some("169.254.169.254".parse().unwrap())
        );
        assert!(r.find(&ips(&["fe80::abcd"])).is_some());
        assert_eq!(Refused::default().find(&ips(&["169.254.1.1"])), None);
    }
}
