//! One intercepted tunnel, after its `200`: the origin handshake (verified),
//! the client handshake (a minted leaf), then HTTP/1.1 inside — each request
//! judged, forwarded on the origin connection and logged as its own line.
//! Returns the tunnel's [`TunnelEnd`] for the CONNECT's own line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::server::{ClientHello as RustlsHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::rewind::Rewind;
use super::Interceptor;
use crate::accesslog::{AccessLog, AccessRecord, FilterResult};
use crate::body::{Finish, RequestBody, ResponseBody};
use crate::forward::headers;
use crate::outcome::{DetectionReason, ExceptionId, InterceptProblem, SAction};
use crate::tunnel::detect::{classify, Classified, ClientHello, Protocol};
use crate::tunnel::session::TunnelEnd;
use crate::tunnel::verify;

/// The policy's say on one decrypted request.
#[derive(Debug, Clone)]
pub enum Inner {
    /// Forward it; the rules that decided, for `x-rule`.
    Allow {
        /// `x-rule`.
        rule: Option<String>,
    },
    /// Answer it with this status and reason.
    Deny {
        /// The status.
        status: u16,
        /// The `x-exception-id`.
        reason: Arc<str>,
        /// `x-rule`.
        rule: Option<String>,
    },
}

/// Judges a decrypted request by its method and full `https://` URL.
pub type Judge = Box<dyn Fn(&Method, &str) -> Inner + Send + Sync>;

/// What an intercepted tunnel needs from the proxy: narrow handles.
pub struct Session<'a> {
    /// CA, minter, origin-side TLS.
    pub interceptor: &'a Interceptor,
    /// The CONNECT host (canonical): the name when the client sends no SNI.
    pub host: &'a str,
    /// The CONNECT port.
    pub port: u16,
    /// The policy, per inner request.
    pub judge: Judge,
    /// The CONNECT's record: client, user, groups, categories; each inner
    /// request's line starts from it.
    pub template: AccessRecord,
    /// Where inner lines go.
    pub log: AccessLog,
    /// `forward.via_pseudonym`.
    pub via: String,
    /// `forward.response_timeout`.
    pub response_timeout: Duration,
    /// The ClientHello and the origin handshake must each finish within this
    /// (`detection.timeout`, `detection.check_timeout`).
    pub hello_timeout: Duration,
    /// The origin handshake's deadline.
    pub handshake_timeout: Duration,
    /// Most client bytes held before the ClientHello is whole.
    pub max_hello: usize,
    /// Inner request heads: deadline and size (`listener.*`).
    pub header_timeout: Duration,
    /// Most bytes of an inner request head.
    pub max_header_bytes: usize,
    /// Cancelled at the end of the shutdown grace period.
    pub hard_stop: CancellationToken,
}

/// Runs the intercepted tunnel to its end.
pub async fn run(
    s: Session<'_>,
    mut client: TcpStream,
    pending: Vec<u8>,
    server: TcpStream,
) -> TunnelEnd {
    let (held, hello) = match read_hello(&mut client, pending, s.max_hello, s.hello_timeout).await {
        Ok(h) => h,
        Err((protocol, reason)) => return end(protocol, Some(ExceptionId::Detection(reason))),
    };
    let name = hello.sni.clone().unwrap_or_else(|| s.host.to_string());
    let protocol = Some(Protocol::Tls(hello));
    let addr = server.peer_addr().ok();
    // 2. The origin, verified, on the tunnel's own socket.
    let origin = connect_origin(s.interceptor, server, &name, s.handshake_timeout).await;
    let (upstream, origin_leaf, origin_problem) = match origin {
        Ok((tls, leaf)) => (Some(tls), leaf, None),
        Err(reason) => (None, None, Some(reason)),
    };
    // 3. The client, with a leaf for the name.
    let leaf = match s.interceptor.minter.leaf(&name, origin_leaf.as_ref()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "no certificate to intercept with");
            return end(
                protocol,
                Some(ExceptionId::Intercept(InterceptProblem::Unavailable)),
            );
        }
    };
    let client_tls = match accept_client(s.interceptor, leaf, client, held).await {
        Ok(tls) => tls,
        Err(problem) => return end(protocol, Some(ExceptionId::Intercept(problem))),
    };
    // 4. HTTP/1.1 inside.
    let origin = match (upstream, addr) {
        (Some(tls), Some(addr)) => match Origin::handshake(tls, addr, name.clone()).await {
            Ok(o) => Ok(o),
            Err(_) => Err(DetectionReason::HandshakeInvalid),
        },
        _ => Err(origin_problem.unwrap_or(DetectionReason::CheckFailed)),
    };
    let ctx = Arc::new(Ctx {
        authority: if s.port == 443 {
            name.clone()
        } else {
            format!("{name}:{}", s.port)
        },
        name,
        origin: tokio::sync::Mutex::new(origin),
        interceptor_upstream: s.interceptor.upstream.clone(),
        judge: s.judge,
        template: s.template,
        log: s.log,
        via: s.via,
        response_timeout: s.response_timeout,
        handshake_timeout: s.handshake_timeout,
        served: AtomicU64::new(0),
    });
    let service = {
        let ctx = ctx.clone();
        hyper::service::service_fn(move |req| inner(ctx.clone(), req))
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(s.header_timeout)
        .max_buf_size(s.max_header_bytes.max(8192))
        .serve_connection(TokioIo::new(client_tls), service);
    let result = tokio::select! {
        r = conn => r,
        () = s.hard_stop.cancelled() => Ok(()),
    };
    let served = ctx.served.load(std::sync::atomic::Ordering::Relaxed);
    let exception = match result {
        Err(e) if served == 0 && e.is_parse() => {
            Some(ExceptionId::Intercept(InterceptProblem::NotHttp))
        }
        _ => None,
    };
    end(protocol, exception)
}

