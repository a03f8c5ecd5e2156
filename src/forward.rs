//! Absolute-form requests (`GET http://host/path`) forwarded to the origin
//! through a keep-alive connection pool, bodies streamed both ways.
//!
//! The pool never resolves a name: each request goes out with the address
//! the policy judged as its URI authority (the `Host` header keeps the
//! name), so connections are pooled per address and port. Only that one
//! address is tried: a name with several addresses gets no failover here.
//! Connections carrying NTLM/Negotiate origin authentication never enter
//! the pool: they are pinned to their client connection ([`pin`]).

pub(crate) mod headers;
pub(crate) mod pin;
pub(crate) mod settings;
pub(crate) mod upgrade;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{RequestBody, ResponseBody};
use crate::error::ProxyError;
use crate::resolve::host::{self, Host};
use settings::ForwardConfig;

/// The pooled upstream HTTP client (dials only the addresses it is given).
pub type UpstreamClient = Client<HttpConnector<NoResolve>, RequestBody>;

/// The connector's resolver: refuses every name. Requests carry address
/// literals, which hyper dials without asking it; a name reaching it is a
/// bug that must fail closed rather than resolve a second time.
#[derive(Debug, Clone, Copy)]
pub struct NoResolve;

type Refusal = Pin<Box<dyn Future<Output = io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for NoResolve {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Refusal;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Refusal {
        tracing::error!(%name, "the forward pool was asked to resolve a name");
        Box::pin(std::future::ready(Err(io::Error::other(
            "the forward path dials decided addresses only",
        ))))
    }
}

/// The pooled client every forwarded request goes through.
pub fn client(cfg: &ForwardConfig) -> UpstreamClient {
    let mut connector = HttpConnector::new_with_resolver(NoResolve);
    connector.set_connect_timeout(Some(cfg.connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .set_host(false)
        .build(connector)
}

/// Where a forwarded request goes, taken from its absolute-form URI.
#[derive(Debug, Clone)]
pub struct Target {
    /// Canonical (see [`crate::resolve::host`]).
    pub host: Host,
    /// The destination port.
    pub port: u16,
    /// `http://host:port/path?query` with the canonical host and any
    /// userinfo removed; its authority is the `Host` header sent upstream.
    pub uri: Uri,
}

/// Reads the target of an absolute-form request. Userinfo is dropped: it is
/// a credential that must neither reach the origin nor the log.
pub fn target(uri: &Uri) -> Result<Target, ProxyError> {
    let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
        return Err(ProxyError::OriginForm);
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(ProxyError::UnsupportedScheme(scheme.to_string()));
    }
    let host = host::canonical(auth.host()).map_err(|e| ProxyError::BadRequest(e.0))?;
    let port = auth.port_u16().unwrap_or(80);
    if port == 0 {
        return Err(ProxyError::BadRequest("port 0"));
    }
    let canonical = authority(&host, port);
    // Already in canonical form (nearly every request): kept as it came.
    let uri = if auth.as_str() == canonical && uri.path_and_query().is_some() {
        uri.clone()
    } else {
        with_authority(uri, &canonical)?
    };
    Ok(Target { host, port, uri })
}

/// `host[:port]`, the port left out when it is 80.
fn authority(host: &Host, port: u16) -> String {
    let a = host.authority(port);
    match a.strip_suffix(":80") {
        Some(short) if port == 80 => short.to_string(),
        _ => a,
    }
}

/// `http://{authority}{path?query}` of `uri` (its path and query shared,
/// not parsed again).
fn with_authority(uri: &Uri, authority: &str) -> Result<Uri, ProxyError> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(http::uri::Scheme::HTTP);
    parts.authority = Some(
        http::uri::Authority::try_from(authority)
            .map_err(|_| ProxyError::BadRequest("invalid URI"))?,
    );
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid URI"))
}

/// `ip:port` (`[ip]:port` for IPv6), the authority the pool dials.
fn dial_authority(addr: SocketAddr) -> String {
    match addr.ip() {
        std::net::IpAddr::V4(_) => Host::Ip(addr.ip()).authority(addr.port()),
        std::net::IpAddr::V6(_) => addr.to_string(),
    }
}

/// Where a forwarded request may be sent, besides the shared pool.
pub struct Upstream<'a> {
    /// The pooled client.
    pub client: &'a UpstreamClient,
    /// The client connection's pinned connection (connection-based auth).
    pub pins: &'a pin::Slot,
    /// The proxy user, so a pin never serves another user.
    pub user: Option<&'a str>,
}

