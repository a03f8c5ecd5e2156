//! JA4, the TLS client fingerprint of the FoxIO specification (BSD-3):
//! `t13d1516h2_8daaf6152771_e5627efa2ab1` — protocol, highest offered
//! version, SNI or not, cipher and extension counts, the first ALPN's first
//! and last characters; then truncated SHA-256 hashes of the sorted cipher
//! list and of the sorted extension list (without SNI and ALPN) followed by
//! the signature algorithms in their order. GREASE values are left out
//! everywhere. Pure: the parsed ClientHello in, the string out.
//!
//! Policy rules match it (`ja4 = [...]`) so an administrator can deny a
//! tunnel tool by how its TLS stack speaks, not by a User-Agent it can omit.

use sha2::{Digest, Sha256};

use crate::protocol::TlsVersion;

/// What JA4 needs from a ClientHello; every list already without GREASE.
#[derive(Debug, Default)]
pub struct Ja4Input<'a> {
    /// `supported_versions` if sent, else the hello's own version.
    pub versions: &'a [TlsVersion],
    /// An SNI extension was present.
    pub sni: bool,
    /// Cipher suites, in any order.
    pub ciphers: &'a [u16],
    /// Extension types, in any order (SNI and ALPN included).
    pub extensions: &'a [u16],
    /// The first ALPN protocol's bytes.
    pub alpn_first: Option<&'a [u8]>,
    /// `signature_algorithms`, in the order sent.
    pub signature_algorithms: &'a [u16],
}

const SNI: u16 = 0x0000;
const ALPN: u16 = 0x0010;

/// The JA4 fingerprint (TCP TLS: the first character is `t`).
pub fn ja4(i: &Ja4Input<'_>) -> String {
    let version = crate::protocol::TlsVersion::highest(i.versions).ja4();
    let mut ciphers = i.ciphers.to_vec();
    ciphers.sort_unstable();
    let mut extensions: Vec<u16> = i
        .extensions
        .iter()
        .copied()
        .filter(|e| *e != SNI && *e != ALPN)
        .collect();
    extensions.sort_unstable();
    let mut c = hex_list(&extensions);
    if !i.signature_algorithms.is_empty() {
        c.push('_');
        c.push_str(&hex_list(i.signature_algorithms));
    }
    format!(
        "t{version}{}{:02}{:02}{}_{}_{}",
        if i.sni { 'd' } else { 'i' },
        i.ciphers.len().min(99),
        i.extensions.len().min(99),
        alpn_chars(i.alpn_first),
        truncated_hash(&ciphers, &hex_list(&ciphers)),
        truncated_hash(&extensions, &c),
    )
}

/// The first ALPN value's first and last bytes: printable ASCII as itself,
/// a byte of 0x80 or above as `9`, a control byte at either end makes `99`
/// (the FoxIO maintainers' ruling of 2026-10, FoxIO-LLC/ja4#789).
fn alpn_chars(alpn: Option<&[u8]>) -> String {
    let (Some(&first), Some(&last)) = (alpn.and_then(<[u8]>::first), alpn.and_then(<[u8]>::last))
    else {
        return "00".into();
    };
    let char_of = |b: u8| match b {
        0x20..=0x7e => Some(b as char),
        0x80.. => Some('9'),
        _ => None,
    };
    match (char_of(first), char_of(last)) {
        (Some(f), Some(l)) => format!("{f}{l}"),
        _ => "99".into(),
    }
}

fn hex_list(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Twelve hex digits of SHA-256; twelve zeros for an empty list.
fn truncated_hash(list: &[u16], text: &str) -> String {
    if list.is_empty() {
        return "000000000000".into();
    }
    Sha256::digest(text.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's worked example: Chrome's ciphers, and the
    /// extension and signature-algorithm lists of its "extension hash".
    #[test]
    fn the_specification_example() {
        let ciphers = [
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ];
        let extensions = [
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ];
        let sigs = [
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ];
        let got = ja4(&Ja4Input {
            versions: &[TlsVersion::TLS13, TlsVersion::TLS12],
            sni: true,
            ciphers: &ciphers,
            extensions: &extensions,
            alpn_first: Some(b"h2"),
            signature_algorithms: &sigs,
        });
        assert_eq!(got, "t13d1516h2_8daaf6152771_e5627efa2ab1");
    }

    #[test]
    fn alpn_versions_and_empty_lists() {
        assert_eq!(alpn_chars(None), "00");
        assert_eq!(alpn_chars(Some(b"")), "00");
        assert_eq!(alpn_chars(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_chars(Some(b"h")), "hh");
        assert_eq!(alpn_chars(Some(b"h2/")), "h/");
        // Beyond ASCII: `9`; a control byte at an end: `99`.
        assert_eq!(alpn_chars(Some(&[0xba, 0xad])), "99");
        assert_eq!(alpn_chars(Some(&[b'h', 0xad])), "h9");
        assert_eq!(alpn_chars(Some(&[b'h', 0x1f])), "99");
        let bare = ja4(&Ja4Input {
            versions: &[TlsVersion::TLS10],
            ..Ja4Input::default()
        });
        assert_eq!(bare, "t10i000000_000000000000_000000000000");
        let odd = ja4(&Ja4Input {
            versions: &[TlsVersion::from_wire(0x7f17)],
            ciphers: &[0x002f; 120],
            ..Ja4Input::default()
        });
        assert!(odd.starts_with("t00i9900"), "{odd}");
    }
}
