//! TLS interception (ProxySG's SSL proxy, Squid's `ssl_bump bump`), for the
//! CONNECTs the policy says `intercept`:
//!
//! 1. the client's ClientHello is read (the classifier detection uses);
//! 2. the proxy's own TLS handshake with the origin, on the tunnel's dialled
//!    socket, SNI as the client asked, ALPN `http/1.1` (and `h2` first when
//!    the client offered it and `http2.intercept` is on), fully verified
//!    ([`crate::tunnel::verify`]: the bundled roots + `detection.ca_file`);
//! 3. a leaf for the name, minted from the origin's certificate and signed by
//!    the CA ([`mint`]), presented to the client (the ClientHello replayed);
//! 4. each decrypted request — HTTP/1.1, or each HTTP/2 stream when the
//!    origin chose `h2` (then offered to the client too: HTTP/2 end to end,
//!    never translated) — judged by the policy with its full `https://` URL,
//!    forwarded on the origin connection and logged as its own line
//!    ([`session`]).
//!
//! An origin whose certificate fails verification is never trusted
//! silently: the client gets the proxy's error page, over TLS, with the
//! reason. Which tunnels are intercepted is the policy's say; the CA is
//! `[intercept]`'s ([`settings`]).

pub mod ca;
mod handshake;
mod inner;
pub(crate) mod judge;
mod mint;
mod rewind;
pub(crate) mod session;
pub(crate) mod settings;
mod upgrade;

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;

use ca::CaError;
use mint::{MintError, Minter};
use settings::InterceptConfig;

/// Why interception could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    /// The CA files.
    #[error("intercept CA: {0}")]
    Ca(#[from] CaError),
    /// The leaf signer.
    #[error("intercept: {0}")]
    Mint(#[from] MintError),
    /// The TLS configuration.
    #[error("intercept TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// What every intercepted tunnel shares: the minter and the origin-side
/// TLS configurations.
pub struct Interceptor {
    /// Leaves for intercepted names.
    pub minter: Minter,
    /// ALPN `http/1.1` only.
    upstream: Arc<rustls::ClientConfig>,
    /// ALPN `h2`, `http/1.1`: for a client that offers `h2`.
    upstream_h2: Arc<rustls::ClientConfig>,
    /// `[http2]`, for the client side of HTTP/2 sessions; `None`: HTTP/1.1 only.
    pub(crate) http2: Option<crate::http2::Http2Config>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl Interceptor {
    /// The interceptor `cfg` names, verifying origins with `verifier`;
    /// `None` when no CA is configured.
    pub fn build(
        cfg: &InterceptConfig,
        http2: &crate::http2::Http2Config,
        verifier: Arc<dyn ServerCertVerifier>,
    ) -> Result<Option<Self>, InterceptError> {
        let (Some(cert), Some(key)) = (&cfg.ca_cert, &cfg.ca_key) else {
            return Ok(None);
        };
        let ca = ca::load(cert, key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut upstream = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        upstream.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut upstream_h2 = upstream.clone();
        upstream_h2.alpn_protocols = vec![crate::http2::ALPN_H2.to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Self {
            minter: Minter::new(ca, cfg)?,
            upstream: Arc::new(upstream),
            upstream_h2: Arc::new(upstream_h2),
            http2: http2.intercept.then(|| http2.clone()),
            provider,
        }))
    }

    /// The origin-side TLS settings for a client whose ClientHello offers
    /// `alpn`: `h2` is asked of the origin only when the client could speak
    /// it too (HTTP/2 end to end, never translated).
    fn upstream_for(&self, alpn: &[String]) -> &Arc<rustls::ClientConfig> {
        let h2 = alpn.iter().any(|p| p.as_bytes() == crate::http2::ALPN_H2);
        if h2 && self.http2.is_some() {
            &self.upstream_h2
        } else {
            &self.upstream
        }
    }
}
