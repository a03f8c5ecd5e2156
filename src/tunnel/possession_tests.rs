//! The key-exchange proof against signatures made with a real key (rcgen's
//! ECDSA P-256, signed by rustls's own signer), and against each way a
//! replaying server could try to pass without it.

use super::*;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

const ECDHE_ECDSA: u16 = 0xc02b;
const ECDHE_RSA: u16 = 0xc02f;
const DHE_RSA: u16 = 0x009e;
const RSA_KX: u16 = 0x009c;
const P256_SHA256: u16 = 0x0403;

struct Server {
    leaf: Vec<u8>,
    signer: Arc<dyn rustls::sign::SigningKey>,
}

use std::sync::Arc;

fn server() -> Server {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["origin.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Server {
        leaf: cert.der().to_vec(),
        signer: rustls::crypto::ring::sign::any_supported_type(&der).unwrap(),
    }
}

fn sign(server: &Server, message: &[u8]) -> Vec<u8> {
    let signer = server
        .signer
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .unwrap();
    signer.sign(message).unwrap()
}

fn hello(cipher: u16, version: TlsVersion) -> ServerHello {
    ServerHello {
        version,
        cipher,
        session_id: vec![1; 32],
        key_share: None,
        retry: false,
        random: [0x22; 32],
    }
}

const CLIENT_RANDOM: [u8; 32] = [0x11; 32];

/// An x25519 ECDHE params block: named curve 29, a 32-byte point.
fn x25519_params() -> Vec<u8> {
    let mut p = vec![3, 0, 29, 32];
    p.extend_from_slice(&[0x33; 32]);
    p
}

fn ske(params: &[u8], scheme: u16, sig: &[u8]) -> Vec<u8> {
    let mut b = params.to_vec();
    b.extend_from_slice(&scheme.to_be_bytes());
    b.extend_from_slice(&(sig.len() as u16).to_be_bytes());
    b.extend_from_slice(sig);
    b
}

/// A ServerKeyExchange signed over the randoms and `params` by `server`.
fn signed_ske(server: &Server, sh: &ServerHello, params: &[u8]) -> Vec<u8> {
    let mut m = CLIENT_RANDOM.to_vec();
    m.extend_from_slice(&sh.random);
    m.extend_from_slice(params);
    ske(params, P256_SHA256, &sign(server, &m))
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

fn judge(
    server: &Server,
    sh: &ServerHello,
    ske: Option<&[u8]>,
    offered: &[u16],
) -> Result<Proof, DetectionReason> {
    prove(
        &CLIENT_RANDOM,
        sh,
        &server.leaf,
        ske,
        offered,
        &algorithms(),
    )
}

#[test]
fn a_key_exchange_signed_with_the_leafs_key_proves_possession() {
    let s = server();
    let sh = hello(ECDHE_ECDSA, TlsVersion::TLS12);
    let ske = signed_ske(&s, &sh, &x25519_params());
    assert_eq!(
        judge(&s, &sh, Some(&ske), &[P256_SHA256]),
        Ok(Proof::Signed)
    );
    // No signature_algorithms sent: any scheme the provider verifies.
    assert_eq!(judge(&s, &sh, Some(&ske), &[]), Ok(Proof::Signed));
}

#[test]
fn a_replayed_chain_without_the_key_is_refused() {
    let real = server();
    let impostor = server();
    let sh = hello(ECDHE_ECDSA, TlsVersion::TLS12);
    // No ServerKeyExchange at all.
    assert_eq!(
        judge(&real, &sh, None, &[]),
        Err(DetectionReason::KeyExchangeMissing)
    );
    // Garbage where the signature goes.
    let garbage = ske(&x25519_params(), P256_SHA256, &[0x30; 70]);
    assert_eq!(
        judge(&real, &sh, Some(&garbage), &[]),
        Err(DetectionReason::SignatureInvalid)
    );
    // A real signature, by another key than the leaf's.
    let other = signed_ske(&impostor, &sh, &x25519_params());
    assert_eq!(
        judge(&real, &sh, Some(&other), &[]),
        Err(DetectionReason::SignatureInvalid)
    );
    // A genuine signature replayed from another handshake (other randoms).
    let replayed = signed_ske(
        &real,
        &hello(ECDHE_ECDSA, TlsVersion::TLS12),
        &x25519_params(),
    );
    let fresh = ServerHello {
        random: [0x44; 32],
        ..sh.clone()
    };
    assert_eq!(
        judge(&real, &fresh, Some(&replayed), &[]),
        Err(DetectionReason::SignatureInvalid)
    );
    // Every single-bit flip of a good signature's message or signature fails.
    let good = signed_ske(&real, &sh, &x25519_params());
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        assert!(
            judge(&real, &sh, Some(&bad), &[]).is_err(),
            "flip at byte {i} passed"
        );
    }
}

