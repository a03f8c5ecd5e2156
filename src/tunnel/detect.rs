//! What a tunnel's client speaks, from its first bytes — sans I/O.
//!
//! [`classify`] is a pure function over the bytes received so far: it returns
//! a protocol, or how many more bytes it needs. A TLS ClientHello is parsed
//! properly (tls-parser), reassembled across records and reads; its SNI, ALPN
//! and offered versions are extracted, and a JA3N fingerprint is computed for
//! the log. Nothing here forwards a byte: the caller holds them until a verdict.

use md5::{Digest, Md5};
use tls_parser::{
    parse_tls_client_hello_extensions, parse_tls_message_handshake, TlsExtension, TlsExtensionType,
    TlsMessage, TlsMessageHandshake,
};

use crate::protocol::{ProtocolKind, TlsVersion};

/// Largest ClientHello we reassemble; beyond this the bytes are "unknown".
pub const MAX_HELLO: usize = 64 * 1024;
/// TLS record header length.
const RECORD_HEADER: usize = 5;
/// Largest TLS plaintext record fragment (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;

/// A detected protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// TLS, with what its ClientHello said.
    Tls(Box<ClientHello>),
    /// Plain HTTP.
    Http,
    /// SSH.
    Ssh,
    /// Anything else.
    Unknown,
}

impl Protocol {
    /// What kind of protocol it is, for policy conditions.
    pub fn kind(&self) -> ProtocolKind {
        match self {
            Protocol::Tls(_) => ProtocolKind::Tls,
            Protocol::Http => ProtocolKind::Http,
            Protocol::Ssh => ProtocolKind::Ssh,
            Protocol::Unknown => ProtocolKind::Unknown,
        }
    }

    /// Short name for policy conditions and the log.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }
}

/// What a ClientHello offered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// The SNI, when sent.
    pub sni: Option<String>,
    /// The ALPN protocols offered.
    pub alpn: Vec<String>,
    /// Offered versions (`supported_versions`, else the hello's own).
    pub versions: Vec<TlsVersion>,
    /// JA3N fingerprint, hex: JA3 with the extension list sorted, so it is
    /// stable against the extension shuffling of Chrome and rustls.
    pub ja3n: String,
    /// JA4 fingerprint ([`super::ja4`]).
    pub ja4: String,
    /// Offered cipher suites (GREASE left out).
    pub ciphers: Vec<u16>,
    /// Offered groups (`supported_groups`, GREASE left out).
    pub groups: Vec<u16>,
    /// Groups the client sent a TLS 1.3 key share for.
    pub key_shares: Vec<u16>,
    /// The legacy session ID (TLS 1.2 resumption by ID, or TLS 1.3's echo).
    pub session_id: Vec<u8>,
    /// The ClientHello carried a session ticket (TLS 1.2 resumption by ticket).
    pub ticket: bool,
    /// The client's random: what a TLS ≤ 1.2 server signs its key exchange
    /// over, with its own (RFC 5246 §7.4.3).
    pub random: [u8; 32],
    /// The signature schemes offered (`signature_algorithms`, GREASE left out).
    pub signature_schemes: Vec<u16>,
    /// Bytes of the records that carry the ClientHello, from the start:
    /// what may go to the server before the verdict.
    pub record_bytes: usize,
}

impl ClientHello {
    /// The highest version offered (policy rules name it `1.3`, `1.2`, …).
    pub fn tls_version(&self) -> TlsVersion {
        TlsVersion::highest(&self.versions)
    }
}

/// The classifier's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Enough bytes to decide.
    Done(Protocol),
    /// At least this many more bytes are needed.
    NeedMore(usize),
}

/// Plain-text prefixes that name a protocol.
const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"HEAD ",
    b"PUT ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];
const SSH: &[u8] = b"SSH-";

/// Classifies the first bytes a tunnel client sent.
pub fn classify(buf: &[u8]) -> Classified {
    match buf.first() {
        None => Classified::NeedMore(1),
        Some(0x16) => tls(buf),
        Some(_) => plain(buf),
    }
}

fn plain(buf: &[u8]) -> Classified {
    let mut need = 0;
    for (token, proto) in HTTP_METHODS
        .iter()
        .map(|t| (*t, Protocol::Http))
        .chain([(SSH, Protocol::Ssh)])
    {
        if buf.starts_with(token) {
            return Classified::Done(proto);
        }
        if token.starts_with(buf) {
            need = need.max(token.len() - buf.len());
        }
    }
    if need > 0 {
        Classified::NeedMore(need)
    } else {
        Classified::Done(Protocol::Unknown)
    }
}

