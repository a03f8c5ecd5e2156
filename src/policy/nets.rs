//! Address ranges compiled to a prefix trie (`prefix_trie`): finding the
//! range that holds an address costs one walk down at most 32 (IPv4) or
//! 128 (IPv6) levels, however many ranges the list holds.

use std::net::IpAddr;

use ipnet::IpNet;
use prefix_trie::joint::map::JointPrefixMap;

use super::entry::{MatchedEntry, Origin};

/// Reads an address (`10.0.0.1`, a /32) or a CIDR (`10.0.0.0/8`, host bits
/// cleared).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is not an address or CIDR"))
}

/// A set of ranges, each with the line it was read from (0 when written in
/// the policy file).
#[derive(Default)]
pub struct NetSet {
    map: JointPrefixMap<IpNet, u32>,
    /// The list file the ranges came from.
    pub origin: Origin,
}

impl std::fmt::Debug for NetSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSet")
            .field("len", &self.map.len())
            .field("origin", &self.origin)
            .finish()
    }
}

impl NetSet {
    /// Adds a range read at `line`; the first of duplicates is kept.
    pub fn insert(&mut self, net: IpNet, line: u32) {
        self.map.entry(net).or_insert(line);
    }

    /// Number of ranges.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No ranges at all.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Is `ip` in any range?
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.find(ip).is_some()
    }

    /// The narrowest range holding `ip`, and its line.
    pub fn find(&self, ip: &IpAddr) -> Option<(IpNet, u32)> {
        self.map
            .get_lpm(&IpNet::from(*ip))
            .map(|(net, line)| (net, *line))
    }

    /// The matched entry, as `explain` shows it.
    pub fn entry(&self, field: &'static str, ip: &IpAddr) -> Option<MatchedEntry> {
        let (net, line) = self.find(ip)?;
        Some(MatchedEntry {
            field,
            pattern: net.to_string(),
            source: self.origin.at(line),
        })
    }

    /// Every range, in no fixed order.
    #[cfg(test)]
    pub fn nets(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.map.iter().map(|(n, _)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowest_range_wins_and_families_stay_apart() {
        let mut s = NetSet::default();
        s.insert(parse_net("10.0.0.0/8").unwrap(), 1);
        s.insert(parse_net("10.1.2.3/16").unwrap(), 2);
        s.insert(parse_net("::1").unwrap(), 3);
        s.insert(parse_net("10.0.0.0/8").unwrap(), 4);
        let at = |ip: &str| {
            s.find(&ip.parse().unwrap())
                .map(|(n, l)| (n.to_string(), l))
        };
        assert_eq!(at("10.1.9.9"), Some(("10.1.0.0/16".into(), 2)));
        assert_eq!(at("10.2.0.0"), Some(("10.0.0.0/8".into(), 1)));
        assert_eq!(at("11.0.0.0"), None);
        assert_eq!(at("::1"), Some(("::1/128".into(), 3)));
        assert_eq!(at("::2"), None);
        // An IPv4 range does not hold the IPv4-mapped IPv6 spelling (addresses are folded before).
        assert_eq!(at("::ffff:10.0.0.1"), None);
        assert_eq!(s.len(), 3);
        assert!(parse_net("10.0.0.0/33").is_err());
    }
}
