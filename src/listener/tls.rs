//! TLS to the proxy itself (`listener.tls_addresses`): clients that use
//! `https://proxy:3129` as their proxy, so Basic credentials and the
//! requests' URLs do not cross the LAN in clear text. The certificate is
//! read at start-up and again on SIGHUP (swapped in whole; handshakes in
//! progress keep the one they started with).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::TcpStream;

use crate::stream::ClientStream;

/// Why the listener's certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsListenerError {
    /// A file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file cannot be read, or others than its owner can.
    #[error("the listener's key: {0}")]
    Key(#[from] crate::settings::SecretError),
    /// No certificate in the certificate file.
    #[error("{}: no CERTIFICATE in it ({why})", path.display())]
    NoCertificate {
        /// `listener.tls_cert_file`.
        path: PathBuf,
        /// What the PEM reader said.
        why: String,
    },
    /// No private key in the key file.
    #[error("{}: no private key in it ({why})", path.display())]
    NoKey {
        /// `listener.tls_key_file`.
        path: PathBuf,
        /// What the PEM reader said.
        why: String,
    },
    /// rustls refused the pair (the key does not match the certificate...).
    #[error("listener certificate: {0}")]
    Rejected(#[from] rustls::Error),
}

/// Reads the listener's certificate chain and key into a rustls config:
/// ALPN `http/1.1`, and `h2` first when `h2` (`http2.listener`). A client
/// that offers no ALPN speaks HTTP/1.1.
pub fn load(cert: &Path, key: &Path, h2: bool) -> Result<Arc<ServerConfig>, TlsListenerError> {
    crate::settings::check_private(key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| TlsListenerError::NoCertificate {
            path: cert.to_path_buf(),
            why: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsListenerError::NoCertificate {
            path: cert.to_path_buf(),
            why: "empty".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsListenerError::NoKey {
        path: key.to_path_buf(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if h2 {
        cfg.alpn_protocols.insert(0, crate::http2::ALPN_H2.to_vec());
    }
    Ok(Arc::new(cfg))
}

/// The client's TLS handshake, bounded by `timeout` (the header read
/// timeout: a client that connects and says nothing is closed as a plain
/// one would be). `place` is the connection's place under the limits: on
/// failure it is given back *before* the socket closes, so a client that
/// sees the close and connects again finds its place free, however long a
/// busy machine takes between the two.
pub async fn accept<P>(
    tcp: TcpStream,
    cfg: Arc<ServerConfig>,
    timeout: Duration,
    place: P,
) -> Result<(ClientStream, P), String> {
    let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
    let mut handshake = acceptor.accept(tcp).into_fallible();
    let (why, remains) = match tokio::time::timeout(timeout, &mut handshake).await {
        Ok(Ok(tls)) => return Ok((ClientStream::Tls(Box::new(tls)), place)),
        Ok(Err((e, tcp))) => (e.to_string(), Some(tcp)),
        Err(_) => (format!("no TLS handshake within {timeout:?}"), None),
    };
    drop(place);
    drop(remains);
    drop(handshake);
    Err(why)
}
