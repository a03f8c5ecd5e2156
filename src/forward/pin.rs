//! Connection pinning (Squid's name): an upstream connection that carries
//! connection-based origin authentication belongs to one client connection.
//!
//! NTLM and Negotiate authenticate the TCP connection to the origin, not the
//! request: once user A has authenticated on an upstream connection, every
//! later request on it is A's. Such a connection must never go back to the
//! shared pool, where user B's request could pick it up. So a request that
//! carries `Authorization: NTLM …`/`Negotiate …` goes on a dedicated
//! upstream connection held by its client connection ([`Slot`]), and so do
//! that client connection's later requests to the same destination. The pin
//! lasts until the client connection ends (the connection closes with it),
//! the origin closes it, or another destination is pinned in its place; it
//! is keyed by the proxy user too, so another user's request on the same
//! client connection never uses it.
//!
//! Like Squid, answers that involve connection-based authentication carry
//! `Proxy-Support: Session-Based-Authentication` (and `Connection:
//! Proxy-Support`, marking it hop-by-hop), telling the client the
//! connection is stateful and must not be shared between users.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::body::RequestBody;
use crate::error::ProxyError;

/// What a pinned connection was pinned for: a request uses it only if all match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinKey {
    /// The decided address dialled.
    pub addr: SocketAddr,
    /// The request's `Host` (canonical host and port).
    pub host: String,
    /// The proxy user of the request that pinned it (none without proxy auth).
    pub user: Option<String>,
}

/// A dedicated upstream connection and what it is for.
pub struct Pinned {
    key: PinKey,
    sender: SendRequest<RequestBody>,
}

/// A client connection's pinned upstream connection, if any.
#[derive(Default)]
pub struct Slot(Mutex<Option<Pinned>>);

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = self.lock().as_ref().map(|p| p.key.clone());
        f.debug_tuple("Slot").field(&key).finish()
    }
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Pinned>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the pinned connection out for a request to `key`, if it was
    /// pinned for exactly that and the origin has not closed it. A pin for
    /// something else stays where it is.
    fn take(&self, key: &PinKey) -> Option<Pinned> {
        let mut slot = self.lock();
        match slot.as_ref() {
            Some(p) if p.sender.is_closed() => {
                tracing::debug!(host = %p.key.host, "pinned upstream connection closed by the origin");
                *slot = None;
                None
            }
            Some(p) if p.key == *key => slot.take(),
            _ => None,
        }
    }

    fn put(&self, p: Pinned) {
        *self.lock() = Some(p);
    }

    /// Drops the pin (its upstream connection closes).
    pub fn clear(&self) {
        *self.lock() = None;
    }
}

/// Is this a scheme that authenticates the connection rather than the request?
fn connection_scheme(value: &HeaderValue) -> bool {
    let v = value.as_bytes();
    let scheme = v.split(|b| *b == b' ').next().unwrap_or_default();
    scheme.eq_ignore_ascii_case(b"NTLM") || scheme.eq_ignore_ascii_case(b"Negotiate")
}

/// Does any of `name`'s values use connection-based authentication?
pub fn connection_auth(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(name).iter().any(connection_scheme)
}

/// Marks a response as part of connection-based authentication (Squid's
/// `Proxy-Support: Session-Based-Authentication`).
pub fn mark_session_based(headers: &mut HeaderMap) {
    headers.insert(
        HeaderName::from_static("proxy-support"),
        HeaderValue::from_static("Session-Based-Authentication"),
    );
    headers.append(
        header::CONNECTION,
        HeaderValue::from_static("Proxy-Support"),
    );
}

/// Should this request go on a pinned connection? Yes when it carries
/// connection-based credentials, or when its client connection already
/// holds a pin for this very destination and user.
pub fn wanted(slot: &Slot, key: &PinKey, headers: &HeaderMap) -> Option<Option<Pinned>> {
    let held = slot.take(key);
    if held.is_some() || connection_auth(headers, &header::AUTHORIZATION) {
        Some(held)
    } else {
        None
    }
}

