use super::*;

const LIMITS: Limits = Limits {
    max_header_bytes: 1024,
    max_uri_bytes: 128,
    max_headers: 16,
};

/// Feeds `stream` to a fresh framer in pieces split at `splits`, the way the
/// guard does: hold what is not passed, read more on `NeedMore`.
/// Returns the bytes passed and how it ended.
fn drive(stream: &[u8], splits: &[usize]) -> (usize, Option<Step>) {
    let mut framer = Framer::new(LIMITS);
    let mut held: Vec<u8> = Vec::new();
    let mut passed = 0;
    let mut cuts: Vec<usize> = splits.to_vec();
    cuts.push(stream.len());
    let mut from = 0;
    for cut in cuts {
        held.extend_from_slice(&stream[from..cut]);
        from = cut;
        loop {
            match framer.step(&held) {
                Step::Pass(n) => {
                    assert!(n > 0 && n <= held.len(), "pass {n} of {}", held.len());
                    held.drain(..n);
                    passed += n;
                }
                Step::NeedMore => break,
                other => return (passed + held.len(), Some(other)),
            }
        }
    }
    (passed, None)
}

/// Every split point of every valid stream passes every byte, and ends between requests.
fn assert_valid_everywhere(stream: &[u8]) {
    for a in 0..=stream.len() {
        let (passed, end) = drive(stream, &[a]);
        assert_eq!(
            end,
            None,
            "split at {a} of {:?}",
            String::from_utf8_lossy(stream)
        );
        assert_eq!(passed, stream.len(), "split at {a}");
    }
    // Byte by byte too.
    let all: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(drive(stream, &all), (stream.len(), None));
    let mut f = Framer::new(LIMITS);
    let mut rest = stream;
    while let Step::Pass(n) = f.step(rest) {
        rest = &rest[n..];
    }
    assert!(rest.is_empty() && f.at_head(), "must end between requests");
}

fn reject_of(stream: &[u8]) -> ProxyError {
    match drive(stream, &[]).1 {
        Some(Step::Reject(e)) => e,
        other => panic!("expected a reject, got {other:?}"),
    }
}

