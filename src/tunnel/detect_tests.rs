use super::*;
use std::sync::Arc;

/// A real ClientHello, written by rustls, for `sni` with ALPN h2 + http/1.1.
pub fn rustls_hello(sni: &str) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// The same handshake bytes, re-cut into records of at most `size` bytes.
fn refragment(hello: &[u8], size: usize) -> Vec<u8> {
    let payload = &hello[5..];
    let mut out = Vec::new();
    for chunk in payload.chunks(size) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

fn tls_of(buf: &[u8]) -> ClientHello {
    match classify(buf) {
        Classified::Done(Protocol::Tls(h)) => *h,
        other => panic!("expected TLS, got {other:?}"),
    }
}

/// Every strict prefix needs more, and the hint never overshoots the end.
fn assert_prefixes_need_more(full: &[u8]) {
    for cut in 0..full.len() {
        match classify(&full[..cut]) {
            Classified::NeedMore(n) => assert!(
                n >= 1 && cut + n <= full.len(),
                "cut {cut}: need {n} of {}",
                full.len()
            ),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
}

#[test]
fn real_client_hello() {
    let hello = rustls_hello("Example.TEST");
    let h = tls_of(&hello);
    assert_eq!(h.sni.as_deref(), Some("example.test"));
    assert_eq!(h.alpn, vec!["h2", "http/1.1"]);
    assert!(
        h.versions.contains(&TlsVersion::TLS13) && h.versions.contains(&TlsVersion::TLS12),
        "{:?}",
        h.versions
    );
    assert_eq!(h.ja3n.len(), 32);
    assert_prefixes_need_more(&hello);
    // Bytes after the hello (early data, payload) do not change the answer.
    let mut more = hello.clone();
    more.extend_from_slice(b"\x17\x03\x03\x00\x05hello");
    assert_eq!(tls_of(&more), h);
}

#[test]
fn hello_fragmented_across_records() {
    let hello = rustls_hello("split.example.test");
    let whole = tls_of(&hello);
    for size in [1, 2, 3, 7, 50, 100] {
        let cut = refragment(&hello, size);
        let h = tls_of(&cut);
        // Where the hello's records end is all that differs.
        assert_eq!(h.record_bytes, cut.len(), "records of {size}");
        let same = ClientHello {
            record_bytes: whole.record_bytes,
            ..h
        };
        assert_eq!(same, whole, "records of {size}");
        assert_prefixes_need_more(&cut);
    }
}

#[test]
fn ja3_ignores_grease_and_is_stable() {
    assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a0b) && !is_grease(0x1301));
    let a = tls_of(&rustls_hello("a.example.test"));
    let b = tls_of(&rustls_hello("b.example.test"));
    assert_eq!(a.ja3n, b.ja3n, "same client, same fingerprint");
}

#[test]
fn plain_text_protocols() {
    assert_eq!(
        classify(b"GET / HTTP/1.1\r\n"),
        Classified::Done(Protocol::Http)
    );
    assert_eq!(
        classify(b"OPTIONS * HTTP/1.1"),
        Classified::Done(Protocol::Http)
    );
    assert_eq!(
        classify(b"SSH-2.0-OpenSSH_9.2\r\n"),
        Classified::Done(Protocol::Ssh)
    );
    assert_eq!(classify(b"G"), Classified::NeedMore(3));
    assert_eq!(classify(b"S"), Classified::NeedMore(3));
    assert_eq!(
        classify(b"P"),
        Classified::NeedMore(5),
        "POST and PATCH need the longest"
    );
    assert_eq!(classify(b"GX"), Classified::Done(Protocol::Unknown));
    assert_eq!(
        classify(b"\x00\x01\x02"),
        Classified::Done(Protocol::Unknown)
    );
    assert_eq!(classify(b""), Classified::NeedMore(1));
}

#[test]
fn tls_lookalikes_are_unknown() {
    for bad in [
        &b"\x16\x03\x01\x00\x00"[..],                        // empty record
        b"\x16\x02\x00\x00\x05hello",                        // not version 3
        b"\x16\x03\x01\x50\x00",                             // record longer than 2^14
        b"\x16\x03\x03\x00\x04\x02\x00\x00\x00",             // a ServerHello, not a ClientHello
        b"\x16\x03\x01\x00\x04\x01\xff\xff\xff",             // a hello longer than we reassemble
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00\x17\x03", // then a non-handshake record
    ] {
        assert_eq!(
            classify(bad),
            Classified::Done(Protocol::Unknown),
            "{bad:?}"
        );
    }
    // A complete but garbled hello body parses as unknown, not a panic.
    let mut hello = rustls_hello("x.example.test");
    let n = hello.len();
    hello[n - 20..].fill(0xff);
    let _ = classify(&hello);
}

#[test]
fn no_mutation_panics() {
    let hello = rustls_hello("mutate.example.test");
    for i in 0..hello.len() {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut m = hello.clone();
            m[i] = v;
            let _ = classify(&m);
            let _ = classify(&m[..i]);
        }
    }
}
