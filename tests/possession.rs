//! A TLS ≤ 1.2 server passes detection only by proving it holds the key of
//! the certificate it shows. Fakes replay a real chain (a leaf the proxy's
//! CA signed for the SNI) without using its key: with no ServerKeyExchange,
//! with one signed with garbage or replayed from another client's handshake,
//! with RSA key exchange (probed by default, refused when configured), and
//! with a resumption of a session never proven here — each refused, the
//! client sent nothing of the server, the server nothing after the
//! ClientHello. The same fake signing with the leaf's key passes (so the
//! signature is what decides), and genuine OpenSSL servers pass with ECDHE,
//! DHE, RSA key exchange and TLS 1.3 for Python `ssl`, curl and rustls.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::tls_lab::*;
use common::*;
use rcgen::{KeyPair, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAME: &str = "origin.example.test";

/// A proxy with the local realm and detection on, trusting `ca`, NAME at
/// 127.0.0.1, CONNECT open to `ports`; `detection` adds `[detection]` keys.
fn proxy(dir: &std::path::Path, ca: &TestCa, ports: &[u16], detection: &str) -> Gatehouse {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let cfg = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ \"{NAME}\" = [\"127.0.0.1\"] }}\n\
         [tunnel]\nallowed_ports = [{}]\n\
         [detection]\nenabled = true\ntimeout = \"3s\"\nca_file = \"{}\"\n{detection}\n",
        local_realm(dir),
        ports.join(", "),
        ca.pem_path.display()
    );
    Gatehouse::start("", &cfg)
}

fn auth() -> String {
    format!(
        "User-Agent: Mozilla/5.0\r\nProxy-Authorization: {}\r\n",
        basic("bob:bob-pw")
    )
}

/// A leaf for NAME signed by the test CA, its key, and how a server with
/// that key type speaks: its ECDHE suite, the scheme its key signs with
/// (rcgen: ECDSA P-256 SHA-256, RSA PKCS#1 SHA-256), and a plausible scheme
/// and length for a garbage signature.
struct Leaf {
    kind: &'static str,
    der: Vec<u8>,
    key: KeyPair,
    ecdhe: u16,
    signs_with: u16,
    garbage: (u16, usize),
}

fn leaves(dir: &std::path::Path, ca: &TestCa) -> [Arc<Leaf>; 2] {
    let rsa = rsa_key(&dir.join("rsa.key"));
    [
        (
            "ECDSA",
            KeyPair::generate().unwrap(),
            0xc02b,
            0x0403,
            (0x0403, 72),
        ),
        ("RSA", rsa, 0xc02f, 0x0401, (0x0804, 256)),
    ]
    .map(|(kind, key, ecdhe, signs_with, garbage)| {
        let der = ca.leaf_with_key(&[NAME], &key).0.to_vec();
        let leaf = Leaf {
            kind,
            der,
            key,
            ecdhe,
            signs_with,
            garbage,
        };
        Arc::new(leaf)
    })
}

/// What a fake's ServerKeyExchange carries.
#[derive(Clone, Copy)]
enum Ske {
    /// None at all.
    Missing,
    /// x25519 params, an offered scheme, signature bytes of no key.
    Garbage,
    /// Signed by the leaf's key over another client's random: a
    /// ServerKeyExchange recorded from a genuine handshake, replayed.
    Replayed,
    /// Signed by the leaf's key over this client's random: the control.
    Genuine,
    /// As `Genuine`, with a fixed server random: a handshake recorded once
    /// and played again by a client and server in league.
    Recorded,
}

