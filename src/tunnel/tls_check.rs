//! The SSL check's state and its probe. TLS ≤ 1.2 is verified on the
//! tunnel's own connection ([`super::handshake`]); what that cannot see —
//! a TLS 1.3 certificate (encrypted), or the original of a resumed session
//! this proxy never saw — is checked by a probe: a verification handshake
//! (rustls, the same [`Verifier`]) to **the address the tunnel is connected
//! to**, with the client's SNI and ALPN, its verdict cached per (address,
//! port, SNI) for `detection.verdict_ttl`. The session IDs of full
//! handshakes verified on the wire are remembered, bounded, so a resumption
//! of one passes without a probe.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::Error as TlsError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::settings::DetectionConfig;
pub use super::verify::VerifierError;
use super::verify::{self, Verifier};
use crate::outcome::DetectionReason;

/// What the destination's TLS looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertVerdict {
    /// A certificate that chains to a trusted root, for the name asked.
    Valid,
    /// It spoke TLS but presented no (usable) certificate — Skype's supernodes.
    Missing,
    /// A certificate that does not chain to a trusted root, or is expired, etc.
    Invalid(String),
    /// A valid certificate, for another name.
    DomainMismatch,
    /// What came back was not TLS.
    NotTls,
    /// It spoke TLS, but not a handshake the probe could finish (a suite or
    /// a resumption the probe did not offer, messages out of order): nothing
    /// proven.
    Unfinished(String),
    /// It could not be reached, or did not finish a handshake in time.
    Unreachable(String),
}

impl CertVerdict {
    /// Why a tunnel with this verdict is refused; `None` when it is valid.
    pub fn reason(&self) -> Option<DetectionReason> {
        Some(match self {
            CertVerdict::Valid => return None,
            CertVerdict::Missing => DetectionReason::CertMissing,
            CertVerdict::Invalid(_) => DetectionReason::CertInvalid,
            CertVerdict::DomainMismatch => DetectionReason::DomainMismatch,
            CertVerdict::NotTls => DetectionReason::NotTls,
            CertVerdict::Unfinished(_) => DetectionReason::HandshakeInvalid,
            CertVerdict::Unreachable(_) => DetectionReason::CheckFailed,
        })
    }
}

/// A probe verdict's key: the address dialled, the SNI asked, and the TLS
/// version probed — a TLS 1.3 verdict never vouches for a ≤ 1.2 session.
type Key = (SocketAddr, Option<String>, ProbeVersion);

/// Which TLS the probe speaks: the version the tunnel's ServerHello chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeVersion {
    /// TLS 1.3 (a full TLS 1.3 handshake whose certificate is encrypted).
    Tls13,
    /// TLS 1.2 (a resumption this proxy never saw verified).
    Tls12,
}
/// A remembered session: where, for which SNI, which session ID.
type Session = (SocketAddr, Option<String>, Vec<u8>);

/// The SSL check: the verifier, the probe with its verdict cache, and the
/// sessions verified on the wire.
pub struct TlsChecker {
    verifier: Verifier,
    config: Arc<rustls::ClientConfig>,
    config12: Arc<rustls::ClientConfig>,
    cache: moka::future::Cache<Key, CertVerdict>,
    sessions: moka::sync::Cache<Session, ()>,
    /// The randoms of the signed key exchanges seen (client's and server's):
    /// both are fresh in every real handshake, so a repeat is a replay.
    randoms: moka::sync::Cache<[u8; 32], ()>,
    timeout: Duration,
}

