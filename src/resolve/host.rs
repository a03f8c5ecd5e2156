//! A destination host in one canonical spelling, so that every later step
//! (policy, resolution, dialling, the log) sees the same thing.
//!
//! Clients and their libraries disagree about what `127.1`, `2130706433`,
//! `0x7f.1` or `0177.0.0.1` mean; `inet_aton` and browsers read them all as
//! 127.0.0.1 while a rule written as a CIDR would not. We read hosts the way
//! the WHATWG URL standard does (the `url` crate's host parser): a host whose
//! last label is a number is an IPv4 address in decimal, `0x` hex or
//! leading-zero octal parts, one to four of them, and an invalid number is a
//! refusal, never a name to look up. An IPv4-mapped IPv6 literal
//! (`::ffff:127.0.0.1`) is the IPv4 address it maps to. Names are lowercased
//! (IDNA to ASCII) and lose one trailing dot.
//!
//! Pure: no I/O, no resolution.

use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr};

/// The longest host name DNS can carry (RFC 1035 §2.3.4).
const MAX_NAME: usize = 253;

/// A destination host, canonical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An address literal (IPv4-mapped IPv6 folded to IPv4).
    Ip(IpAddr),
    /// A lowercase ASCII name without a trailing dot.
    Name(String),
}

/// Why a host was refused; the text is the 400's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadHost(pub &'static str);

/// Reads the host part of a request target's authority (`[v6]` in brackets,
/// as `http::uri::Authority::host` returns it).
pub fn canonical(host: &str) -> Result<Host, BadHost> {
    if host.is_empty() {
        return Err(BadHost("empty host"));
    }
    if let Some(plain) = already_canonical(host) {
        return Ok(plain);
    }
    let parsed = url::Host::parse(host).map_err(|e| match e {
        url::ParseError::InvalidIpv4Address => {
            BadHost("numeric host that is not a valid IPv4 address")
        }
        url::ParseError::InvalidIpv6Address => BadHost("invalid IPv6 address"),
        _ => BadHost("invalid host name"),
    })?;
    Ok(match parsed {
        url::Host::Ipv4(v4) => Host::Ip(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Host::Ip(fold(IpAddr::V6(v6))),
        url::Host::Domain(name) => {
            let name = name.strip_suffix('.').unwrap_or(&name);
            if name.is_empty()
                || name.len() > MAX_NAME
                || name.starts_with('.')
                || name.ends_with('.')
                || name.contains("..")
            {
                return Err(BadHost("invalid host name"));
            }
            Host::Name(name.to_string())
        }
    })
}

/// The spellings nearly every request uses, read without the URL parser
/// (~3,000 instructions a host): a dotted quad as [`Ipv4Addr`] reads it
/// (four decimal parts without leading zeros, which every reading agrees
/// on), and a name already canonical — lowercase letters, digits, `-` and
/// `.`, no empty label, no IDNA label (`xn--`), a last label that starts
/// with a letter (so never a number). `None`: anything else, for the parser.
/// `fast_path_agrees_with_the_parser` checks it against the parser.
fn already_canonical(host: &str) -> Option<Host> {
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Some(Host::Ip(IpAddr::V4(v4)));
    }
    let name_byte =
        |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.');
    let last = host.rsplit('.').next()?;
    let plain = host.len() <= MAX_NAME
        && host.as_bytes().iter().all(name_byte)
        && last.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && !host.starts_with('.')
        && !host.contains("..")
        && !host.contains("xn--");
    plain.then(|| Host::Name(host.to_string()))
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it
/// reaches; every other address unchanged.
pub fn fold(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Host {
    /// `host:port` for a URI authority: IPv6 in brackets.
    pub fn authority(&self, port: u16) -> String {
        let mut a = String::with_capacity(24);
        match self {
            Host::Ip(IpAddr::V6(v6)) => {
                let _ = write!(a, "[{v6}]");
            }
            Host::Ip(ip) => push_ip(&mut a, *ip),
            Host::Name(n) => a.push_str(n),
        }
        a.push(':');
        a.push_str(itoa::Buffer::new().format(port));
        a
    }
}

/// Appends `ip` as `Display` writes it; IPv4 digit by digit into one
/// copy, as `fmt` costs ~1,400 instructions an address (the access log
/// writes up to three a line, a forwarded request's URIs two more).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    let IpAddr::V4(v4) = ip else {
        let _ = write!(out, "{ip}");
        return;
    };
    let (mut buf, mut n) = ([0u8; 15], 0);
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    out.push_str(std::str::from_utf8(&buf[..n]).unwrap_or_default());
}

