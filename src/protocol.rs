//! The words for what a tunnel's client speaks, each spelt in one table:
//! the protocol kinds detection tells apart ([`ProtocolKind`]: a policy's
//! `protocol = [..]`, the log's `x-protocol`, `explain --protocol`) and the
//! TLS versions ([`TlsVersion`]: the wire's numbers, a policy's
//! `tls_version = [..]`, JA4's two characters).
//!
//! Detection (`tunnel`), the policy and `explain` all use these, so a name
//! cannot be spelt one way where it is found and another where it is
//! judged.

use std::fmt;

/// What detection found a tunnel's client speaking, without the details
/// (the ClientHello is in the tunnel's `detect::Protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolKind {
    /// A TLS ClientHello.
    Tls,
    /// An HTTP request line.
    Http,
    /// An SSH banner.
    Ssh,
    /// Anything else.
    Unknown,
}

impl ProtocolKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [ProtocolKind; 4] = [
        ProtocolKind::Tls,
        ProtocolKind::Http,
        ProtocolKind::Ssh,
        ProtocolKind::Unknown,
    ];

    /// The name: policy conditions, the log, `explain`.
    pub fn name(self) -> &'static str {
        match self {
            ProtocolKind::Tls => "tls",
            ProtocolKind::Http => "http",
            ProtocolKind::Ssh => "ssh",
            ProtocolKind::Unknown => "unknown",
        }
    }

    /// The kind a name (any case) stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// `tls, http, ssh, unknown`: what a name must be, for messages.
    pub fn names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }
}

impl fmt::Display for ProtocolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A TLS (or SSL, or DTLS) version as the wire numbers it: `0x0303` is
/// TLS 1.2. Any number can be held (a client may offer a draft or a
/// version that does not exist yet); the ones with names are in [`NAMES`].
/// Ordered by number, so the highest offered is the `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TlsVersion(u16);

/// One row of the name table: the version, its name in policy rules,
/// `explain` and the log (none: it is `unknown` there), its JA4 characters.
struct Named {
    version: TlsVersion,
    name: Option<&'static str>,
    ja4: &'static str,
}

/// The one name table. Rules name the versions detection can tell apart on
/// TCP, in the order a message lists them; JA4 also names SSL 2 and DTLS.
const NAMES: [Named; 9] = [
    Named::new(TlsVersion::TLS10, Some("1.0"), "10"),
    Named::new(TlsVersion::TLS11, Some("1.1"), "11"),
    Named::new(TlsVersion::TLS12, Some("1.2"), "12"),
    Named::new(TlsVersion::TLS13, Some("1.3"), "13"),
    Named::new(TlsVersion::SSL3, Some("ssl3"), "s3"),
    Named::new(TlsVersion(0x0002), None, "s2"),
    Named::new(TlsVersion(0xfeff), None, "d1"),
    Named::new(TlsVersion(0xfefd), None, "d2"),
    Named::new(TlsVersion(0xfefc), None, "d3"),
];

impl Named {
    const fn new(version: TlsVersion, name: Option<&'static str>, ja4: &'static str) -> Self {
        Named { version, name, ja4 }
    }
}

impl TlsVersion {
    /// The highest of `versions`; none at all is version `0`, which no
    /// table names.
    pub fn highest(versions: &[TlsVersion]) -> TlsVersion {
        versions
            .iter()
            .max()
            .copied()
            .unwrap_or(TlsVersion::from_wire(0))
    }

    /// SSL 3.0.
    pub const SSL3: Self = TlsVersion(0x0300);
    /// TLS 1.0.
    pub const TLS10: Self = TlsVersion(0x0301);
    /// TLS 1.1.
    pub const TLS11: Self = TlsVersion(0x0302);
    /// TLS 1.2.
    pub const TLS12: Self = TlsVersion(0x0303);
    /// TLS 1.3.
    pub const TLS13: Self = TlsVersion(0x0304);

    /// The version the wire's number stands for.
    pub const fn from_wire(number: u16) -> Self {
        TlsVersion(number)
    }

    /// The wire's number.
    pub const fn wire(self) -> u16 {
        self.0
    }

    fn named(self) -> Option<&'static Named> {
        NAMES.iter().find(|n| n.version == self)
    }

    /// The name in policy rules, `explain` and the log: `1.3`, `1.2`,
    /// `1.1`, `1.0`, `ssl3`, or `unknown`.
    pub fn name(self) -> &'static str {
        self.named().and_then(|n| n.name).unwrap_or("unknown")
    }

    /// JA4's two characters: `13`, `12`, … `s3`, `s2`, `d1`…, or `00`.
    pub fn ja4(self) -> &'static str {
        self.named().map_or("00", |n| n.ja4)
    }

    /// The version a rule's name stands for (any case), if it names one.
    pub fn from_name(name: &str) -> Option<Self> {
        NAMES
            .iter()
            .find(|n| n.name.is_some_and(|x| x.eq_ignore_ascii_case(name)))
            .map(|n| n.version)
    }

    /// `1.0, 1.1, 1.2, 1.3, ssl3`: what a rule may name, for messages.
    pub fn names() -> String {
        let names: Vec<&str> = NAMES.iter().filter_map(|n| n.name).collect();
        names.join(", ")
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip() {
        for k in ProtocolKind::ALL {
            assert_eq!(ProtocolKind::from_name(k.name()), Some(k));
            assert_eq!(ProtocolKind::from_name(&k.name().to_uppercase()), Some(k));
        }
        assert_eq!(ProtocolKind::from_name("quic"), None);
        assert_eq!(ProtocolKind::from_name(""), None);
        assert_eq!(ProtocolKind::names(), "tls, http, ssh, unknown");
    }

    #[test]
    fn tls_version_names_round_trip() {
        for (v, name, ja4) in [
            (0x0300, "ssl3", "s3"),
            (0x0301, "1.0", "10"),
            (0x0302, "1.1", "11"),
            (0x0303, "1.2", "12"),
            (0x0304, "1.3", "13"),
        ] {
            let version = TlsVersion::from_wire(v);
            assert_eq!((version.name(), version.ja4()), (name, ja4));
            assert_eq!(TlsVersion::from_name(name), Some(version));
            assert_eq!(version.wire(), v);
        }
        assert_eq!(TlsVersion::from_name("SSL3"), Some(TlsVersion::SSL3));
        assert_eq!(TlsVersion::names(), "1.0, 1.1, 1.2, 1.3, ssl3");
    }

    #[test]
    fn versions_without_a_rule_name_are_unknown_to_rules_but_not_to_ja4() {
        for (v, ja4) in [
            (0x0002, "s2"),
            (0xfeff, "d1"),
            (0xfefd, "d2"),
            (0xfefc, "d3"),
        ] {
            let version = TlsVersion::from_wire(v);
            assert_eq!((version.name(), version.ja4()), ("unknown", ja4));
        }
        let draft = TlsVersion::from_wire(0x7f17);
        assert_eq!((draft.name(), draft.ja4()), ("unknown", "00"));
        for bad in ["unknown", "1.4", "tls1.2", ""] {
            assert_eq!(TlsVersion::from_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_highest_offered_is_the_largest_number() {
        let offered = [TlsVersion::TLS12, TlsVersion::TLS13, TlsVersion::TLS10];
        assert_eq!(offered.iter().max(), Some(&TlsVersion::TLS13));
        assert!(TlsVersion::TLS11 < TlsVersion::TLS12);
        assert!(TlsVersion::SSL3 < TlsVersion::TLS10);
    }
}
