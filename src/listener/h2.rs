//! HTTP/2 to the proxy on a TLS listener (`http2.listener`, ALPN `h2`).
//! Each stream is one request served by the same [`Service`] as an
//! HTTP/1.1 request: a CONNECT stream (RFC 9113 §8.5) becomes a tunnel
//! through the same detection, policy and logging; an `http://` request
//! (`:scheme http`) is forwarded.
//!
//! The HTTP/1 framing guard does not sit in front of HTTP/2: its bounds
//! come from h2's settings and from here — the header list capped as the
//! guard caps a head, the first request due within `header_read_timeout`
//! of the accept, a connection with nothing in flight closed after
//! `idle_timeout`, streams a client cancels counted
//! ([`crate::http2::Resets`]). The per-address and connection limits hold
//! the connection's one place, as for HTTP/1.1; each CONNECT stream is one
//! tunnel, logged and revocable as any other.
//!
//! NTLM authenticates a connection, one handshake at a time: that cannot
//! hold with streams side by side. Its challenge is never offered on an
//! HTTP/2 connection and NTLM credentials sent on a stream are dropped (the
//! answer is the `407` of a request without any).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::{header, HeaderValue, Request};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Service;
use crate::accesslog::{AccessLog, AccessRecord};
use crate::conn::{slots, ConnState};
use crate::error::ProxyError;
use crate::http2::{Http2Config, Resets};
use crate::stream::ClientStream;

/// What an HTTP/2 connection keeps of the settings it was accepted under.
pub(super) struct H2Kept {
    pub cfg: Http2Config,
    /// `listener.max_uri_bytes` and `listener.max_headers`, checked per
    /// stream as the framer checks a head.
    pub max_uri_bytes: usize,
    pub max_headers: usize,
    /// Where a stream refused by those limits is logged.
    pub log: AccessLog,
    /// `listener.max_header_bytes` (+ room for one large `Proxy-Authorization`).
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// The connection limits' places: each CONNECT stream takes its own.
    pub places: (slots::Global, Arc<slots::PerAddress>),
}

/// The places (under `listener.max_connections` and the per-address cap)
/// of one tunnel on an HTTP/2 stream, held by the tunnel for its life
/// (the proxy's CONNECT takes it from the request): one connection
/// carries many tunnels, and each counts as an HTTP/1.1 tunnel does.
#[derive(Clone)]
pub(crate) struct TunnelPlace(#[allow(dead_code)] Arc<slots::Slot>);

impl TunnelPlace {
    /// Takes the places for a CONNECT stream from `ip`.
    fn take(
        places: &(slots::Global, Arc<slots::PerAddress>),
        ip: std::net::IpAddr,
    ) -> Result<Self, ProxyError> {
        slots::take(&places.0, &places.1, ip)
            .map(|s| Self(Arc::new(s)))
            .map_err(ProxyError::from)
    }
}

/// Serves one HTTP/2 connection until it closes, idles, abuses or the
/// proxy stops.
pub(super) async fn serve<S: Service>(
    stream: ClientStream,
    conn: Arc<ConnState>,
    svc: Arc<S>,
    kept: H2Kept,
    accepted: Instant,
    graceful: CancellationToken,
) {
    tracing::debug!(client = %conn.client, "HTTP/2 connection to the proxy");
    let resets = Resets::new(&kept.cfg);
    let abuse = resets.abuse.clone();
    let conn2 = conn.clone();
    let (max_uri, max_headers, log) = (kept.max_uri_bytes, kept.max_headers, kept.log.clone());
    let places = kept.places.clone();
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let stream = resets.stream();
        let (svc, conn, log) = (svc.clone(), conn2.clone(), log.clone());
        let place = (req.method() == http::Method::CONNECT)
            .then(|| TunnelPlace::take(&places, conn.client.ip()));
        async move {
            let refused = match place {
                Some(Err(e)) => Some(e),
                Some(Ok(place)) => {
                    req.extensions_mut().insert(place);
                    None
                }
                None => None,
            };
            if let Some(e) = refused.or_else(|| too_large(&req, max_uri, max_headers)) {
                let mut r = AccessRecord::new(conn.client.ip(), conn.local.ip());
                r.request(&req);
                stream.answered();
                return Ok(crate::answer::refusal(&e, r, &log));
            }
            let answer = svc.serve(conn, without_ntlm(req)).await;
            stream.answered();
            answer.map(challenge_without_ntlm)
        }
    });
    let mut builder = kept.cfg.server(true);
    let list = kept
        .max_header_bytes
        .min(kept.cfg.max_header_list_size as usize);
    builder.max_header_list_size(u32::try_from(list).unwrap_or(u32::MAX));
    let served = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(served);
    let quiet = quiet(&conn, accepted, kept.header_timeout, kept.idle_timeout);
    tokio::pin!(quiet);
    let res = tokio::select! {
        res = &mut served => res,
        () = &mut quiet => {
            // GOAWAY, then what is in flight finishes.
            served.as_mut().graceful_shutdown();
            served.await
        }
        () = graceful.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
        () = abuse.cancelled() => Ok(()),
    };
    match res {
        Err(e) => {
            tracing::debug!(client = %conn.client, requests = conn.requests(), error = %e, "HTTP/2 connection closed")
        }
        Ok(()) => {
            tracing::debug!(client = %conn.client, requests = conn.requests(), "HTTP/2 connection closed")
        }
    }
}

