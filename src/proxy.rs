//! One request's path through the proxy, in order:
//! facts → loop check → policy decision → `forward` (HTTP) or `tunnel` (CONNECT)
//! → access record. Every failure on the way is a [`ProxyError`] that becomes
//! the answer and the log fields in one place ([`answer_error`]).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accesslog::{AccessLog, AccessRecord};
use crate::auth::{AuthFailure, Authenticator};
use crate::body::{Finish, ResponseBody};
use crate::config::Config;
use crate::conn::{ConnState, InFlight};
use crate::error::ProxyError;
use crate::forward::{self, headers, UpstreamClient};
use crate::policy::{self, Action, RequestFacts};
use crate::resolve::Resolver;
use crate::tunnel::{self, relay};

/// Everything a request needs that outlives it.
pub struct Proxy {
    pub config: Arc<Config>,
    pub client: UpstreamClient,
    pub resolver: Resolver,
    pub log: AccessLog,
    pub auth: Authenticator,
    /// Addresses we listen on, for loop detection.
    pub listening: Vec<SocketAddr>,
    /// Cancelled when the shutdown grace period is over: tunnels close.
    pub hard_stop: CancellationToken,
    /// Tunnels outlive their request; shutdown waits for them here.
    pub tunnels: TaskTracker,
}

impl Proxy {
    /// True when `host:port` is this proxy itself.
    fn is_self(&self, host: &str, port: u16) -> bool {
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) if host.eq_ignore_ascii_case("localhost") => None,
            Err(_) => return false,
        };
        self.listening.iter().any(|l| {
            l.port() == port
                && match ip {
                    Some(ip) => ip == l.ip() || (l.ip().is_unspecified() && ip.is_loopback()),
                    None => l.ip().is_loopback() || l.ip().is_unspecified(),
                }
        })
    }
}

/// hyper's service function: never fails, every error is an answer.
pub async fn serve(
    proxy: Arc<Proxy>,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let in_flight = conn.begin_request();
    let mut record = AccessRecord::new(conn.client.ip(), conn.local.ip());
    describe(&mut record, &req);
    let is_connect = req.method() == Method::CONNECT;
    if proxy.auth.required() {
        if let Err(e) = authenticate(&proxy, &conn, &req, &mut record).await {
            let close =
                e == ProxyError::AuthFailed && conn.auth_failed() >= proxy.auth.max_failures();
            let resp = refuse(&proxy, &conn, e, req, record, in_flight, close).await;
            return Ok(resp);
        }
    }
    let result = if is_connect {
        connect(&proxy, &conn, req, &mut record, in_flight).await
    } else {
        forward(&proxy, req, &mut record, in_flight).await
    };
    Ok(match result {
        Ok(resp) => resp,
        Err((e, in_flight)) => {
            if is_connect {
                conn.answer_connect(false);
            }
            answer_error(&proxy, e, record, in_flight, is_connect)
        }
    })
}

/// Checks the request's credentials; on success the identity goes to the
/// record and to the connection.
async fn authenticate(
    proxy: &Proxy,
    conn: &ConnState,
    req: &Request<Incoming>,
    r: &mut AccessRecord,
) -> Result<(), ProxyError> {
    let presented = req.headers().get_all(header::PROXY_AUTHORIZATION).iter();
    match proxy.auth.authenticate(presented).await {
        Ok(who) => {
            r.username = Some(who.identity.user.clone());
            r.auth_groups = who.identity.group_names();
            r.auth_scheme = Some(who.log_scheme());
            conn.auth_succeeded(&who);
            Ok(())
        }
        Err(AuthFailure::Missing) => Err(ProxyError::AuthRequired),
        Err(AuthFailure::Malformed(why)) => {
            tracing::debug!(client = %r.client_ip, reason = %why, "unreadable credentials");
            Err(ProxyError::AuthFailed)
        }
        Err(AuthFailure::UnsupportedScheme(scheme)) => {
            tracing::debug!(client = %r.client_ip, %scheme, "credentials in a scheme that is not enabled");
            Err(ProxyError::AuthRequired)
        }
        Err(AuthFailure::Rejected { user }) => {
            tracing::info!(client = %r.client_ip, %user, "authentication failed");
            r.username = Some(user);
            Err(ProxyError::AuthFailed)
        }
        Err(AuthFailure::Unavailable { user, reason }) => {
            tracing::warn!(client = %r.client_ip, %user, %reason, "cannot authenticate: directory unavailable");
            r.username = Some(user);
            Err(ProxyError::DirectoryUnavailable)
        }
    }
}

