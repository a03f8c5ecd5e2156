//! One connection's authentication state, behind one lock: where its
//! handshake stands ([`Phase`]), the last Basic credentials it verified, and
//! its run of failed attempts.
//!
//! NTLM and Negotiate authenticate a connection, not a request, so this lives
//! as long as the connection does (one field of `conn::ConnState`). It knows
//! nothing of the connection itself: `auth` is handed this state and the
//! client's address, and imports nothing from `conn`.
//!
//! ```text
//!              NTLM type 1                 type 3 accepted / Negotiate
//!  Anonymous ─────────────▶ NtlmChallenged ───────────────────────────▶ Bound
//!      ▲  ◀── type 3 taken, or handshake_timeout ──┘                      │
//!      └──────────────── Basic success (not connection-bound) ◀───────────┘
//! ```

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

use super::ntlm_helper::Lease;
use super::Authenticated;
use crate::limit::AddressSlot;

/// Where a connection's authentication stands.
#[derive(Debug, Default)]
pub enum Phase {
    /// No identity bound to the connection (Basic re-presents on each request).
    #[default]
    Anonymous,
    /// An NTLM handshake between its type 1 and type 3: the helper that holds
    /// its state, and the client address's place among pending handshakes.
    NtlmChallenged {
        /// The helper process leased for this handshake.
        lease: Box<Lease>,
        /// This handshake's place under `auth.ntlm.max_pending_per_address`:
        /// held, never read; dropped with the phase, it is given back.
        _place: AddressSlot,
        /// Drops the handshake at `auth.ntlm.handshake_timeout`, even if the
        /// client never sends another byte; stopped when the phase ends.
        timer: ExpiryTimer,
    },
    /// The connection authenticated as this identity (NTLM, Negotiate).
    Bound {
        /// Who, and by which scheme.
        who: Authenticated,
        /// When the connection was bound.
        since: Instant,
    },
}

/// The task that ends an NTLM handshake that took too long; aborted when the
/// handshake ends first, so no sleeping task outlives its handshake.
#[derive(Debug)]
pub struct ExpiryTimer {
    task: tokio::task::AbortHandle,
    /// Which handshake of this connection the timer is for.
    serial: u64,
}

impl Drop for ExpiryTimer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The last Basic credentials verified on the connection, as the exact header
/// bytes: a client re-sending them needs no hash and no cache lookup.
#[derive(Debug)]
struct BasicMemo {
    value: HeaderValue,
    who: Authenticated,
    at: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    phase: Phase,
    basic: Option<BasicMemo>,
    /// Consecutive failed attempts (see `AuthFailure::counts`).
    failures: u32,
    /// Handshakes started so far, so an expiry timer ends only its own.
    handshakes: u64,
}

/// A connection's authentication state (cheap to clone: one shared value).
#[derive(Debug, Clone, Default)]
pub struct AuthState(Arc<Mutex<Inner>>);

impl AuthState {
    /// A connection nobody has authenticated yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity bound to the connection by NTLM or Negotiate, if any.
    pub fn bound(&self) -> Option<Authenticated> {
        self.bound_since().map(|(who, _)| who)
    }

    /// The bound identity and when it was bound.
    pub fn bound_since(&self) -> Option<(Authenticated, Instant)> {
        match &self.lock().phase {
            Phase::Bound { who, since } => Some((who.clone(), *since)),
            _ => None,
        }
    }

    /// Whether an NTLM handshake is waiting for its type 3.
    pub fn challenged(&self) -> bool {
        matches!(self.lock().phase, Phase::NtlmChallenged { .. })
    }

    /// Consecutive failed attempts on this connection.
    pub fn failures(&self) -> u32 {
        self.lock().failures
    }

    /// Counts a failed attempt; returns how many in a row.
    pub fn failed(&self) -> u32 {
        let mut inner = self.lock();
        inner.failures = inner.failures.saturating_add(1);
        inner.failures
    }

    /// A successful authentication: resets the failure count; a
    /// connection-bound identity binds the connection, any other (Basic)
    /// ends an earlier binding but leaves a handshake in progress alone.
    pub fn succeeded(&self, who: &Authenticated) {
        let mut inner = self.lock();
        inner.failures = 0;
        if who.connection_bound {
            let since = match &inner.phase {
                Phase::Bound { who: was, since } if Arc::ptr_eq(&was.identity, &who.identity) => {
                    *since
                }
                _ => Instant::now(),
            };
            inner.phase = Phase::Bound {
                who: who.clone(),
                since,
            };
        } else if matches!(inner.phase, Phase::Bound { .. }) {
            inner.phase = Phase::Anonymous;
        }
    }

    /// An NTLM type 2 went out: keeps the handshake's helper and place until
    /// the type 3 arrives or `expires_in` has passed, whichever is first. A
    /// handshake (or binding) already on this connection is dropped.
    pub fn challenge_sent(&self, lease: Lease, place: AddressSlot, expires_in: Duration) {
        let mut inner = self.lock();
        inner.handshakes += 1;
        let serial = inner.handshakes;
        let state: Weak<Mutex<Inner>> = Arc::downgrade(&self.0);
        let task = tokio::spawn(async move {
            tokio::time::sleep(expires_in).await;
            // Gone already when the connection closed.
            let Some(state) = state.upgrade() else {
                return;
            };
            let mut inner = state.lock().unwrap_or_else(|p| p.into_inner());
            if matches!(&inner.phase, Phase::NtlmChallenged { timer, .. } if timer.serial == serial)
            {
                let ended = std::mem::take(&mut inner.phase);
                drop(inner);
                drop(ended);
                tracing::info!("NTLM handshake not completed in time: helper returned");
            }
        })
        .abort_handle();
        inner.phase = Phase::NtlmChallenged {
            lease: Box::new(lease),
            _place: place,
            timer: ExpiryTimer { task, serial },
        };
    }

    /// The helper of the handshake in progress, unless it expired; the
    /// connection is anonymous afterwards. Any other phase is left alone.
    pub fn take_challenge(&self) -> Option<Lease> {
        let mut inner = self.lock();
        if !matches!(inner.phase, Phase::NtlmChallenged { .. }) {
            return None;
        }
        match std::mem::take(&mut inner.phase) {
            // The place and the timer go with the phase.
            Phase::NtlmChallenged { lease, .. } => Some(*lease),
            _ => None,
        }
    }

    /// Remembers verified Basic credentials for this connection.
    pub fn remember_basic(&self, value: &HeaderValue, who: &Authenticated) {
        // Copied: hyper's header values are slices of the connection's read
        // buffer (8 KiB and up), which a clone would keep alive for as long
        // as the connection — or the tunnel it becomes — lives.
        let mut value_kept =
            HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        value_kept.set_sensitive(true);
        self.lock().basic = Some(BasicMemo {
            value: value_kept,
            who: who.clone(),
            at: Instant::now(),
        });
    }

    /// The identity of these exact Basic credentials, if this connection
    /// verified them less than `ttl` ago.
    pub fn recall_basic(&self, value: &HeaderValue, ttl: Duration) -> Option<Authenticated> {
        self.recall_basic_at(value, ttl).map(|(who, _)| who)
    }

    /// [`AuthState::recall_basic`], and when they were verified.
    pub fn recall_basic_at(
        &self,
        value: &HeaderValue,
        ttl: Duration,
    ) -> Option<(Authenticated, Instant)> {
        match &self.lock().basic {
            Some(m) if m.value == *value && m.at.elapsed() < ttl => Some((m.who.clone(), m.at)),
            _ => None,
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
