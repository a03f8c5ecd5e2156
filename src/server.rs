//! Start-up and shutdown: bind, serve, and on a signal stop accepting, let
//! requests and tunnels finish within the grace period, flush the log, return.

mod reload;
pub mod runtime;
mod trim;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::SignalKind;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accesslog::AccessLog;
use crate::config::Config;
use crate::listener::{accept_loop, Acceptor};
use crate::proxy::Proxy;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The access log cannot be opened.
    #[error("cannot open access log {path}: {source}")]
    AccessLog {
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The config does not build (policy, realms, verifier).
    #[error(transparent)]
    Build(#[from] crate::snapshot::BuildError),
    /// The demo accounts on a non-loopback listener.
    #[error(transparent)]
    DemoAccounts(#[from] DemoAccounts),
}

/// Demo accounts in a users file while the proxy listens beyond loopback.
#[derive(Debug, thiserror::Error)]
#[error(
    "realm {realm:?}: users file {file} has the demo account(s) {accounts} whose passwords \
     are published in the README, and listener.addresses has {open}, which is not loopback. \
     Change their passwords (gatehouse passwd --users {file} NAME) or remove them, or listen \
     on 127.0.0.1 only"
)]
pub struct DemoAccounts {
    /// The realm.
    pub realm: String,
    /// Its users file.
    pub file: String,
    /// The demo accounts found, comma-separated.
    pub accounts: String,
    /// The listener address that is not loopback.
    pub open: SocketAddr,
}

/// The shipped demo accounts' passwords are in the README: they may serve
/// only a proxy that listens on loopback. Refused on any other address (at
/// start and on reload), naming the accounts and the fix.
pub fn refuse_demo_accounts(
    listeners: &[SocketAddr],
    realms: &[std::sync::Arc<crate::directory::Realm>],
) -> Result<(), DemoAccounts> {
    let Some(open) = listeners
        .iter()
        .find(|a| !a.ip().to_canonical().is_loopback())
    else {
        return Ok(());
    };
    for realm in realms {
        let crate::directory::Realm::Local(local) = &**realm else {
            continue;
        };
        let demo = local.demo_accounts();
        if !demo.is_empty() {
            return Err(DemoAccounts {
                realm: realm.name().to_string(),
                file: local.users_file().display().to_string(),
                accounts: demo.join(", "),
                open: *open,
            });
        }
    }
    Ok(())
}

