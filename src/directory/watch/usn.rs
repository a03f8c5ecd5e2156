//! Active Directory and Samba: poll for entries whose `uSNChanged` is
//! above the highest seen (Microsoft's "Polling for changes using
//! uSNChanged"). uSNs are per domain controller: the watch keeps to the one
//! connection it has and starts from that controller's
//! `highestCommittedUSN`; after a reconnect it starts over from there.

use std::sync::Arc;

use ldap3::{Ldap, Scope, SearchEntry};
use tokio::sync::mpsc;

use super::{change, common_base, Change};
use crate::directory::cache::Unavailable;
use crate::directory::config::LdapRealmConfig;

fn failed(what: &str, e: impl std::fmt::Display) -> Unavailable {
    Unavailable(format!("uSNChanged watch: {what}: {e}"))
}

/// Entries under `base` matching `filter`; referrals (AD's other partitions) left out.
async fn search(
    ldap: &mut Ldap,
    cfg: &LdapRealmConfig,
    base: &str,
    filter: &str,
    attrs: Vec<&str>,
) -> Result<Vec<SearchEntry>, Unavailable> {
    let res = ldap
        .with_timeout(cfg.operation_timeout)
        .search(base, Scope::Subtree, filter, attrs)
        .await
        .map_err(|e| failed("search", e))?;
    if res.1.rc != 0 && res.1.rc != 10 {
        return Err(failed("search", format!("rc={} {}", res.1.rc, res.1.text)));
    }
    Ok(res
        .0
        .into_iter()
        .filter(|e| !e.is_ref())
        .map(SearchEntry::construct)
        .collect())
}

fn usn_of(e: &SearchEntry, attr: &str) -> Option<u64> {
    e.attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(attr))
        .and_then(|(_, v)| v.first())
        .and_then(|v| v.parse().ok())
}

/// Polls every `watch_interval` until `tx` closes (`Ok`) or the directory fails.
pub async fn follow(
    cfg: &LdapRealmConfig,
    mut ldap: Ldap,
    realm: &Arc<str>,
    tx: &mpsc::Sender<Change>,
) -> Result<(), Unavailable> {
    let root = ldap
        .with_timeout(cfg.operation_timeout)
        .search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec!["highestCommittedUSN"],
        )
        .await
        .map_err(|e| failed("rootDSE", e))?;
    let mut seen = root
        .0
        .into_iter()
        .map(SearchEntry::construct)
        .find_map(|e| usn_of(&e, "highestCommittedUSN"))
        .ok_or_else(|| failed("rootDSE", "no highestCommittedUSN (not Active Directory?)"))?;
    tracing::info!(realm = %realm, usn = seen, "directory watch (uSNChanged) following");
    let base = common_base(&cfg.user_base, &cfg.group_base).to_string();
    let attrs = vec![
        cfg.login_attribute.as_str(),
        cfg.member_attribute.as_str(),
        "uSNChanged",
    ];
    loop {
        tokio::time::sleep(cfg.watch_interval).await;
        if tx.is_closed() {
            return Ok(());
        }
        let filter = format!("(uSNChanged>={})", seen + 1);
        for e in search(&mut ldap, cfg, &base, &filter, attrs.clone()).await? {
            seen = seen.max(usn_of(&e, "uSNChanged").unwrap_or(seen));
            if tx.send(change(cfg, realm, &e)).await.is_err() {
                return Ok(());
            }
        }
    }
}
