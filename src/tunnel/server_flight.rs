//! The server's first flight on a tunnel, read from its own socket — sans
//! I/O. [`read_flight`] is a pure function over the server bytes received so
//! far: it needs more, or it says what the server answered the ClientHello
//! with (TLS ≤ 1.2: a full handshake with its certificate chain, or an
//! abbreviated one; TLS 1.3: the ServerHello, after which all is encrypted),
//! or why the bytes are no TLS server's answer. Handshake messages are
//! reassembled across records (a certificate chain usually spans several).

use tls_parser::{
    parse_tls_message_handshake, parse_tls_server_hello_extensions, TlsExtension, TlsMessage,
    TlsMessageHandshake,
};

/// TLS record header length.
const RECORD_HEADER: usize = 5;
/// Largest TLS record fragment we accept (2^14 plus the allowance RFC 5246
/// gives compressed and protected records).
const MAX_RECORD: usize = (1 << 14) + 2048;
/// The ServerHello random that marks a HelloRetryRequest (RFC 8446 §4.1.3).
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// What the ServerHello chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// The version in force: `supported_versions` when present, else the hello's.
    pub version: u16,
    /// The cipher suite chosen.
    pub cipher: u16,
    /// The legacy session ID.
    pub session_id: Vec<u8>,
    /// TLS 1.3: the key share group chosen.
    pub key_share: Option<u16>,
    /// A TLS 1.3 HelloRetryRequest, not a ServerHello proper.
    pub retry: bool,
}

/// How the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flight {
    /// Not enough bytes yet.
    NeedMore,
    /// TLS ≤ 1.2, full handshake: the chain as sent (leaf first), up to
    /// ServerHelloDone. An empty chain is a server with no certificate.
    Full {
        /// The ServerHello.
        hello: ServerHello,
        /// DER certificates, leaf first.
        chain: Vec<Vec<u8>>,
    },
    /// TLS ≤ 1.2, abbreviated (resumed) handshake: ServerHello, then
    /// ChangeCipherSpec — no certificate.
    Resumed(ServerHello),
    /// TLS 1.3 (or its HelloRetryRequest): the rest is encrypted.
    Tls13(ServerHello),
    /// The server answered with an alert.
    Alert,
    /// The server does not speak TLS at all.
    NotTls,
    /// Not TLS, or TLS this parser cannot follow; the reason, for the log.
    Invalid(&'static str),
}

/// Reads the server's flight from `buf` (every byte it sent so far).
pub fn read_flight(buf: &[u8]) -> Flight {
    let mut handshake: Vec<u8> = Vec::new();
    let mut hello: Option<ServerHello> = None;
    let mut chain: Option<Vec<Vec<u8>>> = None;
    if buf.first().is_some_and(|b| !(0x14..=0x17).contains(b)) {
        return Flight::NotTls;
    }
    let mut at = 0;
    loop {
        let Some(header) = buf.get(at..at + RECORD_HEADER) else {
            return Flight::NeedMore;
        };
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if header[1] != 3 || len == 0 || len > MAX_RECORD {
            return Flight::Invalid("not a TLS record");
        }
        let Some(fragment) = buf.get(at + RECORD_HEADER..at + RECORD_HEADER + len) else {
            return Flight::NeedMore;
        };
        at += RECORD_HEADER + len;
        match header[0] {
            0x15 => return Flight::Alert,
            // ChangeCipherSpec straight after the ServerHello: resumption.
            0x14 => {
                return match (hello, &chain) {
                    (Some(h), None) if handshake.is_empty() => Flight::Resumed(h),
                    _ => Flight::Invalid("ChangeCipherSpec out of order"),
                }
            }
            0x16 => handshake.extend_from_slice(fragment),
            _ => return Flight::Invalid("not a handshake record"),
        }
        // Every whole message in the reassembled handshake bytes, in order.
        while let [_, l0, l1, l2, ..] = handshake[..] {
            let msg_len = u32::from_be_bytes([0, l0, l1, l2]) as usize + 4;
            if handshake.len() < msg_len {
                break;
            }
            let msg: Vec<u8> = handshake.drain(..msg_len).collect();
            match message(&msg, &mut hello, &mut chain) {
                Step::More => {}
                Step::Done(f) => return f,
            }
        }
    }
}

enum Step {
    More,
    Done(Flight),
}

