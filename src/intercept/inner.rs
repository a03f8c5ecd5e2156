//! The requests inside an intercepted tunnel — or inside a CONNECT whose
//! client speaks plain HTTP: each judged by the policy with its own method,
//! headers and full `https://` (or `http://`) URL, forwarded on the origin
//! connection (hop-by-hop rules, `Via`, streaming bodies), and logged as its
//! own line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::judge::{Inner, Judge};
use crate::accesslog::{AccessLog, AccessRecord};
use crate::body::{Finish, RequestBody, ResponseBody};
use crate::error::ProxyError;
use crate::forward::{headers, upgrade};
use crate::outcome::{DetectionReason, SAction};
use crate::tunnel::verify;

/// The origin connection inner requests travel on; re-established (and
/// re-verified) at the same address when the origin closes it.
pub(super) struct Origin {
    send: Sender,
    addr: SocketAddr,
    name: String,
}

/// HTTP/1.1 carries one request at a time; HTTP/2 (the origin chose `h2`)
/// carries each of the client's streams on a stream of its own.
enum Sender {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

impl Origin {
    /// HTTP/1.1 (or HTTP/2 when the origin's ALPN said `h2`) on `io`: the
    /// verified TLS of an intercepted tunnel, or the dialled socket itself
    /// for plain HTTP.
    pub(super) async fn handshake<T>(
        io: T,
        addr: SocketAddr,
        name: String,
        h2: bool,
    ) -> hyper::Result<Self>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let send = if h2 {
            let (send, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(io))
                .await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Sender::H2(send)
        } else {
            let (send, conn) = http1::handshake(TokioIo::new(io)).await?;
            tokio::spawn(async move {
                // An upgraded origin connection is handed to its relay.
                let _ = conn.with_upgrades().await;
            });
            Sender::H1(send)
        };
        Ok(Self { send, addr, name })
    }

    async fn ready(&mut self) -> hyper::Result<()> {
        match &mut self.send {
            Sender::H1(s) => s.ready().await,
            Sender::H2(s) => s.ready().await,
        }
    }
}

/// Shared by one tunnel's inner requests.
pub(super) struct Ctx {
    /// The name the tunnel is for (SNI, else the CONNECT host).
    pub(super) name: String,
    /// `name`, with the port when it is not the scheme's: the URL's authority.
    pub(super) authority: String,
    /// The tunnel's port: an inner `Host` must name it (or omit it when
    /// it is the scheme's).
    pub(super) port: u16,
    pub(super) origin: tokio::sync::Mutex<Result<Origin, DetectionReason>>,
    /// Origin-side TLS, to reconnect an intercepted tunnel's origin.
    pub(super) interceptor_upstream: Option<Arc<rustls::ClientConfig>>,
    pub(super) judge: Judge,
    /// The ClientHello of an intercepted tunnel; `None`: plain HTTP.
    pub(super) hello: Option<Arc<crate::tunnel::detect::ClientHello>>,
    pub(super) template: AccessRecord,
    pub(super) log: AccessLog,
    pub(super) via: String,
    pub(super) response_timeout: Duration,
    pub(super) handshake_timeout: Duration,
    pub(super) served: AtomicU64,
    /// Upgraded (WebSocket) relays: the session waits for them.
    pub(super) relays: tokio_util::task::TaskTracker,
    /// The tunnel's hard stop, which ends its relays too.
    pub(super) hard_stop: tokio_util::sync::CancellationToken,
    /// `tunnel.idle_timeout`, for an upgraded relay.
    pub(super) idle_timeout: Duration,
}

