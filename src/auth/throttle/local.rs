//! The throttle's counts in this process's memory: bounded caches, so an
//! attacker cycling through names or addresses cannot grow them past
//! `auth.throttle.capacity` each. Familiar places are kept apart from
//! failures: only a right password adds one, so a flood of failures for
//! made-up names cannot evict a real user's familiar places.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::{PasswordMark, Standing};
use crate::auth::settings::ThrottleConfig;

/// Most failures remembered per user: more than the budgets need (beyond
/// a budget nothing is asked, so nothing new fails); with no limit set,
/// the most recent this many are the ones never counted twice.
const MAX_FAILURES_PER_USER: usize = 16;

/// One wrong password.
#[derive(Debug, Clone, Copy)]
struct Failure {
    at: Instant,
    mark: PasswordMark,
    /// From a place familiar to the user at the time.
    familiar: bool,
}

/// A user's familiar places: (place, last sign-in there).
type Places = Arc<Mutex<Vec<(IpAddr, Instant)>>>;

pub(super) struct Local {
    window: Duration,
    familiar_for: Duration,
    max_places: usize,
    familiar: Cache<String, Places>,
    failures: Cache<String, Arc<Mutex<Vec<Failure>>>>,
    places: Cache<IpAddr, Arc<AtomicU32>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Local {
    pub(super) fn new(cfg: &ThrottleConfig) -> Self {
        Self {
            window: cfg.window,
            familiar_for: cfg.familiar_for,
            max_places: cfg.familiar_places,
            familiar: Cache::builder()
                .max_capacity(cfg.capacity)
                .time_to_idle(cfg.familiar_for)
                .build(),
            failures: Cache::builder()
                .max_capacity(cfg.capacity)
                .time_to_idle(cfg.window)
                .build(),
            places: Cache::builder()
                .max_capacity(cfg.capacity)
                .time_to_live(cfg.window)
                .build(),
        }
    }

    fn is_familiar(&self, user: &str, place: IpAddr) -> bool {
        self.familiar.get(user).is_some_and(|p| {
            lock(&p)
                .iter()
                .any(|(at, when)| *at == place && when.elapsed() < self.familiar_for)
        })
    }

    pub(super) fn standing(&self, user: &str, mark: &PasswordMark, place: IpAddr) -> Standing {
        let mut s = Standing {
            familiar: self.is_familiar(user, place),
            place_failures: self
                .places
                .get(&place)
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            ..Standing::default()
        };
        if let Some(failures) = self.failures.get(user) {
            let mut failures = lock(&failures);
            failures.retain(|f| f.at.elapsed() < self.window);
            for f in failures.iter() {
                s.repeated |= f.mark == *mark;
                if f.familiar {
                    s.familiar_failures += 1;
                } else {
                    s.unfamiliar_failures += 1;
                }
            }
        }
        s
    }

    pub(super) fn failed(&self, user: &str, mark: PasswordMark, place: IpAddr) {
        let familiar = self.is_familiar(user, place);
        let failures = self
            .failures
            .get_with(user.to_owned(), || Arc::new(Mutex::new(Vec::new())));
        {
            let mut failures = lock(&failures);
            failures.retain(|f| f.at.elapsed() < self.window);
            if failures.iter().any(|f| f.mark == mark) {
                return; // counted once, whatever raced it here
            }
            if failures.len() >= MAX_FAILURES_PER_USER {
                failures.remove(0);
            }
            failures.push(Failure {
                at: Instant::now(),
                mark,
                familiar,
            });
        }
        self.places
            .get_with(place, || Arc::new(AtomicU32::new(0)))
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn succeeded(&self, user: &str, place: IpAddr) {
        let places = self
            .familiar
            .get_with(user.to_owned(), || Arc::new(Mutex::new(Vec::new())));
        let mut places = lock(&places);
        let now = Instant::now();
        match places.iter_mut().find(|(at, _)| *at == place) {
            Some(entry) => entry.1 = now,
            None => {
                // The least recently used place gives way.
                if places.len() >= self.max_places {
                    if let Some(oldest) = (0..places.len()).min_by_key(|i| places[*i].1) {
                        places.swap_remove(oldest);
                    }
                }
                places.push((place, now));
            }
        }
    }
}
