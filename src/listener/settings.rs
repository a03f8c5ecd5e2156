//! `[listener]`: where clients connect, and the limits that protect the
//! proxy from them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{invalid, nonzero, Invalid};

/// Where clients connect, and the limits that protect the proxy from them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    /// Addresses to listen on (plain HTTP to the proxy).
    pub addresses: Vec<SocketAddr>,
    /// Addresses to listen on with TLS to the proxy (`https://proxy:port`
    /// as the client's proxy). Needs `tls_cert_file` and `tls_key_file`.
    pub tls_addresses: Vec<SocketAddr>,
    /// The TLS listeners' certificate chain (PEM, leaf first); re-read on SIGHUP.
    pub tls_cert_file: Option<PathBuf>,
    /// Its private key (PEM, mode 0600); re-read on SIGHUP.
    pub tls_key_file: Option<PathBuf>,
    /// Connections beyond this are answered 503 and closed at once.
    pub max_connections: usize,
    /// Open connections (tunnels included) from one client address; beyond
    /// this: 503. One host cannot take every slot.
    pub max_connections_per_address: usize,
    /// Request line plus headers, in bytes; beyond this: 431.
    pub max_header_bytes: usize,
    /// Request-target length in bytes; beyond this: 414.
    pub max_uri_bytes: usize,
    /// Most header fields in one request; beyond this: 431.
    pub max_headers: usize,
    /// A client must deliver a whole request head within this (slowloris); else 408.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after this.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// IPv6 clients are counted per prefix of this length by every
    /// per-address bound (a host owns its whole /64).
    pub ipv6_prefix: u8,
    /// Addresses known to carry many users, with their own bounds.
    pub shared_addresses: Vec<crate::limit::SharedAddress>,
    /// Load balancers whose connections start with a PROXY protocol header
    /// (v1 or v2), read within `header_read_timeout`: its source address is
    /// the client's. From these, a connection without one is closed; from
    /// anyone else, a PROXY header is never believed.
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            addresses: vec![SocketAddr::from(([127, 0, 0, 1], 3128))],
            tls_addresses: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            max_connections: 10_000,
            max_connections_per_address: 1_000,
            max_header_bytes: 64 * 1024,
            max_uri_bytes: 8 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            ipv6_prefix: 64,
            shared_addresses: Vec::new(),
            proxy_protocol_from: Vec::new(),
        }
    }
}

impl ListenerConfig {
    /// Every address the proxy listens on, plain and TLS.
    pub fn all_addresses(&self) -> impl Iterator<Item = &SocketAddr> {
        self.addresses.iter().chain(&self.tls_addresses)
    }

    /// Where the per-address bounds count a client, for
    /// [`crate::limit::PerAddress::set_places`].
    pub fn places(&self) -> crate::limit::Places {
        crate::limit::Places {
            ipv6_prefix: self.ipv6_prefix,
            shared: self.shared_addresses.clone(),
        }
    }

    /// The TLS listeners' certificate, when there are TLS listeners;
    /// `h2`: offer HTTP/2 in ALPN (`http2.listener`).
    pub fn load_tls(
        &self,
        h2: bool,
    ) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, super::tls::TlsListenerError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) if !self.tls_addresses.is_empty() => {
                super::tls::load(cert, key, h2).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        let l = self;
        if l.addresses.is_empty() && l.tls_addresses.is_empty() {
            return Err(invalid(
                "listener.addresses",
                "at least one address (or listener.tls_addresses) is needed",
            ));
        }
        if !l.tls_addresses.is_empty() && (l.tls_cert_file.is_none() || l.tls_key_file.is_none()) {
            return Err(invalid(
                "listener.tls_addresses",
                "TLS listeners need listener.tls_cert_file and listener.tls_key_file",
            ));
        }
        // A semaphore holds at most ~2^61 permits; far beyond any real
        // limit (a process has 20,000 file descriptors here), so cap it.
        if !(1..=1_000_000).contains(&l.max_connections) {
            return Err(invalid(
                "listener.max_connections",
                "must be between 1 and 1000000",
            ));
        }
        if l.max_connections_per_address == 0 {
            return Err(invalid(
                "listener.max_connections_per_address",
                "must be at least 1",
            ));
        }
        if !(1024..=1024 * 1024).contains(&l.max_header_bytes) {
            return Err(invalid(
                "listener.max_header_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        if l.max_uri_bytes < 64 || l.max_uri_bytes >= l.max_header_bytes {
            return Err(invalid(
                "listener.max_uri_bytes",
                "must be at least 64 and below listener.max_header_bytes",
            ));
        }
        if !(1..=1000).contains(&l.max_headers) {
            return Err(invalid(
                "listener.max_headers",
                "must be between 1 and 1000",
            ));
        }
        if !(32..=128).contains(&l.ipv6_prefix) {
            return Err(invalid(
                "listener.ipv6_prefix",
                "must be between 32 and 128",
            ));
        }
        nonzero(&[
            ("listener.header_read_timeout", l.header_read_timeout),
            ("listener.idle_timeout", l.idle_timeout),
        ])
    }
}
