//! Protocol detection on a CONNECT, between the `200` and the relay: read the
//! client's first bytes (held, never forwarded), classify them, and for TLS
//! run the SSL check. The outcome says whether to relay (replaying the held
//! bytes) or to refuse — and the destination has seen nothing either way.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::detect::{classify, Classified, Protocol};
use super::tls_check::{CertVerdict, TlsChecker};
use crate::config::{DetectionConfig, OnSilence};

/// The post-detection policy's say on a detected protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySays {
    /// A rule explicitly allowed this protocol (needed for anything but TLS).
    Allow,
    /// A rule denied it, with this reason.
    Deny(String),
    /// No detection rule decided.
    Nothing,
}

#[derive(Debug)]
pub enum Outcome {
    /// Relay, after sending `replay` (the held client bytes) upstream.
    Pass {
        protocol: Option<Protocol>,
        replay: Vec<u8>,
        action: &'static str,
        /// The certificate verdict came from the cache.
        cached: bool,
    },
    /// Close the client; nothing was sent upstream.
    Refuse {
        protocol: Option<Protocol>,
        reason: String,
    },
}

pub struct Inspector<'a> {
    pub cfg: &'a DetectionConfig,
    pub checker: &'a TlsChecker,
    /// The destination's decided addresses (the SSL check dials these).
    pub addrs: &'a [SocketAddr],
}

impl Inspector<'_> {
    /// `held` holds client bytes already read (they are classified first).
    pub async fn inspect<C, P>(
        &self,
        client: &mut C,
        mut held: Vec<u8>,
        host: &str,
        port: u16,
        policy: P,
    ) -> Outcome
    where
        C: AsyncRead + Unpin,
        P: Fn(&Protocol) -> PolicySays,
    {
        held.reserve(2048);
        let deadline = Instant::now() + self.cfg.timeout;
        let protocol = loop {
            match classify(&held) {
                Classified::Done(p) => break p,
                Classified::NeedMore(_) if held.len() >= self.cfg.max_bytes => {
                    break Protocol::Unknown
                }
                Classified::NeedMore(n) => {
                    held.reserve(n.max(1024).min(self.cfg.max_bytes - held.len()));
                    let room = self.cfg.max_bytes - held.len();
                    let mut limited = (&mut *client).take(room as u64);
                    match tokio::time::timeout_at(deadline, limited.read_buf(&mut held)).await {
                        Ok(Ok(0)) => {
                            return Outcome::Refuse {
                                protocol: None,
                                reason: "client_closed".into(),
                            }
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => {
                            return Outcome::Refuse {
                                protocol: None,
                                reason: "client_error".into(),
                            }
                        }
                        Err(_) if held.is_empty() => {
                            return match self.cfg.on_silence {
                                OnSilence::Deny => Outcome::Refuse {
                                    protocol: None,
                                    reason: "detection_timeout".into(),
                                },
                                OnSilence::Tunnel => Outcome::Pass {
                                    protocol: None,
                                    replay: held,
                                    action: "TCP_TUNNELED",
                                    cached: false,
                                },
                            };
                        }
                        // Some bytes, then silence: judge what arrived.
                        Err(_) => break Protocol::Unknown,
                    }
                }
            }
        };
        let says = policy(&protocol);
        if let PolicySays::Deny(reason) = says {
            return Outcome::Refuse {
                protocol: Some(protocol),
                reason,
            };
        }
        match protocol {
            Protocol::Tls(ref hello) => {
                let (verdict, cached) = self
                    .checker
                    .check(self.addrs, host, port, hello.sni.as_deref())
                    .await;
                if verdict == CertVerdict::Valid {
                    Outcome::Pass {
                        protocol: Some(protocol),
                        replay: held,
                        action: "TCP_ACCELERATED",
                        cached,
                    }
                } else {
                    tracing::info!(%host, port, sni = ?hello.sni, ?verdict, "TLS tunnel refused by the SSL check");
                    Outcome::Refuse {
                        protocol: Some(protocol),
                        reason: verdict.reason().into(),
                    }
                }
            }
            other if says == PolicySays::Allow => Outcome::Pass {
                protocol: Some(other),
                replay: held,
                action: "TCP_TUNNELED",
                cached: false,
            },
            other => Outcome::Refuse {
                protocol: Some(other),
                reason: "protocol_not_allowed".into(),
            },
        }
    }
}
