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

use crate::protocol::TlsVersion;

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
    pub version: TlsVersion,
    /// The cipher suite chosen.
    pub cipher: u16,
    /// The legacy session ID.
    pub session_id: Vec<u8>,
    /// TLS 1.3: the key share group chosen.
    pub key_share: Option<u16>,
    /// A TLS 1.3 HelloRetryRequest, not a ServerHello proper.
    pub retry: bool,
    /// The server's random, which (TLS ≤ 1.2) its key exchange signature covers.
    pub random: [u8; 32],
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
        /// The ServerKeyExchange body as sent (params and signature), if
        /// there was one: what proves the server holds the leaf's key.
        key_exchange: Option<Vec<u8>>,
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
    let mut seen = Seen::default();
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
                return match seen {
                    Seen {
                        hello: Some(h),
                        chain: None,
                        key_exchange: None,
                        ..
                    } if handshake.is_empty() => Flight::Resumed(h),
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
            match message(&msg, &mut seen) {
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

/// What the flight has said so far.
#[derive(Default)]
struct Seen {
    hello: Option<ServerHello>,
    chain: Option<Vec<Vec<u8>>>,
    key_exchange: Option<Vec<u8>>,
    /// A NewSessionTicket: only in an abbreviated handshake (RFC 5077 §3.1),
    /// before its ChangeCipherSpec.
    ticket: bool,
}

/// One handshake message of the flight, in the order RFC 5246 §7.3 gives:
/// ServerHello, Certificate, (CertificateStatus), ServerKeyExchange,
/// (CertificateRequest), ServerHelloDone — each at most once.
fn message(msg: &[u8], seen: &mut Seen) -> Step {
    let Ok((_, TlsMessage::Handshake(parsed))) = parse_tls_message_handshake(msg) else {
        return Step::Done(Flight::Invalid(
            "a handshake message the parser cannot follow",
        ));
    };
    let started = seen.hello.is_some();
    match parsed {
        TlsMessageHandshake::ServerHello(sh) if !started => {
            let Some(h) = server_hello(&sh) else {
                return Step::Done(Flight::Invalid("ServerHello extensions"));
            };
            if h.version == TlsVersion::TLS13 {
                return Step::Done(Flight::Tls13(h));
            }
            seen.hello = Some(h);
            Step::More
        }
        // A server resuming a session by ticket may issue a new one first.
        TlsMessageHandshake::NewSessionTicket(_)
            if started && !seen.ticket && seen.chain.is_none() && seen.key_exchange.is_none() =>
        {
            seen.ticket = true;
            Step::More
        }
        TlsMessageHandshake::Certificate(c)
            if started && !seen.ticket && seen.chain.is_none() && seen.key_exchange.is_none() =>
        {
            seen.chain = Some(c.cert_chain.iter().map(|c| c.data.to_vec()).collect());
            Step::More
        }
        // Kept whole: its layout depends on the suite, read by `possession`.
        TlsMessageHandshake::ServerKeyExchange(_) if started && seen.key_exchange.is_none() => {
            seen.key_exchange = Some(msg[4..].to_vec());
            Step::More
        }
        TlsMessageHandshake::CertificateRequest(_) | TlsMessageHandshake::CertificateStatus(_)
            if started =>
        {
            Step::More
        }
        TlsMessageHandshake::ServerDone(_) => match std::mem::take(seen) {
            Seen {
                hello: Some(hello),
                chain,
                key_exchange,
                ticket: false,
            } => Step::Done(Flight::Full {
                hello,
                chain: chain.unwrap_or_default(),
                key_exchange,
            }),
            _ => Step::Done(Flight::Invalid("handshake messages out of order")),
        },
        _ => Step::Done(Flight::Invalid("handshake messages out of order")),
    }
}

fn server_hello(sh: &tls_parser::TlsServerHelloContents<'_>) -> Option<ServerHello> {
    let mut h = ServerHello {
        version: TlsVersion::from_wire(sh.version.0),
        cipher: sh.cipher.0,
        session_id: sh.session_id.map(<[u8]>::to_vec).unwrap_or_default(),
        key_share: None,
        retry: sh.random == HRR_RANDOM,
        random: sh.random.try_into().ok()?,
    };
    let extensions = match sh.ext {
        Some(raw) => parse_tls_server_hello_extensions(raw).ok()?.1,
        None => Vec::new(),
    };
    for ext in extensions {
        match ext {
            TlsExtension::SupportedVersions(v) => h.version = TlsVersion::from_wire(v.first()?.0),
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
        let Flight::Full {
            hello,
            chain,
            key_exchange,
        } = f
        else {
            panic!("{f:?}")
        };
        assert!(chain.is_empty());
        assert_eq!(key_exchange, None);
        assert_eq!((hello.version, hello.cipher), (TlsVersion::TLS12, 0xc02f));
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

    #[test]
    fn the_key_exchange_is_kept_whole_and_each_message_comes_once_in_order() {
        let ske = handshake(12, &[3, 0, 29, 1, 9, 4, 3, 0, 1, 0xaa]);
        let done = handshake(14, &[]);
        let cert = certificate(&[&[0x30; 10]]);
        let flight = |msgs: &[&[u8]]| {
            let mut hs = server_hello(0xc02b, &[]);
            for m in msgs {
                hs.extend_from_slice(m);
            }
            read_flight(&record(22, &hs))
        };
        let Flight::Full { key_exchange, .. } = flight(&[&cert, &ske, &done]) else {
            panic!()
        };
        assert_eq!(key_exchange.as_deref(), Some(&ske[4..]));
        for bad in [
            flight(&[&cert, &ske, &ske, &done]),
            flight(&[&ske, &cert, &done]),
            flight(&[&cert, &cert, &done]),
        ] {
            assert!(matches!(bad, Flight::Invalid(_)), "{bad:?}");
        }
        // A ServerHelloDone alone is no flight.
        assert!(matches!(
            read_flight(&record(22, &done)),
            Flight::Invalid(_)
        ));
        // A resumption by ticket that issues a new ticket first.
        let mut wire = record(22, &server_hello(0xc02f, &[]));
        wire.extend_from_slice(&record(22, &handshake(4, &[0, 0, 0, 60, 0, 2, 1, 2])));
        wire.extend_from_slice(&record(20, &[1]));
        assert!(
            matches!(read_flight(&wire), Flight::Resumed(_)),
            "{:?}",
            read_flight(&wire)
        );
        // …but a ticket is no part of a full handshake's first flight.
        let mut hs = server_hello(0xc02b, &[]);
        hs.extend_from_slice(&handshake(4, &[0, 0, 0, 60, 0, 2, 1, 2]));
        hs.extend_from_slice(&cert);
        hs.extend_from_slice(&done);
        assert!(matches!(read_flight(&record(22, &hs)), Flight::Invalid(_)));
        // After a key exchange, ChangeCipherSpec is not a resumption.
        let mut hs = server_hello(0xc02b, &[]);
        hs.extend_from_slice(&ske);
        let mut wire = record(22, &hs);
        wire.extend_from_slice(&record(20, &[1]));
        assert!(matches!(read_flight(&wire), Flight::Invalid(_)));
    }

    proptest::proptest! {
        /// The fuzz target's property (integration/fuzz server_flight): a
        /// decision on a prefix never changes as the server sends more.
        #[test]
        fn a_decision_on_a_prefix_never_changes(
            tail in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            splits in proptest::collection::vec(1usize..40, 0..6),
            mutate in proptest::option::of((0usize..400, proptest::num::u8::ANY)),
        ) {
            let mut hs = server_hello(0xc02f, &[5; 8]);
            hs.extend_from_slice(&certificate(&[&[0x30; 120]]));
            hs.extend_from_slice(&handshake(12, &[3, 0, 29, 2, 7, 7, 4, 3, 0, 0]));
            hs.extend_from_slice(&handshake(14, &[]));
            let mut wire = Vec::new();
            let mut rest = &hs[..];
            for n in splits {
                let (a, b) = rest.split_at(n.min(rest.len()));
                if !a.is_empty() {
                    wire.extend_from_slice(&record(22, a));
                }
                rest = b;
            }
            if !rest.is_empty() {
                wire.extend_from_slice(&record(22, rest));
            }
            if let Some((at, b)) = mutate {
                let i = at % wire.len();
                wire[i] = b;
            }
            wire.extend_from_slice(&tail);
            let mut first: Option<Flight> = None;
            for cut in 0..=wire.len() {
                match (read_flight(&wire[..cut]), &first) {
                    (Flight::NeedMore, None) => {}
                    (Flight::NeedMore, Some(f)) => proptest::prop_assert!(false, "need more at {cut} after {f:?}"),
                    (f, None) => first = Some(f),
                    (f, Some(g)) => proptest::prop_assert_eq!(&f, g, "changed at {}", cut),
                }
            }
        }
    }
}
