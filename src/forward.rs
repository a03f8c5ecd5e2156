//! Absolute-form requests (`GET http://host/path`) forwarded to the origin
//! through a keep-alive connection pool, bodies streamed both ways.

pub mod headers;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{RequestBody, ResponseBody};
use crate::config::ForwardConfig;
use crate::error::ProxyError;
use crate::resolve::Resolver;

pub type UpstreamClient = Client<HttpConnector<Resolver>, RequestBody>;

/// The pooled client every forwarded request goes through.
pub fn client(cfg: &ForwardConfig, resolver: Resolver) -> UpstreamClient {
    let mut connector = HttpConnector::new_with_resolver(resolver);
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
    pub host: String,
    pub port: u16,
    /// `http://host:port/path?query`, with any userinfo removed.
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
    let host = auth.host();
    if host.is_empty() {
        return Err(ProxyError::BadRequest("empty host"));
    }
    let port = auth.port_u16().unwrap_or(80);
    if port == 0 {
        return Err(ProxyError::BadRequest("port 0"));
    }
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = Uri::builder()
        .scheme("http")
        .authority(if port == 80 {
            host.to_string()
        } else {
            format!("{host}:{port}")
        })
        .path_and_query(pq)
        .build()
        .map_err(|_| ProxyError::BadRequest("invalid URI"))?;
    Ok(Target {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        uri,
    })
}

/// Sends the request upstream and returns the origin's response, both with
/// hop-by-hop headers removed and our `Via` added.
pub async fn forward(
    client: &UpstreamClient,
    cfg: &ForwardConfig,
    req: Request<Incoming>,
    target: &Target,
    cs_bytes: Arc<AtomicU64>,
) -> Result<Response<ResponseBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, &cfg.via_pseudonym);
    // RFC 9112 §3.2.2: the Host header follows the request target.
    if let Some(auth) = target.uri.authority() {
        if let Ok(v) = HeaderValue::from_str(auth.as_str()) {
            parts.headers.insert(header::HOST, v);
        }
    }
    parts.uri = target.uri.clone();
    parts.version = http::Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, RequestBody::new(body, cs_bytes));
    let where_ = || format!("{}:{}", target.host, target.port);
    let resp = match tokio::time::timeout(cfg.response_timeout, client.request(upstream_req)).await
    {
        Err(_) => return Err(ProxyError::UpstreamTimeout(where_())),
        Ok(Err(e)) => return Err(classify(&e, where_())),
        Ok(Ok(resp)) => resp,
    };
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_via(&mut parts.headers, parts.version, &cfg.via_pseudonym);
    parts.version = http::Version::HTTP_11;
    Ok(Response::from_parts(parts, ResponseBody::upstream(body)))
}

/// Names what failed from the client's error chain: DNS, timeout or connect.
fn classify(e: &hyper_util::client::legacy::Error, target: String) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut timed_out = false;
    let mut dns = false;
    while let Some(s) = source {
        if s.to_string() == "dns error" {
            dns = true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = s.source();
    }
    if dns {
        ProxyError::DnsFailure(target)
    } else if timed_out {
        ProxyError::UpstreamTimeout(target)
    } else if e.is_connect() {
        ProxyError::ConnectFailed(target)
    } else {
        ProxyError::UpstreamBroken(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_strips_userinfo_and_defaults_port() {
        let t = target(&"http://user:secret@example.test/a?b=1".parse().unwrap()).unwrap();
        assert_eq!(t.uri.to_string(), "http://example.test/a?b=1");
        assert_eq!((t.host.as_str(), t.port), ("example.test", 80));
        let t = target(&"http://[::1]:8080".parse().unwrap()).unwrap();
        assert_eq!(t.uri.to_string(), "http://[::1]:8080/");
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
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
