//! One CONNECT tunnel after its `200 Connection established`, start to end:
//! detection (when the plan says so), the replay of the client's held bytes,
//! the relay — and one [`TunnelEnd`] that says how it ended, for the caller
//! to log once.
//!
//! The session takes narrow handles (the inspector, relay settings) and
//! knows nothing of requests, policy objects or the access log: what the
//! policy says about a detected protocol comes in as a function.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::stream::ClientStream;
use tokio_util::sync::CancellationToken;

use super::detect::Protocol;
use super::handshake::{self, Check, Verified};
use super::inspect::{Inspector, Outcome, PolicySays};
use super::relay::{self, Transfer};
use crate::outcome::{DetectionReason, ExceptionId, SAction};

/// How the relay runs: chosen once from `[tunnel]`.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Close after this long without a byte either way.
    pub idle_timeout: Duration,
    /// splice(2) or a buffered copy.
    pub transfer: Transfer,
    /// Cancelled when the shutdown grace period is over.
    pub hard_stop: CancellationToken,
}

/// Protocol detection for a tunnel the plan sent to `detect`.
pub struct Detection<'a, P> {
    /// Reads, classifies and judges the client's first bytes.
    pub inspector: Inspector<'a>,
    /// Verifies TLS on the tunnel's own connection.
    pub tls: Check<'a>,
    /// The policy's say on what was detected.
    pub judge: P,
}

/// How a tunnel ended: everything the access record needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelEnd {
    /// What detection saw the client speak (`None`: not detected, or silent).
    pub protocol: Option<Protocol>,
    /// `TCP_TUNNELED`, `TCP_ACCELERATED`, `TCP_DENIED`, `TCP_ERR_MISS`.
    pub action: SAction,
    /// Why it was refused or cut short, if it was.
    pub exception: Option<ExceptionId>,
    /// Refused by detection (the log's `sc-filter-result` is `DENIED`).
    pub refused: bool,
    /// Client-to-server bytes, the replayed held bytes included.
    pub cs_bytes: u64,
    /// Server-to-client bytes.
    pub sc_bytes: u64,
}

impl TunnelEnd {
    fn new(protocol: Option<Protocol>, action: SAction) -> Self {
        Self {
            protocol,
            action,
            exception: None,
            refused: false,
            cs_bytes: 0,
            sc_bytes: 0,
        }
    }

    /// The tunnel failed on a socket before or without relaying.
    pub fn broken(protocol: Option<Protocol>, cs_bytes: u64) -> Self {
        Self {
            exception: Some(ExceptionId::TcpError),
            cs_bytes,
            ..Self::new(protocol, SAction::TcpErrMiss)
        }
    }

    fn refused(protocol: Option<Protocol>, reason: DetectionReason) -> Self {
        Self {
            exception: Some(ExceptionId::Detection(reason)),
            refused: true,
            ..Self::new(protocol, SAction::TcpDenied)
        }
    }
}

/// How a session ended: done, or handed over (to interception, or to the
/// HTTP path) with nothing sent to either side.
pub enum Ended {
    /// The tunnel is over.
    Done(TunnelEnd),
    /// The policy intercepts this TLS tunnel (the ClientHello held first).
    Intercept(HandedOver),
    /// The client speaks plain HTTP: each request goes to the HTTP path.
    Http(HandedOver),
}

/// What a handed-over tunnel brings: the client, its held bytes, the
/// dialled server (untouched).
pub struct HandedOver {
    /// The client's stream.
    pub client: ClientStream,
    /// Every client byte read, none sent on.
    pub held: Vec<u8>,
    /// The dialled server, untouched.
    pub server: TcpStream,
}

impl From<TunnelEnd> for Ended {
    fn from(end: TunnelEnd) -> Self {
        Ended::Done(end)
    }
}

/// Runs the tunnel between `client` and the already dialled `server`.
/// `pending` are client bytes read past the CONNECT head: with detection
/// they are classified first; either way they reach the server only when
/// the tunnel is allowed.
pub async fn run<P>(
    mut client: ClientStream,
    pending: Vec<u8>,
    mut server: TcpStream,
    detection: Option<Detection<'_, P>>,
    relay: &RelaySettings,
) -> Ended
where
    P: Fn(&Protocol) -> PolicySays,
{
    // Bytes already through before the relay: the ClientHello sent ahead to
    // the server, the server's flight released to the client.
    let (mut sent_ahead, mut released) = (0u64, 0u64);
    let (protocol, action, replay) = match detection {
        None => (None, SAction::TcpTunneled, pending),
        Some(d) => {
            // Boxed: the detection future (TLS verification and probe state
            // included) is large, and an undetected tunnel should not carry it.
            let outcome = Box::pin(d.inspector.inspect(&mut client, pending, d.judge)).await;
            match outcome {
                // Neither side has seen a byte of the other's: just close.
                Outcome::Refuse { protocol, reason } => {
                    return TunnelEnd::refused(protocol, reason).into()
                }
                Outcome::Intercept { held, .. } => {
                    return Ended::Intercept(HandedOver {
                        client,
                        held,
                        server,
                    })
                }
                Outcome::Http { held } => {
                    return Ended::Http(HandedOver {
                        client,
                        held,
                        server,
                    })
                }
                Outcome::Pass {
                    protocol,
                    replay,
                    action,
                } => (protocol, action, replay),
                Outcome::VerifyTls { hello, mut held } => {
                    let verdict =
                        Box::pin(handshake::verify(&mut server, &held, &hello, &d.tls)).await;
                    let sent = hello.record_bytes.min(held.len());
                    let protocol = Some(Protocol::Tls(hello));
                    match verdict {
                        // The server saw the ClientHello only; the client nothing.
                        Verified::Refuse(reason) => {
                            return TunnelEnd::refused(protocol, reason).into()
                        }
                        Verified::Pass { flight, how } => {
                            tracing::debug!(how, "TLS tunnel verified");
                            // Flushed: on a TLS client the flight could wait in rustls.
                            let sent_on = async {
                                client.write_all(&flight).await?;
                                client.flush().await
                            };
                            if let Err(e) = sent_on.await {
                                tracing::debug!(error = %e, "client closed before the server's flight");
                                return TunnelEnd::broken(protocol, 0).into();
                            }
                            released = flight.len() as u64;
                            sent_ahead = sent as u64;
                            // The ClientHello went already; the rest is still held.
                            let rest = held.split_off(sent);
                            (protocol, SAction::TcpAccelerated, rest)
                        }
                    }
                }
            }
        }
    };
    let replayed = replay.len() as u64;
    if !replay.is_empty() {
        if let Err(e) = server.write_all(&replay).await {
            tracing::debug!(error = %e, "upstream closed before the replay");
            return TunnelEnd::broken(protocol, sent_ahead).into();
        }
    }
    drop(replay);
    let out = relay::relay(
        client,
        server,
        relay.transfer,
        relay.idle_timeout,
        relay.hard_stop.clone(),
    )
    .await;
    let mut end = TunnelEnd::new(protocol, action);
    end.cs_bytes = out.client_to_server + replayed + sent_ahead;
    end.sc_bytes = out.server_to_client + released;
    if out.end == relay::End::Idle {
        end.exception = Some(ExceptionId::TunnelIdleTimeout);
    }
    end.into()
}
