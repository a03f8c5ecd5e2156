//! The SSL check: does the destination present a valid certificate for the
//! name the client asked for? A separate verification handshake (rustls,
//! web roots plus the configured CA bundle) answers it before a single client
//! byte is sent; verdicts are cached per (host, port, SNI).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::{CertificateError, Error as TlsError};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::settings::DetectionConfig;
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
            CertVerdict::Unreachable(_) => DetectionReason::CheckFailed,
        })
    }
}

type Key = (String, u16, Option<String>);

/// The SSL check: a handshake with the destination, verified as rustls
/// verifies, with the verdict cached per (host, port, SNI).
pub struct TlsChecker {
    connector: tokio_rustls::TlsConnector,
    cache: moka::future::Cache<Key, CertVerdict>,
    timeout: Duration,
}

/// Why the SSL check's verifier cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum VerifierError {
    /// `detection.ca_file` cannot be read or holds a certificate rustls refuses.
    #[error("detection.ca_file {path}: {problem}")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// rustls refuses the protocol versions asked for.
    #[error("TLS client settings: {0}")]
    Tls(#[from] rustls::Error),
}

impl TlsChecker {
    /// A checker with the bundled roots plus `ca_file`.
    pub fn new(cfg: &DetectionConfig) -> Result<Self, VerifierError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &cfg.ca_file {
            use rustls_pki_types::pem::PemObject;
            let bad = |e: &dyn std::fmt::Display| VerifierError::CaFile {
                path: path.clone(),
                problem: e.to_string(),
            };
            let certs =
                rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))?;
            for c in certs {
                roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            cache: moka::future::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(cfg.verdict_ttl)
                .build(),
            timeout: cfg.check_timeout,
        })
    }

    /// The verdict for `host:port` with the client's `sni`, cached; a
    /// handshake goes to `addrs`, the addresses the policy judged.
    /// Returns the verdict and whether it came from the cache.
    pub async fn check(
        &self,
        addrs: &[SocketAddr],
        host: &str,
        port: u16,
        sni: Option<&str>,
    ) -> (CertVerdict, bool) {
        let key = (
            host.to_ascii_lowercase(),
            port,
            sni.map(str::to_ascii_lowercase),
        );
        if let Some(v) = self.cache.get(&key).await {
            return (v, true);
        }
        let verdict = self.handshake(addrs, host, port, sni).await;
        // A destination we could not reach is asked again next time.
        if !matches!(verdict, CertVerdict::Unreachable(_)) {
            self.cache.insert(key, verdict.clone()).await;
        }
        (verdict, false)
    }

    async fn handshake(
        &self,
        addrs: &[SocketAddr],
        host: &str,
        port: u16,
        sni: Option<&str>,
    ) -> CertVerdict {
        let name = sni.unwrap_or(host);
        let server_name = match name.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => match ServerName::try_from(name.to_string()) {
                Ok(n) => n,
                Err(_) => {
                    return CertVerdict::Invalid(format!("{name:?} is not a valid server name"))
                }
            },
        };
        let attempt = async {
            let tcp = super::dial(addrs, &format!("{host}:{port}"), self.timeout)
                .await
                .map_err(|e| CertVerdict::Unreachable(e.to_string()))?;
            let recorder = FirstBytes::new(tcp);
            let seen = recorder.seen.clone();
            match self.connector.connect(server_name, recorder).await {
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
                "no TLS handshake with {host}:{port} within {:?}",
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
    if let Some(TlsError::InvalidCertificate(c)) = tls {
        return match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                CertVerdict::DomainMismatch
            }
            other => CertVerdict::Invalid(format!("{other:?}")),
        };
    }
    match first {
        [] => CertVerdict::Unreachable(format!("closed before answering: {e}")),
        // A handshake record: the server speaks TLS but gave no usable certificate.
        [0x16, 0x03, ..] | [0x16] => CertVerdict::Missing,
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
