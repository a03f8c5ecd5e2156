//! The certificate verifier, one for every check: rustls's own WebPKI
//! verifier (rustls-webpki) over the bundled web roots plus
//! `detection.ca_file` — the same chain, time, EKU and name checks a rustls
//! client makes — used on chains read off a tunnel's own connection and by
//! the probe handshake alike.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::{CertificateError, Error as TlsError};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::detect::ClientHello;
use super::possession::Proof;
use super::server_flight::ServerHello;
use crate::outcome::DetectionReason;

/// Why the verifier cannot be built.
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
    /// rustls refuses the settings asked for.
    #[error("TLS client settings: {0}")]
    Tls(#[from] rustls::Error),
    /// No trust anchors at all.
    #[error("certificate verifier: {0}")]
    Builder(#[from] rustls::client::VerifierBuilderError),
}

/// Verifies server certificate chains for a name.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    /// The provider's signature algorithms, for the key-exchange proof.
    algorithms: WebPkiSupportedAlgorithms,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// The bundled web roots, plus the PEM certificates in `ca_file`.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, VerifierError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            use rustls_pki_types::pem::PemObject;
            let bad = |e: &dyn std::fmt::Display| VerifierError::CaFile {
                path: path.to_path_buf(),
                problem: e.to_string(),
            };
            for c in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
        Ok(Self { inner, algorithms })
    }

    /// The verifier, for a rustls client configuration.
    pub fn rustls(&self) -> Arc<dyn ServerCertVerifier> {
        self.inner.clone()
    }

    /// Checks `chain` (DER, leaf first, as the server sent it) for `name`
    /// (the SNI, else the CONNECT host) now.
    pub fn verify(&self, chain: &[Vec<u8>], name: &str) -> Result<(), DetectionReason> {
        let Some((leaf, rest)) = chain.split_first() else {
            return Err(DetectionReason::CertMissing);
        };
        let server_name = server_name(name).ok_or(DetectionReason::DomainMismatch)?;
        let leaf = CertificateDer::from(leaf.as_slice());
        let intermediates: Vec<CertificateDer<'_>> = rest
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        match self.inner.verify_server_cert(
            &leaf,
            &intermediates,
            &server_name,
            &[],
            UnixTime::now(),
        ) {
            Ok(_) => Ok(()),
            Err(e) => Err(reason(&e)),
        }
    }

    /// Does the flight prove the server holds `leaf`'s key? See
    /// [`super::possession::prove`].
    pub fn prove(
        &self,
        hello: &ClientHello,
        sh: &ServerHello,
        leaf: &[u8],
        key_exchange: Option<&[u8]>,
    ) -> Result<Proof, DetectionReason> {
        super::possession::prove(
            &hello.random,
            sh,
            leaf,
            key_exchange,
            &hello.signature_schemes,
            &self.algorithms,
        )
    }
}

/// The name to verify against: an address literal or a DNS name.
pub fn server_name(name: &str) -> Option<ServerName<'static>> {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(name.to_string()).ok(),
    }
}

/// The refusal a verification error means.
pub fn reason(e: &TlsError) -> DetectionReason {
    match e {
        TlsError::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => DetectionReason::DomainMismatch,
        _ => DetectionReason::CertInvalid,
    }
}