#[test]
fn a_scheme_the_client_did_not_offer_is_inconsistent() {
    let s = server();
    let sh = hello(ECDHE_ECDSA, TlsVersion::TLS12);
    let ske = signed_ske(&s, &sh, &x25519_params());
    assert_eq!(
        judge(&s, &sh, Some(&ske), &[0x0804]),
        Err(DetectionReason::HelloInconsistent)
    );
}

#[test]
fn rsa_and_legacy_key_exchanges_prove_nothing_in_the_clear() {
    let s = server();
    assert_eq!(
        judge(&s, &hello(RSA_KX, TlsVersion::TLS12), None, &[]),
        Ok(Proof::Unproven(Unproven::KeyExchange))
    );
    // An RSA suite with a ServerKeyExchange is no real server's flight.
    assert_eq!(
        judge(&s, &hello(RSA_KX, TlsVersion::TLS12), Some(&[1, 2, 3]), &[]),
        Err(DetectionReason::HandshakeInvalid)
    );
    // TLS 1.0 ECDHE: signed with MD5‖SHA-1, not verified here.
    assert_eq!(
        judge(
            &s,
            &hello(ECDHE_RSA, TlsVersion::TLS10),
            Some(&[1, 2, 3]),
            &[]
        ),
        Ok(Proof::Unproven(Unproven::LegacyVersion))
    );
    // …but a missing ServerKeyExchange is missing at any version.
    assert_eq!(
        judge(&s, &hello(ECDHE_RSA, TlsVersion::TLS10), None, &[]),
        Err(DetectionReason::KeyExchangeMissing)
    );
}

#[test]
fn dhe_params_are_three_vectors_and_truncations_are_invalid() {
    let s = server();
    let sh = hello(DHE_RSA, TlsVersion::TLS12);
    let mut params = Vec::new();
    for len in [256u16, 1, 256] {
        params.extend_from_slice(&len.to_be_bytes());
        params.extend(std::iter::repeat_n(0x5a, len as usize));
    }
    assert_eq!(dhe_params(&params), Some(params.len()));
    // Signed with an ECDSA key for a DHE_RSA suite: the signature itself
    // verifies (webpki checks key against scheme, not the suite's name).
    let ske_ok = signed_ske(&s, &sh, &params);
    assert_eq!(judge(&s, &sh, Some(&ske_ok), &[]), Ok(Proof::Signed));
    for cut in 0..ske_ok.len() {
        assert!(
            judge(&s, &sh, Some(&ske_ok[..cut]), &[]).is_err(),
            "a ServerKeyExchange cut at {cut} passed"
        );
    }
    // Explicit curves, and an ECDHE point longer than the message.
    assert_eq!(super::ecdhe_params(&[1, 0, 0, 0]), None);
    assert_eq!(super::ecdhe_params(&[3, 0, 29, 32, 1]), None);
}

/// Not a test: what one proof costs (`cargo test --release --lib
/// possession_cost -- --ignored --nocapture`).
#[test]
#[ignore]
fn possession_cost() {
    let s = server();
    let sh = hello(ECDHE_ECDSA, TlsVersion::TLS12);
    let ske = signed_ske(&s, &sh, &x25519_params());
    let algs = algorithms();
    let n = 2000;
    let t = std::time::Instant::now();
    for _ in 0..n {
        prove(&CLIENT_RANDOM, &sh, &s.leaf, Some(&ske), &[], &algs).unwrap();
    }
    println!("prove: {:?} each", t.elapsed() / n);
}
