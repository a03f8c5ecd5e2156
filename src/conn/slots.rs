//! A connection's places under the listener's limits: one of
//! `listener.max_connections`, and one of its client address's
//! `listener.max_connections_per_address`. Both are held for as long as the
//! connection (or the tunnel that outlives it) lives, and given back on drop.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

pub use crate::limit::{AddressSlot, PerAddress};

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

/// The permits of `listener.max_connections`, as every place that takes one
/// holds them (the accept loop, an HTTP/2 connection's CONNECT streams),
/// with the fewest ever free since [`Limit::peak`] last looked: a burst
/// that opens and closes between two looks is still seen (memory is given
/// back after it, `server/trim.rs`).
#[derive(Debug, Clone)]
pub struct Global {
    permits: Arc<Semaphore>,
    fewest_free: Arc<AtomicUsize>,
}

impl Global {
    fn new(permits: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits)),
            fewest_free: Arc::new(AtomicUsize::new(usize::MAX)),
        }
    }

    /// One permit, if one is free.
    pub fn try_take(&self) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        let permit = self.permits.clone().try_acquire_owned()?;
        self.fewest_free
            .fetch_min(self.permits.available_permits(), Relaxed);
        Ok(permit)
    }
}

/// `listener.max_connections` as permits, resizable by a reload: a raised
/// limit adds permits at once; a lowered one takes back the free ones now
/// and the rest as connections close (none is cut).
#[derive(Debug)]
pub struct Limit {
    /// One permit per open connection.
    pub global: Global,
    max: AtomicUsize,
    /// Permits a lowered limit still has to take back (held by open
    /// connections until they close).
    owed: Arc<AtomicUsize>,
}

impl Limit {
    /// `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            global: Global::new(max),
            max: max.into(),
            owed: Arc::default(),
        }
    }

    /// The limit now.
    pub fn max(&self) -> usize {
        self.max.load(Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.taken(self.global.permits.available_permits())
    }

    /// The most connections open at once since the last call (or since
    /// start), and the count now; the next call counts from now.
    pub fn peak(&self) -> (usize, usize) {
        let fewest = self.global.fewest_free.swap(usize::MAX, Relaxed);
        let free = self.global.permits.available_permits();
        // What is open now counts toward the next look's most too.
        self.global.fewest_free.fetch_min(free, Relaxed);
        (self.taken(fewest.min(free)), self.taken(free))
    }

    /// Connections holding a permit when `free` are free.
    fn taken(&self, free: usize) -> usize {
        (self.max() + self.owed.load(Relaxed)).saturating_sub(free)
    }

    /// Changes the limit to `max`.
    pub fn resize(&self, max: usize) {
        let old = self.max.swap(max, Relaxed);
        // A mark taken under the old limit means nothing under the new one.
        self.global.fewest_free.store(usize::MAX, Relaxed);
        let permits = &self.global.permits;
        if max > old {
            permits.add_permits(max - old);
        } else if max < old {
            let owed = (old - max) - permits.forget_permits(old - max);
            if owed > 0 {
                // Taken back as connections close.
                let (permits, debt) = (permits.clone(), self.owed.clone());
                debt.fetch_add(owed, Relaxed);
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned(owed as u32).await {
                        p.forget();
                    }
                    debt.fetch_sub(owed, Relaxed);
                });
            }
        }
    }
}

/// Takes both places for a connection from `ip`, or says which limit is full.
pub fn take(global: &Global, per: &Arc<PerAddress>, ip: IpAddr) -> Result<Slot, Full> {
    let address = per.try_take(ip).ok_or(Full::Address)?;
    let global = global.try_take().map_err(|_| Full::Proxy)?;
    Ok(Slot {
        _global: global,
        _address: address,
    })
}

/// The address's place for a connection that already holds its global
/// permit (it read a PROXY header first: only then is the client known).
pub fn take_address(
    global: OwnedSemaphorePermit,
    per: &Arc<PerAddress>,
    ip: IpAddr,
) -> Result<Slot, Full> {
    let address = per.try_take(ip).ok_or(Full::Address)?;
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
        let global = Global::new(10);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = take(&global, &per, a).unwrap();
        let s2 = take(&global, &per, mapped).unwrap();
        assert_eq!(take(&global, &per, a).unwrap_err(), Full::Address);
        let s3 = take(&global, &per, b).unwrap();
        assert_eq!(global.permits.available_permits(), 7);
        drop(s1);
        assert_eq!(per.open(a), 1);
        let _s4 = take(&global, &per, a).unwrap();
        drop((s2, s3));
        assert_eq!(per.open(b), 0);
        assert_eq!(per.addresses(), 1, "empty entries removed");
    }

    #[test]
    fn a_full_proxy_gives_the_address_place_back() {
        let per = PerAddress::new(5);
        let global = Global::new(1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let _s = take(&global, &per, ip).unwrap();
        assert_eq!(take(&global, &per, ip).unwrap_err(), Full::Proxy);
        assert_eq!(per.open(ip), 1);
    }

    #[test]
    fn a_held_global_permit_takes_the_address_place_after() {
        let per = PerAddress::new(1);
        let global = Global::new(3);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let permit = || global.try_take().unwrap();
        let s = take_address(permit(), &per, ip).unwrap();
        assert_eq!(take_address(permit(), &per, ip).unwrap_err(), Full::Address);
        assert_eq!(
            global.permits.available_permits(),
            2,
            "the refused one's permit is back"
        );
        drop(s);
        assert_eq!((per.open(ip), global.permits.available_permits()), (0, 3));
    }

    #[tokio::test]
    async fn a_lowered_limit_takes_permits_back_as_connections_close() {
        let l = Limit::new(4);
        let held: Vec<_> = (0..3).map(|_| l.global.try_take().unwrap()).collect();
        l.resize(1);
        assert_eq!(
            l.open(),
            3,
            "the open connections are counted, not the limit"
        );
        assert!(l.global.try_take().is_err(), "no room");
        drop(held);
        for _ in 0..100 {
            if l.owed.load(Relaxed) == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(l.open(), 0);
        let one = l.global.try_take().unwrap();
        assert!(l.global.try_take().is_err(), "the new limit is 1");
        drop(one);
        l.resize(3);
        assert_eq!(l.global.permits.available_permits(), 3);
    }

    /// The bench's idle row opened 9,000 tunnels and closed them within
    /// the trimmer's 5 s between two looks: counting only what was open at
    /// each look, it never saw them, and the memory stayed (93 MiB against
    /// an idle 50).
    #[test]
    fn a_burst_between_two_looks_is_seen() {
        let l = Limit::new(1000);
        assert_eq!(l.peak(), (0, 0));
        let burst: Vec<_> = (0..300).map(|_| l.global.try_take().unwrap()).collect();
        let kept = l.global.try_take().unwrap();
        drop(burst);
        assert_eq!(l.peak(), (301, 1), "the most at once, and now");
        assert_eq!(l.peak(), (1, 1), "the next look counts from the last");
        drop(kept);
        assert_eq!(l.peak(), (1, 0), "held since the last look");
        l.resize(2000);
        assert_eq!(l.peak(), (0, 0));
    }
}
