//! The admin listener (off by default; its own address, never a proxy
//! port): `/metrics` (Prometheus text), `/healthz` (the process answers),
//! `/readyz` (the proxy listeners are up and every directory realm answers
//! a probe; 503 naming the realms that do not), `/proxy.pac` ([`pac`]),
//! `POST /revoke?user=NAME` ([`revoke`], loopback only).

pub(crate) mod pac;
mod revoke;
pub(crate) mod settings;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::directory::{Realm, RealmChain};
use crate::metrics::{Live, Metrics};

/// What the admin endpoints read.
pub struct Admin {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// Scrape-time values.
    pub live: Live,
    /// The realms now in use (they change on SIGHUP).
    pub realms: Box<dyn Fn() -> Arc<RealmChain> + Send + Sync>,
    /// A realm probe's deadline.
    pub probe_timeout: Duration,
    /// `/proxy.pac` from the running `[pac]` (it changes on SIGHUP), when it
    /// names the proxy.
    pub pac: Box<dyn Fn() -> Option<String> + Send + Sync>,
    /// `admin.max_connections` and `admin.max_connections_per_address`.
    pub limits: Limits,
    /// `gatehouse revoke`: the user's credentials forgotten, their tunnels
    /// closed; how many.
    pub revoke: Box<dyn Fn(&str) -> usize + Send + Sync>,
}

/// The admin listener's connection bounds (read at start-up).
pub struct Limits {
    /// One permit per open admin connection.
    pub open: Arc<tokio::sync::Semaphore>,
    /// Open admin connections per client address.
    pub per_address: Arc<crate::limit::PerAddress>,
}

impl Limits {
    /// From `[admin]`.
    pub fn new(cfg: &settings::AdminConfig) -> Self {
        Self {
            open: Arc::new(tokio::sync::Semaphore::new(cfg.max_connections)),
            per_address: crate::limit::PerAddress::new(cfg.max_connections_per_address),
        }
    }
}

/// Over a bound: a short 503, and the connection closed.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 27\r\nretry-after: 1\r\nconnection: close\r\n\r\ntoo many admin connections\n";

/// Serves the admin endpoints on `listener` until `stop`.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, stop: CancellationToken) {
    // `/revoke` only on a listener bound to loopback (not the wildcard).
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => return,
        };
        let Ok((mut tcp, peer)) = accepted else {
            continue;
        };
        let limits = &admin.limits;
        let places = limits
            .open
            .clone()
            .try_acquire_owned()
            .ok()
            .and_then(|open| Some((open, limits.per_address.try_take(peer.ip())?)));
        let Some(places) = places else {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = tokio::time::timeout(Duration::from_secs(2), async {
                    tcp.write_all(FULL).await?;
                    tcp.shutdown().await
                })
                .await;
            });
            continue;
        };
        let admin = admin.clone();
        // A loopback listener and a loopback client: what `/revoke` answers.
        let local = loopback && peer.ip().is_loopback();
        tokio::spawn(async move {
            let _places = places;
            let service = hyper::service::service_fn(move |req| answer(admin.clone(), req, local));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}

async fn answer(
    admin: Arc<Admin>,
    req: Request<Incoming>,
    local: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, ctype, body) = match req.uri().path() {
        "/revoke" => {
            let (status, body) =
                revoke::answer(&*admin.revoke, req.method(), req.uri().query(), local);
            (status, "application/json", body)
        }
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            admin.metrics.render(&admin.live),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".into()),
        "/proxy.pac" => match (admin.pac)() {
            Some(js) => (StatusCode::OK, "application/x-ns-proxy-autoconfig", js),
            None => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "no [pac] proxy configured\n".into(),
            ),
        },
        "/readyz" => {
            let problems = realm_problems(&admin).await;
            if problems.is_empty() {
                (StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    problems.join("\n") + "\n",
                )
            }
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// Each directory realm that does not answer a probe in time, and why.
async fn realm_problems(admin: &Admin) -> Vec<String> {
    let realms = (admin.realms)();
    let mut problems = Vec::new();
    for realm in realms.iter() {
        if let Realm::Ldap(r) = &**realm {
            match tokio::time::timeout(admin.probe_timeout, r.probe()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => problems.push(format!("realm {}: {e}", r.name())),
                Err(_) => problems.push(format!(
                    "realm {}: no answer within {:?}",
                    r.name(),
                    admin.probe_timeout
                )),
            }
        }
    }
    problems
}