pub(super) async fn inner(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    ctx.served
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = ctx.template.clone();
    r.start = std::time::SystemTime::now();
    // Decrypted TLS (`https`), or plain HTTP found inside the CONNECT.
    r.intercepted = ctx.hello.is_some();
    r.request(&req);
    let scheme = if r.intercepted { "https" } else { "http" };
    r.scheme = Some(scheme);
    r.host.clone_from(&ctx.name);
    r.protocol = None;
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    // Judged as every URL is, normalised (policy/url.rs); one that cannot
    // be is refused.
    let url = match crate::policy::url::path_and_query_normalised(pq) {
        Ok(pq) => format!("{scheme}://{}{pq}", ctx.authority),
        Err(e) => return Ok(answer(&ctx, r, ProxyError::BadRequest(e.reason()), None)),
    };
    // Requests inside the tunnel are for the tunnel's server: another Host
    // is domain fronting, whatever the policy would say of either name.
    // A tunnel inside the tunnel would carry bytes no rule has seen.
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        let e = ProxyError::BadRequest("more than one Host");
        return Ok(answer(&ctx, r, e, None));
    }
    if req.method() == http::Method::CONNECT {
        let e = ProxyError::BadRequest("a CONNECT inside a tunnel");
        return Ok(answer(&ctx, r, e, None));
    }
    // HTTP/2 names the server in `:authority` (the URI's), HTTP/1.1 in
    // `Host`: each one given must be the tunnel's.
    let named = req.uri().authority().map(|a| a.as_str().to_string());
    let host_header = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("").to_string());
    for host in named.iter().chain(&host_header) {
        let host = host.as_str();
        // No port is the scheme's (443); plain HTTP found in a tunnel to
        // any port may leave it out.
        let default_port = if r.intercepted { 443 } else { ctx.port };
        let (host, port) = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p.parse().ok()),
            _ => (host, Some(default_port)),
        };
        if !host.trim_end_matches('.').eq_ignore_ascii_case(&ctx.name) || port != Some(ctx.port) {
            let e = ProxyError::DomainFronting(host.to_string());
            return Ok(answer(&ctx, r, e, None));
        }
    }
    if req.headers().contains_key(header::CONTENT_LENGTH)
        && req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        // Smuggling: the one inner refusal that also ends the session.
        let e = ProxyError::BadRequest("both Content-Length and Transfer-Encoding");
        r.rule = None;
        return Ok(crate::answer::refusal(&e, r, &ctx.log));
    }
    let hello = ctx.hello.as_deref();
    let said = (ctx.judge)(req.method(), &url, req.headers(), &ctx.name, hello).await;
    if let Some(who) = said.surrogate() {
        r.authenticated(who);
    }
    match said {
        Inner::Redirect(to) => {
            let mut resp = crate::answer::redirect(&to, r, &ctx.log);
            resp.headers_mut().remove(header::CONNECTION);
            return Ok(resp);
        }
        Inner::Deny { denial, rule, .. } => {
            let e = ProxyError::PolicyDenied {
                denial,
                rule: rule.as_deref().unwrap_or("default").into(),
            };
            return Ok(answer(&ctx, r, e, rule));
        }
        Inner::Allow {
            rule, by_upgrade, ..
        } => {
            r.rule = rule;
            // An upgrade: judged above as the request, now by what it offers.
            match upgrade::judge(req.headers(), by_upgrade) {
                Ok(None) => {}
                Ok(Some(_)) => return Ok(upgrading(&ctx, req, r).await),
                Err(e) => {
                    let rule = matches!(e, ProxyError::UpgradeRefused(_))
                        .then(|| super::upgrade::UPGRADE_RULE.to_string())
                        .or(r.rule.take());
                    return Ok(answer(&ctx, r, e, rule));
                }
            }
        }
    }
    Ok(match forward(&ctx, req, &mut r).await {
        Ok(resp) => resp,
        Err(e) => {
            let rule = r.rule.take();
            answer(&ctx, r, e, rule)
        }
    })
}

/// An admitted upgrade request (a WebSocket) forwarded: anything but
/// `101` is an ordinary response; a `101` goes to the relay.
async fn upgrading(
    ctx: &Ctx,
    mut req: Request<Incoming>,
    mut r: AccessRecord,
) -> Response<ResponseBody> {
    let client = hyper::upgrade::on(&mut req);
    let method = req.method().clone();
    match exchange(ctx, req, &mut r).await {
        Err(e) => {
            let rule = r.rule.take();
            answer(ctx, r, e, rule)
        }
        Ok((resp, cs_bytes)) if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
            let relaying = super::upgrade::Relaying {
                log: ctx.log.clone(),
                via: &ctx.via,
                idle: ctx.idle_timeout,
                stop: ctx.hard_stop.clone(),
                relays: &ctx.relays,
            };
            super::upgrade::switch(resp, client, cs_bytes, r, relaying)
        }
        Ok((resp, cs_bytes)) => respond(ctx, &method, resp, cs_bytes, &mut r),
    }
}

/// Sends one request on the origin connection (reconnecting once if the
/// origin had closed it) and returns the response that logs when done.
async fn forward(
    ctx: &Ctx,
    req: Request<Incoming>,
    r: &mut AccessRecord,
) -> Result<Response<ResponseBody>, ProxyError> {
    let method = req.method().clone();
    let (resp, cs_bytes) = exchange(ctx, req, r).await?;
    Ok(respond(ctx, &method, resp, cs_bytes, r))
}

/// The origin's response on its way back, logged when its body is done.
fn respond(
    ctx: &Ctx,
    method: &http::Method,
    resp: Response<Incoming>,
    cs_bytes: Arc<AtomicU64>,
    r: &mut AccessRecord,
) -> Response<ResponseBody> {
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, &ctx.via);
    parts.version = http::Version::HTTP_11;
    r.status = parts.status.as_u16();
    r.action = if headers::cacheable(method, &parts.headers) {
        SAction::TcpMiss
    } else {
        SAction::TcpNcMiss
    };
    let finish = Finish {
        record: r.clone(),
        log: ctx.log.clone(),
        cs_bytes: Some(cs_bytes),
    };
    Response::from_parts(parts, ResponseBody::upstream(body).logged(finish))
}

