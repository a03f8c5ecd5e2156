//! SIGHUP: the whole config read again, everything that can change without
//! a restart built, then swapped in — or nothing, with the reason logged.
//! SIGUSR1: the access log reopened (logrotate).
//!
//! What a reload changes: the policy and its lists, the realms and users
//! files, the certificates (detection CA, interception CA, the TLS
//! listeners'), `[tunnel]`, `[detection]`, `[intercept]`, `[resolver]`,
//! `[destinations]`, `[pac]`, `[shutdown]`, the listener limits and
//! timeouts, the access log's path and format (reopened). What needs a
//! restart ([`crate::config::restart_needed`]) refuses the reload naming it.
//! Open connections and tunnels keep the settings they started with; open
//! tunnels are judged again under the new policy, and closed if it refuses
//! them ([`crate::proxy::tunnels`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::{refuse_demo_accounts, DemoAccounts};
use crate::config::Config;
use crate::listener::Acceptor;
use crate::proxy::Proxy;
use crate::snapshot::{BuildError, Snapshot};

/// Why a SIGHUP reload changed nothing.
#[derive(Debug, thiserror::Error)]
enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error(transparent)]
    DemoAccounts(#[from] DemoAccounts),
    #[error("reload task: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("changed settings need a restart: {}", .0.join(", "))]
    NeedsRestart(Vec<&'static str>),
    #[error("access log {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
}

impl ReloadError {
    /// What was refused, for the log line: `config`, `policy`, `realm` ...
    fn what(&self) -> &'static str {
        match self {
            ReloadError::Config(_) | ReloadError::NeedsRestart(_) => "config",
            ReloadError::Build(e) => e.part(),
            ReloadError::DemoAccounts(_) => "realm",
            ReloadError::AccessLog { .. } => "access log",
            ReloadError::Task(_) => "reload",
        }
    }
}

/// What a reload needs to reach.
pub(super) struct Handles {
    pub proxy: Arc<Proxy>,
    pub acceptor: Arc<Acceptor<Proxy>>,
    pub path: Option<PathBuf>,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// On each SIGHUP, [`reload`] then the swap; a refusal changes nothing.
pub(super) async fn on_hangup(h: Handles) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        // Reading files, building LDAP pools, checking for demo passwords
        // (argon2) and reopening the log block: off the async threads.
        let (path, listening, running, log) = (
            h.path.clone(),
            h.proxy.listening.clone(),
            h.proxy.snapshot(),
            h.proxy.log.clone(),
        );
        let loaded = tokio::task::spawn_blocking(move || {
            reload(path.as_deref(), &listening, &running, &log)
        })
        .await
        .unwrap_or_else(|e| Err(e.into()));
        let new = match loaded {
            Ok(new) => new,
            Err(e) => {
                let what = e.what();
                tracing::error!(error = %e, "{what} reload refused: the running configuration stays");
                if let Some(m) = &h.metrics {
                    m.reload(false);
                }
                continue;
            }
        };
        swap_in(&h, new);
        if let Some(m) = &h.metrics {
            m.reload(true);
        }
    }
}

fn swap_in(h: &Handles, new: Snapshot) {
    let (proxy, acc) = (&h.proxy, &h.acceptor);
    let (realms, source) = (new.realms.len(), new.policy.source.clone());
    let config = new.config.clone();
    // One store: a request or tunnel has the old snapshot or the new one,
    // never half of each. The old one is freed by whoever drops it last:
    // here, or the last request or tunnel that held it.
    let old = proxy.live.replace(Arc::new(new));
    // Limits: new connections see them; open ones keep their places.
    let listener = &config.listener;
    acc.slots.resize(listener.max_connections);
    acc.per_address
        .set_max(listener.max_connections_per_address);
    acc.per_address.set_places(listener.places());
    proxy.auth.set_places(listener.places());
    drop(old);
    tracing::info!(realms, "realms reloaded");
    tracing::info!(%source, "policy reloaded");
    tracing::info!("configuration reloaded");
    // Off the swap: every open tunnel judged again under what is in force
    // now, and those it refuses closed (`tunnel_revoked`).
    let proxy = proxy.clone();
    tokio::spawn(async move { proxy.rejudge_tunnels().await });
}

/// The new config and everything built from it, or what refused and why.
/// Settings read only at start-up refuse the reload when they changed,
/// naming them. The access log is reopened last (after everything else
/// built): a path it cannot open refuses the reload, the old file kept.
fn reload(
    path: Option<&std::path::Path>,
    listening: &[SocketAddr],
    running: &Snapshot,
    log: &crate::accesslog::AccessLog,
) -> Result<Snapshot, ReloadError> {
    let config = Config::load(path)?;
    let changed = crate::config::restart_needed(&running.config, &config);
    if !changed.is_empty() {
        return Err(ReloadError::NeedsRestart(changed));
    }
    let built = Snapshot::build(Arc::new(config), Some(&running.realms))?;
    refuse_demo_accounts(listening, &built.realms)?;
    let config = &built.config;
    log.reopen(&config.accesslog)
        .map_err(|source| ReloadError::AccessLog {
            path: config.accesslog.path.clone(),
            source,
        })?;
    Ok(built)
}

/// On each SIGUSR1, the access log reopened at its path (logrotate's
/// `postrotate`); nothing else changes.
pub(super) async fn reopen_log_on_usr1(proxy: Arc<Proxy>) {
    let sig = tokio::signal::unix::SignalKind::user_defined1();
    let Ok(mut usr1) = tokio::signal::unix::signal(sig) else {
        tracing::warn!("cannot listen for SIGUSR1: log reopen only by SIGHUP");
        return;
    };
    while usr1.recv().await.is_some() {
        let (log, cfg) = (proxy.log.clone(), proxy.snapshot().config.accesslog.clone());
        let done = tokio::task::spawn_blocking(move || log.reopen(&cfg).map(|()| cfg.path)).await;
        match done {
            Ok(Ok(path)) => tracing::info!(%path, "access log reopened"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "access log reopen failed: still writing to the old file")
            }
            Err(e) => tracing::error!(error = %e, "access log reopen failed"),
        }
    }
}
