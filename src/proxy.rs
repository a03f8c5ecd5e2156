//! One request's path through the proxy, in order:
//! destination → loop check → authentication → resolution (once) → policy
//! decision on the resolved addresses → `forward`
//! (HTTP) or `tunnel` (CONNECT: detection, SSL check, relay) → access record. Every failure on the way is a [`ProxyError`] that becomes
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
use crate::auth::{AuthFailure, Authenticated, Authenticator};
use crate::body::{Finish, ResponseBody};
use crate::config::Config;
use crate::conn::{ConnState, InFlight};
use crate::directory::Identity;
use crate::error::ProxyError;
use crate::forward::{self, headers, UpstreamClient};
use crate::policy::{ConnectMode, Facts, Policy, Verdict};
use crate::resolve::{self, Host, Refused, Resolver};
use crate::tunnel::detect::Protocol;
use crate::tunnel::inspect::{self, Inspector, PolicySays};
use crate::tunnel::tls_check::TlsChecker;
use crate::tunnel::{self, relay};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;

use crate::listener::guard::GuardedStream;

/// Everything a request needs that outlives it.
pub struct Proxy {
    pub config: Arc<Config>,
    pub client: UpstreamClient,
    pub resolver: Resolver,
    /// `destinations.refuse`, checked against every resolved address.
    pub refused: Refused,
    pub log: AccessLog,
    pub auth: Authenticator,
    /// The live policy; SIGHUP swaps in a new one whole.
    pub policy: arc_swap::ArcSwap<Policy>,
    /// The SSL check for detected TLS tunnels.
    pub checker: TlsChecker,
    /// Addresses we listen on, for loop detection.
    pub listening: Vec<SocketAddr>,
    /// Cancelled when the shutdown grace period is over: tunnels close.
    pub hard_stop: CancellationToken,
    /// Tunnels outlive their request; shutdown waits for them here.
    pub tunnels: TaskTracker,
}

impl Proxy {
    /// True when any of `addrs` with `port` is this proxy itself.
    fn is_self(&self, addrs: &[IpAddr], port: u16) -> bool {
        self.listening.iter().any(|l| {
            l.port() == port
                && addrs.iter().any(|ip| {
                    *ip == l.ip()
                        || (l.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
                })
        })
    }
}

/// Where a request goes: its canonical host and port, and for HTTP the
/// forward target.
struct Destination {
    host: Host,
    port: u16,
    target: Option<forward::Target>,
}

fn destination(req: &Request<Incoming>) -> Result<Destination, ProxyError> {
    if req.method() == Method::CONNECT {
        let (host, port) = tunnel::connect_target(req.uri())?;
        return Ok(Destination {
            host,
            port,
            target: None,
        });
    }
    let t = forward::target(req.uri())?;
    Ok(Destination {
        host: t.host.clone(),
        port: t.port,
        target: Some(t),
    })
}

/// Resolves the destination once — the addresses the policy judges and the
/// only ones dialled — then refuses it if any address is in
/// `destinations.refuse` or is this proxy.
async fn resolve_destination(
    proxy: &Proxy,
    dest: &Destination,
    r: &mut AccessRecord,
) -> Result<Vec<IpAddr>, ProxyError> {
    let name = || dest.host.authority(dest.port);
    let wait = if dest.target.is_some() {
        proxy.config.forward.connect_timeout
    } else {
        proxy.config.tunnel.connect_timeout
    };
    let addrs = match tokio::time::timeout(wait, proxy.resolver.resolve(&dest.host)).await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            tracing::info!(host = %dest.host, error = %e, "cannot resolve the destination");
            return Err(ProxyError::DnsFailure(name()));
        }
        Err(_) => {
            tracing::info!(host = %dest.host, ?wait, "resolving the destination timed out");
            return Err(ProxyError::UpstreamTimeout(name()));
        }
    };
    if let Some(ip) = proxy.refused.find(&addrs) {
        tracing::info!(host = %dest.host, %ip, "destination in destinations.refuse");
        r.rule = Some("builtin:destinations".into());
        return Err(ProxyError::DestinationRefused(ip));
    }
    if proxy.is_self(&addrs, dest.port) {
        return Err(ProxyError::Loop);
    }
    Ok(addrs)
}

