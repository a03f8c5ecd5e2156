//! Following a directory as it changes, so a group membership taken away,
//! an account disabled or a password reset counts within seconds instead
//! of when a cache entry expires. Each watched realm runs one task with a
//! connection of its own, bound as the service account, reporting every
//! changed entry as a [`Change`]; whoever starts it (the proxy) forgets
//! what it cached of the users concerned and judges their tunnels again.
//!
//! OpenLDAP: RFC 4533 content synchronisation in refreshAndPersist mode
//! ([`syncrepl`], needs the `syncprov` overlay). Active Directory and
//! Samba: polling `uSNChanged` above the highest seen ([`usn`], no right
//! beyond reading). A broken watch is logged and counted
//! ([`FAILURES`]), the TTLs cover meanwhile, and it reconnects with a
//! backoff.

mod syncrepl;
mod usn;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;

use super::cache::Unavailable;
use super::config::{LdapRealmConfig, WatchMode};
use super::ldap::pool::LdapPool;

/// An entry the directory reports changed (added, modified, deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The realm's name.
    pub realm: Arc<str>,
    /// The entry's DN.
    pub dn: String,
    /// Its login attribute, when it is a user.
    pub login: Option<String>,
    /// Its members (the member attribute), when it is a group.
    pub members: Vec<String>,
}

/// Label of the watch counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    /// The realm's name.
    pub realm: String,
}

/// Watches broken (connection lost, refused, a server that cannot
/// synchronise), by realm — `/metrics`' `directory_watch_failures`.
pub static FAILURES: LazyLock<Family<WatchLabels, Counter>> = LazyLock::new(Family::default);

/// Longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Follows `cfg`'s directory until `tx` is closed; starts nothing when
/// the realm's `watch` is off.
pub fn spawn(
    cfg: &LdapRealmConfig,
    tx: mpsc::Sender<Change>,
) -> Option<tokio::task::JoinHandle<()>> {
    if cfg.watch == WatchMode::Off {
        return None;
    }
    let cfg = Arc::new(cfg.clone());
    Some(tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let began = tokio::time::Instant::now();
            let broke = match follow(&cfg, &tx).await {
                Ok(()) => return, // the receiver is gone: the proxy stopped
                Err(e) => e,
            };
            FAILURES
                .get_or_create(&WatchLabels {
                    realm: cfg.name.clone(),
                })
                .inc();
            // A watch that ran a while starts its backoff over.
            if began.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_secs(1);
            }
            tracing::warn!(realm = %cfg.name, error = %broke.0, retry_in = ?backoff,
                "directory watch broken: cached look-ups trusted for their TTLs until it is back");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }))
}

/// One connection's worth of following; `Ok` only when `tx` is closed.
async fn follow(cfg: &Arc<LdapRealmConfig>, tx: &mpsc::Sender<Change>) -> Result<(), Unavailable> {
    let pool = LdapPool::new(cfg.clone()).map_err(|e| Unavailable(e.to_string()))?;
    let ldap = pool.bound_connection().await?;
    let realm: Arc<str> = cfg.name.as_str().into();
    match cfg.watch {
        WatchMode::Off => Ok(()),
        WatchMode::Syncrepl => syncrepl::follow(cfg, ldap, &realm, tx).await,
        WatchMode::Usn => usn::follow(cfg, ldap, &realm, tx).await,
    }
}

/// The longest DN both bases end with (the subtree holding users and
/// groups), compared case-insensitively; the user base when they share none.
pub fn common_base<'a>(a: &'a str, b: &str) -> &'a str {
    let ra: Vec<&str> = a.split(',').map(str::trim).collect();
    let rb: Vec<&str> = b.split(',').map(str::trim).collect();
    let shared = ra
        .iter()
        .rev()
        .zip(rb.iter().rev())
        .take_while(|(x, y)| x.eq_ignore_ascii_case(y))
        .count();
    if shared == 0 {
        return a;
    }
    // The suffix of `a` holding its last `shared` components.
    let skip = ra.len() - shared;
    let mut at = 0;
    for _ in 0..skip {
        at += a[at..].find(',').map_or(a.len() - at, |i| i + 1);
    }
    a[at..].trim_start()
}

/// A changed entry as a [`Change`]: its login and members, as the realm reads them.
pub fn change(cfg: &LdapRealmConfig, realm: &Arc<str>, e: &ldap3::SearchEntry) -> Change {
    let first = |attr: &str| {
        e.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Change {
        realm: realm.clone(),
        dn: e.dn.clone(),
        login: first(&cfg.login_attribute).into_iter().next(),
        members: first(&cfg.member_attribute),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_base_holding_users_and_groups() {
        let b = common_base(
            "ou=people,dc=example,dc=test",
            "ou=groups,dc=example,dc=test",
        );
        assert_eq!(b, "dc=example,dc=test");
        assert_eq!(
            common_base("CN=Users,DC=corp,DC=test", "dc=corp, dc=test"),
            "DC=corp,DC=test"
        );
        assert_eq!(common_base("dc=a", "dc=b"), "dc=a");
        assert_eq!(common_base("dc=a", "dc=a"), "dc=a");
    }
}
