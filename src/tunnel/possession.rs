//! Proof that a TLS ≤ 1.2 server holds the private key of the certificate
//! it showed — sans I/O.
//!
//! A certificate chain is public: anyone can copy a real site's chain and
//! send it after a ServerHello. What only the key's holder can send is the
//! ServerKeyExchange of an (EC)DHE suite: its parameters signed over
//! `client_random ‖ server_random ‖ params` (RFC 5246 §7.4.3, RFC 8422
//! §5.4). [`prove`] checks that signature with the leaf's public key, using
//! the crypto provider's own verification algorithms (the ones rustls's
//! client uses for the same check) — no crypto is written here.
//!
//! Some handshakes prove nothing in the clear: RSA and static (EC)DH key
//! exchange (the proof is the Finished the client cannot check for us),
//! and TLS 1.0/1.1, whose MD5‖SHA-1 signatures no maintained verifier
//! takes. Those are [`Proof::Unproven`]; the caller probes or refuses.

use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::SignatureScheme;
use rustls_pki_types::CertificateDer;
use tls_parser::{TlsCipherKx, TlsCipherSuite};

use super::server_flight::ServerHello;
use crate::outcome::DetectionReason;
use crate::protocol::TlsVersion;

/// How a full handshake stands, once the chain itself is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The key exchange is signed by the leaf's key.
    Signed,
    /// Nothing in the flight can prove possession; why.
    Unproven(Unproven),
}

/// Why a flight cannot prove possession.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unproven {
    /// RSA (or static DH/ECDH, or another unsigned) key exchange.
    KeyExchange,
    /// TLS 1.0 or 1.1: signatures over MD5‖SHA-1 (or SHA-1 without a
    /// scheme), which the provider does not verify.
    LegacyVersion,
}

/// Judges the flight's key exchange: `ske` is the ServerKeyExchange body as
/// sent, `leaf` the (already verified) leaf certificate, `offered` the
/// signature schemes of the client's `signature_algorithms` (empty: none sent).
pub fn prove(
    client_random: &[u8; 32],
    sh: &ServerHello,
    leaf: &[u8],
    ske: Option<&[u8]>,
    offered: &[u16],
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<Proof, DetectionReason> {
    let kx = TlsCipherSuite::from_id(sh.cipher).map(|s| s.kx);
    let signed = matches!(kx, Some(TlsCipherKx::Ecdhe | TlsCipherKx::Dhe));
    if !signed {
        // A ServerKeyExchange where the suite has none is a flight no real
        // server sends.
        return match ske {
            None => Ok(Proof::Unproven(Unproven::KeyExchange)),
            Some(_) => Err(DetectionReason::HandshakeInvalid),
        };
    }
    let Some(ske) = ske else {
        return Err(DetectionReason::KeyExchangeMissing);
    };
    if sh.version < TlsVersion::TLS12 {
        return Ok(Proof::Unproven(Unproven::LegacyVersion));
    }
    let params_len = match kx {
        Some(TlsCipherKx::Ecdhe) => ecdhe_params(ske),
        _ => dhe_params(ske),
    }
    .ok_or(DetectionReason::HandshakeInvalid)?;
    let (params, signature) = ske.split_at(params_len);
    let (scheme, signature) = match signature {
        [s0, s1, l0, l1, sig @ ..] if sig.len() == u16::from_be_bytes([*l0, *l1]) as usize => {
            (u16::from_be_bytes([*s0, *s1]), sig)
        }
        _ => return Err(DetectionReason::HandshakeInvalid),
    };
    // RFC 5246 §7.4.1.4.1: the server signs with a scheme the client offered.
    if !offered.is_empty() && !offered.contains(&scheme) {
        return Err(DetectionReason::HelloInconsistent);
    }
    let mut signed_over = Vec::with_capacity(64 + params.len());
    signed_over.extend_from_slice(client_random);
    signed_over.extend_from_slice(&sh.random);
    signed_over.extend_from_slice(params);
    verify(
        leaf,
        SignatureScheme::from(scheme),
        &signed_over,
        signature,
        algorithms,
    )?;
    Ok(Proof::Signed)
}

/// The length of an ECDHE ServerKeyExchange's params (RFC 8422 §5.4): a
/// named curve (type 3), then the point; explicit curves are long gone.
fn ecdhe_params(ske: &[u8]) -> Option<usize> {
    match ske {
        [3, _, _, len, ..] => Some(4 + *len as usize).filter(|n| *n <= ske.len()),
        _ => None,
    }
}

/// The length of a DHE ServerKeyExchange's params (RFC 5246 §7.4.3):
/// `dh_p`, `dh_g`, `dh_Ys`, each a 16-bit-length vector.
fn dhe_params(ske: &[u8]) -> Option<usize> {
    let mut at = 0;
    for _ in 0..3 {
        let len = ske.get(at..at + 2)?;
        at += 2 + u16::from_be_bytes([len[0], len[1]]) as usize;
    }
    Some(at).filter(|n| *n <= ske.len())
}

/// Verifies `signature` over `message` with the leaf's key, trying each
/// algorithm the provider maps `scheme` to (TLS 1.2's schemes name a hash
/// and a key type, not a curve).
fn verify(
    leaf: &[u8],
    scheme: SignatureScheme,
    message: &[u8],
    signature: &[u8],
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(), DetectionReason> {
    let Some((_, candidates)) = algorithms.mapping.iter().find(|(s, _)| *s == scheme) else {
        tracing::debug!(
            ?scheme,
            "key exchange signed with a scheme not verified here"
        );
        return Err(DetectionReason::SignatureInvalid);
    };
    let leaf = CertificateDer::from(leaf);
    let cert = webpki::EndEntityCert::try_from(&leaf).map_err(|_| DetectionReason::CertInvalid)?;
    for alg in *candidates {
        match cert.verify_signature(*alg, message, signature) {
            Ok(()) => return Ok(()),
            Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => continue,
            Err(e) => {
                tracing::debug!(error = ?e, ?scheme, "key exchange signature does not verify");
                return Err(DetectionReason::SignatureInvalid);
            }
        }
    }
    Err(DetectionReason::SignatureInvalid)
}

#[cfg(test)]
#[path = "possession_tests.rs"]
mod tests;
