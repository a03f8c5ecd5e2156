//! `Proxy-Authorization: Basic`: a user name and password checked against the
//! realm chain, through a credential cache and the failure throttle.
//!
//! Verdicts are cached under an HMAC-SHA256 of user + password with a key
//! drawn at start: the cache never holds a password, nor a hash anyone could
//! attack offline after the process ends. The key outlives reloads, so a
//! routine SIGHUP keeps every signed-in user signed in; what a reload
//! changed is caught on the way out of the cache instead: a verified
//! identity counts only while a realm of the chain in force vouches for it
//! (a realm whose definition changed is a new realm), a refusal only under
//! the chain it was decided by.

use std::sync::Arc;
use std::time::Duration;

use super::settings::AuthConfig;
use super::{throttle, AuthFailure, Authenticated};
use crate::directory::cache::{Counters, Lifetimes, Source, StaleCache, Unavailable};
use crate::directory::identity::{normalise, Identity};
use crate::directory::{AccountProblem, RealmChain, RealmVerdict};

/// Why a credential check has no verdict. Never cached: the next request
/// asks again.
#[derive(Debug, Clone, thiserror::Error)]
enum CheckError {
    #[error("{0}")]
    Unavailable(Unavailable),
    #[error("{0}")]
    Busy(String),
    #[error("{}", .0.as_str())]
    Throttled(throttle::Throttled),
}

/// A credential check's cached outcome.
#[derive(Debug, Clone)]
enum Outcome {
    Verified(Arc<Identity>),
    /// Refused; `counts` toward the failure throttle when it was a wrong
    /// password or an unknown user (not a disabled or expired account, whose
    /// `account` problem is logged as the reason).
    Rejected {
        counts: bool,
        account: Option<AccountProblem>,
        /// The chain that decided ([`RealmChain::digest`]).
        chain: [u8; 32],
    },
}

impl Outcome {
    /// Does the chain in force still stand behind this outcome?
    fn current(&self, chain: &RealmChain) -> bool {
        match self {
            Outcome::Verified(identity) => chain.vouched_for(identity),
            Outcome::Rejected { chain: by, .. } => *by == chain.digest(),
        }
    }
}

impl Outcome {
    /// The chain's verdict as a cacheable outcome, or why there is none.
    fn of(verdict: RealmVerdict, chain: [u8; 32]) -> Result<Self, CheckError> {
        Ok(match verdict {
            RealmVerdict::Verified(id) => Outcome::Verified(id),
            // Nobody knows the user: a failure like a wrong password.
            RealmVerdict::BadPassword | RealmVerdict::UnknownUser => Outcome::Rejected {
                counts: true,
                account: None,
                chain,
            },
            RealmVerdict::Refused(problem) => Outcome::Rejected {
                counts: false,
                account: Some(problem),
                chain,
            },
            RealmVerdict::Busy(reason) => return Err(CheckError::Busy(reason)),
            RealmVerdict::Unavailable(u) => return Err(CheckError::Unavailable(u)),
        })
    }
}

struct CredLifetimes {
    ok: Duration,
    failed: Duration,
    grace: Duration,
}

impl Lifetimes<Outcome> for CredLifetimes {
    fn fresh(&self, v: &Outcome) -> Duration {
        match v {
            Outcome::Verified(_) => self.ok,
            Outcome::Rejected { .. } => self.failed,
        }
    }
    fn grace(&self, v: &Outcome) -> Duration {
        match v {
            Outcome::Verified(_) => self.grace,
            Outcome::Rejected { .. } => Duration::ZERO,
        }
    }
}

/// The credential cache and the failure throttle in front of the chain.
pub(crate) struct Basic {
    creds: StaleCache<[u8; 32], Outcome, CheckError>,
    /// The credential cache's HMAC key, for the life of the process.
    key: [u8; 32],
    throttle: throttle::Throttle,
}

