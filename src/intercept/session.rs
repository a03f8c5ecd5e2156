//! One intercepted tunnel, after its `200`: the origin handshake (verified),
//! the client handshake (a minted leaf), then HTTP/1.1 inside — each request
//! judged, forwarded on the origin connection and logged as its own line.
//! Returns the tunnel's [`TunnelEnd`] for the CONNECT's own line.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::handshake::{accept_client, connect_origin, is_h2, read_hello};
use super::inner::{inner, Ctx, Origin};
use super::judge::Judge;
use super::rewind::{Activity, Rewind};
use super::Interceptor;
use crate::accesslog::{AccessLog, AccessRecord};
use crate::outcome::{DetectionReason, ExceptionId, InterceptProblem, SAction};
use crate::stream::ClientStream;
use crate::tunnel::detect::{ClientHello, Protocol};
use crate::tunnel::session::TunnelEnd;

/// What an intercepted tunnel needs from the proxy: narrow handles.
pub struct Session<'a> {
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
    /// `tunnel.idle_timeout`: closed when no byte moves for this long.
    pub idle_timeout: Duration,
}

/// Runs the intercepted tunnel to its end.
pub async fn run(
    s: Session<'_>,
    interceptor: &Interceptor,
    mut client: ClientStream,
    pending: Vec<u8>,
    server: TcpStream,
) -> TunnelEnd {
    let (held, hello) = match read_hello(&mut client, pending, s.max_hello, s.hello_timeout).await {
        Ok(h) => h,
        Err((protocol, reason)) => return end(protocol, Some(ExceptionId::Detection(reason))),
    };
    let name = hello.sni.clone().unwrap_or_else(|| s.host.to_string());
    // The CONNECT named a server: an SNI for another one is fronting (the
    // policy judged the CONNECT's name). An address CONNECT may carry any SNI,
    // and inner requests are judged by that name.
    if s.host.parse::<std::net::IpAddr>().is_err() && !name.eq_ignore_ascii_case(s.host) {
        let problem = ExceptionId::Intercept(InterceptProblem::DomainFronting);
        return end(Some(Protocol::Tls(hello)), Some(problem));
    }
    let hello = Arc::new(*hello);
    let protocol = Some(Protocol::Tls(Box::new((*hello).clone())));
    let addr = server.peer_addr().ok();
    // 2. The origin, verified, on the tunnel's own socket; `h2` asked only
    // when the client offered it.
    let upstream = interceptor.upstream_for(&hello.alpn).clone();
    let origin = connect_origin(&upstream, server, &name, s.handshake_timeout).await;
    let (upstream_tls, origin_leaf, origin_problem) = match origin {
        Ok((tls, leaf)) => (Some(tls), leaf, None),
        Err(reason) => (None, None, Some(reason)),
    };
    let origin_h2 = upstream_tls
        .as_ref()
        .is_some_and(|t| is_h2(t.get_ref().1.alpn_protocol()));
    // 3. The client, with a leaf for the name.
    // A leaf minted without the origin's certificate (its check failed) is
    // not cached: it would stand in for the real one for `leaf_ttl`.
    let minted = match &origin_leaf {
        Some(up) => interceptor.minter.leaf(&name, Some(up)).await,
        None => interceptor.minter.uncached(&name),
    };
    let leaf = match minted {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "no certificate to intercept with");
            return end(
                protocol,
                Some(ExceptionId::Intercept(InterceptProblem::Unavailable)),
            );
        }
    };
    let activity = Activity::new();
    let client = Rewind::new(held, client, activity.clone());
    let accepted = accept_client(interceptor, origin_h2, leaf, client, s.hello_timeout).await;
    let client_tls = match accepted {
        Ok(tls) => tls,
        Err(problem) => return end(protocol, Some(ExceptionId::Intercept(problem))),
    };
    let client_h2 = is_h2(client_tls.get_ref().1.alpn_protocol());
    // 4. HTTP inside: HTTP/2 streams or HTTP/1.1 requests.
    let origin = match (upstream_tls, addr) {
        (Some(tls), Some(addr)) => {
            match Origin::handshake(tls, addr, name.clone(), origin_h2).await {
                Ok(o) => Ok(o),
                Err(_) => Err(DetectionReason::HandshakeInvalid),
            }
        }
        _ => Err(origin_problem.unwrap_or(DetectionReason::CheckFailed)),
    };
    // An origin that failed its check denies the tunnel: each request got
    // the proxy's page, and the CONNECT's line says why.
    let origin_failed = origin.as_ref().err().cloned();
    let inside = Inside {
        name,
        tls: Some((hello, upstream)),
        origin,
        activity,
        h2: interceptor.http2.clone().filter(|_| client_h2),
    };
    let exception = serve(s, client_tls, inside).await;
    match origin_failed {
        Some(reason) => end(protocol, Some(ExceptionId::Detection(reason))),
        None => end(protocol, exception),
    }
}

