//! What the proxy knows about a request when the policy decides it, and
//! what protocol detection added about a CONNECT's client.

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::directory::identity::Identity;
use crate::protocol::{ProtocolKind, TlsVersion};

/// What the proxy knows when it decides.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// The authenticated user, if any.
    pub identity: Option<&'a Identity>,
    /// How `identity` was obtained: `basic`, `ntlm`, `surrogate-ip`,
    /// `guest`… (`auth::SCHEMES`); `None` without one.
    pub auth_scheme: Option<&'a str>,
    /// The client's address.
    pub client: IpAddr,
    /// The request method.
    pub method: &'a Method,
    /// The canonical host name or address literal (host patterns match it).
    pub host: &'a str,
    /// The addresses `host` resolved to — the ones that will be dialled.
    /// `dest` conditions match these; empty before resolution.
    pub addrs: &'a [IpAddr],
    /// The destination port.
    pub port: u16,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The destination's URL categories.
    pub categories: &'a [Arc<str>],
    /// When the request is decided (time windows).
    pub now: jiff::Timestamp,
    /// After protocol detection on a CONNECT: what the client's first bytes said.
    pub detected: Option<Detected<'a>>,
    /// The full URL of an HTTP request (`https://…` inside an intercepted
    /// tunnel); `None` for a CONNECT.
    pub url: Option<&'a str>,
}

/// `CONNECT`, for the facts of a tunnel judged without its request at hand.
pub static CONNECT: Method = Method::CONNECT;

impl Facts<'_> {
    /// Is the request a CONNECT (a tunnel), rather than one to forward?
    pub fn is_connect(&self) -> bool {
        *self.method == Method::CONNECT
    }
}

/// What protocol detection saw of a CONNECT's client, for the rules that
/// look at it (`protocol`, `sni`, `ja4`, `ja3n`, `tls_version`, `alpn`).
#[derive(Debug, Clone, Copy)]
pub struct Detected<'a> {
    /// What the client speaks.
    pub protocol: ProtocolKind,
    /// The TLS SNI, when sent.
    pub sni: Option<&'a str>,
    /// JA4 of the ClientHello.
    pub ja4: Option<&'a str>,
    /// JA3N of the ClientHello.
    pub ja3n: Option<&'a str>,
    /// The highest TLS version offered.
    pub tls_version: Option<TlsVersion>,
    /// The ALPN protocols offered.
    pub alpn: &'a [String],
}

impl<'a> Detected<'a> {
    /// A protocol seen without TLS facts.
    pub fn protocol(protocol: ProtocolKind) -> Self {
        Detected {
            protocol,
            sni: None,
            ja4: None,
            ja3n: None,
            tls_version: None,
            alpn: &[],
        }
    }
}
