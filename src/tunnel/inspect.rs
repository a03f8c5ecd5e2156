//! Protocol detection on a CONNECT, between the `200` and the relay: read the
//! client's first bytes (held, never forwarded), classify them, and ask the
//! policy. The outcome says whether to relay (replaying the held bytes), to
//! verify TLS on the tunnel's own connection, or to refuse — and the
//! destination has seen nothing yet either way.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

use super::detect::{classify, Classified, Protocol};
use super::settings::{DetectionConfig, OnSilence};
use crate::outcome::{DetectionReason, SAction};
use crate::protocol::ProtocolKind;

/// The post-detection policy's say on a detected protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySays {
    /// A rule explicitly allowed this protocol (needed for anything but TLS).
    Allow,
    /// A rule denied it, with this reason.
    Deny(Arc<str>),
    /// No detection rule decided.
    Nothing,
    /// The policy intercepts this TLS tunnel: decrypt it (the proxy hands the tunnel to interception).
    Intercept,
}

/// What kind of protocol detection found, as far as the next step cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoken {
    /// TLS: checked on the wire, or intercepted.
    Tls,
    /// Plain HTTP: served on the HTTP path, each request judged.
    Http,
    /// Anything else: relayed only if a rule allows it.
    Other,
}

impl Spoken {
    /// The kind of a detected protocol.
    pub fn of(p: &Protocol) -> Self {
        Self::kind(p.kind())
    }

    /// What the next step makes of a kind of protocol.
    pub fn kind(kind: ProtocolKind) -> Self {
        match kind {
            ProtocolKind::Tls => Spoken::Tls,
            ProtocolKind::Http => Spoken::Http,
            ProtocolKind::Ssh | ProtocolKind::Unknown => Spoken::Other,
        }
    }
}

/// What detection does next with a classified protocol, given the policy's
/// say: the one mapping, shared by the tunnel and `gatehouse explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Refuse the tunnel for this reason.
    Refuse(DetectionReason),
    /// TLS: passes only if the server's certificate is valid.
    CheckCertificate,
    /// Relay: a rule allowed this protocol.
    Pass,
    /// TLS the policy intercepts: hand the tunnel over, nothing sent yet.
    Intercept,
    /// Plain HTTP: hand the tunnel to the HTTP path (ProxySG's "Detect
    /// Protocol" for HTTP), where each request is judged, forwarded and logged.
    ServeHttp,
}

/// A rule's deny wins; TLS goes to the certificate check (or interception);
/// HTTP to the HTTP path; anything else needs a rule that allows it.
pub fn next_step(says: &PolicySays, spoken: Spoken) -> Next {
    match (says, spoken) {
        (PolicySays::Deny(reason), _) => Next::Refuse(DetectionReason::Denied(reason.clone())),
        (PolicySays::Intercept, Spoken::Tls) => Next::Intercept,
        (_, Spoken::Tls) => Next::CheckCertificate,
        (_, Spoken::Http) => Next::ServeHttp,
        (PolicySays::Allow, Spoken::Other) => Next::Pass,
        (PolicySays::Nothing | PolicySays::Intercept, Spoken::Other) => {
            Next::Refuse(DetectionReason::ProtocolNotAllowed)
        }
    }
}

/// How detection ended.
#[derive(Debug)]
pub enum Outcome {
    /// Relay, after sending `replay` (the held client bytes) upstream.
    Pass {
        /// What the client spoke; `None` when it stayed silent.
        protocol: Option<Protocol>,
        /// The held client bytes, to send upstream before relaying.
        replay: Vec<u8>,
        /// `TCP_ACCELERATED` for verified TLS, else `TCP_TUNNELED`.
        action: SAction,
    },
    /// TLS the policy lets through if the server proves itself: verify it on
    /// the tunnel's own connection ([`super::handshake`]).
    VerifyTls {
        /// What the ClientHello offered (and where its records end in `held`).
        hello: Box<super::detect::ClientHello>,
        /// Every client byte read so far, the ClientHello first.
        held: Vec<u8>,
    },
    /// Plain HTTP, for the HTTP path: nothing was sent upstream.
    Http {
        /// Every client byte read so far, the first request's start first.
        held: Vec<u8>,
    },
    /// TLS the policy intercepts: nothing was sent upstream.
    Intercept {
        /// What the ClientHello offered.
        hello: Box<super::detect::ClientHello>,
        /// Every client byte read so far, the ClientHello first.
        held: Vec<u8>,
    },
    /// Close the client; nothing was sent upstream.
    Refuse {
        /// What the client spoke, if it said enough to tell.
        protocol: Option<Protocol>,
        /// Why, for the log.
        reason: DetectionReason,
    },
}

/// Reads, classifies and judges one tunnel's first bytes.
pub struct Inspector<'a> {
    /// `[detection]` settings: limits, timeout, what silence means.
    pub cfg: &'a DetectionConfig,
}

impl Inspector<'_> {
    /// `held` holds client bytes already read (they are classified first).
    pub async fn inspect<C, P>(&self, client: &mut C, mut held: Vec<u8>, policy: P) -> Outcome
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
                                reason: DetectionReason::ClientClosed,
                            }
                        }
                        Ok(Ok(_)) => {}
                        Ok(Err(_)) => {
                            return Outcome::Refuse {
                                protocol: None,
                                reason: DetectionReason::ClientError,
                            }
                        }
                        Err(_) if held.is_empty() => {
                            return match self.cfg.on_silence {
                                OnSilence::Deny => Outcome::Refuse {
                                    protocol: None,
                                    reason: DetectionReason::Timeout,
                                },
                                OnSilence::Tunnel => Outcome::Pass {
                                    protocol: None,
                                    replay: held,
                                    action: SAction::TcpTunneled,
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
        match next_step(&says, Spoken::of(&protocol)) {
            Next::Refuse(reason) => Outcome::Refuse {
                protocol: Some(protocol),
                reason,
            },
            Next::Pass => Outcome::Pass {
                protocol: Some(protocol),
                replay: held,
                action: SAction::TcpTunneled,
            },
            Next::ServeHttp => Outcome::Http { held },
            Next::Intercept => match protocol {
                Protocol::Tls(hello) => Outcome::Intercept { hello, held },
                other => Outcome::Refuse {
                    protocol: Some(other),
                    reason: DetectionReason::ProtocolNotAllowed,
                },
            },
            Next::CheckCertificate => match protocol {
                Protocol::Tls(hello) => Outcome::VerifyTls { hello, held },
                // next_step asks for a certificate only for TLS.
                other => Outcome::Refuse {
                    protocol: Some(other),
                    reason: DetectionReason::ProtocolNotAllowed,
                },
            },
        }
    }
}