/// hyper's service function: never fails, every error is an answer.
///
/// Phases: destination (canonical host) → Via loop check → built-in CONNECT
/// port check → authentication (unless policy exempts) → resolution, once
/// (then `destinations.refuse` and the address loop check) → policy decision
/// on the resolved addresses → forward or tunnel to exactly those addresses.
/// An address literal, or a policy whose authentication layers match on
/// addresses, is resolved before authentication instead; a name otherwise
/// only after it, so unauthenticated clients cannot make the proxy query DNS.
pub async fn serve(
    proxy: Arc<Proxy>,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let in_flight = conn.begin_request();
    let mut record = AccessRecord::new(conn.client.ip(), conn.local.ip());
    describe(&mut record, &req);
    let is_connect = req.method() == Method::CONNECT;
    // The policy this request is decided by, even if a reload swaps it meanwhile.
    let policy = proxy.policy.load_full();
    let fail = |e: ProxyError, record: AccessRecord, in_flight: InFlight| {
        if is_connect {
            conn.answer_connect(false);
        }
        Ok(answer_error(&proxy, e, record, in_flight, is_connect))
    };
    let dest = match destination(&req) {
        Ok(d) => d,
        Err(e) => return fail(e, record, in_flight),
    };
    let host = dest.host.to_string();
    record.host.clone_from(&host);
    record.port = dest.port;
    if headers::via_names(req.headers(), &proxy.config.forward.via_pseudonym) {
        return fail(ProxyError::Loop, record, in_flight);
    }
    if is_connect && !proxy.config.tunnel.allowed_ports.contains(&dest.port) {
        record.rule = Some("builtin:connect-ports".into());
        return fail(ProxyError::PortNotAllowed(dest.port), record, in_flight);
    }
    let mut addrs = None;
    if matches!(dest.host, Host::Ip(_)) || policy.auth_needs_addresses() {
        match resolve_destination(&proxy, &dest, &mut record).await {
            Ok(a) => addrs = Some(a),
            Err(e) => return fail(e, record, in_flight),
        }
    }
    let now = jiff::Timestamp::now();
    let must_auth = {
        let known = addrs.as_deref().unwrap_or(&[]);
        let categories = policy.categories.lookup(&host, known);
        let facts = Facts {
            identity: None,
            client: conn.client.ip(),
            method: req.method().as_str(),
            host: &host,
            addrs: known,
            port: dest.port,
            headers: req.headers(),
            categories: &categories,
            now,
            detected: None,
        };
        policy.needs_auth(&facts, proxy.auth.required()).0
    };
    let who = if must_auth {
        match authenticate(&proxy, &conn, &req, &mut record).await {
            Ok(who) => Some(who),
            Err(e) => {
                // A type 1 counts too: a connection that starts handshake
                // after handshake without finishing one is closed.
                let counts = e.is_auth_failure() || matches!(e, ProxyError::AuthContinue(_));
                let close = counts && conn.auth.failures() >= proxy.auth.max_failures();
                return Ok(refuse(&proxy, &conn, e, req, record, in_flight, close).await);
            }
        }
    } else {
        None
    };
    let addrs = match addrs {
        Some(a) => a,
        None => match resolve_destination(&proxy, &dest, &mut record).await {
            Ok(a) => a,
            Err(e) => return fail(e, record, in_flight),
        },
    };
    let categories = policy.categories.lookup(&host, &addrs);
    record.categories = categories.iter().map(|c| c.to_string()).collect();
    let identity = who.as_ref().map(|w| w.identity.clone());
    let decision = policy.decide(&Facts {
        identity: identity.as_deref(),
        client: conn.client.ip(),
        method: req.method().as_str(),
        host: &host,
        addrs: &addrs,
        port: dest.port,
        headers: req.headers(),
        categories: &categories,
        now,
        detected: None,
    });
    record.rule = decision.rule_names();
    record.tags = decision.tags.iter().map(|t| t.to_string()).collect();
    if let Verdict::Deny { status, reason } = &decision.verdict {
        let e = ProxyError::PolicyDenied {
            status: *status,
            reason: reason.clone(),
            rule: decision
                .verdict_rule
                .clone()
                .unwrap_or_else(|| "default".into()),
        };
        return fail(e, record, in_flight);
    }
    let dial = resolve::with_port(&addrs, dest.port);
    let result = match dest.target {
        None => {
            let ctx = TunnelContext {
                policy: policy.clone(),
                identity,
                headers: req.headers().clone(),
                categories,
                addrs,
                mode: decision.connect,
            };
            connect(
                &proxy, &conn, req, host, dest.port, dial, ctx, record, in_flight,
            )
            .await
        }
        // Plain HTTP goes to the first address only (see `forward`).
        Some(target) => match dial.first() {
            Some(addr) => {
                // Realm and user: the same login in two realms is two people.
                let user = who
                    .as_ref()
                    .map(|w| format!("{}\\{}", w.identity.realm, w.identity.user));
                let up = forward::Upstream {
                    client: &proxy.client,
                    pins: &conn.pinned,
                    user: user.as_deref(),
                };
                forward(&proxy, up, req, target, *addr, record, in_flight).await
            }
            None => Err((ProxyError::ConnectFailed(host), record, in_flight)),
        },
    };
    match result {
        Ok(mut resp) => {
            // Negotiate's mutual authentication token rides on the success.
            if let Some(tok) = who.as_ref().and_then(|w| w.mutual.as_deref()) {
                if let Ok(v) = HeaderValue::from_str(&format!("Negotiate {tok}")) {
                    resp.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
                }
            }
            Ok(resp)
        }
        Err((e, record, in_flight)) => fail(e, record, in_flight),
    }
}

