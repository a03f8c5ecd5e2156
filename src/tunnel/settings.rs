//! `[tunnel]` (CONNECT) and `[detection]` (protocol detection on CONNECT).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{invalid, nonzero, Invalid};

/// CONNECT tunnels.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelConfig {
    /// Destination ports a CONNECT may reach (`443`, or ranges like
    /// `"8000-8999"`, as Squid's `Safe_ports`); anything else is 403.
    pub allowed_ports: Ports,
    /// Time to connect to the destination.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A tunnel with no byte in either direction for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Move tunnel bytes with splice(2) on Linux (socket → pipe → socket in
    /// the kernel) instead of read/write through a buffer. Off by default:
    /// on loopback here it measured 10–30% slower than the buffered copy
    /// (integration/bench); it may win on real NICs — measure before enabling.
    pub splice: bool,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            allowed_ports: Ports(vec![(443, 443)]),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            splice: false,
        }
    }
}

/// What to do when a CONNECT client says nothing within the detection timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSilence {
    /// Refuse the tunnel.
    Deny,
    /// Relay it undetected (server-speaks-first protocols).
    Tunnel,
}

/// A TLS ≤ 1.2 full handshake whose flight proves nothing in the clear
/// (RSA or static key exchange, TLS 1.0/1.1): see [`super::possession`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unsigned {
    /// Refuse it (`ssl_key_exchange_unproven`).
    Refuse,
    /// A probe of the dialled address, for the client's SNI, decides.
    Probe,
}

/// Protocol detection on CONNECT (ProxySG's "Detect Protocol").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Off: every allowed CONNECT is a raw tunnel.
    pub enabled: bool,
    /// How long to wait for the client's first bytes.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most client bytes held while classifying.
    pub max_bytes: usize,
    /// A client that says nothing (server-speaks-first protocols).
    pub on_silence: OnSilence,
    /// The server's first flight must arrive within this (read on the
    /// tunnel's own socket); a probe's connect + handshake too.
    #[serde(with = "humantime_serde")]
    pub check_timeout: Duration,
    /// Most server bytes held while its first flight (ServerHello …
    /// ServerHelloDone, certificate chain included) is read; beyond: refused.
    pub max_server_flight: usize,
    /// How long a probe's verdict per (address, port, SNI) is reused (TLS 1.3
    /// and resumptions this proxy did not see verified).
    #[serde(with = "humantime_serde")]
    pub verdict_ttl: Duration,
    /// How long the session ID of a TLS ≤ 1.2 handshake verified on the wire
    /// lets a resumption of it pass without a probe.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Most sessions remembered (oldest forgotten first).
    pub max_sessions: u64,
    /// Extra CA certificates (PEM) trusted besides the bundled web roots.
    pub ca_file: Option<PathBuf>,
    /// RSA key exchange (and the other flights that prove no key in the
    /// clear): refused, or proven by a probe of the dialled address.
    pub rsa_key_exchange: Unsigned,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout: Duration::from_secs(5),
            max_bytes: 16 * 1024,
            on_silence: OnSilence::Deny,
            check_timeout: Duration::from_secs(10),
            max_server_flight: 128 * 1024,
            verdict_ttl: Duration::from_secs(600),
            session_ttl: Duration::from_secs(3600),
            max_sessions: 100_000,
            ca_file: None,
            rsa_key_exchange: Unsigned::Probe,
        }
    }
}

impl TunnelConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        nonzero(&[
            ("tunnel.connect_timeout", self.connect_timeout),
            ("tunnel.idle_timeout", self.idle_timeout),
        ])?;
        if self.allowed_ports.contains(0) {
            return Err(invalid(
                "tunnel.allowed_ports",
                "port 0 is not a destination",
            ));
        }
        Ok(())
    }
}

/// One entry of a port list as written: `443` or `"8000-8999"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum PortEntry {
    One(u16),
    Text(String),
}

/// Ports and inclusive port ranges.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<PortEntry>")]
pub struct Ports(pub Vec<(u16, u16)>);

impl Ports {
    /// Is `port` one of them?
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&port))
    }
}

impl TryFrom<Vec<PortEntry>> for Ports {
    type Error = String;

    fn try_from(entries: Vec<PortEntry>) -> Result<Self, String> {
        let range = |t: &str| -> Option<(u16, u16)> {
            let (a, b) = t.split_once('-').unwrap_or((t, t));
            let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (a <= b).then_some((a, b))
        };
        entries
            .into_iter()
            .map(|e| match e {
                PortEntry::One(p) => Ok((p, p)),
                PortEntry::Text(t) => {
                    range(&t).ok_or_else(|| format!("{t:?}: a port or a range like \"8000-8999\""))
                }
            })
            .collect::<Result<_, _>>()
            .map(Ports)
    }
}

impl DetectionConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(512..=super::detect::MAX_HELLO).contains(&self.max_bytes) {
            return Err(invalid("detection.max_bytes", "between 512 and 65536"));
        }
        if !(4096..=1024 * 1024).contains(&self.max_server_flight) {
            return Err(invalid(
                "detection.max_server_flight",
                "between 4096 and 1048576",
            ));
        }
        nonzero(&[
            ("detection.timeout", self.timeout),
            ("detection.check_timeout", self.check_timeout),
            ("detection.verdict_ttl", self.verdict_ttl),
            ("detection.session_ttl", self.session_ttl),
        ])
    }
}
