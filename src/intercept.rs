//! TLS interception (ProxySG's SSL proxy, Squid's `ssl_bump bump`), for the
//! CONNECTs the policy says `intercept`:
//!
//! 1. the client's ClientHello is read (the classifier detection uses);
//! 2. the proxy's own TLS handshake with the origin, on the tunnel's dialled
//!    socket, SNI as the client asked, ALPN `http/1.1`, fully verified
//!    ([`crate::tunnel::verify`]: the bundled roots + `detection.ca_file`);
//! 3. a leaf for the name, minted from the origin's certificate and signed by
//!    the CA ([`mint`]), presented to the client (the ClientHello replayed);
//! 4. each decrypted HTTP/1.1 request judged by the policy with its full
//!    `https://` URL, forwarded on the origin connection and logged as its
//!    own line ([`session`]).
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
/// TLS configuration.
pub struct Interceptor {
    /// Leaves for intercepted names.
    pub minter: Minter,
    upstream: Arc<rustls::ClientConfig>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl Interceptor {
    /// The interceptor `cfg` names, verifying origins with `verifier`;
    /// `None` when no CA is configured.
    pub fn build(
        cfg: &InterceptConfig,
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
        // What we can serve inside the tunnel: HTTP/1.1 only, for now.
        upstream.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Self {
            minter: Minter::new(ca, cfg)?,
            upstream: Arc::new(upstream),
            provider,
        }))
    }
}
