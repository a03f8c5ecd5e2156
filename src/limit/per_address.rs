//! Counts per client address under a cap: one host (or one attacker) cannot
//! take every place. Used for open connections (`listener`) and for NTLM
//! handshakes between their type 1 and type 3 (`auth`).
//!
//! A client is counted at its [`place`] (an IPv6 host per
//! `listener.ipv6_prefix`), and an address covered by
//! `[[listener.shared_addresses]]` gets that entry's cap for the thing
//! counted instead of the default.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::place::{place, shared, SharedAddress};

/// What a [`PerAddress`] counts: it picks the matching cap of a shared address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Open connections (`max_connections` of a shared address).
    Connections,
    /// NTLM handshakes between type 1 and type 3 (`max_pending_ntlm`).
    PendingNtlm,
}

impl Counted {
    fn cap_of(self, s: &SharedAddress) -> Option<usize> {
        match self {
            Counted::Connections => s.max_connections,
            Counted::PendingNtlm => s.max_pending_ntlm,
        }
    }
}

/// Where clients are counted, from `[listener]` (a reload swaps it whole).
#[derive(Debug, Clone, PartialEq)]
pub struct Places {
    /// `listener.ipv6_prefix`.
    pub ipv6_prefix: u8,
    /// `listener.shared_addresses`.
    pub shared: Vec<SharedAddress>,
}

impl Default for Places {
    fn default() -> Self {
        Self {
            ipv6_prefix: 64,
            shared: Vec::new(),
        }
    }
}

/// Places per client address, capped. One host (or one attacker)
/// cannot take every slot of the proxy.
#[derive(Debug)]
pub struct PerAddress {
    counted: Counted,
    /// The default cap; a reload may change it (places held above a lowered
    /// cap are kept until given back).
    max: AtomicUsize,
    places: arc_swap::ArcSwap<Places>,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// Woken whenever a place is given back, for [`PerAddress::take_within`].
    freed: tokio::sync::Notify,
}

impl PerAddress {
    /// At most `max` connections per address (IPv6 per /64, no shared addresses).
    pub fn new(max: usize) -> Arc<Self> {
        Self::counting(Counted::Connections, max)
    }

