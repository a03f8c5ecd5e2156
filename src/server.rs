//! Start-up and shutdown: bind, serve, and on a signal stop accepting, let
//! requests and tunnels finish within the grace period, flush the log, return.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accesslog::AccessLog;
use crate::config::Config;
use crate::listener::{accept_loop, Acceptor};
use crate::proxy::Proxy;
use crate::resolve::Resolver;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open access log {path}: {source}")]
    AccessLog {
        path: String,
        source: std::io::Error,
    },
    #[error("authentication: {0}")]
    Auth(String),
    #[error("policy: {0}")]
    Policy(String),
    #[error("{0}")]
    DemoAccounts(String),
}

/// Builds the realms and the authenticator the config names.
pub fn authenticator(config: &Config) -> Result<crate::auth::Authenticator, StartError> {
    let realms = crate::directory::Realm::build_all(&config.realm_configs, &config.auth)
        .map_err(StartError::Auth)?;
    crate::auth::Authenticator::new(&config.auth, realms).map_err(StartError::Auth)
}

/// The shipped demo accounts' passwords are in the README: they may serve
/// only a proxy that listens on loopback. Refused on any other address (at
/// start and on reload), naming the accounts and the fix.
pub fn refuse_demo_accounts(
    listeners: &[SocketAddr],
    realms: &[crate::directory::Realm],
) -> Result<(), String> {
    let Some(open) = listeners
        .iter()
        .find(|a| !a.ip().to_canonical().is_loopback())
    else {
        return Ok(());
    };
    for realm in realms {
        let crate::directory::Realm::Local(local) = realm else {
            continue;
        };
        let demo = local.demo_accounts();
        if !demo.is_empty() {
            let file = local.users_file().display();
            return Err(format!(
                "realm {:?}: users file {file} has the demo account(s) {} whose passwords \
                 are published in the README, and listener.addresses has {open}, which is \
                 not loopback. Change their passwords (gatehouse passwd --users {file} NAME) \
                 or remove them, or listen on 127.0.0.1 only",
                realm.name(),
                demo.join(", ")
            ));
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
    let auth = authenticator(&config)?;
    refuse_demo_accounts(&config.listener.addresses, &auth.realms())
        .map_err(StartError::DemoAccounts)?;
    let mut listeners = Vec::new();
    for addr in &config.listener.addresses {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: *addr,
                source,
            })?;
        listeners.push(l);
    }
    let listening: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let log = AccessLog::open(&config.accesslog).map_err(|source| StartError::AccessLog {
        path: config.accesslog.path.clone(),
        source,
    })?;
    let resolver = Resolver::new(&config.resolver);
    let proxy = Arc::new(Proxy {
        client: crate::forward::client(&config.forward),
        resolver,
        refused: crate::resolve::Refused::new(&config.destinations.refuse),
        log: log.clone(),
        auth,
        policy: arc_swap::ArcSwap::from_pointee(
            crate::policy::Policy::load(&config.policy)
                .map_err(|e| StartError::Policy(e.to_string()))?,
        ),
        checker: crate::tunnel::tls_check::TlsChecker::new(&config.detection)
            .map_err(StartError::Policy)?,
        listening: listening.clone(),
        hard_stop: CancellationToken::new(),
        tunnels: TaskTracker::new(),
        config: config.clone(),
    });
    let acc = Arc::new(Acceptor {
        proxy: proxy.clone(),
        slots: Arc::new(Semaphore::new(config.listener.max_connections)),
        per_address: crate::conn::slots::PerAddress::new(
            config.listener.max_connections_per_address,
        ),
        graceful: CancellationToken::new(),
        connections: TaskTracker::new(),
        next_id: AtomicU64::new(1),
    });
    let mut loops = Vec::new();
    for l in listeners {
        loops.push(tokio::spawn(accept_loop(l, acc.clone())));
    }
    for a in &listening {
        tracing::info!(address = %a, "listening");
    }
    let reloader = tokio::spawn(reload_on_hangup(proxy.clone(), config_path));

    stop.cancelled().await;
    reloader.abort();
    let grace = config.shutdown.grace_period;
    tracing::info!(grace = ?grace, "shutting down: no new connections");
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

/// On SIGHUP: re-reads the config, compiles its policy and loads its realms
/// (every realm file, every users file) whole, and swaps both in. Anything
/// bad changes nothing (the running policy and realms stay, the reason is
/// logged); requests already decided keep the policy they started with.
async fn reload_on_hangup(proxy: Arc<Proxy>, path: Option<std::path::PathBuf>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        // Reading files, building LDAP pools and checking for demo passwords
        // (argon2) block: off the async threads.
        let (path, listening) = (path.clone(), proxy.listening.clone());
        let loaded = tokio::task::spawn_blocking(move || reload(path.as_deref(), &listening))
            .await
            .unwrap_or_else(|e| Err(("policy", format!("reload task: {e}"))));
        let (policy, realms) = match loaded {
            Ok(new) => new,
            Err((what, e)) => {
                tracing::error!(error = %e, "{what} reload refused: the running policy and realms stay");
                continue;
            }
        };
        let count = realms.len();
        if let Err(e) = proxy.auth.replace_realms(realms) {
            tracing::error!(error = %e, "realm reload refused: the running policy and realms stay");
            continue;
        }
        tracing::info!(realms = count, "realms reloaded");
        tracing::info!(source = %policy.source, "policy reloaded");
        proxy.policy.store(Arc::new(policy));
    }
}

/// The new policy and realms, or what refused (`policy`, `realm`) and why.
fn reload(
    path: Option<&std::path::Path>,
    listening: &[SocketAddr],
) -> Result<(crate::policy::Policy, Vec<crate::directory::Realm>), (&'static str, String)> {
    // The config's own checks include the policy's: both are "policy" here.
    let config = Config::load(path).map_err(|e| ("policy", e.to_string()))?;
    let policy =
        crate::policy::Policy::load(&config.policy).map_err(|e| ("policy", e.to_string()))?;
    let realms = crate::directory::Realm::build_all(&config.realm_configs, &config.auth)
        .map_err(|e| ("realm", e))?;
    refuse_demo_accounts(listening, &realms).map_err(|e| ("realm", e))?;
    Ok((policy, realms))
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