/// The end of a tunnel the policy intercepts with no CA configured.
pub fn unavailable() -> TunnelEnd {
    end(
        None,
        Some(ExceptionId::Intercept(InterceptProblem::Unavailable)),
    )
}

fn end(protocol: Option<Protocol>, exception: Option<ExceptionId>) -> TunnelEnd {
    let refused = exception.is_some();
    TunnelEnd {
        protocol,
        action: if refused {
            SAction::TcpDenied
        } else {
            SAction::TcpTunneled
        },
        exception,
        refused,
        cs_bytes: 0,
        sc_bytes: 0,
    }
}

/// Reads until the client's first bytes are a whole ClientHello; anything
/// else is refused (the policy intercepts TLS only).
async fn read_hello(
    client: &mut TcpStream,
    mut held: Vec<u8>,
    max: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, Box<ClientHello>), (Option<Protocol>, DetectionReason)> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match classify(&held) {
            Classified::Done(Protocol::Tls(h)) => return Ok((held, h)),
            Classified::Done(other) => {
                return Err((Some(other), DetectionReason::ProtocolNotAllowed))
            }
            Classified::NeedMore(_) if held.len() >= max => {
                return Err((None, DetectionReason::ProtocolNotAllowed))
            }
            Classified::NeedMore(_) => {}
        }
        let mut limited = (&mut *client).take((max - held.len()) as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut held)).await {
            Err(_) => return Err((None, DetectionReason::Timeout)),
            Ok(Ok(0)) => return Err((None, DetectionReason::ClientClosed)),
            Ok(Err(_)) => return Err((None, DetectionReason::ClientError)),
            Ok(Ok(_)) => {}
        }
    }
}

type OriginTls = tokio_rustls::client::TlsStream<TcpStream>;

/// The proxy's own handshake with the origin; its leaf on success.
async fn connect_origin(
    i: &Interceptor,
    server: TcpStream,
    name: &str,
    timeout: Duration,
) -> Result<(OriginTls, Option<CertificateDer<'static>>), DetectionReason> {
    let server_name = verify::server_name(name).ok_or(DetectionReason::CertInvalid)?;
    let connector = tokio_rustls::TlsConnector::from(i.upstream.clone());
    match tokio::time::timeout(timeout, connector.connect(server_name, server)).await {
        Err(_) => Err(DetectionReason::ServerTimeout),
        Ok(Err(e)) => {
            let reason = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(err @ rustls::Error::InvalidCertificate(_)) => verify::reason(err),
                Some(rustls::Error::AlertReceived(_)) => DetectionReason::HandshakeRefused,
                Some(_) => DetectionReason::HandshakeInvalid,
                None => DetectionReason::CheckFailed,
            };
            tracing::info!(name, error = %e, reason = reason.as_str(), "intercepted origin refused");
            Err(reason)
        }
        Ok(Ok(tls)) => {
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned());
            Ok((tls, leaf))
        }
    }
}

