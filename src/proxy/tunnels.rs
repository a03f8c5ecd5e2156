//! The open tunnels — raw, detected, intercepted — each with what judging
//! it again needs and the token that closes it.
//!
//! A tunnel does not keep the policy of its CONNECT to its end: after each
//! reload every open tunnel is judged again under the new policy (the same
//! [`super::plan::plan`] its CONNECT got, then what detection found), and
//! `gatehouse revoke --user` closes a user's tunnels at once. A tunnel
//! closed so is logged `tunnel_revoked`, `x-rule` naming what decided.
//!
//! Bounded: a tunnel holds its client connection, so there are never more
//! entries than `listener.max_connections`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio_util::sync::CancellationToken;

use super::judged::{Judged, Under, USER_GONE};
use super::Proxy;
use crate::directory::identity::normalise;
use crate::snapshot::Snapshot;
use crate::tunnel::detect::Protocol;

/// The `x-rule` of a tunnel closed by `gatehouse revoke`.
pub const REVOKE_RULE: &str = "builtin:revoke";

/// One open tunnel.
pub(super) struct Open {
    /// Its CONNECT's facts.
    pub judged: Arc<Judged>,
    /// What detection found, once it decided.
    detected: OnceLock<Protocol>,
    /// The relay and the interception stop on it (a child of the shutdown's
    /// hard stop).
    pub stop: CancellationToken,
    /// The rule that closed it, when one did.
    revoked: OnceLock<Arc<str>>,
}

impl Open {
    /// Records what detection found, for the judgements after a reload.
    pub fn found(&self, p: &Protocol) {
        let _ = self.detected.set(p.clone());
    }

    /// Closes the tunnel, naming `rule`; false if it was closed already.
    pub(super) fn revoke(&self, rule: Arc<str>) -> bool {
        let first = self.revoked.set(rule).is_ok();
        self.stop.cancel();
        first
    }

    /// The rule that closed the tunnel, if one did.
    pub fn revoked_by(&self) -> Option<&Arc<str>> {
        self.revoked.get()
    }

    pub(super) fn user(&self) -> Option<&str> {
        self.judged.identity.as_deref().map(|i| i.user.as_str())
    }
}

/// The registry of open tunnels.
#[derive(Default)]
pub struct Tunnels {
    open: Mutex<HashMap<u64, Arc<Open>>>,
    next: AtomicU64,
}

/// A tunnel's place in the registry, given up when the tunnel ends.
pub(super) struct Registered<'a> {
    tunnels: &'a Tunnels,
    id: u64,
    /// The entry.
    pub open: Arc<Open>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.tunnels.lock().remove(&self.id);
    }
}

impl Tunnels {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Open>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enters a tunnel that stops on `stop`.
    pub(super) fn register(&self, judged: Arc<Judged>, stop: CancellationToken) -> Registered<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let open = Arc::new(Open {
            judged,
            detected: OnceLock::new(),
            stop,
            revoked: OnceLock::new(),
        });
        self.lock().insert(id, open.clone());
        Registered {
            tunnels: self,
            id,
            open,
        }
    }

    /// The tunnels open now (the lock is not held while they are judged).
    pub(super) fn list(&self) -> Vec<Arc<Open>> {
        self.lock().values().cloned().collect()
    }

    /// How many tunnels are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Logs a tunnel closed by `rule`.
fn closed(open: &Open, rule: &str) {
    let j = &open.judged;
    tracing::info!(
        user = open.user().unwrap_or("-"),
        host = %j.host,
        port = j.port,
        client = %j.client,
        %rule,
        "tunnel revoked"
    );
}

impl Proxy {
    /// Judges every open tunnel again under the policy in force now and
    /// closes those it refuses; how many it closed. Called after a reload,
    /// off the swap.
    pub async fn rejudge_tunnels(&self) -> usize {
        let now = self.snapshot();
        let open = self.open.list();
        let mut revoked = 0;
        for t in &open {
            if self.judge_again(t, &now).await {
                revoked += 1;
            }
        }
        tracing::info!(open = open.len(), revoked, "open tunnels re-judged");
        revoked
    }

    /// A tunnel just entered in the registry, judged again if a reload
    /// came between its CONNECT's decision and its entry (the reload's
    /// round may have missed it): every reload swaps in a new policy.
    pub(super) async fn judged_since_reload(&self, t: &Open) {
        let now = self.snapshot();
        if !Arc::ptr_eq(&now, &t.judged.snapshot) {
            // Boxed: judging again may load the user from a directory, a
            // large future every idle tunnel would carry for its life.
            Box::pin(self.judge_again(t, &now)).await;
        }
    }

    /// Judges `t` under `now` and the user as its realms know them now;
    /// closes it if refused (true).
    async fn judge_again(&self, t: &Open, now: &Arc<Snapshot>) -> bool {
        let settings = self.plan_settings(now);
        let j = &t.judged;
        let rule = match j.identity_now(&now.realms).await {
            Err(_) => Some(USER_GONE.into()),
            Ok(identity) => {
                let categories = j.categories_under(now);
                let under = Under {
                    policy: &now.policy,
                    identity: identity.as_deref(),
                    categories: &categories,
                };
                j.refused_now(&settings, &under, t.detected.get())
            }
        };
        match rule {
            Some(rule) if t.revoke(rule.clone()) => {
                closed(t, &rule);
                true
            }
            _ => false,
        }
    }

    /// `gatehouse revoke --user`: forgets what the proxy remembers of the
    /// user's credentials (the credential cache, Basic and NTLM/Negotiate
    /// on kept connections) and closes their tunnels now; how many.
    pub fn revoke(&self, user: &str) -> usize {
        let who = normalise(user, true, true);
        self.auth.revoke(&who);
        let mut closed_now = 0;
        for t in self.open.list() {
            let theirs = t.user().is_some_and(|u| normalise(u, true, true) == who);
            if theirs && t.revoke(REVOKE_RULE.into()) {
                closed(&t, REVOKE_RULE);
                closed_now += 1;
            }
        }
        tracing::info!(user = %who, tunnels = closed_now, "user revoked");
        closed_now
    }
}