/// One handshake message of the flight.
fn message(msg: &[u8], hello: &mut Option<ServerHello>, chain: &mut Option<Vec<Vec<u8>>>) -> Step {
    let Ok((_, TlsMessage::Handshake(parsed))) = parse_tls_message_handshake(msg) else {
        return Step::Done(Flight::Invalid(
            "a handshake message the parser cannot follow",
        ));
    };
    match (parsed, hello.is_some()) {
        (TlsMessageHandshake::ServerHello(sh), false) => {
            let Some(h) = server_hello(&sh) else {
                return Step::Done(Flight::Invalid("ServerHello extensions"));
            };
            if h.version == 0x0304 {
                return Step::Done(Flight::Tls13(h));
            }
            *hello = Some(h);
            Step::More
        }
        (TlsMessageHandshake::Certificate(c), true) if chain.is_none() => {
            *chain = Some(c.cert_chain.iter().map(|c| c.data.to_vec()).collect());
            Step::More
        }
        (
            TlsMessageHandshake::ServerKeyExchange(_)
            | TlsMessageHandshake::CertificateRequest(_)
            | TlsMessageHandshake::CertificateStatus(_),
            true,
        ) => Step::More,
        (TlsMessageHandshake::ServerDone(_), true) => Step::Done(Flight::Full {
            hello: hello.take().expect("checked above"),
            chain: chain.take().unwrap_or_default(),
        }),
        _ => Step::Done(Flight::Invalid("handshake messages out of order")),
    }
}

fn server_hello(sh: &tls_parser::TlsServerHelloContents<'_>) -> Option<ServerHello> {
    let mut h = ServerHello {
        version: sh.version.0,
        cipher: sh.cipher.0,
        session_id: sh.session_id.map(<[u8]>::to_vec).unwrap_or_default(),
        key_share: None,
        retry: sh.random == HRR_RANDOM,
    };
    let extensions = match sh.ext {
        Some(raw) => parse_tls_server_hello_extensions(raw).ok()?.1,
        None => Vec::new(),
    };
    for ext in extensions {
        match ext {
            TlsExtension::SupportedVersions(v) => h.version = v.first()?.0,
            // ServerHello: group + key; HelloRetryRequest: the group alone.
            TlsExtension::KeyShare(raw) => {
                h.key_share = raw.get(..2).map(|g| u16::from_be_bytes([g[0], g[1]]))
            }
            _ => {}
        }
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    }

    fn handshake(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        m.extend_from_slice(body);
        m
    }

    /// A TLS 1.2 ServerHello choosing `cipher`, session ID `sid`.
    fn server_hello(cipher: u16, sid: &[u8]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[7; 32]);
        b.push(sid.len() as u8);
        b.extend_from_slice(sid);
        b.extend_from_slice(&cipher.to_be_bytes());
        b.push(0);
        handshake(2, &b)
    }

    fn certificate(certs: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for c in certs {
            list.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
            list.extend_from_slice(c);
        }
        let mut b = (list.len() as u32).to_be_bytes()[1..].to_vec();
        b.extend_from_slice(&list);
        handshake(11, &b)
    }

    #[test]
    fn a_certificate_less_handshake_is_a_full_one_with_an_empty_chain() {
        let mut hs = server_hello(0xc02f, &[1, 2, 3]);
        hs.extend_from_slice(&handshake(14, &[]));
        let f = read_flight(&record(22, &hs));
        let Flight::Full { hello, chain } = f else {
            panic!("{f:?}")
        };
        assert!(chain.is_empty());
        assert_eq!((hello.version, hello.cipher), (0x0303, 0xc02f));
        assert_eq!(hello.session_id, [1, 2, 3]);
    }

    #[test]
    fn a_chain_split_over_records_is_reassembled_and_prefixes_need_more() {
        let mut hs = server_hello(0xc02f, &[]);
        hs.extend_from_slice(&certificate(&[&[0x30; 300], &[0x31; 200]]));
        hs.extend_from_slice(&handshake(14, &[]));
        let (a, b) = hs.split_at(100);
        let mut wire = record(22, a);
        wire.extend_from_slice(&record(22, b));
        for cut in 0..wire.len() {
            assert_eq!(read_flight(&wire[..cut]), Flight::NeedMore, "cut at {cut}");
        }
        let Flight::Full { chain, .. } = read_flight(&wire) else {
            panic!()
        };
        assert_eq!(chain, vec![vec![0x30; 300], vec![0x31; 200]]);
    }

    #[test]
    fn resumption_alerts_and_garbage() {
        let mut wire = record(22, &server_hello(0xc02f, &[9; 32]));
        wire.extend_from_slice(&record(20, &[1]));
        assert!(matches!(read_flight(&wire), Flight::Resumed(h) if h.session_id == [9; 32]));
        assert_eq!(read_flight(&record(21, &[2, 40])), Flight::Alert);
        assert_eq!(read_flight(b"SSH-2.0-OpenSSH_9\r\n"), Flight::NotTls);
        assert_eq!(read_flight(b"S"), Flight::NotTls);
        // A Certificate before any ServerHello.
        assert!(matches!(
            read_flight(&record(22, &certificate(&[&[0x30; 10]]))),
            Flight::Invalid(_)
        ));
    }
}