/// Answers an authentication refusal. The unread request body is drained
/// first (bounded in size and time) so the connection survives the 407.
async fn refuse(
    proxy: &Proxy,
    conn: &ConnState,
    e: ProxyError,
    req: Request<Incoming>,
    record: AccessRecord,
    in_flight: InFlight,
    mut close: bool,
) -> Response<ResponseBody> {
    let is_connect = req.method() == Method::CONNECT;
    if is_connect {
        conn.answer_connect(false);
    }
    let limit = proxy.config.auth.max_drain_bytes;
    let wait = proxy.config.listener.header_read_timeout;
    if !drain(req.into_body(), limit, wait).await {
        close = true;
    }
    let mut resp = answer_error(proxy, e, record, in_flight, false);
    if close {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Reads and discards a body; false when it is larger than `limit` or slower than `wait`.
async fn drain(mut body: Incoming, limit: u64, wait: std::time::Duration) -> bool {
    use http_body_util::BodyExt;
    if hyper::body::Body::is_end_stream(&body) {
        return true;
    }
    let mut seen = 0u64;
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > limit {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(wait, read).await.unwrap_or(false)
}

type Failed = (ProxyError, InFlight);

/// Request fields for the log, filled before anything can fail.
fn describe(r: &mut AccessRecord, req: &Request<Incoming>) {
    r.method = req.method().as_str().to_owned();
    r.user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let uri = req.uri();
    r.scheme = uri.scheme_str().map(|s| {
        if s.eq_ignore_ascii_case("http") {
            "http"
        } else {
            "other"
        }
    });
    if let Some(a) = uri.authority() {
        r.host = a.host().to_owned(); // never the userinfo
        r.port = a.port_u16().unwrap_or(if req.method() == Method::CONNECT {
            0
        } else {
            80
        });
    }
    if req.method() != Method::CONNECT {
        r.path = uri.path().to_owned();
        r.query = uri.query().map(str::to_owned);
    }
    if req.method() == Method::CONNECT {
        r.scheme = Some("tcp");
    }
}

/// Loop check, then the policy decision, shared by both paths.
fn admit(
    proxy: &Proxy,
    req: &Request<Incoming>,
    host: &str,
    port: u16,
    r: &mut AccessRecord,
) -> Result<(), ProxyError> {
    if headers::via_names(req.headers(), &proxy.config.forward.via_pseudonym)
        || proxy.is_self(host, port)
    {
        return Err(ProxyError::Loop);
    }
    let decision = policy::decide(
        &proxy.config,
        &RequestFacts {
            method: req.method(),
            host,
            port,
        },
    );
    r.rule = Some(decision.rule.to_owned());
    match decision.action {
        Action::Allow => Ok(()),
        Action::Deny(e) => Err(e),
    }
}

async fn forward(
    proxy: &Proxy,
    req: Request<Incoming>,
    r: &mut AccessRecord,
    in_flight: InFlight,
) -> Result<Response<ResponseBody>, Failed> {
    let target = match forward::target(req.uri()) {
        Ok(t) => t,
        Err(e) => return Err((e, in_flight)),
    };
    if let Err(e) = admit(proxy, &req, &target.host, target.port, r) {
        return Err((e, in_flight));
    }
    let method = req.method().clone();
    let cs_bytes = Arc::new(AtomicU64::new(0));
    let cfg = &proxy.config.forward;
    let resp = match forward::forward(&proxy.client, cfg, req, &target, cs_bytes.clone()).await {
        Ok(resp) => resp,
        Err(e) => return Err((e, in_flight)),
    };
    r.status = resp.status().as_u16();
    r.action = if cacheable(&method, &resp) {
        "TCP_MISS"
    } else {
        "TCP_NC_MISS"
    };
    let finish = Finish {
        record: std::mem::replace(r, AccessRecord::new(r.client_ip, r.server_ip)),
        log: proxy.log.clone(),
        cs_bytes: Some(cs_bytes),
    };
    Ok(resp.map(|b| b.logged(finish).in_flight(in_flight)))
}

/// ProxySG's MISS vs NC_MISS: could a cache have stored this response?
fn cacheable(method: &Method, resp: &Response<ResponseBody>) -> bool {
    let cc = resp
        .headers()
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("no-store") || v.contains("private")
        });
    (method == Method::GET || method == Method::HEAD)
        && !cc
        && !resp.headers().contains_key(header::SET_COOKIE)
}

async fn connect(
    proxy: &Proxy,
    conn: &ConnState,
    mut req: Request<Incoming>,
    r: &mut AccessRecord,
    in_flight: InFlight,
) -> Result<Response<ResponseBody>, Failed> {
    let (host, port) = match tunnel::connect_target(req.uri()) {
        Ok(t) => t,
        Err(e) => return Err((e, in_flight)),
    };
    r.host.clone_from(&host);
    r.port = port;
    if let Err(e) = admit(proxy, &req, &host, port, r) {
        return Err((e, in_flight));
    }
    let cfg = &proxy.config.tunnel;
    let server = match tunnel::dial(&proxy.resolver, &host, port, cfg.connect_timeout).await {
        Ok(s) => s,
        Err(e) => return Err((e, in_flight)),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut record = std::mem::replace(r, AccessRecord::new(r.client_ip, r.server_ip));
    record.status = 200;
    record.action = "TCP_TUNNELED";
    let log = proxy.log.clone();
    let (idle, stop) = (cfg.idle_timeout, proxy.hard_stop.clone());
    proxy.tunnels.spawn(async move {
        let _in_flight = in_flight;
        let client = match on_upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "CONNECT upgrade failed");
                record.action = "TCP_ERR_MISS";
                record.exception_id = Some("tcp_error");
                log.write(record);
                return;
            }
        };
        // Seam: protocol detection (tunnel/detect, tunnel/tls_check) reads the
        // client's first bytes here, before one of them reaches `server`.
        let out = relay::relay(client, server, idle, stop).await;
        record.cs_bytes = out.client_to_server;
        record.sc_bytes = out.server_to_client;
        if out.end == relay::End::Idle {
            record.exception_id = Some("tunnel_idle_timeout");
        }
        log.write(record);
    });
    conn.answer_connect(true);
    let mut resp = Response::new(ResponseBody::full(bytes::Bytes::new()));
    *resp.status_mut() = StatusCode::OK;
    Ok(resp)
}

/// The single place an error becomes an answer and an access record.
fn answer_error(
    proxy: &Proxy,
    e: ProxyError,
    mut record: AccessRecord,
    in_flight: InFlight,
    is_connect: bool,
) -> Response<ResponseBody> {
    tracing::debug!(error = %e, client = %record.client_ip, "request refused");
    record.set_error(&e);
    let mut resp: Response<ResponseBody> = e.to_response();
    if e.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        for c in proxy.auth.challenges() {
            resp.headers_mut()
                .append(header::PROXY_AUTHENTICATE, c.clone());
        }
    }
    if is_connect {
        // After a refused CONNECT the client may already be sending tunnel
        // bytes: they must never be read as a request.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let finish = Finish {
        record,
        log: proxy.log.clone(),
        cs_bytes: None,
    };
    resp.map(|b| b.logged(finish).in_flight(in_flight))
}
