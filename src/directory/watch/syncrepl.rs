//! OpenLDAP: RFC 4533 content synchronisation, refreshAndPersist. The
//! refresh phase (the whole present content) is skipped; every entry the
//! persist phase sends (added, modified, deleted) is a [`Change`]. Needs
//! the `syncprov` overlay, and read access for the service account.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use ldap3::controls::{
    parse_syncinfo, ControlType, EntryState, MakeCritical, RefreshMode, SyncInfo, SyncRequest,
    SyncState,
};
use ldap3::{Ldap, Scope, SearchEntry};
use tokio::sync::mpsc;

use super::{change, common_base, Change};
use crate::directory::cache::Unavailable;
use crate::directory::config::LdapRealmConfig;

fn failed(e: impl std::fmt::Display) -> Unavailable {
    Unavailable(format!("syncrepl watch: {e}"))
}

/// Whether a Sync Info message ends the refresh phase. ldap3's parser
/// panics on a malformed message: that is a broken watch, not a crash.
fn refresh_done(entry: ldap3::ResultEntry) -> Result<bool, Unavailable> {
    let info = catch_unwind(AssertUnwindSafe(|| parse_syncinfo(entry)))
        .map_err(|_| failed("malformed Sync Info message"))?;
    Ok(match info {
        SyncInfo::RefreshDelete { refresh_done, .. }
        | SyncInfo::RefreshPresent { refresh_done, .. } => refresh_done,
        SyncInfo::NewCookie(_) | SyncInfo::SyncIdSet { .. } => false,
    })
}

/// The entry's Sync State, if it carries one.
fn state(entry: &ldap3::ResultEntry) -> Result<Option<EntryState>, Unavailable> {
    let Some(c) = entry
        .1
        .iter()
        .find(|c| matches!(c.0, Some(ControlType::SyncState)))
    else {
        return Ok(None);
    };
    catch_unwind(AssertUnwindSafe(|| c.1.parse::<SyncState>().state))
        .map(Some)
        .map_err(|_| failed("malformed Sync State control"))
}

/// Follows until `tx` closes (`Ok`) or the search ends or fails.
pub async fn follow(
    cfg: &LdapRealmConfig,
    mut ldap: Ldap,
    realm: &Arc<str>,
    tx: &mpsc::Sender<Change>,
) -> Result<(), Unavailable> {
    let base = common_base(&cfg.user_base, &cfg.group_base).to_string();
    let attrs = vec![cfg.login_attribute.clone(), cfg.member_attribute.clone()];
    let request = SyncRequest {
        mode: RefreshMode::RefreshAndPersist,
        cookie: None,
        reload_hint: false,
    };
    let mut stream = ldap
        .with_controls(request.critical())
        .streaming_search(&base, Scope::Subtree, "(objectClass=*)", attrs)
        .await
        .map_err(failed)?;
    let mut persisting = false;
    loop {
        let next = tokio::select! {
            n = stream.next() => n.map_err(failed)?,
            _ = tx.closed() => return Ok(()),
        };
        let Some(entry) = next else {
            let res = stream.finish().await;
            return Err(failed(format!(
                "the search ended (rc={} {}): is the syncprov overlay on?",
                res.rc, res.text
            )));
        };
        if entry.is_intermediate() {
            if refresh_done(entry)? && !persisting {
                persisting = true;
                tracing::info!(realm = %realm, base, "directory watch (syncrepl) following");
            }
            continue;
        }
        if entry.is_ref() {
            continue;
        }
        let state = state(&entry)?;
        if !persisting || matches!(state, None | Some(EntryState::Present)) {
            continue;
        }
        let e = SearchEntry::construct(entry);
        if tx.send(change(cfg, realm, &e)).await.is_err() {
            return Ok(());
        }
    }
}
