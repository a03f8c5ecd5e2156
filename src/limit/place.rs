//! Where a client is, as the per-address bounds count it, and the sites a
//! configuration knows to be shared by many users.
//!
//! An IPv6 host is given a whole prefix (a /64 is one LAN, and any host on
//! it may pick any address in it), so counting exact IPv6 addresses would
//! make every per-address cap unlimited: IPv6 clients are counted per
//! `listener.ipv6_prefix`. IPv4-mapped IPv6 addresses are their IPv4.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::Deserialize;

/// The key a client's address is counted under: an IPv4 address, or its
/// IPv6 address with all but the first `ipv6_prefix` bits cleared.
pub fn place(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6);
                let keep = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        },
    }
}

/// Addresses known to carry many users — a terminal server, a NAT, a
/// balancer that cannot send the PROXY protocol — with their own bounds
/// in place of the per-address defaults (`[[listener.shared_addresses]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SharedAddress {
    /// The addresses (CIDRs) this entry covers.
    pub cidrs: Vec<IpNet>,
    /// Open connections from one such address (`listener.max_connections_per_address`).
    pub max_connections: Option<usize>,
    /// NTLM handshakes pending at once from one such address
    /// (`auth.ntlm.max_pending_per_address`).
    pub max_pending_ntlm: Option<usize>,
    /// Distinct failed passwords from one such address, for users not known
    /// there, within the throttle's window (`auth.throttle.address_failures`).
    pub address_failures: Option<u32>,
}

/// The first entry of `shared` covering `ip`, if any.
pub fn shared(shared: &[SharedAddress], ip: IpAddr) -> Option<&SharedAddress> {
    let ip = place(ip, 128);
    shared
        .iter()
        .find(|s| s.cidrs.iter().any(|n| n.contains(&ip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_counted_per_prefix_and_mapped_v4_as_v4() {
        let p = |s: &str, n| place(s.parse().unwrap(), n).to_string();
        assert_eq!(p("2001:db8:1:2:aaaa::1", 64), "2001:db8:1:2::");
        assert_eq!(p("2001:db8:1:2:ffff:ffff:ffff:ffff", 64), "2001:db8:1:2::");
        assert_eq!(p("2001:db8:1:2:aaaa::1", 128), "2001:db8:1:2:aaaa::1");
        assert_eq!(p("2001:db8:1:2:aaaa::1", 0), "::");
        assert_eq!(p("::ffff:10.0.0.7", 64), "10.0.0.7");
        assert_eq!(p("10.0.0.7", 8), "10.0.0.7");
    }

    #[test]
    fn the_first_covering_entry_answers() {
        let e = |c: &[&str], n| SharedAddress {
            cidrs: c.iter().map(|c| c.parse().unwrap()).collect(),
            max_connections: Some(n),
            max_pending_ntlm: None,
            address_failures: None,
        };
        let list = [
            e(&["10.1.0.0/16"], 1),
            e(&["10.0.0.0/8", "2001:db8::/32"], 2),
        ];
        let at = |s: &str| shared(&list, s.parse().unwrap()).and_then(|s| s.max_connections);
        assert_eq!(at("10.1.2.3"), Some(1));
        assert_eq!(at("10.9.2.3"), Some(2));
        assert_eq!(at("::ffff:10.9.2.3"), Some(2));
        assert_eq!(at("2001:db8::5"), Some(2));
        assert_eq!(at("192.0.2.1"), None);
    }
}