    /// At most `max` places of `counted` per address, until [`PerAddress::set_places`].
    pub fn counting(counted: Counted, max: usize) -> Arc<Self> {
        Arc::new(Self {
            counted,
            max: AtomicUsize::new(max),
            places: arc_swap::ArcSwap::from_pointee(Places::default()),
            open: Mutex::new(HashMap::new()),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// A place for `ip`, waiting at most `wait` for one to be given back.
    /// Waiting costs a future, not a helper: a browser's burst of parallel
    /// handshakes queues briefly, a flood from one address is refused.
    pub async fn take_within(
        self: &Arc<Self>,
        ip: IpAddr,
        wait: std::time::Duration,
    ) -> Option<AddressSlot> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the attempt, so a place freed in between wakes us.
            let freed = self.freed.notified();
            if let Some(place) = self.try_take(ip) {
                return Some(place);
            }
            tokio::time::timeout_at(deadline, freed).await.ok()?;
        }
    }

    /// One more place for `ip`, if its place holds fewer than its cap.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let (key, cap) = self.key_and_cap(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= cap {
            if *n == 0 {
                open.remove(&key); // a cap of 0 leaves no entry behind
            }
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip: key,
        })
    }

    /// The key `ip` is counted under and the cap that applies to it.
    fn key_and_cap(&self, ip: IpAddr) -> (IpAddr, usize) {
        let places = self.places.load();
        let cap = shared(&places.shared, ip)
            .and_then(|s| self.counted.cap_of(s))
            .unwrap_or_else(|| self.max.load(Ordering::Relaxed));
        (place(ip, places.ipv6_prefix), cap)
    }

    /// The cap that applies to `ip` now.
    pub fn cap(&self, ip: IpAddr) -> usize {
        self.key_and_cap(ip).1
    }

    /// A new default cap, from a reload.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// New places (IPv6 prefix, shared addresses), from a reload. Places
    /// held keep the key they were counted under until given back.
    pub fn set_places(&self, places: Places) {
        self.places.store(Arc::new(places));
    }

    /// Places held by `ip`'s place now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let key = self.key_and_cap(ip).0;
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&key).copied().unwrap_or(0)
    }

    /// Addresses holding a place now (entries live only while they do).
    pub fn addresses(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One place in an address's count, given back on drop.
#[derive(Debug)]
pub struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Entries live only while their address holds places.
                open.remove(&self.ip);
            }
        }
        drop(open);
        self.table.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn site(cidr: &str, conns: Option<usize>, ntlm: Option<usize>) -> SharedAddress {
        SharedAddress {
            cidrs: vec![cidr.parse().unwrap()],
            max_connections: conns,
            max_pending_ntlm: ntlm,
            address_failures: None,
        }
    }

    #[test]
    fn one_ipv6_host_is_its_whole_prefix() {
        let per = PerAddress::new(2);
        let _a = per.try_take(ip("2001:db8:1:2::1")).unwrap();
        let _b = per
            .try_take(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"))
            .unwrap();
        assert!(
            per.try_take(ip("2001:db8:1:2:ffff::9")).is_none(),
            "a third address in the same /64 is the same host"
        );
        let _c = per.try_take(ip("2001:db8:1:3::1")).unwrap();
        assert_eq!(per.open(ip("2001:db8:1:2::77")), 2);
        assert_eq!(per.addresses(), 2);
        // A /128 prefix counts every address apart.
        per.set_places(Places {
            ipv6_prefix: 128,
            shared: Vec::new(),
        });
        assert!(per.try_take(ip("2001:db8:1:2:ffff::9")).is_some());
    }

    #[test]
    fn mapped_ipv4_is_ipv4() {
        let per = PerAddress::new(1);
        let _a = per.try_take(ip("10.0.0.1")).unwrap();
        assert!(per.try_take(ip("::ffff:10.0.0.1")).is_none());
    }

    #[test]
    fn a_shared_address_has_its_own_cap_for_what_is_counted() {
        let places = Places {
            ipv6_prefix: 64,
            shared: vec![
                site("10.9.0.0/16", Some(3), None),
                site("10.0.0.0/8", None, Some(1)),
            ],
        };
        let conns = PerAddress::new(2);
        let ntlm = PerAddress::counting(Counted::PendingNtlm, 2);
        conns.set_places(places.clone());
        ntlm.set_places(places);
        assert_eq!(conns.cap(ip("10.9.1.1")), 3, "raised for the site");
        assert_eq!(conns.cap(ip("10.1.1.1")), 2, "an entry without it: default");
        assert_eq!(conns.cap(ip("192.0.2.1")), 2, "not covered: default");
        assert_eq!(ntlm.cap(ip("10.9.1.1")), 2, "first covering entry answers");
        assert_eq!(ntlm.cap(ip("10.1.1.1")), 1, "lowered for the site");
        let held: Vec<_> = (0..3)
            .filter_map(|_| conns.try_take(ip("10.9.1.1")))
            .collect();
        assert_eq!(held.len(), 3);
        assert!(conns.try_take(ip("10.9.1.1")).is_none());
        conns.set_max(10);
        assert!(
            conns.try_take(ip("10.9.1.1")).is_none(),
            "the site's cap holds"
        );
    }

    #[test]
    fn a_zero_cap_refuses_and_leaves_no_entry() {
        let per = PerAddress::new(1);
        per.set_places(Places {
            ipv6_prefix: 64,
            shared: vec![site("192.0.2.0/24", Some(0), None)],
        });
        assert!(per.try_take(ip("192.0.2.5")).is_none());
        assert_eq!(per.addresses(), 0);
    }
}