/// The request sent on the origin connection (hop-by-hop headers off, an
/// admitted upgrade's back on, `Via` added), and the origin's response as
/// it came, with the request body bytes counted on the way up.
async fn exchange(
    ctx: &Ctx,
    req: Request<Incoming>,
    r: &mut AccessRecord,
) -> Result<(Response<Incoming>, Arc<AtomicU64>), ProxyError> {
    let (mut parts, body) = req.into_parts();
    let upgrading = upgrade::Kept::from(&parts.headers);
    headers::strip_hop_by_hop(&mut parts.headers);
    upgrading.restore(&mut parts.headers);
    // A cookie surrogate's cookie is the proxy's, never the origin's.
    crate::auth::cookie::strip_cookie(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, &ctx.via);
    let pq = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |pq| pq.as_str().to_string());
    let cs_bytes = Arc::new(AtomicU64::new(0));
    let mut origin = ctx.origin.lock().await;
    let o = match &mut *origin {
        Err(reason) => return Err(ProxyError::OriginUnusable(reason.clone())),
        Ok(o) => o,
    };
    r.remote_ip = Some(o.addr.ip());
    let ready = tokio::time::timeout(ctx.response_timeout, o.ready()).await;
    if !matches!(ready, Ok(Ok(()))) {
        match reconnect(ctx, o.addr, &o.name).await {
            Ok(fresh) => *o = fresh,
            Err(reason) => return Err(ProxyError::OriginUnusable(reason)),
        }
    }
    // HTTP/1.1 in origin form with `Host`; HTTP/2 with `:scheme` and
    // `:authority` (from the absolute URI) and no `Host`.
    let h2 = matches!(o.send, Sender::H2(_));
    let scheme = if ctx.hello.is_some() { "https" } else { "http" };
    (parts.uri, parts.version) = if h2 {
        parts.headers.remove(header::HOST);
        let uri = format!("{scheme}://{}{pq}", ctx.authority);
        (
            uri.parse()
                .map_err(|_| ProxyError::BadRequest("unusable URL"))?,
            http::Version::HTTP_2,
        )
    } else {
        if !parts.headers.contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(&ctx.authority) {
                parts.headers.insert(header::HOST, v);
            }
        }
        let uri = pq.parse().unwrap_or_else(|_| Uri::from_static("/"));
        (uri, http::Version::HTTP_11)
    };
    let req = Request::from_parts(parts, RequestBody::new(body, cs_bytes.clone()));
    let sent = match &mut o.send {
        Sender::H1(send) => {
            let sending = send.send_request(req);
            let sent = tokio::time::timeout(ctx.response_timeout, sending).await;
            drop(origin);
            sent
        }
        // Streams run side by side: the connection is not held while one waits.
        Sender::H2(send) => {
            let sending = send.send_request(req);
            drop(origin);
            tokio::time::timeout(ctx.response_timeout, sending).await
        }
    };
    let resp = match sent {
        Err(_) => return Err(ProxyError::UpstreamTimeout(ctx.authority.clone())),
        Ok(Err(_)) => return Err(ProxyError::UpstreamBroken(ctx.authority.clone())),
        Ok(Ok(resp)) => resp,
    };
    Ok((resp, cs_bytes))
}

/// A new origin connection at the same address (the one the policy
/// judged), verified again when the tunnel is TLS.
async fn reconnect(ctx: &Ctx, addr: SocketAddr, name: &str) -> Result<Origin, DetectionReason> {
    let tcp = tokio::time::timeout(ctx.handshake_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| DetectionReason::ServerTimeout)?
        .map_err(|_| DetectionReason::CheckFailed)?;
    let Some(upstream) = &ctx.interceptor_upstream else {
        return Origin::handshake(tcp, addr, name.to_string(), false)
            .await
            .map_err(|_| DetectionReason::CheckFailed);
    };
    let server_name: ServerName<'static> =
        verify::server_name(name).ok_or(DetectionReason::CertInvalid)?;
    let connector = tokio_rustls::TlsConnector::from(upstream.clone());
    let tls = tokio::time::timeout(ctx.handshake_timeout, connector.connect(server_name, tcp))
        .await
        .map_err(|_| DetectionReason::ServerTimeout)?
        .map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(err @ rustls::Error::InvalidCertificate(_)) => verify::reason(err),
                _ => DetectionReason::HandshakeInvalid,
            },
        )?;
    let h2 = super::handshake::is_h2(tls.get_ref().1.alpn_protocol());
    Origin::handshake(tls, addr, name.to_string(), h2)
        .await
        .map_err(|_| DetectionReason::HandshakeInvalid)
}

/// The proxy's own answer inside the tunnel, logged as every refusal is
/// ([`crate::answer::refusal`]) with `rule` as its `x-rule` (none: a check
/// of the proxy's own, not the CONNECT's rule). The decrypted session stays
/// open: one bad request does not cost the client its tunnel.
fn answer(
    ctx: &Ctx,
    mut r: AccessRecord,
    e: ProxyError,
    rule: Option<String>,
) -> Response<ResponseBody> {
    r.rule = rule;
    let mut resp = crate::answer::refusal(&e, r, &ctx.log);
    resp.headers_mut().remove(header::CONNECTION);
    resp
}
