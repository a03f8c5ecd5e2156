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

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::session::{Inner, Judge};
use crate::accesslog::{AccessLog, AccessRecord, FilterResult};
use crate::body::{Finish, RequestBody, ResponseBody};
use crate::forward::headers;
use crate::outcome::{DetectionReason, ExceptionId, InterceptProblem, SAction};
use crate::tunnel::verify;

/// The origin connection inner requests travel on; re-established (and
/// re-verified) at the same address when the origin closes it.
pub(super) struct Origin {
    send: SendRequest<RequestBody>,
    addr: SocketAddr,
    name: String,
}

impl Origin {
    /// HTTP/1.1 on `io`: the verified TLS of an intercepted tunnel, or the
    /// dialled socket itself for plain HTTP.
    pub(super) async fn handshake<T>(io: T, addr: SocketAddr, name: String) -> hyper::Result<Self>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self { send, addr, name })
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
    r.method = req.method().as_str().to_string();
    let scheme = if r.intercepted { "https" } else { "http" };
    r.scheme = Some(scheme);
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
    // Judged as every URL is, normalised (policy/url.rs); one that cannot
    // be is refused.
    let url = match crate::policy::url::path_and_query_normalised(pq) {
        Ok(pq) => format!("{scheme}://{}{pq}", ctx.authority),
        Err(_) => {
            return Ok(answer(
                &ctx,
                r,
                StatusCode::BAD_REQUEST,
                ExceptionId::InvalidRequest,
                None,
            ))
        }
    };
    // Requests inside the tunnel are for the tunnel's server: another Host
    // is domain fronting, whatever the policy would say of either name.
    // A tunnel inside the tunnel would carry bytes no rule has seen.
    if req.headers().get_all(header::HOST).iter().count() > 1
        || req.method() == http::Method::CONNECT
    {
        return Ok(answer(
            &ctx,
            r,
            StatusCode::BAD_REQUEST,
            ExceptionId::InvalidRequest,
            None,
        ));
    }
    if let Some(h) = req.headers().get(header::HOST) {
        let host = h.to_str().unwrap_or("");
        // No port is the scheme's (443); plain HTTP found in a tunnel to
        // any port may leave it out.
        let default_port = if r.intercepted { 443 } else { ctx.port };
        let (host, port) = match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (h, p.parse().ok()),
            _ => (host, Some(default_port)),
        };
        if !host.trim_end_matches('.').eq_ignore_ascii_case(&ctx.name) || port != Some(ctx.port) {
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
    let hello = ctx.hello.as_deref();
    match (ctx.judge)(req.method(), &url, req.headers(), &ctx.name, hello).await {
        Inner::Deny { denial, rule } => {
            let id = ExceptionId::Rule(denial.reason);
            return Ok(answer(&ctx, r, denial.status, id, rule));
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
    let ready = tokio::time::timeout(ctx.response_timeout, o.send.ready()).await;
    if !matches!(ready, Ok(Ok(()))) {
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
    r.action = if headers::cacheable(&method, &parts.headers) {
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

/// A new origin connection at the same address (the one the policy
/// judged), verified again when the tunnel is TLS.
async fn reconnect(ctx: &Ctx, addr: SocketAddr, name: &str) -> Result<Origin, DetectionReason> {
    let tcp = tokio::time::timeout(ctx.handshake_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| DetectionReason::ServerTimeout)?
        .map_err(|_| DetectionReason::CheckFailed)?;
    let Some(upstream) = &ctx.interceptor_upstream else {
        return Origin::handshake(tcp, addr, name.to_string())
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