/// Reassembles handshake bytes from consecutive handshake records until the
/// first handshake message is whole, then parses it.
fn tls(buf: &[u8]) -> Classified {
    let mut handshake: Vec<u8> = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = buf.get(at..at + RECORD_HEADER) else {
            return Classified::NeedMore(at + RECORD_HEADER - buf.len());
        };
        // Content type handshake, major version 3, a sane length.
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        if header[0] != 0x16 || header[1] != 3 || len == 0 || len > MAX_RECORD {
            return Classified::Done(Protocol::Unknown);
        }
        let body_start = at + RECORD_HEADER;
        let Some(fragment) = buf.get(body_start..body_start + len) else {
            return Classified::NeedMore(body_start + len - buf.len());
        };
        handshake.extend_from_slice(fragment);
        at = body_start + len;
        if handshake.len() < 4 {
            continue;
        }
        if handshake[0] != 1 {
            return Classified::Done(Protocol::Unknown); // a handshake, but not a ClientHello
        }
        let msg_len = u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
        if msg_len + 4 > MAX_HELLO {
            return Classified::Done(Protocol::Unknown);
        }
        if handshake.len() < msg_len + 4 {
            continue;
        }
        return Classified::Done(match parse_hello(&handshake[..msg_len + 4]) {
            // Another message sharing the last record would go out with it.
            Some(hello) if handshake.len() == msg_len + 4 => Protocol::Tls(Box::new(ClientHello {
                record_bytes: at,
                ..hello
            })),
            _ => Protocol::Unknown,
        });
    }
}

fn parse_hello(msg: &[u8]) -> Option<ClientHello> {
    let (_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))) =
        parse_tls_message_handshake(msg).ok()?
    else {
        return None;
    };
    let extensions = match ch.ext {
        Some(raw) => parse_tls_client_hello_extensions(raw).ok()?.1,
        None => Vec::new(),
    };
    let mut hello = ClientHello::default();
    let (mut ext_ids, mut groups, mut formats) = (Vec::new(), Vec::new(), Vec::new());
    let (mut alpn_first, mut sigs, mut has_sni) = (None, Vec::new(), false);
    for ext in &extensions {
        let id = TlsExtensionType::from(ext).0;
        if !is_grease(id) {
            ext_ids.push(id);
        }
        match ext {
            TlsExtension::SNI(names) => {
                has_sni = true;
                hello.sni = names
                    .iter()
                    .find(|(t, _)| t.0 == 0)
                    .and_then(|(_, n)| std::str::from_utf8(n).ok())
                    .map(|n| n.trim_end_matches('.').to_ascii_lowercase());
            }
            TlsExtension::ALPN(protos) => {
                alpn_first = protos.first().copied();
                hello.alpn = protos
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
            }
            TlsExtension::SupportedVersions(v) => {
                hello.versions = v
                    .iter()
                    .filter(|v| !is_grease(v.0))
                    .map(|v| TlsVersion::from_wire(v.0))
                    .collect();
            }
            TlsExtension::EllipticCurves(g) => {
                groups = g.iter().map(|g| g.0).filter(|g| !is_grease(*g)).collect()
            }
            TlsExtension::KeyShare(raw) => hello.key_shares = key_share_groups(raw),
            TlsExtension::SessionTicket(t) => hello.ticket = !t.is_empty(),
            TlsExtension::EcPointFormats(f) => formats = f.to_vec(),
            TlsExtension::SignatureAlgorithms(s) => {
                sigs = s.iter().copied().filter(|s| !is_grease(*s)).collect()
            }
            _ => {}
        }
    }
    if hello.versions.is_empty() {
        hello.versions.push(TlsVersion::from_wire(ch.version.0));
    }
    let ciphers: Vec<u16> = ch
        .ciphers
        .iter()
        .map(|c| c.0)
        .filter(|c| !is_grease(*c))
        .collect();
    hello.session_id = ch.session_id.map(<[u8]>::to_vec).unwrap_or_default();
    hello.random = ch.random.try_into().ok()?;
    hello.signature_schemes.clone_from(&sigs);
    hello.groups.clone_from(&groups);
    hello.ciphers.clone_from(&ciphers);
    hello.ja4 = super::ja4::ja4(&super::ja4::Ja4Input {
        versions: &hello.versions,
        sni: has_sni,
        ciphers: &ciphers,
        extensions: &ext_ids,
        alpn_first,
        signature_algorithms: &sigs,
    });
    ext_ids.sort_unstable();
    let ja3 = format!(
        "{},{},{},{},{}",
        ch.version.0,
        join(&ciphers),
        join(&ext_ids),
        join(&groups),
        join(&formats.iter().map(|f| *f as u16).collect::<Vec<_>>())
    );
    hello.ja3n = Md5::digest(ja3.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(hello)
}

/// The groups of a ClientHello's `key_share` entries (RFC 8446 §4.2.8):
/// a length, then (group, key length, key) triples.
fn key_share_groups(raw: &[u8]) -> Vec<u16> {
    let mut groups = Vec::new();
    let mut rest = raw.get(2..).unwrap_or_default();
    while let [g0, g1, l0, l1, tail @ ..] = rest {
        let len = u16::from_be_bytes([*l0, *l1]) as usize;
        let group = u16::from_be_bytes([*g0, *g1]);
        if !is_grease(group) {
            groups.push(group);
        }
        rest = tail.get(len..).unwrap_or_default();
    }
    groups
}

/// GREASE values (RFC 8701) are random noise and left out of fingerprints.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

fn join(v: &[u16]) -> String {
    v.iter().map(u16::to_string).collect::<Vec<_>>().join("-")
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