impl TlsChecker {
    /// A checker with the bundled roots plus `ca_file`.
    pub fn new(cfg: &DetectionConfig) -> Result<Self, VerifierError> {
        let verifier = Verifier::new(cfg.ca_file.as_deref())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = |versions: &[&'static rustls::SupportedProtocolVersion]| {
            Ok::<_, VerifierError>(Arc::new(
                rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier.rustls())
                    .with_no_client_auth(),
            ))
        };
        Ok(Self {
            config: config(&[&rustls::version::TLS13])?,
            config12: config(&[&rustls::version::TLS12])?,
            verifier,
            cache: moka::future::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(cfg.verdict_ttl)
                .build(),
            sessions: moka::sync::Cache::builder()
                .max_capacity(cfg.max_sessions)
                .time_to_live(cfg.session_ttl)
                .build(),
            randoms: moka::sync::Cache::builder()
                .max_capacity(2 * cfg.max_sessions)
                .time_to_live(cfg.session_ttl)
                .build(),
            timeout: cfg.check_timeout,
        })
    }

    /// The verifier every check uses.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Remembers a session ID from a full handshake verified on the wire.
    pub fn remember(&self, addr: SocketAddr, sni: Option<&str>, session_id: &[u8]) {
        if !session_id.is_empty() {
            self.sessions
                .insert((addr, sni.map(str::to_owned), session_id.to_vec()), ());
        }
    }

    /// True the first time these randoms of a signed key exchange are seen
    /// (within `session_ttl`, at most twice `max_sessions`); a repeat of
    /// either is a recorded handshake played again.
    pub fn first_sight(&self, client: &[u8; 32], server: &[u8; 32]) -> bool {
        let fresh = !self.randoms.contains_key(client) && !self.randoms.contains_key(server);
        self.randoms.insert(*client, ());
        self.randoms.insert(*server, ());
        fresh
    }

    /// Was this session's full handshake verified here, at this address, for this SNI?
    pub fn seen(&self, addr: SocketAddr, sni: Option<&str>, session_id: &[u8]) -> bool {
        !session_id.is_empty()
            && self
                .sessions
                .contains_key(&(addr, sni.map(str::to_owned), session_id.to_vec()))
    }

    /// The probe's verdict for the server at `addr` — the address the tunnel
    /// is connected to, never a new resolution — for `name` (the SNI, else
    /// the CONNECT host), offering `alpn`, speaking `version`; cached per
    /// (address, SNI, version). Returns the verdict and whether it came from
    /// the cache.
    pub async fn probe(
        &self,
        addr: SocketAddr,
        name: &str,
        sni: Option<&str>,
        alpn: &[String],
        version: ProbeVersion,
    ) -> (CertVerdict, bool) {
        let key = (addr, sni.map(str::to_ascii_lowercase), version);
        if let Some(v) = self.cache.get(&key).await {
            return (v, true);
        }
        let verdict = self.handshake(addr, name, alpn, version).await;
        // A destination we could not reach is asked again next time.
        if !matches!(verdict, CertVerdict::Unreachable(_)) {
            self.cache.insert(key, verdict.clone()).await;
        }
        (verdict, false)
    }

    async fn handshake(
        &self,
        addr: SocketAddr,
        name: &str,
        alpn: &[String],
        version: ProbeVersion,
    ) -> CertVerdict {
        let Some(server_name) = verify::server_name(name) else {
            return CertVerdict::Invalid(format!("{name:?} is not a valid server name"));
        };
        let config = match version {
            ProbeVersion::Tls13 => &self.config,
            ProbeVersion::Tls12 => &self.config12,
        };
        let connector = if alpn.is_empty() {
            tokio_rustls::TlsConnector::from(config.clone())
        } else {
            let mut c = (**config).clone();
            c.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
            tokio_rustls::TlsConnector::from(Arc::new(c))
        };
        let attempt = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|e| CertVerdict::Unreachable(e.to_string()))?;
            let recorder = FirstBytes::new(tcp);
            let seen = recorder.seen.clone();
            match connector.connect(server_name, recorder).await {
                Ok(_) => Ok(CertVerdict::Valid),
                Err(e) => Err(classify_failure(
                    &e,
                    &seen.lock().unwrap_or_else(|p| p.into_inner()),
                )),
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(v)) | Ok(Err(v)) => v,
            Err(_) => CertVerdict::Unreachable(format!(
                "no TLS handshake with {addr} within {:?}",
                self.timeout
            )),
        }
    }
}

