//! Users `gatehouse revoke` named, so that an identity a kept connection
//! verified before the revocation (its Basic memo, its NTLM or Negotiate
//! binding) no longer counts: the connection must prove itself again.
//!
//! Bounded: at most [`MAX`] users are remembered; when one more is
//! revoked, the oldest is forgotten and everything verified before its
//! revocation stops counting too — wider than asked, never narrower.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::time::Instant;

use crate::directory::identity::{normalise, Identity};

/// Users remembered at once.
pub const MAX: usize = 10_000;

#[derive(Default)]
struct Inner {
    /// User (normalised) → when last revoked.
    at: HashMap<String, Instant>,
    /// Revocations, oldest first, to forget them in order.
    order: VecDeque<(String, Instant)>,
    /// Verified at or before this: no longer counts (the forgotten ones).
    floor: Option<Instant>,
}

/// The revoked users (see the module).
#[derive(Default)]
pub struct Revoked {
    /// False until the first revocation: the common case takes no lock.
    any: AtomicBool,
    inner: Mutex<Inner>,
}

impl Revoked {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Revokes `who` (normalised, domain stripped) as of now.
    pub fn revoke(&self, who: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.at.insert(who.to_string(), now);
        inner.order.push_back((who.to_string(), now));
        while inner.order.len() > MAX {
            let Some((old, when)) = inner.order.pop_front() else {
                break;
            };
            if inner.at.get(&old) == Some(&when) {
                inner.at.remove(&old);
            }
            inner.floor = Some(inner.floor.map_or(when, |f| f.max(when)));
        }
        self.any.store(true, Ordering::Release);
    }

    /// Whether `identity`, verified at `since`, was revoked after.
    pub fn covers(&self, identity: &Identity, since: Instant) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        let inner = self.lock();
        if inner.floor.is_some_and(|f| since <= f) {
            return true;
        }
        let who = normalise(&identity.user, true, true);
        inner.at.get(&who).is_some_and(|at| since <= *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn id(user: &str) -> Identity {
        Identity {
            user: user.into(),
            realm: Arc::from("local"),
            dn: None,
            groups: Vec::new(),
        }
    }

    #[test]
    fn only_what_was_verified_before_counts_as_revoked() {
        let r = Revoked::default();
        let before = Instant::now();
        assert!(!r.covers(&id("bob"), before), "nothing revoked yet");
        r.revoke("bob");
        assert!(r.covers(&id("bob"), before));
        assert!(r.covers(&id("Bob"), before), "case folded");
        assert!(!r.covers(&id("alice"), before), "only bob");
        let after = Instant::now() + std::time::Duration::from_millis(1);
        assert!(!r.covers(&id("bob"), after), "verified again since");
    }

    #[test]
    fn forgetting_the_oldest_widens_never_narrows() {
        let r = Revoked::default();
        let before = Instant::now();
        for i in 0..=MAX {
            r.revoke(&format!("user{i}"));
        }
        assert_eq!(r.lock().at.len(), MAX, "bounded");
        assert!(r.covers(&id("user0"), before), "forgotten, still covered");
        assert!(r.covers(&id("nobody"), before), "wider: the floor");
    }
}