/// Sends `req` (origin-form) on `held`, or on a new connection to
/// `key.addr` when there is none, then pins the connection in `slot`.
pub async fn send(
    slot: &Slot,
    held: Option<Pinned>,
    key: PinKey,
    req: Request<RequestBody>,
    connect_timeout: Duration,
    response_timeout: Duration,
) -> Result<Response<Incoming>, ProxyError> {
    let where_ = || format!("{} ({})", key.host, key.addr);
    let mut sender = match held {
        Some(p) => p.sender,
        None => {
            let tcp = crate::tunnel::dial(&[key.addr], &where_(), connect_timeout).await?;
            let (sender, conn) = hyper::client::conn::http1::Builder::new()
                .handshake(TokioIo::new(tcp))
                .await
                .map_err(|_| ProxyError::UpstreamBroken(where_()))?;
            // Ends when the origin closes or the last sender (held by the
            // client connection's slot) is dropped.
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "pinned upstream connection ended");
                }
            });
            tracing::debug!(host = %key.host, addr = %key.addr, user = ?key.user,
                "upstream connection pinned to the client connection (connection-based auth)");
            sender
        }
    };
    let exchange = async {
        // The previous response on this connection must be read to its end first.
        sender
            .ready()
            .await
            .map_err(|_| ProxyError::UpstreamBroken(where_()))?;
        sender
            .send_request(req)
            .await
            .map_err(|_| ProxyError::UpstreamBroken(where_()))
    };
    let resp = match tokio::time::timeout(response_timeout, exchange).await {
        Err(_) => return Err(ProxyError::UpstreamTimeout(where_())),
        Ok(r) => r?,
    };
    slot.put(Pinned { key, sender });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn connection_schemes() {
        let auth = header::AUTHORIZATION;
        for v in [
            "NTLM TlRMTVNTUAAB",
            "ntlm x",
            "Negotiate YIIG",
            "NEGOTIATE",
            "NTLM",
        ] {
            assert!(
                connection_auth(&headers(&[("authorization", v)]), &auth),
                "{v}"
            );
        }
        for v in ["Basic YTpi", "Bearer x", "NTLMx", "Negotiated x", ""] {
            assert!(
                !connection_auth(&headers(&[("authorization", v)]), &auth),
                "{v}"
            );
        }
        let www = header::WWW_AUTHENTICATE;
        let h = headers(&[
            ("www-authenticate", "Basic realm=x"),
            ("www-authenticate", "NTLM"),
        ]);
        assert!(connection_auth(&h, &www));
    }

    #[test]
    fn session_based_marks_are_hop_by_hop() {
        let mut h = headers(&[("connection", "keep-alive")]);
        mark_session_based(&mut h);
        assert_eq!(h["proxy-support"], "Session-Based-Authentication");
        let conn: Vec<_> = h.get_all("connection").iter().collect();
        assert_eq!(conn, ["keep-alive", "Proxy-Support"]);
    }

    #[test]
    fn empty_slot_pins_only_connection_auth() {
        let slot = Slot::default();
        let key = PinKey {
            addr: "127.0.0.1:80".parse().unwrap(),
            host: "a.test".into(),
            user: Some("alice".into()),
        };
        assert!(wanted(&slot, &key, &headers(&[])).is_none());
        assert!(wanted(&slot, &key, &headers(&[("authorization", "Basic x")])).is_none());
        assert!(matches!(
            wanted(&slot, &key, &headers(&[("authorization", "NTLM x")])),
            Some(None)
        ));
    }

    /// A sender on an in-memory connection nobody answers (enough to pin).
    async fn sender() -> SendRequest<RequestBody> {
        let (near, _far) = tokio::io::duplex(64);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(near))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    #[tokio::test]
    async fn a_pin_serves_only_its_destination_and_user() {
        let slot = Slot::default();
        let alice = PinKey {
            addr: "127.0.0.1:80".parse().unwrap(),
            host: "a.test".into(),
            user: Some("alice".into()),
        };
        slot.put(Pinned {
            key: alice.clone(),
            sender: sender().await,
        });
        let none = headers(&[]);
        for other in [
            PinKey {
                user: Some("bob".into()),
                ..alice.clone()
            },
            PinKey {
                user: None,
                ..alice.clone()
            },
            PinKey {
                host: "b.test".into(),
                ..alice.clone()
            },
            PinKey {
                addr: "127.0.0.2:80".parse().unwrap(),
                ..alice.clone()
            },
        ] {
            assert!(wanted(&slot, &other, &none).is_none(), "{other:?}");
        }
        // Still there for alice, and taken out while in use.
        assert!(matches!(wanted(&slot, &alice, &none), Some(Some(_))));
        assert!(wanted(&slot, &alice, &none).is_none());
    }
}
