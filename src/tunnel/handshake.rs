//! TLS verified on the tunnel's own connection. Only the client's ClientHello
//! record(s) go to the server; the server's first flight is read from the
//! same socket (bounded in time and bytes) and judged before a byte of it
//! reaches the client, and before any later client byte reaches the server:
//!
//! - TLS ≤ 1.2, full handshake: the certificate chain in the flight is
//!   verified for the SNI (else the CONNECT host), and the (EC)DHE key
//!   exchange's signature with the leaf's key ([`super::possession`]) — no
//!   probe; a key exchange that proves nothing in the clear (RSA, TLS ≤ 1.1)
//!   is refused or probed (`detection.rsa_key_exchange`);
//! - TLS ≤ 1.2, resumed: passes if this proxy proved the session's full
//!   handshake here (same address, SNI, session ID), else a probe decides;
//! - TLS 1.3: the certificate is encrypted, so the ServerHello must answer
//!   the client's offer and a probe to the same address decides.
//!
//! A probe speaks the version the tunnel's ServerHello chose, and its
//! verdict is kept per (address, SNI, version): a TLS 1.3 verdict never
//! vouches for a TLS 1.2 resumption.
//!
//! What a probe cannot prove for TLS 1.3: that the server shows this client
//! what it showed the probe. A server that recognises its own clients passes;
//! only interception proves such traffic.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::detect::ClientHello;
use super::possession::Proof;
use super::server_flight::{read_flight, Flight, ServerHello};
use super::settings::{DetectionConfig, Unsigned};
use super::tls_check::{ProbeVersion, TlsChecker};
use crate::outcome::DetectionReason;
use crate::protocol::TlsVersion;

/// What the on-the-wire check needs.
pub struct Check<'a> {
    /// `[detection]`: the flight's deadline and byte limit.
    pub cfg: &'a DetectionConfig,
    /// The verifier, the probe and the remembered sessions.
    pub checker: &'a TlsChecker,
    /// The CONNECT host: the name to verify when there is no SNI.
    pub host: &'a str,
}

/// How the check ended.
#[derive(Debug)]
pub enum Verified {
    /// Valid: release `flight` (the server bytes read so far) to the client.
    Pass {
        /// Server bytes held during the check.
        flight: Vec<u8>,
        /// How it was decided, for the debug log.
        how: &'static str,
    },
    /// Refuse; the client has seen nothing of the server.
    Refuse(DetectionReason),
}

/// Sends the ClientHello records (`held[..hello.record_bytes]`) to `server`,
/// reads and judges the server's answer.
pub async fn verify(
    server: &mut TcpStream,
    held: &[u8],
    hello: &ClientHello,
    check: &Check<'_>,
) -> Verified {
    let Ok(addr) = server.peer_addr() else {
        return Verified::Refuse(DetectionReason::CheckFailed);
    };
    let first = &held[..hello.record_bytes.min(held.len())];
    if let Err(e) = server.write_all(first).await {
        tracing::debug!(error = %e, "server closed before the ClientHello");
        return Verified::Refuse(DetectionReason::CheckFailed);
    }
    let (flight, answer) = match read(server, check.cfg).await {
        Ok(read) => read,
        Err(reason) => return Verified::Refuse(reason),
    };
    match judge(&answer, hello, addr, check).await {
        Ok(how) => Verified::Pass { flight, how },
        Err(reason) => {
            tracing::info!(%addr, host = check.host, sni = ?hello.sni, reason = reason.as_str(), "TLS tunnel refused on its own connection");
            Verified::Refuse(reason)
        }
    }
}

