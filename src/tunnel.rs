//! CONNECT: the target, the dial, and the [`session`] after the `200`:
//! protocol detection ([`detect`] classifies, [`inspect`] reads and judges,
//! [`tls_check`] checks the server's certificate) before a single client
//! byte reaches the destination, then the [`relay`].

pub mod detect;
pub(crate) mod handshake;
pub mod inspect;
mod ja4;
mod possession;
pub(crate) mod relay;
pub mod server_flight;
pub(crate) mod session;
pub(crate) mod settings;
#[cfg(target_os = "linux")]
mod splice;
pub(crate) mod tls_check;
pub(crate) mod verify;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::ProxyError;
use crate::resolve::host::{self, Host};

/// The `host:port` of a CONNECT request (authority-form, port required),
/// the host canonical (see [`crate::resolve::host`]).
pub fn connect_target(uri: &http::Uri) -> Result<(Host, u16), ProxyError> {
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
    let host = host::canonical(auth.host()).map_err(|e| ProxyError::BadRequest(e.0))?;
    Ok((host, port))
}

/// Connects to the first of `addrs` that answers, all within one deadline.
/// The addresses are the ones the policy judged: nothing is resolved here.
/// `name` (`host:port`) is for error messages.
pub async fn dial(
    addrs: &[SocketAddr],
    name: &str,
    timeout: Duration,
) -> Result<TcpStream, ProxyError> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout(name.to_string())),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => {
                tracing::debug!(%addr, error = %e, "connect failed");
                last = Some(e);
            }
        }
    }
    Err(match last {
        Some(e) => ProxyError::ConnectFailed {
            host: name.to_string(),
            source: e.into(),
        },
        None => ProxyError::nothing_to_dial(name.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_targets() {
        let t = |s: &str| connect_target(&s.parse().unwrap());
        let name = |n: &str| Host::Name(n.into());
        let ip = |a: &str| Host::Ip(a.parse().unwrap());
        assert_eq!(t("Example.test.:443").unwrap(), (name("example.test"), 443));
        assert_eq!(t("[::1]:8443").unwrap(), (ip("::1"), 8443));
        assert_eq!(t("0x7f.1:443").unwrap(), (ip("127.0.0.1"), 443));
        assert_eq!(t("[::ffff:127.0.0.1]:443").unwrap(), (ip("127.0.0.1"), 443));
        assert!(t("example.test").is_err());
        assert!(t("example.test:0").is_err());
        assert!(t("http://example.test:443/").is_err());
        assert!(matches!(t("256.1:443"), Err(ProxyError::BadRequest(_))));
    }

    #[tokio::test]
    async fn dial_refused_is_connect_failed() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let e = dial(&[addr], "x", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, ProxyError::ConnectFailed { .. }), "{e:?}");
        let e = dial(&[], "x", Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, ProxyError::ConnectFailed { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn dial_tries_the_addresses_in_order() {
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let s = dial(
            &[dead, live.local_addr().unwrap()],
            "x",
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        assert_eq!(s.peer_addr().unwrap(), live.local_addr().unwrap());
    }
}