/// Serves until `stop` is cancelled, then shuts down gracefully.
pub async fn run(
    config: Config,
    config_path: Option<std::path::PathBuf>,
    stop: CancellationToken,
) -> Result<(), StartError> {
    let config = Arc::new(config);
    let built = runtime::Runtime::build(config.clone())?;
    for w in runtime::warnings(&config, &built.snapshot.policy) {
        tracing::warn!("{w}");
    }
    let all: Vec<SocketAddr> = config.listener.all_addresses().copied().collect();
    refuse_demo_accounts(&all, &built.snapshot.realms)?;
    let mut listeners = Vec::new();
    for (addr, tls) in config
        .listener
        .addresses
        .iter()
        .map(|a| (a, false))
        .chain(config.listener.tls_addresses.iter().map(|a| (a, true)))
    {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: *addr,
                source,
            })?;
        listeners.push((l, tls));
    }
    let listening: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|(l, _)| l.local_addr().ok())
        .collect();
    let mut log = AccessLog::open(&config.accesslog).map_err(|source| StartError::AccessLog {
        path: config.accesslog.path.clone(),
        source,
    })?;
    let admin_listener = match config.admin.address {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })?,
        ),
        None => None,
    };
    // The admin listener is the proxy too, for loop detection: a request
    // sent *through* the proxy to it (`POST /revoke` from any user) would
    // come from loopback and be taken as local.
    let listening: Vec<SocketAddr> = listening
        .into_iter()
        .chain(admin_listener.as_ref().and_then(|l| l.local_addr().ok()))
        .collect();
    let metrics = admin_listener
        .as_ref()
        .map(|_| Arc::new(crate::metrics::Metrics::new()));
    if let Some(m) = &metrics {
        log = log.observed_by(m.clone());
    }
    let proxy = Arc::new(Proxy {
        live: crate::snapshot::Live::new(Arc::new(built.snapshot)),
        client: crate::forward::client(&config.forward),
        log: log.clone(),
        auth: built.auth,
        listening: listening.clone(),
        hard_stop: CancellationToken::new(),
        tunnels: TaskTracker::new(),
        open: Default::default(),
    });
    proxy.auth.set_places(config.listener.places());
    let acc = Arc::new(Acceptor {
        service: proxy.clone(),
        log: log.clone(),
        slots: crate::conn::slots::Limit::new(config.listener.max_connections),
        per_address: {
            let per =
                crate::conn::slots::PerAddress::new(config.listener.max_connections_per_address);
            per.set_places(config.listener.places());
            per
        },
        graceful: CancellationToken::new(),
        connections: TaskTracker::new(),
        next_id: AtomicU64::new(1),
    });
    // Caught before anyone is told we listen: SIGHUP and SIGUSR1 are never
    // again their default action (exit), even before the reload tasks below
    // take streams of their own (tokio keeps a handler for good once set).
    for kind in [SignalKind::hangup(), SignalKind::user_defined1()] {
        if let Err(e) = tokio::signal::unix::signal(kind) {
            tracing::warn!(error = %e, "cannot catch {kind:?}");
        }
    }
    let mut loops = Vec::new();
    for (l, tls) in listeners {
        if let Ok(a) = l.local_addr() {
            tracing::info!(address = %a, tls, "listening");
        }
        loops.push(tokio::spawn(accept_loop(l, acc.clone(), tls)));
    }
    // systemd (Type=notify): ready once every listener is bound. Without
    // NOTIFY_SOCKET this does nothing.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd we are ready");
    }
    let admin_stop = CancellationToken::new();
    if let (Some(listener), Some(metrics)) = (admin_listener, metrics.clone()) {
        let admin = admin_endpoints(metrics, &acc, &proxy);
        if let Ok(a) = listener.local_addr() {
            tracing::info!(address = %a, "admin endpoints (/metrics, /healthz, /readyz)");
        }
        tokio::spawn(crate::admin::serve(
            listener,
            Arc::new(admin),
            admin_stop.clone(),
        ));
    }
    let reloader = tokio::spawn(reload::on_hangup(reload::Handles {
        proxy: proxy.clone(),
        acceptor: acc.clone(),
        path: config_path,
        metrics,
    }));
    let reopener = tokio::spawn(reload::reopen_log_on_usr1(proxy.clone()));
    let watches = crate::proxy::follow::start(&proxy, &config.realm_configs);
    // Memory given back once a burst of connections has closed.
    let trimmer = {
        let acc = acc.clone();
        tokio::spawn(async move { trim::after_bursts(|| acc.slots.peak()).await })
    };

    stop.cancelled().await;
    reloader.abort();
    reopener.abort();
    trimmer.abort();
    if let Some(w) = watches {
        w.abort();
    }
    admin_stop.cancel();
    // The grace period as configured now (a reload may have changed it).
    let grace = proxy.snapshot().config.shutdown.grace_period;
    tracing::info!(grace = ?grace, "shutting down: no new connections");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    acc.graceful.cancel();
    for l in loops {
        let _ = l.await;
    }
    acc.connections.close();
    proxy.tunnels.close();
    let drained = tokio::time::timeout(grace, async {
        acc.connections.wait().await;
        proxy.tunnels.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("grace period over: closing remaining tunnels and connections");
        proxy.hard_stop.cancel();
        // Tunnels end at once on hard_stop and write their log lines.
        let _ = tokio::time::timeout(Duration::from_secs(5), proxy.tunnels.wait()).await;
    }
    let dropped = log.dropped();
    tokio::task::spawn_blocking(move || log.close()).await.ok();
    if dropped > 0 {
        tracing::warn!(dropped, "access log lines were dropped under load");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The admin listener's view of the running proxy: everything read at
/// request or scrape time, so a reload shows at once.
fn admin_endpoints(
    metrics: Arc<crate::metrics::Metrics>,
    acc: &Arc<Acceptor<Proxy>>,
    proxy: &Arc<Proxy>,
) -> crate::admin::Admin {
    let acc = acc.clone();
    let config = proxy.snapshot().config.clone();
    crate::admin::Admin {
        metrics,
        live: crate::metrics::Live {
            connections: Box::new(move || acc.slots.open() as i64),
            tunnels: on(proxy, |p| p.tunnels.len() as i64),
            leaves_minted: on(proxy, |p| {
                let now = p.snapshot();
                now.interceptor
                    .as_ref()
                    .map_or(0, |i| i.minter.minted() as i64)
            }),
            credentials: on(proxy, |p| p.auth.cache_counters().into()),
            directories: on(proxy, |p| {
                let now = p.snapshot();
                let ldap = now.realms.iter().filter_map(|r| match &**r {
                    crate::directory::Realm::Ldap(l) => Some(l),
                    crate::directory::Realm::Local(_) => None,
                });
                ldap.map(|l| (l.name().to_string(), (&l.cache().counters).into()))
                    .collect()
            }),
            pools: on(proxy, |p| crate::metrics::Pools {
                ntlm_helpers: p.auth.ntlm_helpers(),
                negotiate: p.auth.negotiate_slots(),
            }),
            policy: on(proxy, |p| {
                let now = p.snapshot();
                (now.policy.source.clone(), now.policy.digest.clone())
            }),
        },
        realms: on(proxy, |p| p.snapshot().realms.clone()),
        probe_timeout: config.admin.probe_timeout,
        pac: on(proxy, |p| crate::admin::pac::pac(&p.snapshot().config.pac)),
        limits: crate::admin::Limits::new(&config.admin),
        revoke: {
            let proxy = proxy.clone();
            Box::new(move |user| proxy.revoke(user))
        },
    }
}

/// `f` of the running proxy, as a boxed reader.
fn on<T: 'static>(proxy: &Arc<Proxy>, f: fn(&Proxy) -> T) -> Box<dyn Fn() -> T + Send + Sync> {
    let proxy = proxy.clone();
    Box::new(move || f(&proxy))
}

/// Resolves when SIGTERM or SIGINT arrives. Both are caught from this call
/// on, not from the future's first poll: a SIGTERM sent the moment the
/// proxy says it listens (systemd, a test) is a graceful stop, never the
/// default action's sudden death. Call it within the runtime.
pub fn signal() -> impl std::future::Future<Output = ()> + Send {
    let caught = |kind| tokio::signal::unix::signal(kind).ok();
    let (term, int) = (
        caught(SignalKind::terminate()),
        caught(SignalKind::interrupt()),
    );
    async move {
        let recv = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = recv(term) => {}
            _ = recv(int) => {}
        }
    }
}