/// Checks the request's credentials; on success the identity goes to the
/// record and to the connection.
async fn authenticate(
    proxy: &Proxy,
    conn: &ConnState,
    req: &Request<Incoming>,
    r: &mut AccessRecord,
) -> Result<Authenticated, ProxyError> {
    let presented = req.headers().get_all(header::PROXY_AUTHORIZATION).iter();
    match proxy
        .auth
        .authenticate(presented, &conn.auth, conn.client.ip())
        .await
    {
        Ok(who) => {
            r.username = Some(who.identity.user.clone());
            r.auth_groups = who.identity.group_names();
            r.auth_scheme = Some(who.log_scheme());
            Ok(who)
        }
        Err(AuthFailure::Missing) => Err(ProxyError::AuthRequired),
        Err(AuthFailure::Continue { challenge }) => Err(ProxyError::AuthContinue(challenge)),
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
        Err(AuthFailure::AccountRefused { user, problem }) => {
            tracing::info!(client = %r.client_ip, %user, reason = problem.as_str(), "authentication refused: account may not sign in");
            r.username = Some(user);
            Err(ProxyError::AccountRefused(problem))
        }
        Err(AuthFailure::Throttled { user, why }) => {
            tracing::warn!(client = %r.client_ip, %user, reason = why.as_str(), "authentication throttled: the realm was not asked");
            r.username = Some(user);
            Err(ProxyError::AuthThrottled)
        }
        Err(AuthFailure::Busy { user, reason }) => {
            tracing::warn!(client = %r.client_ip, %user, %reason, "cannot authenticate now: password checks busy");
            r.username = Some(user);
            Err(ProxyError::AuthBusy)
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

type Failed = (ProxyError, AccessRecord, InFlight);

#[allow(clippy::too_many_arguments)]
async fn forward(
    proxy: &Proxy,
    up: forward::Upstream<'_>,
    req: Request<Incoming>,
    target: forward::Target,
    addr: SocketAddr,
    mut r: AccessRecord,
    in_flight: InFlight,
) -> Result<Response<ResponseBody>, Failed> {
    let method = req.method().clone();
    let cs_bytes = Arc::new(AtomicU64::new(0));
    let cfg = &proxy.config.forward;
    let (resp, pinned) = match forward::forward(up, cfg, req, &target, addr, cs_bytes.clone()).await
    {
        Ok(resp) => resp,
        Err(e) => return Err((e, r, in_flight)),
    };
    r.status = resp.status().as_u16();
    // Squid: what a pinned (per-user) connection brings is never cacheable.
    r.action = if !pinned && cacheable(&method, &resp) {
        "TCP_MISS"
    } else {
        "TCP_NC_MISS"
    };
    let finish = Finish {
        record: r,
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

/// What a tunnel needs from its request to decide after detection.
struct TunnelContext {
    policy: Arc<Policy>,
    identity: Option<Arc<Identity>>,
    headers: http::HeaderMap,
    categories: Vec<Arc<str>>,
    addrs: Vec<IpAddr>,
    mode: ConnectMode,
}

#[allow(clippy::too_many_arguments)]
async fn connect(
    proxy: &Arc<Proxy>,
    conn: &ConnState,
    mut req: Request<Incoming>,
    host: String,
    port: u16,
    dial: Vec<SocketAddr>,
    ctx: TunnelContext,
    mut record: AccessRecord,
    in_flight: InFlight,
) -> Result<Response<ResponseBody>, Failed> {
    let cfg = &proxy.config.tunnel;
    let name = format!("{host}:{port}");
    let server = match tunnel::dial(&dial, &name, cfg.connect_timeout).await {
        Ok(s) => s,
        Err(e) => return Err((e, record, in_flight)),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    record.status = 200;
    record.action = "TCP_TUNNELED";
    let proxy2 = proxy.clone();
    let client_ip = conn.client.ip();
    proxy.tunnels.spawn(async move {
        let _in_flight = in_flight;
        let proxy = proxy2;
        // Take the raw socket back from hyper (with any bytes already read),
        // so detection and the relay work on the socket itself.
        let parts = match on_upgrade
            .await
            .map(|u| u.downcast::<TokioIo<GuardedStream>>())
        {
            Ok(Ok(parts)) => parts,
            Ok(Err(_)) | Err(_) => {
                tracing::warn!("CONNECT upgrade failed or was not our socket");
                record.action = "TCP_ERR_MISS";
                record.exception_id = Some("tcp_error".into());
                proxy.log.write(record);
                return;
            }
        };
        let (mut client, held) = parts.io.into_inner().into_parts();
        // Copy out the few bytes pending and free both buffers now: they are
        // 8-32 KiB each, and an idle tunnel must not keep them.
        let mut pending = parts.read_buf.to_vec();
        pending.extend_from_slice(&held);
        drop((held, parts.read_buf));
        let mut server = server;
        let mut replayed = 0u64;
        let detect = proxy.config.detection.enabled && ctx.mode == ConnectMode::Detect;
        if detect {
            let inspector = Inspector {
                cfg: &proxy.config.detection,
                checker: &proxy.checker,
                addrs: &dial,
            };
            let after_detection = |p: &Protocol| {
                let sni = match p {
                    Protocol::Tls(h) => h.sni.as_deref(),
                    _ => None,
                };
                let facts = Facts {
                    identity: ctx.identity.as_deref(),
                    client: client_ip,
                    method: "CONNECT",
                    host: &host,
                    addrs: &ctx.addrs,
                    port,
                    headers: &ctx.headers,
                    categories: &ctx.categories,
                    now: jiff::Timestamp::now(),
                    detected: Some((p.name(), sni)),
                };
                let d = ctx.policy.decide(&facts);
                match d.verdict {
                    Verdict::Deny { reason, .. } => PolicySays::Deny(reason.to_string()),
                    Verdict::Allow if d.verdict_by_detection => PolicySays::Allow,
                    Verdict::Allow => PolicySays::Nothing,
                }
            };
            // Boxed: the detection future (rustls handshake state included) is
            // large, and an undetected tunnel should not carry its size.
            let outcome = Box::pin(inspector.inspect(
                &mut client,
                std::mem::take(&mut pending),
                &host,
                port,
                after_detection,
            ))
            .await;
            let protocol = match &outcome {
                inspect::Outcome::Pass { protocol, .. }
                | inspect::Outcome::Refuse { protocol, .. } => protocol.clone(),
            };
            if let Some(p) = &protocol {
                record.protocol = Some(p.name());
                if let Protocol::Tls(h) = p {
                    record.sni.clone_from(&h.sni);
                    record.ja3n = Some(h.ja3n.clone());
                }
            }
            match outcome {
                inspect::Outcome::Refuse { reason, .. } => {
                    // Neither side has seen a byte of the other's: just close.
                    record.refuse(&reason);
                    proxy.log.write(record);
                    return;
                }
                inspect::Outcome::Pass { replay, action, .. } => {
                    record.action = action;
                    if let Err(e) = server.write_all(&replay).await {
                        tracing::debug!(error = %e, "upstream closed before the replay");
                        record.action = "TCP_ERR_MISS";
                        record.exception_id = Some("tcp_error".into());
                        proxy.log.write(record);
                        return;
                    }
                    replayed = replay.len() as u64;
                }
            }
        }
        // Bytes the client sent with its CONNECT (undetected tunnels) go first.
        if !pending.is_empty() {
            if server.write_all(&pending).await.is_err() {
                record.action = "TCP_ERR_MISS";
                record.exception_id = Some("tcp_error".into());
                proxy.log.write(record);
                return;
            }
            replayed += pending.len() as u64;
        }
        let idle = proxy.config.tunnel.idle_timeout;
        let transfer = if proxy.config.tunnel.splice {
            relay::Transfer::splice_if_available()
        } else {
            relay::Transfer::Buffered
        };
        let out = relay::relay_tcp(client, server, transfer, idle, proxy.hard_stop.clone()).await;
        record.cs_bytes = out.client_to_server + replayed;
        record.sc_bytes = out.server_to_client;
        if out.end == relay::End::Idle {
            record.exception_id = Some("tunnel_idle_timeout".into());
        }
        proxy.log.write(record);
    });
    conn.answer_connect(true);
    // No more HTTP on this connection: a pinned upstream has no further use.
    conn.pinned.clear();
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
    if let ProxyError::AuthContinue(challenge) = &e {
        if let Ok(v) = HeaderValue::from_str(challenge) {
            resp.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
        }
    } else if e.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
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