/// Sends the request to `addr` (the decided address of `target`) and returns
/// the origin's response, both with hop-by-hop headers removed and our `Via`
/// added, and whether it travelled on a pinned connection. Requests with
/// NTLM/Negotiate origin credentials, and their successors on the same
/// client connection, go on a pinned connection (see [`pin`]), never the pool.
pub async fn forward(
    up: Upstream<'_>,
    cfg: &ForwardConfig,
    req: Request<Incoming>,
    target: &Target,
    addr: SocketAddr,
    cs_bytes: Arc<AtomicU64>,
) -> Result<(Response<ResponseBody>, bool), ProxyError> {
    let (mut parts, body) = req.into_parts();
    // An upgrade reaches here admitted ([`upgrade::judge`]): its headers go on.
    let upgrading = upgrade::Kept::from(&parts.headers);
    headers::strip_hop_by_hop(&mut parts.headers);
    let asks_upgrade = !upgrading.is_empty();
    upgrading.restore(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, &cfg.via_pseudonym);
    // RFC 9112 §3.2.2: the Host header follows the request target.
    let host = target.uri.authority().map_or("", |a| a.as_str());
    if let Ok(v) = HeaderValue::from_str(host) {
        parts.headers.insert(header::HOST, v);
    }
    parts.version = http::Version::HTTP_11;
    let key = pin::PinKey {
        addr,
        host: host.to_string(),
        user: up.user.map(str::to_owned),
    };
    // An upgrade takes its connection for good: the pool's, never a pin.
    let pinned = (!asks_upgrade)
        .then(|| pin::wanted(up.pins, &key, &parts.headers))
        .flatten();
    let is_pinned = pinned.is_some();
    let resp = match pinned {
        Some(held) => {
            // A connection of our own speaks origin-form.
            parts.uri = target
                .uri
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
            let req = Request::from_parts(parts, RequestBody::new(body, cs_bytes));
            let timeouts = (cfg.connect_timeout, cfg.response_timeout);
            pin::send(up.pins, held, key, req, timeouts.0, timeouts.1).await?
        }
        None => {
            parts.uri = with_authority(&target.uri, &dial_authority(addr))?;
            let req = Request::from_parts(parts, RequestBody::new(body, cs_bytes));
            let where_ = || format!("{}:{}", target.host, target.port);
            match tokio::time::timeout(cfg.response_timeout, up.client.request(req)).await {
                Err(_) => return Err(ProxyError::UpstreamTimeout(where_())),
                Ok(Err(e)) => return Err(classify(&e, where_())),
                Ok(Ok(resp)) => resp,
            }
        }
    };
    let (mut parts, body) = resp.into_parts();
    let session_based =
        is_pinned || pin::connection_auth(&parts.headers, &header::WWW_AUTHENTICATE);
    let switching = if parts.status == http::StatusCode::SWITCHING_PROTOCOLS && asks_upgrade {
        upgrade::Kept::from(&parts.headers)
    } else {
        upgrade::Kept::default()
    };
    headers::strip_hop_by_hop(&mut parts.headers);
    switching.restore(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, &cfg.via_pseudonym);
    if session_based {
        pin::mark_session_based(&mut parts.headers);
    }
    parts.version = http::Version::HTTP_11;
    let resp = Response::from_parts(parts, ResponseBody::upstream(body));
    Ok((resp, is_pinned))
}

/// Names what failed from the client's error chain: DNS, timeout or connect.
fn classify(e: &hyper_util::client::legacy::Error, target: String) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut timed_out = false;
    let mut dns = false;
    let mut io_error = None;
    while let Some(s) = source {
        if s.to_string() == "dns error" {
            dns = true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
            io_error.get_or_insert((io.kind(), io.to_string()));
        }
        source = s.source();
    }
    if dns {
        ProxyError::DnsFailure(target)
    } else if timed_out {
        ProxyError::UpstreamTimeout(target)
    } else if e.is_connect() {
        tracing::debug!(%target, error = %e, "connect failed");
        let (kind, why) = io_error.unwrap_or((std::io::ErrorKind::Other, e.to_string()));
        ProxyError::ConnectFailed {
            host: target,
            source: std::io::Error::new(kind, why).into(),
        }
    } else {
        ProxyError::UpstreamBroken(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_strips_userinfo_and_defaults_port() {
        let t = target(&"http://user:secret@Example.test./a?b=1".parse().unwrap()).unwrap();
        assert_eq!(t.uri.to_string(), "http://example.test/a?b=1");
        assert_eq!((t.host.to_string().as_str(), t.port), ("example.test", 80));
        let t = target(&"http://[::1]:8080".parse().unwrap()).unwrap();
        assert_eq!(t.uri.to_string(), "http://[::1]:8080/");
        assert_eq!((t.host.to_string().as_str(), t.port), ("::1", 8080));
    }

    #[test]
    fn target_host_is_canonical() {
        for (url, want) in [
            ("http://127.1:18080/x", "http://127.0.0.1:18080/x"),
            ("http://2130706433:18080/", "http://127.0.0.1:18080/"),
            ("http://0x7f.1/", "http://127.0.0.1/"),
            ("http://0177.0.0.1:18080/", "http://127.0.0.1:18080/"),
            (
                "http://[::ffff:127.0.0.1]:18080/",
                "http://127.0.0.1:18080/",
            ),
            ("http://LOCALHOST:18080/", "http://localhost:18080/"),
        ] {
            let t = target(&url.parse().unwrap()).unwrap();
            assert_eq!(t.uri.to_string(), want, "{url}");
        }
        assert_eq!(
            target(&"http://1.2.3.256/".parse().unwrap()).unwrap_err(),
            ProxyError::BadRequest("numeric host that is not a valid IPv4 address")
        );
    }

    #[test]
    fn target_refuses_other_forms() {
        assert_eq!(
            target(&"/index.html".parse().unwrap()).unwrap_err(),
            ProxyError::OriginForm
        );
        assert!(matches!(
            target(&"https://example.test/".parse().unwrap()),
            Err(ProxyError::UnsupportedScheme(_))
        ));
        assert!(target(&"http://example.test:0/".parse().unwrap()).is_err());
    }
}
