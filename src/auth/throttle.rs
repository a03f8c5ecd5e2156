//! Failed-password throttling in front of the realms: a smart lockout.
//!
//! Every distinct wrong password for a directory user is a real bind, and
//! Active Directory locks an account after 5–10 of them in its observation
//! window — so without a throttle any stranger who can reach the proxy can
//! lock out any employee; with a naive one (N failures per user name, from
//! anywhere) the stranger locks them out of the proxy instead. So, as AD FS
//! Extranet Smart Lockout and Entra ID smart lockout do:
//!
//! - **Familiar places**: a place (an IPv4 address, or an IPv6 prefix) where
//!   the user signed in within `familiar_for` is familiar to that user.
//!   Failures from familiar places count against `familiar_failures`; from
//!   anywhere else against `user_failures`. A stranger can spend only the
//!   unfamiliar budget: the user, from where they usually are, keeps
//!   signing in. Keep the sum below the directory's lockout threshold.
//! - **Distinct passwords**: a password that already failed for the user
//!   within the window (kept as a keyed hash, never in clear) is refused
//!   from memory, never asked of the directory and never counted again — a
//!   phone retrying an old saved password costs one failure per window, as
//!   AD itself does not count a repeat of a recent password.
//! - **Per place**: `address_failures` (or a shared address's own budget)
//!   failed checks from one place refuse further checks there only for
//!   users *not known there*: a terminal server survives its users' typos,
//!   a password spray from one address is stopped.
//!
//! Credentials already verified and cached keep working: the throttle sits on
//! the miss path only. The counts live in a [`Store`]: this process's memory,
//! or Redis shared by a fleet ([`redis`]), which falls back to memory when
//! it cannot be reached — never refusing everyone.

mod local;
pub(crate) mod redis;

use std::net::IpAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::settings::ThrottleConfig;

/// Which limit refused a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// `auth.throttle.user_failures` reached from places unfamiliar to the user.
    User,
    /// `auth.throttle.familiar_failures` reached from the user's familiar places.
    Familiar,
    /// The place's failure budget reached, and the user is not known there.
    Address,
}

impl Throttled {
    /// The reason, for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Throttled::User => "too many failed passwords for this user from unfamiliar places",
            Throttled::Familiar => "too many failed passwords for this user from familiar places",
            Throttled::Address => {
                "too many failed passwords from this client address, for a user not known there"
            }
        }
    }
}

/// One password check, as the throttle sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// Whose budgets: every spelling of one login (`CORP\Alice`,
    /// `alice@corp`) is one user.
    pub user: &'a str,
    /// The login as the realm is asked it: a refused password is remembered
    /// for exactly this login — another spelling may be another account
    /// (`PARTNER\alice` is refused where `EXAMPLE\alice` is not).
    pub login: &'a str,
    /// The password tried.
    pub password: &'a str,
}

/// Where an attempt comes from, as the throttle counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The client's address as the per-address bounds count it
    /// ([`crate::limit::place`]: IPv6 per prefix).
    pub key: IpAddr,
    /// Failed checks allowed from this place within the window (a shared
    /// address's own budget, else `auth.throttle.address_failures`; 0 = none).
    pub failures: u32,
}

/// What the store knows of one attempt, before the realm is asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// The user signed in from this place within `familiar_for`.
    pub familiar: bool,
    /// This password already failed for this user within the window.
    pub repeated: bool,
    /// Distinct failed passwords for the user within the window, from
    /// places familiar to them when they failed.
    pub familiar_failures: u32,
    /// … from anywhere else.
    pub unfamiliar_failures: u32,
    /// Failed checks from this place, for any user, within the window.
    pub place_failures: u32,
}

/// Whether to ask the realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Ask it.
    Ask,
    /// This password already failed for this user: refuse, ask nothing,
    /// count nothing.
    KnownBad,
}

/// The budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// From unfamiliar places (0 = no limit).
    pub unfamiliar: u32,
    /// From familiar places (0 = no limit).
    pub familiar: u32,
}

/// The decision, pure: the standing against the budgets.
pub fn judge(s: &Standing, budgets: Budgets, place: &Place) -> Result<Gate, Throttled> {
    let spent = |n: u32, max: u32| max > 0 && n >= max;
    if s.repeated {
        return Ok(Gate::KnownBad);
    }
    if s.familiar {
        if spent(s.familiar_failures, budgets.familiar) {
            return Err(Throttled::Familiar);
        }
        return Ok(Gate::Ask);
    }
    if spent(s.place_failures, place.failures) {
        return Err(Throttled::Address);
    }
    if spent(s.unfamiliar_failures, budgets.unfamiliar) {
        return Err(Throttled::User);
    }
    Ok(Gate::Ask)
}

