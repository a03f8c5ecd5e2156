//! Failed-password throttling in front of the realms.
//!
//! Every distinct wrong password for a directory user is a real bind, and
//! Active Directory locks an account after 5–10 of them in its observation
//! window — so without this, any stranger who can reach the proxy can lock out
//! any employee. After `user_failures` failed checks of one user name (or
//! `address_failures` from one client address) within `window`, further checks
//! are refused with 407 *without asking the realm* until the window that
//! began with the first failure has passed. A repeated wrong password is
//! answered from the failure cache and never reaches here, so what is counted
//! is distinct passwords, as the directory counts them.
//!
//! Credentials already verified and cached keep working: the throttle sits on
//! the miss path only, so a locked-out attacker cannot lock out a user who is
//! already signed in.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use moka::sync::Cache;

use super::settings::ThrottleConfig;

/// Which limit refused a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// `auth.throttle.user_failures` reached for the user name.
    User,
    /// `auth.throttle.address_failures` reached for the client address.
    Address,
}

impl Throttled {
    /// The reason, for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Throttled::User => "too many failed passwords for this user",
            Throttled::Address => "too many failed passwords from this client address",
        }
    }
}

/// Failure counts per user name and per client address, each living one
/// window from its first failure. Bounded in entries: an attacker cycling
/// through names cannot grow it past `capacity`.
pub struct Throttle {
    cfg: ThrottleConfig,
    users: Cache<String, Arc<AtomicU32>>,
    addresses: Cache<IpAddr, Arc<AtomicU32>>,
}

impl Throttle {
    /// Empty counts under `auth.throttle`.
    pub fn new(cfg: &ThrottleConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            users: Cache::builder()
                .max_capacity(cfg.capacity)
                .time_to_live(cfg.window)
                .build(),
            addresses: Cache::builder()
                .max_capacity(cfg.capacity)
                .time_to_live(cfg.window)
                .build(),
        }
    }

    /// `Err` when `user` or `client` has used up its failures in the window.
    pub fn check(&self, user: &str, client: IpAddr) -> Result<(), Throttled> {
        let over = |n: Option<Arc<AtomicU32>>, max: u32| {
            max > 0 && n.is_some_and(|n| n.load(Ordering::Relaxed) >= max)
        };
        if over(self.addresses.get(&client), self.cfg.address_failures) {
            return Err(Throttled::Address);
        }
        if over(self.users.get(user), self.cfg.user_failures) {
            return Err(Throttled::User);
        }
        Ok(())
    }

    /// Counts one failed check of `user` from `client`.
    pub fn failed(&self, user: &str, client: IpAddr) {
        let fresh = || Arc::new(AtomicU32::new(0));
        self.users
            .get_with(user.to_owned(), fresh)
            .fetch_add(1, Ordering::Relaxed);
        self.addresses
            .get_with(client, fresh)
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn throttle(user: u32, address: u32, window: Duration) -> Throttle {
        Throttle::new(&ThrottleConfig {
            user_failures: user,
            address_failures: address,
            window,
            capacity: 1000,
        })
    }

    #[test]
    fn user_then_address_limits() {
        let t = throttle(2, 3, Duration::from_secs(60));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        t.failed("alice", a);
        assert_eq!(t.check("alice", a), Ok(()));
        t.failed("alice", b);
        // Two failures for alice, from anywhere: alice is throttled everywhere.
        assert_eq!(t.check("alice", a), Err(Throttled::User));
        assert_eq!(
            t.check("alice", "10.0.0.9".parse().unwrap()),
            Err(Throttled::User)
        );
        assert_eq!(t.check("bob", a), Ok(()));
        t.failed("bob", a);
        t.failed("carol", a);
        // Three failures from a: every user from a is throttled, not from b.
        assert_eq!(t.check("dave", a), Err(Throttled::Address));
        assert_eq!(t.check("dave", b), Ok(()));
    }

    #[test]
    fn the_window_passes() {
        let t = throttle(1, 0, Duration::from_millis(50));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed("alice", a);
        assert_eq!(t.check("alice", a), Err(Throttled::User));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(t.check("alice", a), Ok(()), "0 disables the address limit");
    }
}
