//! A connection's places under the listener's limits: one of
//! `listener.max_connections`, and one of its client address's
//! `listener.max_connections_per_address`. Both are held for as long as the
//! connection (or the tunnel that outlives it) lives, and given back on drop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open connections per client address, capped. One host (or one attacker)
/// cannot take every slot of the proxy.
#[derive(Debug)]
pub struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// Woken whenever a place is given back, for [`PerAddress::take_within`].
    freed: tokio::sync::Notify,
}

impl PerAddress {
    /// A per-address counter allowing `max` connections from one address.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
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

    /// A place for one more connection from `ip`, if it has fewer than the cap.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let ip = fold_mapped(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }

    /// Connections open from `ip` now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&fold_mapped(ip)).copied().unwrap_or(0)
    }
}

/// `::ffff:a.b.c.d` is the IPv4 host `a.b.c.d` (a dual-stack listener sees
/// IPv4 clients so): one address, one count.
fn fold_mapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One connection's place in its address's count.
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
                // Entries live only while their address has connections.
                open.remove(&self.ip);
            }
        }
        drop(open);
        self.table.freed.notify_waiters();
    }
}

/// Both places of one connection.
#[derive(Debug)]
pub struct Slot {
    _global: OwnedSemaphorePermit,
    _address: AddressSlot,
}

/// Why a new connection gets no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// `listener.max_connections` reached.
    Proxy,
    /// `listener.max_connections_per_address` reached for this client.
    Address,
}

/// Takes both places for a connection from `ip`, or says which limit is full.
pub fn take(global: &Arc<Semaphore>, per: &Arc<PerAddress>, ip: IpAddr) -> Result<Slot, Full> {
    let address = per.try_take(ip).ok_or(Full::Address)?;
    let global = global
        .clone()
        .try_acquire_owned()
        .map_err(|_| Full::Proxy)?;
    Ok(Slot {
        _global: global,
        _address: address,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_cap_and_release() {
        let per = PerAddress::new(2);
        let global = Arc::new(Semaphore::new(10));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = take(&global, &per, a).unwrap();
        let s2 = take(&global, &per, mapped).unwrap();
        assert_eq!(take(&global, &per, a).unwrap_err(), Full::Address);
        let s3 = take(&global, &per, b).unwrap();
        assert_eq!(global.available_permits(), 7);
        drop(s1);
        assert_eq!(per.open(a), 1);
        let _s4 = take(&global, &per, a).unwrap();
        drop((s2, s3));
        assert_eq!(per.open(b), 0);
        assert!(per.open.lock().unwrap().len() == 1, "empty entries removed");
    }

    #[test]
    fn a_full_proxy_gives_the_address_place_back() {
        let per = PerAddress::new(5);
        let global = Arc::new(Semaphore::new(1));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let _s = take(&global, &per, ip).unwrap();
        assert_eq!(take(&global, &per, ip).unwrap_err(), Full::Proxy);
        assert_eq!(per.open(ip), 1);
    }
}