/// Reads until [`read_flight`] decides, within the deadline and byte limit.
async fn read(
    server: &mut TcpStream,
    cfg: &DetectionConfig,
) -> Result<(Vec<u8>, Flight), DetectionReason> {
    let deadline = Instant::now() + cfg.check_timeout;
    let mut buf = Vec::with_capacity(4096);
    loop {
        match read_flight(&buf) {
            Flight::NeedMore => {}
            done => return Ok((buf, done)),
        }
        if buf.len() >= cfg.max_server_flight {
            return Err(DetectionReason::ServerFlightTooLarge);
        }
        let room = cfg.max_server_flight - buf.len();
        buf.reserve(room.min(16 * 1024));
        let mut limited = (&mut *server).take(room as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await {
            Err(_) => return Err(DetectionReason::ServerTimeout),
            Ok(Ok(0)) | Ok(Err(_)) if buf.is_empty() => return Err(DetectionReason::CheckFailed),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(if buf[0] == 0x16 || buf[0] == 0x15 {
                    DetectionReason::HandshakeInvalid
                } else {
                    DetectionReason::NotTls
                })
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// The verdict on the server's answer; `Ok` names how it passed.
async fn judge(
    answer: &Flight,
    hello: &ClientHello,
    addr: SocketAddr,
    check: &Check<'_>,
) -> Result<&'static str, DetectionReason> {
    let sni = hello.sni.as_deref();
    let name = sni.unwrap_or(check.host);
    let checker = check.checker;
    match answer {
        Flight::Full {
            hello: sh,
            chain,
            key_exchange,
        } => {
            answers_offer(sh, hello)?;
            checker.verifier().verify(chain, name)?;
            let leaf = chain.first().ok_or(DetectionReason::CertMissing)?;
            let how = match checker
                .verifier()
                .prove(hello, sh, leaf, key_exchange.as_deref())?
            {
                // Signed over randoms the client and server chose: colluding,
                // they could play a recorded handshake again — once.
                Proof::Signed if !checker.first_sight(&hello.random, &sh.random) => {
                    return Err(DetectionReason::HandshakeReplayed)
                }
                Proof::Signed => "certificate verified, key exchange signed with its key",
                Proof::Unproven(why) => match check.cfg.rsa_key_exchange {
                    Unsigned::Refuse => {
                        tracing::debug!(?why, "a key exchange that proves nothing, refused");
                        return Err(DetectionReason::KeyExchangeUnproven);
                    }
                    Unsigned::Probe => probe(check, addr, name, hello, ProbeVersion::Tls12).await?,
                },
            };
            // Only a proven handshake's session may later resume unprobed.
            checker.remember(addr, sni, &sh.session_id);
            Ok(how)
        }
        Flight::Resumed(sh) => {
            answers_offer(sh, hello)?;
            if checker.seen(addr, sni, &sh.session_id) {
                return Ok("resumption of a session verified here");
            }
            probe(check, addr, name, hello, ProbeVersion::Tls12).await
        }
        Flight::Tls13(sh) => {
            answers_offer(sh, hello)?;
            probe(check, addr, name, hello, ProbeVersion::Tls13).await
        }
        Flight::Alert => Err(DetectionReason::HandshakeRefused),
        Flight::NotTls => Err(DetectionReason::NotTls),
        Flight::Invalid(why) => {
            tracing::debug!(%addr, why, "server flight not followed");
            Err(DetectionReason::HandshakeInvalid)
        }
        Flight::NeedMore => Err(DetectionReason::CheckFailed),
    }
}

async fn probe(
    check: &Check<'_>,
    addr: SocketAddr,
    name: &str,
    hello: &ClientHello,
    version: ProbeVersion,
) -> Result<&'static str, DetectionReason> {
    let (verdict, cached) = check
        .checker
        .probe(addr, name, hello.sni.as_deref(), &hello.alpn, version)
        .await;
    match verdict.reason() {
        None if cached => Ok("probe verdict (cached) for this address"),
        None => Ok("probe of this address"),
        Some(reason) => Err(reason),
    }
}

/// A ServerHello must choose what the client offered: a version, a cipher,
/// and (TLS 1.3) a group it sent a key share for — or, for a
/// HelloRetryRequest, one of its groups.
fn answers_offer(sh: &ServerHello, hello: &ClientHello) -> Result<(), DetectionReason> {
    // Without `supported_versions` the hello's own version is the highest offered.
    let legacy = matches!(hello.versions[..], [v] if v <= TlsVersion::TLS12 && sh.version <= v);
    let version = hello.versions.contains(&sh.version) || legacy;
    let cipher = hello.ciphers.contains(&sh.cipher);
    let share = match (sh.version, sh.key_share) {
        (TlsVersion::TLS13, Some(g)) if sh.retry => hello.groups.contains(&g),
        (TlsVersion::TLS13, Some(g)) => hello.key_shares.contains(&g),
        // TLS 1.3 without a key share: PSK-only, which needs the client's PSK
        // and is refused here as not answering a fresh offer.
        (TlsVersion::TLS13, None) => false,
        _ => true,
    };
    if version && cipher && share {
        Ok(())
    } else {
        tracing::debug!(?sh, offered = ?hello.versions, "ServerHello does not answer the offer");
        Err(DetectionReason::HelloInconsistent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> ClientHello {
        ClientHello {
            versions: vec![TlsVersion::TLS13, TlsVersion::TLS12],
            ciphers: vec![0x1301, 0xc02f],
            groups: vec![29, 23],
            key_shares: vec![29],
            ..ClientHello::default()
        }
    }

    fn sh(version: TlsVersion, cipher: u16, key_share: Option<u16>, retry: bool) -> ServerHello {
        ServerHello {
            version,
            cipher,
            session_id: Vec::new(),
            key_share,
            retry,
            random: [0; 32],
        }
    }

    #[test]
    fn a_server_hello_must_answer_the_offer() {
        let ok = |s: ServerHello| answers_offer(&s, &offer()).is_ok();
        assert!(ok(sh(TlsVersion::TLS13, 0x1301, Some(29), false)));
        assert!(ok(sh(TlsVersion::TLS12, 0xc02f, None, false)));
        // A retry may pick any offered group.
        assert!(ok(sh(TlsVersion::TLS13, 0x1301, Some(23), true)));
        // Not offered: the cipher, the key share group, TLS 1.3 without a share.
        assert!(!ok(sh(TlsVersion::TLS13, 0x1302, Some(29), false)));
        assert!(!ok(sh(TlsVersion::TLS13, 0x1301, Some(23), false)));
        assert!(!ok(sh(TlsVersion::TLS13, 0x1301, None, false)));
        let only13 = ClientHello {
            versions: vec![TlsVersion::TLS13],
            ..offer()
        };
        assert!(answers_offer(&sh(TlsVersion::TLS12, 0xc02f, None, false), &only13).is_err());
    }
}