/// The host as the log and host patterns see it (IPv6 without brackets).
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip @ IpAddr::V4(_)) => {
                let mut s = String::with_capacity(15);
                push_ip(&mut s, *ip);
                f.write_str(&s)
            }
            Host::Ip(ip) => ip.fmt(f),
            Host::Name(n) => f.write_str(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn every_spelling_of_loopback_is_127_0_0_1() {
        for s in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0X7F.0.0.1",
            "0177.0.0.1",
            "0177.1",
            "017700000001",
            "127.0.0.1.",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "%31%32%37.0.0.1",
        ] {
            assert_eq!(canonical(s), Ok(ip("127.0.0.1")), "{s}");
        }
    }

    #[test]
    fn other_addresses() {
        assert_eq!(canonical("[::1]"), Ok(ip("::1")));
        assert_eq!(canonical("[0:0::1]"), Ok(ip("::1")));
        assert_eq!(canonical("[FE80::1]"), Ok(ip("fe80::1")));
        assert_eq!(canonical("0"), Ok(ip("0.0.0.0")));
        assert_eq!(canonical("0x"), Ok(ip("0.0.0.0")));
        assert_eq!(canonical("169.254.169.254"), Ok(ip("169.254.169.254")));
        assert_eq!(canonical("0xa9fea9fe"), Ok(ip("169.254.169.254")));
        assert_eq!(canonical("255.255.255.255"), Ok(ip("255.255.255.255")));
        assert_eq!(canonical("4294967295"), Ok(ip("255.255.255.255")));
    }

    #[test]
    fn invalid_numbers_are_refused_not_looked_up() {
        for s in [
            "256.0.0.1",
            "1.2.3.256",
            "1.2.65536",
            "4294967296",
            "0x100000000",
            "1.2.3.4.5",
            "08.0.0.1",
            "1.2.3.09",
            "0x7g.1",
            "example.123",
            "1..2",
        ] {
            assert_eq!(
                canonical(s),
                Err(BadHost("numeric host that is not a valid IPv4 address")),
                "{s}"
            );
        }
        assert_eq!(canonical("[::1"), Err(BadHost("invalid IPv6 address")));
        assert_eq!(canonical("[1::2::3]"), Err(BadHost("invalid IPv6 address")));
        assert_eq!(
            canonical("[fe80::1%25eth0]"),
            Err(BadHost("invalid IPv6 address"))
        );
    }

    #[test]
    fn names_are_lowercased_without_one_trailing_dot() {
        let name = |s: &str| Host::Name(s.to_string());
        assert_eq!(canonical("LocalHost"), Ok(name("localhost")));
        assert_eq!(canonical("localhost."), Ok(name("localhost")));
        assert_eq!(
            canonical("Origin.Example.TEST."),
            Ok(name("origin.example.test"))
        );
        assert_eq!(canonical("0x7f.example"), Ok(name("0x7f.example")));
        assert_eq!(canonical("b%C3%BCcher.de"), Ok(name("xn--bcher-kva.de")));
        for s in ["", ".", "a..b", ".a", "a..", "a b", "a/b", "a@b", "a:b"] {
            assert!(canonical(s).is_err(), "{s:?}");
        }
        assert!(
            canonical(&format!("{}ab", "a.".repeat(126))).is_err(),
            "254 bytes"
        );
        assert_eq!(
            canonical(&format!("{}a", "a.".repeat(126))).map(|h| h.to_string().len()),
            Ok(253)
        );
    }

    #[test]
    fn display_and_authority() {
        assert_eq!(ip("::1").to_string(), "::1");
        assert_eq!(ip("::1").authority(8080), "[::1]:8080");
        assert_eq!(ip("10.0.0.1").authority(80), "10.0.0.1:80");
        assert_eq!(Host::Name("a.test".into()).authority(443), "a.test:443");
        assert_eq!(
            fold("::ffff:10.0.0.1".parse().unwrap()),
            ip_addr("10.0.0.1")
        );
        assert_eq!(fold("::1".parse().unwrap()), ip_addr("::1"));
    }

    /// The fast path gives what the parser gives, wherever it answers.
    #[test]
    fn fast_path_agrees_with_the_parser() {
        use proptest::prelude::*;
        let slow = |s: &str| -> Option<Host> {
            match url::Host::parse(s).ok()? {
                url::Host::Ipv4(v4) => Some(Host::Ip(IpAddr::V4(v4))),
                url::Host::Domain(d) => Some(Host::Name(d)),
                url::Host::Ipv6(_) => None,
            }
        };
        let check = |s: &str| {
            if let Some(fast) = already_canonical(s) {
                assert_eq!(Some(fast), slow(s), "{s:?}");
            }
        };
        for s in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "01.2.3.4",
            "010.0.0.1",
            "1.2.3.4.",
            "a-.b",
            "-a.b",
            "a.-b",
            "a_b.c",
            "x.y1",
            "1a.b2c",
            "xn--a.b",
            "a.xn--b",
            "0x1.a",
            "1.2.3.a",
            "localhost",
            &"a".repeat(70),
            &format!("{}.b", "a".repeat(63)),
        ] {
            check(s);
        }
        proptest!(ProptestConfig::with_cases(4000), |(s in "[a-z0-9.x-]{1,24}")| {
            check(&s);
        });
    }

    /// `push_ip` writes what `Display` writes.
    #[test]
    fn push_ip_is_display() {
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(2000), |(a: u32, b: u128)| {
            for ip in [IpAddr::from(a.to_be_bytes()), IpAddr::from(b.to_be_bytes())] {
                let mut s = String::from("x");
                push_ip(&mut s, ip);
                prop_assert_eq!(s, format!("x{ip}"));
            }
        });
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.100.9", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }

    fn ip_addr(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
}