/// A TLS 1.2 full flight answering `hello`: ServerHello (`suite`, session
/// `sid`), the leaf's real chain, the ServerKeyExchange `ske`, ServerHelloDone.
fn full_flight(hello: &[u8], leaf: &Leaf, suite: u16, ske: Ske, sid: &[u8]) -> Vec<u8> {
    // Fresh, as every real server's, unless the flight is a recording.
    let mut server_random = [0x42; 32];
    if !matches!(ske, Ske::Recorded) {
        getrandom::fill(&mut server_random).unwrap();
    }
    let mut sh = vec![3, 3];
    sh.extend(server_random);
    sh.push(sid.len() as u8);
    sh.extend(sid);
    sh.extend(suite.to_be_bytes());
    sh.push(0);
    let mut hs = tls_handshake(2, &sh);
    let cert = [&(leaf.der.len() as u32).to_be_bytes()[1..], &leaf.der].concat();
    let certs = [&(cert.len() as u32).to_be_bytes()[1..], &cert].concat();
    hs.extend(tls_handshake(11, &certs));
    let mut params = vec![3, 0, 0x1d, 32];
    params.extend([0x99; 32]);
    let signed = |client_random: &[u8]| {
        let message = [client_random, &server_random, &params].concat();
        leaf.key.sign(&message).unwrap()
    };
    let signature = match ske {
        Ske::Missing => None,
        Ske::Garbage => Some((leaf.garbage.0, vec![0x5a; leaf.garbage.1])),
        Ske::Replayed => Some((leaf.signs_with, signed(&[0x11; 32]))),
        Ske::Genuine | Ske::Recorded => Some((leaf.signs_with, signed(&hello[11..43]))),
    };
    if let Some((scheme, signature)) = signature {
        params.extend(scheme.to_be_bytes());
        params.extend(tls_vec16(&signature));
        hs.extend(tls_handshake(12, &params));
    }
    hs.extend(tls_handshake(14, &[]));
    tls_record(0x16, &hs)
}

/// An abbreviated handshake resuming `sid`: ServerHello, ChangeCipherSpec
/// and an "encrypted" Finished.
fn resumed_flight(sid: &[u8]) -> Vec<u8> {
    let sh = [
        &[3, 3][..],
        &[0x42; 32],
        &[sid.len() as u8],
        sid,
        &[0xc0, 0x2b, 0],
    ]
    .concat();
    [
        tls_record(0x16, &tls_handshake(2, &sh)),
        tls_record(0x14, &[1]),
        tls_record(0x16, &[0x5a; 40]),
    ]
    .concat()
}

/// What a case should come to.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Refused on the flight alone, no probe: the x-exception-id.
    Refused(&'static str),
    /// Refused by a probe of the fake that failed.
    RefusedByProbe,
    /// Released to the client.
    Passes,
}

struct Case {
    what: String,
    port: u16,
    seen: Received,
    hello: Vec<u8>,
    expect: Expect,
}

