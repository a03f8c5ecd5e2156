//! CONNECT: dial the destination, answer `200 Connection established`, relay.
//!
//! Between the 200 and the relay sits the seam where protocol detection
//! (`tunnel/detect`, `tunnel/tls_check`) will read the client's first bytes
//! and decide before a single one reaches the destination.

pub mod detect;
pub mod inspect;
pub mod relay;
#[cfg(target_os = "linux")]
mod splice;
pub mod tls_check;

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::resolve::Resolver;

/// The `host:port` of a CONNECT request (authority-form, port required).
pub fn connect_target(uri: &http::Uri) -> Result<(String, u16), ProxyError> {
    if uri.scheme().is_some() || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return Err(ProxyError::BadRequest(
            "CONNECT needs an authority-form target (host:port)",
        ));
    }
    let auth = uri
        .authority()
        .ok_or(ProxyError::BadRequest("CONNECT needs host:port"))?;
    if auth.as_str().contains('@') {
        return Err(ProxyError::BadRequest("userinfo in CONNECT target"));
    }
    let port = auth
        .port_u16()
        .filter(|p| *p != 0)
        .ok_or(ProxyError::BadRequest("CONNECT needs an explicit port"))?;
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(ProxyError::BadRequest("empty host"));
    }
    Ok((host.to_string(), port))
}

/// Resolves and connects, trying each address in turn within one deadline.
pub async fn dial(
    resolver: &Resolver,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, ProxyError> {
    let deadline = Instant::now() + timeout;
    let name = || format!("{host}:{port}");
    let addrs = match tokio::time::timeout_at(deadline, resolver.lookup(host, port)).await {
        Err(_) => return Err(ProxyError::UpstreamTimeout(name())),
        Ok(Err(_)) => return Err(ProxyError::DnsFailure(name())),
        Ok(Ok(a)) => a,
    };
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout(name())),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => tracing::debug!(%addr, error = %e, "tunnel connect failed"),
        }
    }
    Err(ProxyError::ConnectFailed(name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_targets() {
        let t = |s: &str| connect_target(&s.parse().unwrap());
        assert_eq!(t("example.test:443").unwrap(), ("example.test".into(), 443));
        assert_eq!(t("[::1]:8443").unwrap(), ("::1".into(), 8443));
        assert!(t("example.test").is_err());
        assert!(t("example.test:0").is_err());
        assert!(t("http://example.test:443/").is_err());
    }

    #[tokio::test]
    async fn dial_refused_is_connect_failed() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = Resolver::new(&Default::default());
        let e = dial(&r, "127.0.0.1", port, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, ProxyError::ConnectFailed(_)), "{e:?}");
    }

    #[tokio::test]
    async fn dial_unresolvable_is_dns_failure() {
        let cfg = crate::config::ResolverConfig {
            system: false,
            ..Default::default()
        };
        let e = dial(
            &Resolver::new(&cfg),
            "nowhere.example.test",
            443,
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ProxyError::DnsFailure(_)), "{e:?}");
    }
}