/// A resolver that always answers the one minted leaf.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: RustlsHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

type ClientTls = tokio_rustls::server::TlsStream<Rewind<TcpStream>>;

/// The client's handshake with the minted leaf, its ClientHello replayed.
async fn accept_client(
    i: &Interceptor,
    leaf: Arc<CertifiedKey>,
    client: TcpStream,
    held: Vec<u8>,
) -> Result<ClientTls, InterceptProblem> {
    let cfg = rustls::ServerConfig::builder_with_provider(i.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| InterceptProblem::Unavailable)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(leaf)));
    let mut cfg = cfg;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    acceptor
        .accept(Rewind::new(held, client))
        .await
        .map_err(|e| {
            use rustls::AlertDescription as A;
            let problem = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::AlertReceived(
                    A::BadCertificate | A::UnknownCA | A::CertificateUnknown | A::DecryptError,
                )) => InterceptProblem::ClientRejectedCertificate,
                _ => InterceptProblem::ClientHandshake,
            };
            tracing::info!(error = %e, reason = problem.as_str(), "intercepted client's handshake failed");
            problem
        })
}

/// The origin connection inner requests travel on; re-established (and
/// re-verified) at the same address when the origin closes it.
struct Origin {
    send: SendRequest<RequestBody>,
    addr: SocketAddr,
    name: String,
}

impl Origin {
    async fn handshake(tls: OriginTls, addr: SocketAddr, name: String) -> hyper::Result<Self> {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { send, addr, name })
    }
}

/// Shared by one tunnel's inner requests.
struct Ctx {
    /// The name the tunnel is for (SNI, else the CONNECT host).
    name: String,
    /// `name`, with the port when it is not 443: the URL's authority.
    authority: String,
    origin: tokio::sync::Mutex<Result<Origin, DetectionReason>>,
    interceptor_upstream: Arc<rustls::ClientConfig>,
    judge: Judge,
    template: AccessRecord,
    log: AccessLog,
    via: String,
    response_timeout: Duration,
    handshake_timeout: Duration,
    served: AtomicU64,
}

async fn inner(
    ctx: Arc<Ctx>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    ctx.served
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut r = ctx.template.clone();
    r.start = std::time::SystemTime::now();
    r.intercepted = true;
    r.method = req.method().as_str().to_string();
    r.scheme = Some("https");
    r.host.clone_from(&ctx.name);
    r.path = req.uri().path().to_string();
    r.query = req.uri().query().map(str::to_string);
    r.user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    r.protocol = None;
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("https://{}{pq}", ctx.authority);
    // Requests inside the tunnel are for the tunnel's server: another Host
    // is domain fronting, whatever the policy would say of either name.
    if let Some(h) = req.headers().get(header::HOST) {
        let host = h.to_str().unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        if !host.trim_end_matches('.').eq_ignore_ascii_case(&ctx.name) {
            let problem = ExceptionId::Intercept(InterceptProblem::DomainFronting);
            return Ok(answer(
                &ctx,
                r,
                StatusCode::MISDIRECTED_REQUEST,
                problem,
                None,
            ));
        }
    }
    if req.headers().contains_key(header::CONTENT_LENGTH)
        && req.headers().contains_key(header::TRANSFER_ENCODING)
    {
        return Ok(answer(
            &ctx,
            r,
            StatusCode::BAD_REQUEST,
            ExceptionId::InvalidRequest,
            None,
        ));
    }
    match (ctx.judge)(req.method(), &url) {
        Inner::Deny {
            status,
            reason,
            rule,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            return Ok(answer(&ctx, r, status, ExceptionId::Rule(reason), rule));
        }
        Inner::Allow { rule } => r.rule = rule,
    }
    Ok(match forward(&ctx, req, &mut r).await {
        Ok(resp) => resp,
        Err((status, id)) => {
            let rule = r.rule.take();
            answer(&ctx, r, status, id, rule)
        }
    })
}