/// Ends when the connection has had no request within `header` of the
/// accept, or nothing in flight for `idle` (a tunnel on one of its streams
/// is in flight for as long as it lives).
async fn quiet(conn: &ConnState, accepted: Instant, header: Duration, idle: Duration) {
    tokio::time::sleep_until(accepted + header).await;
    if conn.requests() == 0 {
        tracing::debug!(client = %conn.client, "HTTP/2 connection without a request: closed");
        return;
    }
    loop {
        let since = Instant::from_std(conn.last_done());
        if !conn.is_busy() && since + idle <= Instant::now() {
            return;
        }
        let next = if conn.is_busy() {
            Instant::now() + idle
        } else {
            since + idle
        };
        tokio::time::sleep_until(next.max(Instant::now() + Duration::from_millis(10))).await;
    }
}

/// The framer's per-head bounds on one stream: the target's length
/// (`414`) and the number of header fields (`431`).
fn too_large<B>(req: &Request<B>, max_uri: usize, max_headers: usize) -> Option<ProxyError> {
    let target = req.uri().to_string().len();
    if target > max_uri {
        return Some(ProxyError::UriTooLong(max_uri));
    }
    if req.headers().len() > max_headers {
        return Some(ProxyError::HeaderTooLarge(max_headers));
    }
    None
}

/// NTLM (raw, or inside a `Negotiate` token) cannot authenticate a stream:
/// its credentials are dropped before the proxy reads them.
fn without_ntlm(mut req: Request<Incoming>) -> Request<Incoming> {
    let ntlm = req
        .headers()
        .get_all(header::PROXY_AUTHORIZATION)
        .iter()
        .any(|v| is_ntlm(v.as_bytes()));
    if ntlm {
        req.headers_mut().remove(header::PROXY_AUTHORIZATION);
    }
    req
}

fn is_ntlm(v: &[u8]) -> bool {
    let v = String::from_utf8_lossy(v);
    let Some((scheme, token)) = v.trim().split_once(' ') else {
        return false;
    };
    if scheme.eq_ignore_ascii_case("NTLM") {
        return true;
    }
    scheme.eq_ignore_ascii_case("Negotiate")
        && base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .is_ok_and(|raw| {
                raw.starts_with(b"NTLMSSP\0") || crate::auth::spnego::ntlm_inside(&raw).is_some()
            })
}

/// A `407` on an HTTP/2 stream offers every scheme but NTLM.
fn challenge_without_ntlm<B>(mut resp: http::Response<B>) -> http::Response<B> {
    if resp.status() != http::StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        return resp;
    }
    let kept: Vec<HeaderValue> = resp
        .headers()
        .get_all(header::PROXY_AUTHENTICATE)
        .iter()
        .filter(|v| !v.as_bytes().to_ascii_uppercase().starts_with(b"NTLM"))
        .cloned()
        .collect();
    resp.headers_mut().remove(header::PROXY_AUTHENTICATE);
    for v in kept {
        resp.headers_mut().append(header::PROXY_AUTHENTICATE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntlm_is_recognised_raw_and_inside_negotiate_or_spnego_kerberos_is_not() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        assert!(is_ntlm(
            format!("NTLM {}", b64(b"NTLMSSP\0\x01")).as_bytes()
        ));
        assert!(is_ntlm(
            format!("Negotiate {}", b64(b"NTLMSSP\0\x01")).as_bytes()
        ));
        assert!(!is_ntlm(
            format!("Negotiate {}", b64(b"\x60\x82kerberos")).as_bytes()
        ));
        // The client's type 3 inside SPNEGO (a NegTokenResp's responseToken)
        // is NTLM too: it would bind the HTTP/2 connection to its user.
        let mut resp = vec![0xa1, 0x16, 0x30, 0x14, 0xa2, 0x12, 0x04, 0x10];
        resp.extend_from_slice(b"NTLMSSP\0\x03\0\0\0rest");
        assert!(is_ntlm(format!("Negotiate {}", b64(&resp)).as_bytes()));
        assert!(!is_ntlm(b"Basic Ym9iOmJvYi1wdw=="));
        assert!(!is_ntlm(b"garbage"));
    }

    #[test]
    fn a_407_on_a_stream_offers_no_ntlm() {
        let mut resp = http::Response::new(());
        *resp.status_mut() = http::StatusCode::PROXY_AUTHENTICATION_REQUIRED;
        for c in ["Negotiate", "NTLM", "Basic realm=\"x\""] {
            resp.headers_mut()
                .append(header::PROXY_AUTHENTICATE, HeaderValue::from_static(c));
        }
        let resp = challenge_without_ntlm(resp);
        let left: Vec<_> = resp
            .headers()
            .get_all(header::PROXY_AUTHENTICATE)
            .iter()
            .collect();
        assert_eq!(left, ["Negotiate", "Basic realm=\"x\""]);
    }
}