#[test]
fn simple_get() {
    assert_valid_everywhere(b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n");
}

#[test]
fn pipelined_requests_with_bodies() {
    assert_valid_everywhere(
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n\
PUT http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
GET http://a/y HTTP/1.0\r\n\r\n",
    );
}

#[test]
fn leading_blank_lines_are_skipped() {
    assert_valid_everywhere(b"\r\n\r\nGET http://a/ HTTP/1.1\r\n\r\n");
}

#[test]
fn equal_duplicate_lengths_are_accepted() {
    assert_valid_everywhere(
        b"POST http://a/ HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
    );
}

#[test]
fn connect_waits_for_the_answer() {
    let s = b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01garbage";
    let (passed, end) = drive(s, &[]);
    assert_eq!(end, Some(Step::AwaitConnect));
    assert_eq!(passed, s.len());
}

#[test]
fn accepted_connect_is_a_tunnel() {
    let head = b"CONNECT a:443 HTTP/1.1\r\n\r\n";
    let mut f = Framer::new(LIMITS);
    assert_eq!(f.step(head), Step::Pass(head.len()));
    assert!(f.awaiting_connect());
    assert_eq!(f.step(b"\x16\x03"), Step::AwaitConnect);
    f.connect_answered(true);
    assert!(f.in_tunnel());
    assert_eq!(f.step(b"GET / HTTP/1.1\r\n\r\n"), Step::Tunnel);
}

#[test]
fn refused_connect_keeps_framing_requests() {
    let head = b"CONNECT a:443 HTTP/1.1\r\n\r\n";
    let mut f = Framer::new(LIMITS);
    assert_eq!(f.step(head), Step::Pass(head.len()));
    f.connect_answered(false);
    assert!(f.at_head());
    let next = b"CONNECT a:443 HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\n\r\n";
    assert_eq!(f.step(next), Step::Pass(next.len()));
    // A refused CONNECT followed by smuggled framing is still caught.
    f.connect_answered(false);
    let bad = b"POST http://a/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert!(matches!(f.step(bad), Step::Reject(_)));
}

#[test]
fn cl_and_te_together_are_refused() {
    for s in [
        &b"POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ] {
        assert!(matches!(reject_of(s), ProxyError::BadRequest(m) if m.contains("both")));
    }
}

#[test]
fn conflicting_lengths_are_refused() {
    let e = reject_of(b"POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
    assert!(matches!(e, ProxyError::BadRequest(m) if m.contains("conflicting")));
    let e = reject_of(b"POST http://a/ HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n");
    assert_eq!(e.status(), 400);
}

#[test]
fn invalid_lengths_are_refused() {
    for v in ["-1", "+3", "0x10", "", "1 2", "99999999999999999999", "3a"] {
        let s = format!("POST http://a/ HTTP/1.1\r\nContent-Length: {v}\r\n\r\n");
        assert_eq!(reject_of(s.as_bytes()).status(), 400, "{v:?}");
    }
}

#[test]
fn transfer_codings_other_than_final_chunked_are_refused() {
    for v in ["gzip", "chunked, gzip", "identity"] {
        let s = format!("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: {v}\r\n\r\n");
        assert_eq!(reject_of(s.as_bytes()).status(), 400, "{v:?}");
    }
    assert_valid_everywhere(
        b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    );
    let e = reject_of(b"POST http://a/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert!(matches!(e, ProxyError::BadRequest(m) if m.contains("HTTP/1.0")));
}

#[test]
fn malformed_heads_are_400() {
    for s in [
        &b"GET\r\n\r\n"[..],
        b"GET http://a/ HTTP/2.0\r\n\r\n",
        b"GET http://a/ FOO\r\n\r\n",
        b"G\x00T http://a/ HTTP/1.1\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nBad Header: x\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\n: empty\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ] {
        assert_eq!(
            reject_of(s).status(),
            400,
            "{:?}",
            String::from_utf8_lossy(s)
        );
    }
}

#[test]
fn oversized_heads_are_431() {
    let mut s = b"GET http://a/ HTTP/1.1\r\n".to_vec();
    while s.len() <= LIMITS.max_header_bytes {
        s.extend_from_slice(b"X-Filler: 0123456789\r\n");
    }
    assert!(matches!(reject_of(&s), ProxyError::HeaderTooLarge(_)));
    let mut many = b"GET http://a/ HTTP/1.1\r\n".to_vec();
    for i in 0..=LIMITS.max_headers {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(matches!(reject_of(&many), ProxyError::HeaderTooLarge(_)));
}

#[test]
fn long_uris_are_414_complete_or_not() {
    let long = "a".repeat(LIMITS.max_uri_bytes + 1);
    let s = format!("GET http://a/{long} HTTP/1.1\r\n\r\n");
    assert!(matches!(reject_of(s.as_bytes()), ProxyError::UriTooLong(_)));
    let endless = format!("GET http://a/{}", "b".repeat(LIMITS.max_header_bytes));
    assert!(matches!(
        reject_of(endless.as_bytes()),
        ProxyError::UriTooLong(_)
    ));
}

#[test]
fn bad_chunks_are_refused() {
    for body in [
        &b"zz\r\n"[..],
        b"5\r\nhelloXX",
        b"ffffffffffffffffff\r\n",
        b"-1\r\n",
    ] {
        let mut s = b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        s.extend_from_slice(body);
        assert_eq!(
            reject_of(&s).status(),
            400,
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let mut s = b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    s.extend(std::iter::repeat_n(b'1', MAX_CHUNK_LINE + 1));
    assert_eq!(reject_of(&s).status(), 400);
}

#[test]
fn endless_trailers_are_431() {
    let mut s = b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
    while s.len() < 3 * LIMITS.max_header_bytes {
        s.extend_from_slice(b"X-Trailer: 0123456789\r\n");
    }
    assert!(matches!(reject_of(&s), ProxyError::HeaderTooLarge(_)));
}

#[test]
fn incomplete_input_never_rejects_early() {
    let s = b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
    for cut in 0..=s.len() {
        assert_eq!(drive(&s[..cut], &[]).1, None, "cut at {cut}");
    }
}

#[test]
fn connect_with_a_body_is_refused() {
    for s in [
        &b"CONNECT a:443 HTTP/1.1\r\nContent-Length: 26\r\n\r\nCONNECT b:443 HTTP/1.1\r\n\r\n"[..],
        b"CONNECT a:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        assert!(
            matches!(reject_of(s), ProxyError::BadRequest(m) if m.contains("CONNECT with a body")),
            "{}",
            String::from_utf8_lossy(s)
        );
    }
    // An explicit zero length is harmless and some clients send it.
    let head = b"CONNECT a:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(Framer::new(LIMITS).step(head), Step::Pass(head.len()));
}

/// A head of `filler` bytes of ordinary fields plus one `name` field whose
/// value is `value_len` bytes.
fn head_with(name: &str, value_len: usize, filler: usize) -> Vec<u8> {
    let mut s = b"GET http://a/ HTTP/1.1\r\n".to_vec();
    while s.len() < filler {
        let room = (filler - s.len()).clamp(1, 200);
        s.extend_from_slice(format!("X-Filler: {}\r\n", "f".repeat(room)).as_bytes());
    }
    s.extend_from_slice(format!("{name}: Negotiate ").as_bytes());
    s.extend(std::iter::repeat_n(b'A', value_len));
    s.extend_from_slice(b"\r\n\r\n");
    s
}

#[test]
fn one_proxy_authorization_may_carry_a_maximal_kerberos_token() {
    // base64 of MaxTokenSize (65,535 bytes), the rest of the head near the limit.
    let b64 = 65_535usize.div_ceil(3) * 4;
    let s = head_with("Proxy-Authorization", b64, LIMITS.max_header_bytes - 100);
    assert_eq!(drive(&s, &[]), (s.len(), None));
    assert_eq!(
        drive(&s, &[1000, 1010, 30_000, s.len() - 1]),
        (s.len(), None)
    );
    // Every prefix (sampled, and around the field's name) needs more.
    let name_at = s.windows(6).position(|w| w == b"Proxy-").unwrap();
    let cuts = (0..s.len()).step_by(997).chain(name_at..name_at + 30);
    for cut in cuts {
        assert_eq!(drive(&s[..cut], &[]).1, None, "cut at {cut}");
    }
    let lower = head_with("proxy-authorization", b64, 0);
    assert_eq!(drive(&lower, &[]), (lower.len(), None));
}

#[test]
fn only_that_field_gets_the_room() {
    let too_long = head_with("Proxy-Authorization", MAX_PROXY_AUTHORIZATION, 0);
    assert!(matches!(
        reject_of(&too_long),
        ProxyError::HeaderTooLarge(_)
    ));
    let other = head_with("X-Large", 2 * LIMITS.max_header_bytes, 0);
    assert!(matches!(reject_of(&other), ProxyError::HeaderTooLarge(_)));
    // The rest of the head is still held to the limit beside a large token.
    let both = head_with("Proxy-Authorization", 60_000, 2 * LIMITS.max_header_bytes);
    assert!(matches!(reject_of(&both), ProxyError::HeaderTooLarge(_)));
    // A second Proxy-Authorization is an ordinary field.
    let mut two = head_with("Proxy-Authorization", 60_000, 0);
    two.truncate(two.len() - 2);
    two.extend_from_slice(b"Proxy-Authorization: Basic ");
    two.extend(std::iter::repeat_n(b'B', 2 * LIMITS.max_header_bytes));
    two.extend_from_slice(b"\r\n\r\n");
    assert!(matches!(reject_of(&two), ProxyError::HeaderTooLarge(_)));
}