impl Basic {
    pub(crate) fn new(cfg: &AuthConfig) -> Result<Self, throttle::ThrottleError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(throttle::ThrottleError::Random)?;
        Ok(Self {
            key,
            creds: StaleCache::new(
                cfg.credential_cache_capacity,
                CredLifetimes {
                    ok: cfg.credential_ttl,
                    failed: cfg.failure_ttl,
                    grace: cfg.stale_grace,
                },
            ),
            throttle: throttle::Throttle::new(&cfg.throttle)?,
        })
    }

    /// The credential cache's key for these credentials: an HMAC, so the
    /// cache never holds anything a password could be recovered from once
    /// the process (and its key) is gone.
    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes any key length");
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Forgets every verified outcome of `who` (normalised as
    /// [`normalise`] with the domain stripped, case folded): their next
    /// request is checked against the realms again.
    pub(crate) fn revoke(&self, who: &str) {
        let who = who.to_string();
        self.creds.invalidate_if(
            move |o| matches!(o, Outcome::Verified(id) if normalise(&id.user, true, true) == who),
        );
    }

    /// Hit/load/stale counts of the credential cache.
    pub(crate) fn counters(&self) -> &Counters {
        &self.creds.counters
    }

    /// Checks a user name and password against `chain`, through the cache;
    /// a miss passes the failure throttle first, and its outcome is told
    /// to the throttle (a failure counted, a success makes `place` familiar).
    pub(crate) async fn check(
        &self,
        chain: &RealmChain,
        user: &str,
        password: &str,
        place: &throttle::Place,
    ) -> Result<Authenticated, AuthFailure> {
        let key = self.cache_key(user, password);
        // Every spelling of a login the realms would take for one user
        // (`CORP\Alice`, `alice@corp`) counts as that user.
        let who = normalise(user, true, true);
        let attempt = throttle::Attempt {
            user: &who,
            login: user,
            password,
        };
        // A credential that verified before is refreshed past the throttle:
        // one check per credential_ttl, which only its owner can cause — and
        // a refusal of the throttle must never serve the stale "verified"
        // (a changed password's old value would live for the grace period).
        let refresh = matches!(self.creds.peek(&key).await, Some(Outcome::Verified(_)));
        let load = || async {
            let _turn = self.throttle.turn(&who).await;
            let gate = match refresh {
                true => throttle::Gate::Ask,
                false => self
                    .throttle
                    .check(&attempt, place)
                    .await
                    .map_err(CheckError::Throttled)?,
            };
            if gate == throttle::Gate::KnownBad {
                // Failed already in the window: not asked, not counted.
                return Ok(Outcome::Rejected {
                    counts: false,
                    account: None,
                    chain: chain.digest(),
                });
            }
            let outcome = Outcome::of(chain.verify(user, password).await, chain.digest())?;
            match &outcome {
                Outcome::Rejected { counts: true, .. } => {
                    self.throttle.failed(&attempt, place).await
                }
                Outcome::Verified(_) => self.throttle.succeeded(&who, place).await,
                Outcome::Rejected { .. } => {}
            }
            Ok(outcome)
        };
        let mut result = self.creds.get(key, load).await;
        // Cached under realms a reload has changed since: asked again.
        if matches!(&result, Ok((o, source)) if *source != Source::Loaded && !o.current(chain)) {
            self.creds.invalidate(&key).await;
            result = self.creds.get(key, load).await;
        }
        let user = user.to_string();
        match result {
            Ok((Outcome::Verified(identity), source)) => Ok(Authenticated {
                identity,
                scheme: "basic",
                cached: source != Source::Loaded,
                connection_bound: false,
                mutual: None,
            }),
            Ok((Outcome::Rejected { account: None, .. }, _)) => Err(AuthFailure::Rejected { user }),
            Ok((
                Outcome::Rejected {
                    account: Some(problem),
                    ..
                },
                _,
            )) => Err(AuthFailure::AccountRefused { user, problem }),
            Err(CheckError::Unavailable(u)) => Err(AuthFailure::Unavailable { user, reason: u.0 }),
            Err(CheckError::Busy(reason)) => Err(AuthFailure::Busy { user, reason }),
            Err(CheckError::Throttled(why)) => Err(AuthFailure::Throttled { user, why }),
        }
    }
}
