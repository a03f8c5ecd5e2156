//! Counts per client address under a cap: one host (or one attacker) cannot
//! take every place. Used for open connections (`listener`) and for NTLM
//! handshakes between their type 1 and type 3 (`auth`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Places per client address, capped. One host (or one attacker)
/// cannot take every slot of the proxy.
#[derive(Debug)]
pub struct PerAddress {
    /// The cap; a reload may change it (places held above a lowered cap
    /// are kept until given back).
    max: AtomicUsize,
    open: Mutex<HashMap<IpAddr, usize>>,
    /// Woken whenever a place is given back, for [`PerAddress::take_within`].
    freed: tokio::sync::Notify,
}

impl PerAddress {
    /// At most `max` places per address.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: AtomicUsize::new(max),
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

    /// One more place for `ip`, if it holds fewer than the cap.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let ip = fold_mapped(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max.load(Ordering::Relaxed) {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }

    /// A new cap, from a reload.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// Places held by `ip` now.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&fold_mapped(ip)).copied().unwrap_or(0)
    }

    /// Addresses holding a place now (entries live only while they do).
    pub fn addresses(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
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
