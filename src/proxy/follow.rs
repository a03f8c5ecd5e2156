//! What the proxy does when a watched directory reports a change
//! (`directory/watch.rs`): the users it concerns lose their cached identity
//! and credentials — as `gatehouse revoke --user` does, so kept connections
//! prove themselves again — and the open tunnels are judged again with the
//! directory's answer now, closing those the policy refuses (as a reload does).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::judged::Under;
use super::Proxy;
use crate::directory::config::RealmConfig;
use crate::directory::identity::normalise;
use crate::directory::watch::{self, Change};

/// Changes queued between the watches and the proxy: a burst beyond this
/// waits in the watch (its directory connection holds the rest).
const QUEUE: usize = 1024;

impl Proxy {
    /// Acts on one change; how many tunnels it closed.
    pub async fn directory_changed(&self, change: &Change) -> usize {
        let now = self.snapshot();
        let Some(realm) = now.realms.ldap(&change.realm) else {
            return 0; // a realm a reload took away
        };
        let users = realm.forget_changed(change).await;
        if users.is_empty() {
            return 0;
        }
        for u in &users {
            self.auth.revoke(&normalise(u, true, true));
        }
        tracing::info!(realm = %change.realm, dn = %change.dn, users = ?users,
            "directory change: cached identities and credentials dropped");
        let who: Vec<String> = users.iter().map(|u| normalise(u, true, true)).collect();
        self.rejudge_tunnels().await + self.close_lost_raw(&who).await
    }

    /// Closes these users' raw tunnels that the policy would no longer
    /// relay raw (it would detect or intercept them now): their bytes were
    /// never looked at, and nothing grants that any more.
    async fn close_lost_raw(&self, who: &[String]) -> usize {
        let now = self.snapshot();
        let settings = self.plan_settings(&now);
        let mut closed = 0;
        for t in self.open.list() {
            let theirs = t
                .user()
                .is_some_and(|u| who.contains(&normalise(u, true, true)));
            if !theirs {
                continue;
            }
            let j = &t.judged;
            // How it was opened: the same pure plan on its own facts.
            let was = Under {
                policy: &j.snapshot.policy,
                identity: j.identity.as_deref(),
                categories: &j.categories,
            };
            let Ok(identity) = j.identity_now(&now.realms).await else {
                continue; // a user gone is the re-judging's to close
            };
            let categories = j.categories_under(&now);
            let under_now = Under {
                policy: &now.policy,
                identity: identity.as_deref(),
                categories: &categories,
            };
            if j.planned_raw(&settings, &was)
                && !j.planned_raw(&settings, &under_now)
                && t.revoke(LOST_RAW.into())
            {
                tracing::info!(user = t.user().unwrap_or("-"), host = %j.host, port = j.port,
                    rule = LOST_RAW, "tunnel revoked");
                closed += 1;
            }
        }
        closed
    }
}

/// The `x-rule` of a raw tunnel closed because a directory change took
/// away what let it skip detection.
pub const LOST_RAW: &str = "builtin:directory";

/// Starts a watch for every directory realm that asks for one, and the task
/// that acts on their changes; aborting it stops them all.
pub fn start(proxy: &Arc<Proxy>, realms: &[RealmConfig]) -> Option<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = mpsc::channel::<Change>(QUEUE);
    let watches: Vec<_> = realms
        .iter()
        .filter_map(|r| match r {
            RealmConfig::Ldap(c) => watch::spawn(c, tx.clone()),
            RealmConfig::Local(_) => None,
        })
        .collect();
    if watches.is_empty() {
        return None;
    }
    let proxy = proxy.clone();
    Some(tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            proxy.directory_changed(&c).await;
        }
    }))
}