/// A wrong password as the stores keep it: an HMAC of the user and the
/// password under the throttle's key, truncated — enough to tell two
/// passwords apart, useless without the key.
pub type PasswordMark = [u8; 16];

/// Where the counts live.
enum Store {
    Local(local::Local),
    Redis(Box<redis::Shared>),
}

/// The smart lockout: its budgets, key and store.
pub struct Throttle {
    budgets: Budgets,
    key: Vec<u8>,
    store: Store,
    /// One check at a time per user (sharded): a burst of parallel guesses
    /// would otherwise all read the same standing before any failure is
    /// counted, and all reach the directory.
    turns: Box<[tokio::sync::Mutex<()>]>,
    shard: std::collections::hash_map::RandomState,
}

/// Shards of [`Throttle::turn`]: users whose checks may wait on each other.
const TURNS: usize = 1024;

/// Why the throttle cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ThrottleError {
    /// No randomness for the key.
    #[error("auth.throttle: no random key: {0}")]
    Random(getrandom::Error),
    /// The shared store's settings.
    #[error("auth.throttle.store: {0}")]
    Store(String),
}

impl Throttle {
    /// Empty counts under `auth.throttle`, in memory or in its store.
    pub fn new(cfg: &ThrottleConfig) -> Result<Self, ThrottleError> {
        let local = local::Local::new(cfg);
        let (key, store) = match &cfg.store {
            None => {
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key).map_err(ThrottleError::Random)?;
                (key, Store::Local(local))
            }
            Some(url) => {
                let (key, shared) = redis::Shared::new(url, cfg, local)?;
                (key, Store::Redis(Box::new(shared)))
            }
        };
        Ok(Self {
            budgets: Budgets {
                unfamiliar: cfg.user_failures,
                familiar: cfg.familiar_failures,
            },
            key,
            store,
            turns: (0..TURNS).map(|_| tokio::sync::Mutex::new(())).collect(),
            shard: std::collections::hash_map::RandomState::new(),
        })
    }

    /// `user`'s turn: held from [`Throttle::check`] until the realm's answer
    /// is counted, so the budgets are spent one check at a time. (Within
    /// this instance: a fleet may overspend by one check per instance.)
    /// With no per-user budget there is nothing to spend exactly: no turn.
    pub async fn turn(&self, user: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::BuildHasher;
        if self.budgets.unfamiliar == 0 && self.budgets.familiar == 0 {
            return None;
        }
        let i = (self.shard.hash_one(user) % TURNS as u64) as usize;
        Some(self.turns[i].lock().await)
    }

    fn mark(&self, a: &Attempt<'_>) -> PasswordMark {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(a.login.as_bytes());
        mac.update(&[0]);
        mac.update(a.password.as_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        full[..16].try_into().expect("16 of 32 bytes")
    }

    /// Whether to ask the realm about this attempt from `place`, or why not.
    pub async fn check(&self, a: &Attempt<'_>, place: &Place) -> Result<Gate, Throttled> {
        let mark = self.mark(a);
        let standing = match &self.store {
            Store::Local(l) => l.standing(a.user, &mark, place.key),
            Store::Redis(r) => r.standing(a.user, &mark, place.key).await,
        };
        judge(&standing, self.budgets, place)
    }

    /// Counts one wrong password from `place`.
    pub async fn failed(&self, a: &Attempt<'_>, place: &Place) {
        let mark = self.mark(a);
        match &self.store {
            Store::Local(l) => l.failed(a.user, mark, place.key),
            Store::Redis(r) => r.failed(a.user, mark, place.key).await,
        }
    }

    /// `user` signed in from `place`: it is familiar to them for `familiar_for`.
    pub async fn succeeded(&self, user: &str, place: &Place) {
        match &self.store {
            Store::Local(l) => l.succeeded(user, place.key),
            Store::Redis(r) => r.succeeded(user, place.key).await,
        }
    }
}

/// How long ago `then` was, in whole seconds of a clock shared by a fleet.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
#[path = "throttle_tests.rs"]
mod tests;
