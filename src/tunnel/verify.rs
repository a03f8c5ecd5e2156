//! The certificate verifier, one for every check: rustls's own WebPKI
//! verifier (rustls-webpki) over the bundled web roots plus
//! `detection.ca_file` — the same chain, time, EKU and name checks a rustls
//! client makes — used on chains read off a tunnel's own connection and by
//! the probe handshake alike.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{
    verify_server_cert_signed_by_trust_anchor, verify_server_name, WebPkiServerVerifier,
};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::ParsedCertificate;
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
    roots: Arc<rustls::RootCertStore>,
    /// The provider's signature algorithms, for chains and the key-exchange proof.
    algorithms: WebPkiSupportedAlgorithms,
    /// Chains found to lead to a trust anchor (by SHA-256 of the chain as
    /// sent), for [`TRUSTED_FOR`]: the same site's chain is not path-built
    /// and signature-checked again on every handshake — the key-exchange
    /// signature is, since it is what proves *this* handshake.
    trusted: moka::sync::Cache<[u8; 32], ()>,
}

/// How long a chain found trusted is taken as trusted again without the
/// path building: also how late an expiring certificate can be accepted.
pub const TRUSTED_FOR: std::time::Duration = std::time::Duration::from_secs(300);

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
        let roots = Arc::new(roots);
        let inner = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider).build()?;
        Ok(Self {
            inner,
            roots,
            algorithms,
            trusted: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TRUSTED_FOR)
                .build(),
        })
    }

    /// The verifier, for a rustls client configuration.
    pub fn rustls(&self) -> Arc<dyn ServerCertVerifier> {
        self.inner.clone()
    }

    /// Checks `chain` (DER, leaf first, as the server sent it) for `name`
    /// (the SNI, else the CONNECT host) now: what rustls's own WebPKI
    /// verifier checks (a path to a trust anchor, time, EKU, the name),
    /// the path remembered for [`TRUSTED_FOR`].
    pub fn verify(&self, chain: &[Vec<u8>], name: &str) -> Result<(), DetectionReason> {
        let Some((leaf, rest)) = chain.split_first() else {
            return Err(DetectionReason::CertMissing);
        };
        let server_name = server_name(name).ok_or(DetectionReason::DomainMismatch)?;
        let leaf = CertificateDer::from(leaf.as_slice());
        let parsed = ParsedCertificate::try_from(&leaf).map_err(|e| reason(&e))?;
        let digest = chain_digest(chain);
        if !self.trusted.contains_key(&digest) {
            let intermediates: Vec<CertificateDer<'_>> = rest
                .iter()
                .map(|c| CertificateDer::from(c.as_slice()))
                .collect();
            verify_server_cert_signed_by_trust_anchor(
                &parsed,
                &self.roots,
                &intermediates,
                UnixTime::now(),
                self.algorithms.all,
            )
            .map_err(|e| reason(&e))?;
            self.trusted.insert(digest, ());
        }
        verify_server_name(&parsed, &server_name).map_err(|e| reason(&e))
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

/// A chain's identity: SHA-256 over each certificate with its length.
fn chain_digest(chain: &[Vec<u8>]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for c in chain {
        h.update((c.len() as u32).to_be_bytes());
        h.update(c);
    }
    h.finalize().into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trusted_chain_is_remembered_but_its_name_is_checked_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["a.example.test".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let v = Verifier::new(Some(&dir.path().join("ca.pem"))).unwrap();
        let chain = vec![leaf.der().to_vec()];
        assert_eq!(v.verify(&chain, "a.example.test"), Ok(()));
        assert!(v.trusted.contains_key(&chain_digest(&chain)));
        assert_eq!(
            v.verify(&chain, "b.example.test"),
            Err(DetectionReason::DomainMismatch)
        );
        // Another trust store knows nothing of it.
        let stranger = Verifier::new(None).unwrap();
        assert_eq!(
            stranger.verify(&chain, "a.example.test"),
            Err(DetectionReason::CertInvalid)
        );
        assert_eq!(
            v.verify(&[], "a.example.test"),
            Err(DetectionReason::CertMissing)
        );
    }
}