/// A CONNECT whose client speaks plain HTTP (detection found it): each
/// request is served as on the HTTP path — judged with the tunnel's
/// identity, its own method, headers and `http://` URL, forwarded on the
/// dialled socket, logged as its own line.
pub async fn run_http(
    s: Session<'_>,
    client: ClientStream,
    held: Vec<u8>,
    server: TcpStream,
) -> TunnelEnd {
    let activity = Activity::new();
    let client = Rewind::new(held, client, activity.clone());
    let name = s.host.to_string();
    let origin = match server.peer_addr() {
        Ok(addr) => Origin::handshake(server, addr, name.clone(), false)
            .await
            .map_err(|_| DetectionReason::CheckFailed),
        Err(_) => Err(DetectionReason::CheckFailed),
    };
    let inside = Inside {
        name,
        tls: None,
        origin,
        activity,
        h2: None,
    };
    let exception = serve(s, client, inside)
        .await
        .filter(|e| *e != ExceptionId::Intercept(InterceptProblem::ClientRejectedCertificate));
    let mut end = end(Some(Protocol::Http), exception);
    if !end.refused {
        end.action = SAction::TcpTunneled;
    }
    end
}

/// What the requests inside a tunnel are served with.
struct Inside {
    /// The server's name: the SNI, else the CONNECT host.
    name: String,
    /// A decrypted tunnel's ClientHello and the origin-side TLS settings
    /// (to reconnect); `None` for plain HTTP.
    tls: Option<(Arc<ClientHello>, Arc<rustls::ClientConfig>)>,
    /// The origin connection, or why there is none (each request says so).
    origin: Result<Origin, DetectionReason>,
    /// Bytes moving either way, for the idle timeout.
    activity: Activity,
    /// The client chose `h2`: its streams are served under these limits.
    h2: Option<crate::http2::Http2Config>,
}

/// Serves HTTP/1.1 requests (or HTTP/2 streams) from `client` until it
/// closes, goes idle or the proxy stops; the exception for the tunnel's
/// line, if any.
async fn serve<C>(s: Session<'_>, client: C, inside: Inside) -> Option<ExceptionId>
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Inside {
        name,
        tls,
        origin,
        activity,
        h2,
    } = inside;
    let default_port = if tls.is_some() { 443 } else { 80 };
    let ctx = Arc::new(Ctx {
        authority: if s.port == default_port {
            name.clone()
        } else {
            format!("{name}:{}", s.port)
        },
        name,
        port: s.port,
        origin: tokio::sync::Mutex::new(origin),
        judge: s.judge,
        interceptor_upstream: tls.as_ref().map(|t| t.1.clone()),
        hello: tls.map(|t| t.0),
        template: s.template,
        log: s.log,
        via: s.via,
        response_timeout: s.response_timeout,
        handshake_timeout: s.handshake_timeout,
        served: AtomicU64::new(0),
        relays: tokio_util::task::TaskTracker::new(),
        hard_stop: s.hard_stop.clone(),
        idle_timeout: s.idle_timeout,
    });
    let conn: std::pin::Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>> =
        match &h2 {
            // Each stream a request; one the client cancels before its
            // answer counts against `http2.max_client_resets`.
            Some(cfg) => {
                let resets = crate::http2::Resets::new(cfg);
                let abuse = resets.abuse.clone();
                let ctx = ctx.clone();
                let service = hyper::service::service_fn(move |req| {
                    let stream = resets.stream();
                    let answering = inner(ctx.clone(), req);
                    async move {
                        let answer = answering.await;
                        stream.answered();
                        answer
                    }
                });
                let served = cfg
                    .server(false)
                    .serve_connection(TokioIo::new(client), service);
                Box::pin(async move {
                    tokio::select! {
                        r = served => r,
                        () = abuse.cancelled() => Ok(()),
                    }
                })
            }
            None => {
                let ctx = ctx.clone();
                let service = hyper::service::service_fn(move |req| inner(ctx.clone(), req));
                Box::pin(
                    hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(s.header_timeout)
                        .max_buf_size(s.max_header_bytes.max(8192))
                        .serve_connection(TokioIo::new(client), service)
                        .with_upgrades(),
                )
            }
        };
    // Nothing moving for `idle_timeout`, either way, closes it: request
    // heads have hyper's own deadline, bodies and silence this one.
    let idle = async {
        loop {
            let left = s.idle_timeout.saturating_sub(activity.idle_for());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left).await;
        }
    };
    let result = tokio::select! {
        r = conn => r,
        () = s.hard_stop.cancelled() => return None,
        () = idle => {
            tracing::debug!(name = %ctx.name, "tunnel idle: closed");
            return None;
        }
    };
    // An upgraded request (a WebSocket) relays on after the connection
    // has let go of the socket: the tunnel lasts as long as its relay
    // (which ends on the same hard stop and its own idle timeout).
    ctx.relays.close();
    ctx.relays.wait().await;
    let served = ctx.served.load(std::sync::atomic::Ordering::Relaxed);
    match result {
        _ if served > 0 => None,
        Err(e) if e.is_parse() => Some(ExceptionId::Intercept(InterceptProblem::NotHttp)),
        // Part of a request, or too slow a head: not a word about the
        // certificate.
        Err(e) if e.is_incomplete_message() || e.is_timeout() => None,
        // The handshake finished and the client hung up (or sent an alert)
        // before a byte of a request: wget and git (GnuTLS) check the
        // certificate after the handshake and leave this way.
        _ => Some(ExceptionId::Intercept(
            InterceptProblem::ClientRejectedCertificate,
        )),
    }
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
            SAction::TcpIntercepted
        },
        exception,
        refused,
        cs_bytes: 0,
        sc_bytes: 0,
    }
}