/// Names a failed verification handshake from rustls' error and the first
/// bytes the server sent.
fn classify_failure(e: &io::Error, first: &[u8]) -> CertVerdict {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>());
    if let Some(err @ TlsError::InvalidCertificate(c)) = tls {
        return match verify::reason(err) {
            DetectionReason::DomainMismatch => CertVerdict::DomainMismatch,
            _ => CertVerdict::Invalid(format!("{c:?}")),
        };
    }
    // Where a certificate was due, something else (or nothing) came.
    let no_certificate = match tls {
        Some(TlsError::NoCertificatesPresented) => true,
        Some(TlsError::InappropriateHandshakeMessage { expect_types, .. }) => {
            expect_types.contains(&rustls::HandshakeType::Certificate)
        }
        _ => false,
    };
    match first {
        [] => CertVerdict::Unreachable(format!("closed before answering: {e}")),
        // A handshake record: the server speaks TLS but gave no certificate…
        [0x16, 0x03, ..] | [0x16] if no_certificate => CertVerdict::Missing,
        // …or a handshake the probe could not finish.
        [0x16, 0x03, ..] | [0x16] => CertVerdict::Unfinished(e.to_string()),
        // An alert straight away: it speaks TLS and refused the handshake.
        [0x15, 0x03, ..] => CertVerdict::Invalid(format!("handshake refused: {e}")),
        _ => CertVerdict::NotTls,
    }
}

/// Records the first bytes the server sends (for [`classify_failure`]).
struct FirstBytes {
    inner: TcpStream,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl FirstBytes {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            seen: Arc::new(std::sync::Mutex::new(Vec::new())),
        }
    }
}

impl AsyncRead for FirstBytes {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() < 8 {
            let new = &buf.filled()[before..];
            let take = new.len().min(8 - seen.len());
            seen.extend_from_slice(&new[..take]);
        }
        res
    }
}

impl AsyncWrite for FirstBytes {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;

    fn tls_err(e: TlsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn failures_are_named() {
        let hs = [0x16, 0x03, 0x03, 0x00, 0x2a];
        assert_eq!(
            classify_failure(
                &tls_err(TlsError::InvalidCertificate(
                    CertificateError::NotValidForName
                )),
                &hs
            ),
            CertVerdict::DomainMismatch
        );
        assert!(matches!(
            classify_failure(
                &tls_err(TlsError::InvalidCertificate(
                    CertificateError::UnknownIssuer
                )),
                &hs
            ),
            CertVerdict::Invalid(_)
        ));
        assert_eq!(
            classify_failure(&tls_err(TlsError::NoCertificatesPresented), &hs),
            CertVerdict::Missing
        );
        // Skype's supernode: ServerHelloDone where the Certificate was due.
        let skipped = TlsError::InappropriateHandshakeMessage {
            expect_types: vec![rustls::HandshakeType::Certificate],
            got_type: rustls::HandshakeType::ServerHelloDone,
        };
        assert_eq!(
            classify_failure(&tls_err(skipped), &hs),
            CertVerdict::Missing
        );
        // A certificate was sent, but a handshake the probe cannot finish
        // (a suite it did not offer, a resumption it did not ask for).
        assert!(matches!(
            classify_failure(
                &tls_err(TlsError::PeerMisbehaved(
                    rustls::PeerMisbehaved::SelectedUnofferedCipherSuite
                )),
                &hs
            ),
            CertVerdict::Unfinished(_)
        ));
        assert_eq!(
            classify_failure(&tls_err(TlsError::General("x".into())), b"SSH-2.0-"),
            CertVerdict::NotTls
        );
        assert!(matches!(
            classify_failure(&io::ErrorKind::UnexpectedEof.into(), b""),
            CertVerdict::Unreachable(_)
        ));
        assert_eq!(
            CertVerdict::Missing.reason().map(|r| r.as_str().to_owned()),
            Some("ssl_server_cert_missing".to_owned())
        );
        assert_eq!(CertVerdict::Valid.reason(), None);
    }
}