/// Sends one request on the origin connection (reconnecting once if the
/// origin had closed it) and returns the response that logs when done.
async fn forward(
    ctx: &Ctx,
    req: Request<Incoming>,
    r: &mut AccessRecord,
) -> Result<Response<ResponseBody>, (StatusCode, ExceptionId)> {
    let method = req.method().clone();
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, &ctx.via);
    if !parts.headers.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(&ctx.authority) {
            parts.headers.insert(header::HOST, v);
        }
    }
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    parts.version = http::Version::HTTP_11;
    let cs_bytes = Arc::new(AtomicU64::new(0));
    let req = Request::from_parts(parts, RequestBody::new(body, cs_bytes.clone()));
    let mut origin = ctx.origin.lock().await;
    let o = match &mut *origin {
        Err(reason) => {
            return Err((
                StatusCode::BAD_GATEWAY,
                ExceptionId::Detection(reason.clone()),
            ))
        }
        Ok(o) => o,
    };
    r.remote_ip = Some(o.addr.ip());
    if o.send.ready().await.is_err() {
        match reconnect(ctx, o.addr, &o.name).await {
            Ok(fresh) => *o = fresh,
            Err(reason) => {
                return Err((StatusCode::BAD_GATEWAY, ExceptionId::Detection(reason)));
            }
        }
    }
    let sent = tokio::time::timeout(ctx.response_timeout, o.send.send_request(req)).await;
    drop(origin);
    let resp = match sent {
        Err(_) => return Err((StatusCode::GATEWAY_TIMEOUT, ExceptionId::GatewayTimeout)),
        Ok(Err(_)) => return Err((StatusCode::BAD_GATEWAY, ExceptionId::TcpError)),
        Ok(Ok(resp)) => resp,
    };
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, &ctx.via);
    parts.version = http::Version::HTTP_11;
    r.status = parts.status.as_u16();
    r.action = if cacheable(&method, &parts.headers) {
        SAction::TcpMiss
    } else {
        SAction::TcpNcMiss
    };
    let finish = Finish {
        record: r.clone(),
        log: ctx.log.clone(),
        cs_bytes: Some(cs_bytes),
    };
    Ok(Response::from_parts(
        parts,
        ResponseBody::upstream(body).logged(finish),
    ))
}

async fn reconnect(ctx: &Ctx, addr: SocketAddr, name: &str) -> Result<Origin, DetectionReason> {
    let tcp = tokio::time::timeout(ctx.handshake_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| DetectionReason::ServerTimeout)?
        .map_err(|_| DetectionReason::CheckFailed)?;
    let server_name: ServerName<'static> =
        verify::server_name(name).ok_or(DetectionReason::CertInvalid)?;
    let connector = tokio_rustls::TlsConnector::from(ctx.interceptor_upstream.clone());
    let tls = tokio::time::timeout(ctx.handshake_timeout, connector.connect(server_name, tcp))
        .await
        .map_err(|_| DetectionReason::ServerTimeout)?
        .map_err(
            |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(err @ rustls::Error::InvalidCertificate(_)) => verify::reason(err),
                _ => DetectionReason::HandshakeInvalid,
            },
        )?;
    Origin::handshake(tls, addr, name.to_string())
        .await
        .map_err(|_| DetectionReason::HandshakeInvalid)
}

/// The proxy's own answer inside the tunnel, logged.
fn answer(
    ctx: &Ctx,
    mut r: AccessRecord,
    status: StatusCode,
    id: ExceptionId,
    rule: Option<String>,
) -> Response<ResponseBody> {
    let text = format!(
        "{} {}\nGatehouse: {} ({})\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        id.as_str(),
        ctx.authority
    );
    let mut resp = Response::new(ResponseBody::full(Bytes::from(text)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        h.insert("x-exception-id", v);
    }
    r.status = status.as_u16();
    r.action = if status == StatusCode::BAD_GATEWAY || status == StatusCode::GATEWAY_TIMEOUT {
        SAction::TcpErrMiss
    } else {
        SAction::TcpDenied
    };
    r.filter_result = if r.action == SAction::TcpDenied {
        FilterResult::Denied
    } else {
        FilterResult::Observed
    };
    r.exception_id = Some(id);
    r.rule = rule;
    r.finish();
    ctx.log.write(r);
    resp
}

/// ProxySG's MISS vs NC_MISS, as for plain HTTP.
fn cacheable(method: &Method, h: &http::HeaderMap) -> bool {
    let private = h
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("no-store") || v.contains("private")
        });
    (method == Method::GET || method == Method::HEAD)
        && !private
        && !h.contains_key(header::SET_COOKIE)
}