/// A proxy (`detection`: extra `[detection]` keys) open to the cases'
/// ports; each case through it in turn: the client sends its hello and the
/// payload marker, reads until the proxy closes or the fake acknowledges
/// the payload; then the case's access log line.
async fn run(dir: &std::path::Path, ca: &TestCa, detection: &str, cases: &[Case]) {
    let ports: Vec<u16> = cases.iter().map(|c| c.port).collect();
    let gh = proxy(dir, ca, &ports, detection);
    for (i, c) in cases.iter().enumerate() {
        let before = c.seen.connections();
        let mut s = connect_through(gh.addr(), &format!("{NAME}:{}", c.port), &auth())
            .await
            .expect("the CONNECT itself is answered 200");
        s.write_all(&[&c.hello[..], PAYLOAD_MARKER].concat())
            .await
            .unwrap();
        let (mut reply, mut buf) = (Vec::new(), [0u8; 4096]);
        while !reply.ends_with(PAYLOAD_ACK) {
            match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                Ok(Ok(n @ 1..)) => reply.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        drop(s);
        let line = gh.log_lines(i + 1).swap_remove(i);
        let (what, id) = (&c.what, &line["x-exception-id"]);
        if let Expect::Passes = c.expect {
            assert!(reply.starts_with(&[0x16, 3, 3]), "{what}: {reply:?}");
            assert!(
                reply.ends_with(PAYLOAD_ACK),
                "{what}: the payload reached the server"
            );
            assert_eq!(line["s-action"], "TCP_ACCELERATED", "{what}: {id}");
            continue;
        }
        assert!(reply.is_empty(), "{what}: the client got {reply:?}");
        assert!(
            !c.seen.any_contains(PAYLOAD_MARKER),
            "{what}: payload reached the fake"
        );
        assert_eq!(line["s-action"], "TCP_DENIED", "{what}");
        assert_eq!(line["x-sni"], NAME, "{what}");
        match c.expect {
            Expect::Refused(want) => {
                assert_eq!(id, want, "{what}");
                assert_eq!(c.seen.connections(), before + 1, "{what}: no probe");
            }
            _ => {
                assert!(
                    id.starts_with("ssl_") && id != "ssl_key_exchange_unproven",
                    "{what}: {id}"
                );
                let n = c.seen.connections();
                assert_eq!(n, before + 2, "{what}: the tunnel's and the probe's");
            }
        }
    }
}

/// A fake answering every connection with `leaf`'s chain, `suite` and `ske`
/// (and a new session), and its case: a client offering no session.
async fn replayer(leaf: &Arc<Leaf>, suite: u16, ske: Ske, expect: Expect, what: &str) -> Case {
    let l = leaf.clone();
    let answer: Answer = Arc::new(move |_, hello| full_flight(hello, &l, suite, ske, &[0x51; 32]));
    let (port, seen) = answering_server(answer).await;
    let hello = client_hello12(NAME, &[]);
    let what = format!("{what}, suite {suite:#06x}, {} leaf", leaf.kind);
    Case {
        what,
        port,
        seen,
        hello,
        expect,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_chain_with_no_server_key_exchange_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let mut cases = Vec::new();
    for leaf in &leaves(dir.path(), &ca) {
        let expect = Expect::Refused("ssl_server_key_exchange_missing");
        cases.push(replayer(leaf, leaf.ecdhe, Ske::Missing, expect, "no SKE").await);
    }
    run(dir.path(), &ca, "", &cases).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_exchange_not_signed_for_this_client_by_the_leafs_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let mut cases = Vec::new();
    let invalid = Expect::Refused("ssl_server_signature_invalid");
    for leaf in &leaves(dir.path(), &ca) {
        for (ske, expect, what) in [
            (Ske::Garbage, invalid, "garbage signature"),
            (Ske::Replayed, invalid, "replayed signature"),
            (Ske::Genuine, Expect::Passes, "control, the leaf's key"),
        ] {
            cases.push(replayer(leaf, leaf.ecdhe, ske, expect, what).await);
        }
    }
    run(dir.path(), &ca, "", &cases).await;
}

/// A client and server in league play one recorded, genuinely signed
/// handshake again (same client random, same server random): the first
/// time passes — nothing on the wire tells it from a live one — the
/// repeat is refused (found by an attacker's review).
#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_handshake_played_again_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let [leaf, _] = leaves(dir.path(), &ca);
    let hello = client_hello12_with(NAME, &[], [0x77; 32]);
    let mut cases = Vec::new();
    for expect in [Expect::Passes, Expect::Refused("ssl_handshake_replayed")] {
        let mut c = replayer(&leaf, leaf.ecdhe, Ske::Recorded, expect, "recorded").await;
        c.hello = hello.clone();
        cases.push(c);
    }
    run(dir.path(), &ca, "", &cases).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rsa_key_exchange_is_probed_by_default_and_refused_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let leaves = leaves(dir.path(), &ca);
    let refuse = "rsa_key_exchange = \"refuse\"";
    for (config, expect, what) in [
        ("", Expect::RefusedByProbe, "probe (default)"),
        (refuse, Expect::Refused("ssl_key_exchange_unproven"), refuse),
    ] {
        let mut cases = Vec::new();
        for leaf in &leaves {
            cases.push(replayer(leaf, 0x009c, Ske::Missing, expect, what).await);
        }
        run(dir.path(), &ca, config, &cases).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_whose_handshake_was_never_proven_is_probed_when_resumed() {
    // The fake's full handshake (session S) carries a replayed key exchange
    // and is refused; then it resumes S for a client offering it: refused
    // too, as S was not remembered, so a probe decides (and fails).
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let [leaf, _] = leaves(dir.path(), &ca);
    const S: [u8; 32] = [0x5e; 32];
    let answer: Answer = Arc::new(move |n, hello| match n {
        0 => full_flight(hello, &leaf, 0xc02b, Ske::Replayed, &S),
        _ => resumed_flight(&hello[44..44 + hello[43] as usize]),
    });
    let (port, seen) = answering_server(answer).await;
    let case = |what: &str, hello, expect| Case {
        what: what.into(),
        port,
        seen: seen.clone(),
        hello,
        expect,
    };
    let cases = [
        case(
            "full, S",
            client_hello12(NAME, &[]),
            Expect::Refused("ssl_server_signature_invalid"),
        ),
        case(
            "resuming S",
            client_hello12(NAME, &S),
            Expect::RefusedByProbe,
        ),
    ];
    run(dir.path(), &ca, "", &cases).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn genuine_openssl_servers_pass_with_every_key_exchange() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let ecdsa = ca.leaf_pem(dir.path(), &[NAME]);
    let rsa = (dir.path().join("rsa.pem"), dir.path().join("rsa.key"));
    std::fs::write(&rsa.0, ca.leaf_with_key(&[NAME], &rsa_key(&rsa.1)).1).unwrap();
    // (leaf, TLS version, the suite every client is held to).
    let table = [
        (&ecdsa, "1.2", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        (&rsa, "1.2", "ECDHE-RSA-AES128-GCM-SHA256"),
        (&rsa, "1.2", "DHE-RSA-AES128-GCM-SHA256"),
        (&rsa, "1.2", "AES128-GCM-SHA256"),
        (&ecdsa, "1.3", ""),
    ];
    // RSA key exchange and TLS 1.3 are probed, while the tunnel's own
    // handshake waits on the proxy: s_server, one connection at a time,
    // would never answer the probe. Those are the same OpenSSL behind
    // Python's threads, accepting the ECDHE suite the probe offers too.
    let servers: Vec<TlsServer> = (table.iter())
        .map(|(leaf, version, suite)| match !suite.contains("DHE") {
            true => threaded_www(
                &leaf.0,
                &leaf.1,
                version,
                &format!("{suite}:{}", table[1].2),
            ),
            false => s_server(&leaf.0, &leaf.1, &["-tls1_2", "-cipher", suite]),
        })
        .collect();
    let gh = proxy(
        dir.path(),
        &ca,
        &servers.iter().map(|s| s.port).collect::<Vec<_>>(),
        "",
    );
    let mut tunnels = 0;
    for ((_, version, suite), server) in table.iter().zip(&servers) {
        let dest = format!("{NAME}:{}", server.port);
        let (want, curl_tls, rustls_version) = match *version {
            "1.3" => (
                "TLSv1.3, Cipher is TLS_".into(),
                vec!["--tlsv1.3"],
                &rustls::version::TLS13,
            ),
            _ => (
                format!("TLSv1.2, Cipher is {suite}"),
                vec!["--tls-max", "1.2", "--ciphers", suite],
                &rustls::version::TLS12,
            ),
        };
        let mut answers = vec![
            (
                "python",
                python_get(gh.addr(), &dest, &ca, "bob:bob-pw", version, suite).await,
            ),
            (
                "curl",
                curl_get(gh.addr(), &dest, &ca, "bob:bob-pw", &curl_tls).await,
            ),
        ];
        // rustls speaks no DHE and no RSA key exchange.
        if suite.starts_with("ECDHE") || *version == "1.3" {
            let answer = rustls_get(gh.addr(), &dest, &auth(), &ca, rustls_version).await;
            answers.push(("rustls", answer));
        }
        for (client, answer) in answers {
            assert!(
                answer.contains(&want),
                "{client}, {suite} TLS {version}: {answer}"
            );
            tunnels += 1;
        }
    }
    let lines = gh.log_lines(tunnels);
    assert!(
        lines.iter().all(|l| l["s-action"] == "TCP_ACCELERATED"),
        "{lines:?}"
    );
}
