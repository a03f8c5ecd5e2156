//! A connection's places under the listener's limits: one of
//! `listener.max_connections`, and one of its client address's
//! `listener.max_connections_per_address`. Both are held for as long as the
//! connection (or the tunnel that outlives it) lives, and given back on drop.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// `listener.max_connections` as permits, resizable by a reload: a raised
/// limit adds permits at once; a lowered one takes back the free ones now
/// and the rest as connections close (none is cut).
#[derive(Debug)]
pub struct Limit {
    /// One permit per open connection.
    pub permits: Arc<Semaphore>,
    max: std::sync::atomic::AtomicUsize,
    /// Permits a lowered limit still has to take back (held by open
    /// connections until they close).
    owed: Arc<std::sync::atomic::AtomicUsize>,
}

impl Limit {
    /// `max` connections at once.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max: max.into(),
            owed: Arc::default(),
        }
    }

    /// The limit now.
    pub fn max(&self) -> usize {
        self.max.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        let owed = self.owed.load(std::sync::atomic::Ordering::Relaxed);
        (self.max() + owed).saturating_sub(self.permits.available_permits())
    }

    /// Changes the limit to `max`.
    pub fn resize(&self, max: usize) {
        let old = self.max.swap(max, std::sync::atomic::Ordering::Relaxed);
        if max > old {
            self.permits.add_permits(max - old);
        } else if max < old {
            let owed = (old - max) - self.permits.forget_permits(old - max);
            if owed > 0 {
                // Taken back as connections close.
                let (permits, debt) = (self.permits.clone(), self.owed.clone());
                debt.fetch_add(owed, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire_many_owned(owed as u32).await {
                        p.forget();
                    }
                    debt.fetch_sub(owed, std::sync::atomic::Ordering::Relaxed);
                });
            }
        }
    }
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
        assert_eq!(per.addresses(), 1, "empty entries removed");
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

    #[test]
    fn a_held_global_permit_takes_the_address_place_after() {
        let per = PerAddress::new(1);
        let global = Arc::new(Semaphore::new(3));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let permit = || global.clone().try_acquire_owned().unwrap();
        let s = take_address(permit(), &per, ip).unwrap();
        assert_eq!(take_address(permit(), &per, ip).unwrap_err(), Full::Address);
        assert_eq!(
            global.available_permits(),
            2,
            "the refused one's permit is back"
        );
        drop(s);
        assert_eq!((per.open(ip), global.available_permits()), (0, 3));
    }

    #[tokio::test]
    async fn a_lowered_limit_takes_permits_back_as_connections_close() {
        let l = Limit::new(4);
        let held: Vec<_> = (0..3)
            .map(|_| l.permits.clone().try_acquire_owned().unwrap())
            .collect();
        l.resize(1);
        assert_eq!(
            l.open(),
            3,
            "the open connections are counted, not the limit"
        );
        assert!(l.permits.clone().try_acquire_owned().is_err(), "no room");
        drop(held);
        for _ in 0..100 {
            if l.owed.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(l.open(), 0);
        let one = l.permits.clone().try_acquire_owned().unwrap();
        assert!(
            l.permits.clone().try_acquire_owned().is_err(),
            "the new limit is 1"
        );
        drop(one);
        l.resize(3);
        assert_eq!(l.permits.available_permits(), 3);
    }
}
