//! `Proxy-Authorization` and `Proxy-Authenticate`, sans I/O.
//!
//! Parsing never fails loudly: every malformed value is a typed refusal that
//! becomes a fresh 407, and an empty password is refused here, long before it
//! could reach an LDAP simple bind (where it would be an *unauthenticated*
//! bind, which succeeds).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;

/// Longest credentials we decode; a Basic header is never legitimately larger.
const MAX_BASIC_TOKEN: usize = 4096;

/// What a client presented.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// Basic credentials, decoded and checked.
    Basic(BasicCredentials),
    /// Any other scheme (Negotiate, NTLM, ...), with its credentials text.
    Token {
        /// The scheme (never [`PresentedScheme::Basic`]).
        scheme: PresentedScheme,
        /// The scheme as sent (`Negotiate`, `negotiate`, `Bearer`...), for messages.
        sent: &'a str,
        /// Everything after the scheme, trimmed.
        credentials: &'a str,
    },
}

/// The scheme a `Proxy-Authorization` value names; scheme names are
/// case-insensitive (RFC 9110 §11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedScheme {
    /// `Basic`.
    Basic,
    /// `Negotiate` (Kerberos in SPNEGO, or NTLM inside it).
    Negotiate,
    /// `NTLM`.
    Ntlm,
    /// A scheme this proxy does not speak (`Bearer`, `Digest`...).
    Other,
}

/// The one name table of the schemes the proxy speaks.
const SCHEMES: [(PresentedScheme, &str); 3] = [
    (PresentedScheme::Basic, "Basic"),
    (PresentedScheme::Negotiate, "Negotiate"),
    (PresentedScheme::Ntlm, "NTLM"),
];

impl PresentedScheme {
    /// The scheme `name` (any case) stands for.
    pub fn parse(name: &str) -> Self {
        SCHEMES
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map_or(PresentedScheme::Other, |(s, _)| *s)
    }

    /// The scheme of a raw header value: its bytes up to the first space.
    pub fn of_value(value: &[u8]) -> Self {
        let word = value.split(|b| *b == b' ').next().unwrap_or_default();
        std::str::from_utf8(word).map_or(PresentedScheme::Other, Self::parse)
    }

    /// The scheme's name as the RFCs spell it (`None` for another scheme).
    pub fn name(self) -> Option<&'static str> {
        SCHEMES.iter().find(|(s, _)| *s == self).map(|(_, n)| *n)
    }
}

/// A user name and password from a Basic header. `Debug` never shows the password.
#[derive(PartialEq, Eq)]
pub struct BasicCredentials {
    /// The login as typed (`alice`, `CORP\\alice`, `alice@corp`).
    pub user: String,
    /// Never empty (refused while parsing).
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a `Proxy-Authorization` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCredentials {
    /// Nothing, or several `Proxy-Authorization` headers.
    #[error("empty Proxy-Authorization header")]
    Empty,
    /// The Basic token is missing or not base64.
    #[error("Basic credentials are not valid base64")]
    NotBase64,
    /// The NTLM token (`NTLM`, or NTLMSSP under `Negotiate`) is not base64.
    #[error("NTLM credentials are not valid base64")]
    NtlmNotBase64,
    /// An NTLM message larger than any real one.
    #[error("NTLM message too large")]
    TooLarge,
    /// Not an NTLM negotiate (type 1) or authenticate (type 3) message.
    #[error("not an NTLM negotiate or authenticate message")]
    NotNtlm,
    /// Longer than any real Basic header.
    #[error("Basic credentials too long")]
    TooLong,
    /// The header or the decoded credentials are not UTF-8.
    #[error("Basic credentials are not UTF-8")]
    NotUtf8,
    /// No `user:password` separator.
    #[error("Basic credentials have no ':' between user and password")]
    NoColon,
    /// Nothing before the colon.
    #[error("Basic credentials have an empty user name")]
    EmptyUser,
    /// Nothing after it: an LDAP bind with it would be unauthenticated, and succeed.
    #[error("Basic credentials have an empty password")]
    EmptyPassword,
    /// Control characters, which no login holds and a log must not show.
    #[error("control characters in Basic credentials")]
    ControlCharacters,
}

/// Parses one `Proxy-Authorization` value.
pub fn parse(value: &[u8]) -> Result<Presented<'_>, BadCredentials> {
    let value = std::str::from_utf8(value)
        .map_err(|_| BadCredentials::NotUtf8)?
        .trim();
    if value.is_empty() {
        return Err(BadCredentials::Empty);
    }
    let (sent, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    match PresentedScheme::parse(sent) {
        PresentedScheme::Basic => parse_basic(rest.trim()).map(Presented::Basic),
        scheme => Ok(Presented::Token {
            scheme,
            sent,
            credentials: rest.trim(),
        }),
    }
}

fn parse_basic(token: &str) -> Result<BasicCredentials, BadCredentials> {
    if token.is_empty() {
        return Err(BadCredentials::NotBase64);
    }
    if token.len() > MAX_BASIC_TOKEN {
        return Err(BadCredentials::TooLong);
    }
    let raw = STANDARD
        .decode(token)
        .or_else(|_| STANDARD_NO_PAD.decode(token))
        .map_err(|_| BadCredentials::NotBase64)?;
    let text = String::from_utf8(raw).map_err(|_| BadCredentials::NotUtf8)?;
    let (user, password) = text.split_once(':').ok_or(BadCredentials::NoColon)?;
    if user.chars().chain(password.chars()).any(char::is_control) {
        return Err(BadCredentials::ControlCharacters);
    }
    if user.trim().is_empty() {
        return Err(BadCredentials::EmptyUser);
    }
    if password.is_empty() {
        return Err(BadCredentials::EmptyPassword);
    }
    Ok(BasicCredentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// A `Proxy-Authenticate` value for Basic: `Basic realm="...", charset="UTF-8"`.
/// The realm was validated at config load (printable, no quotes or backslashes).
pub fn basic_challenge(realm: &str) -> String {
    format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")
}

/// True when `realm` can stand inside a quoted-string without escaping.
pub fn valid_realm(realm: &str) -> bool {
    !realm.is_empty()
        && realm.len() <= 128
        && realm
            .chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> String {
        format!("Basic {}", STANDARD.encode(s))
    }

    #[test]
    fn good_basic() {
        let v = basic("alice:pa:ss wörd");
        let Presented::Basic(c) = parse(v.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice", "pa:ss wörd")
        );
        // Scheme is case-insensitive; extra whitespace tolerated; padding optional.
        let v = format!("  bAsIc   {}  ", STANDARD_NO_PAD.encode("bob:x"));
        assert!(matches!(parse(v.as_bytes()).unwrap(), Presented::Basic(c) if c.user == "bob"));
    }

    #[test]
    fn debug_hides_the_password() {
        let Presented::Basic(c) = parse(basic("alice:hunter2").as_bytes()).unwrap() else {
            panic!()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn every_malformed_basic_is_refused() {
        use BadCredentials::*;
        let cases: Vec<(Vec<u8>, BadCredentials)> = vec![
            (b"".to_vec(), Empty),
            (b"   ".to_vec(), Empty),
            (b"Basic".to_vec(), NotBase64),
            (b"Basic ".to_vec(), NotBase64),
            (b"Basic !!!!".to_vec(), NotBase64),
            (b"Basic YWxpY2U6cGFzcw===".to_vec(), NotBase64),
            (basic("nocolon").into_bytes(), NoColon),
            (basic(":password").into_bytes(), EmptyUser),
            (basic("   :password").into_bytes(), EmptyUser),
            (basic("alice:").into_bytes(), EmptyPassword),
            (basic(":").into_bytes(), EmptyUser),
            (basic("al\0ice:pw").into_bytes(), ControlCharacters),
            (basic("alice:p\nw").into_bytes(), ControlCharacters),
            (
                format!("Basic {}", STANDARD.encode([0xff, 0xfe, b':', b'x'])).into_bytes(),
                NotUtf8,
            ),
            (b"Basic \xff\xfe".to_vec(), NotUtf8),
            (
                format!("Basic {}", "QUFB".repeat(2000)).into_bytes(),
                TooLong,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(&input).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[test]
    fn other_schemes_are_named() {
        use PresentedScheme::*;
        let token = |scheme, sent, credentials| Presented::Token {
            scheme,
            sent,
            credentials,
        };
        assert_eq!(
            parse(b"Negotiate YIIC...").unwrap(),
            token(Negotiate, "Negotiate", "YIIC...")
        );
        assert_eq!(
            parse(b"negotiate\tYIIC... ").unwrap(),
            token(Negotiate, "negotiate", "YIIC...")
        );
        assert_eq!(parse(b"NTLM").unwrap(), token(Ntlm, "NTLM", ""));
        assert_eq!(parse(b"ntLM TlRM").unwrap(), token(Ntlm, "ntLM", "TlRM"));
        assert_eq!(
            parse(b"Bearer x y z").unwrap(),
            token(Other, "Bearer", "x y z")
        );
        // Basic in any case is parsed as Basic, never passed on as a token.
        assert!(matches!(
            parse(format!("bASIC {}", STANDARD.encode("a:b")).as_bytes()),
            Ok(Presented::Basic(_))
        ));
    }

    #[test]
    fn scheme_names_round_trip() {
        for s in [
            PresentedScheme::Basic,
            PresentedScheme::Negotiate,
            PresentedScheme::Ntlm,
        ] {
            let name = s.name().unwrap();
            assert_eq!(PresentedScheme::parse(name), s);
            assert_eq!(PresentedScheme::parse(&name.to_lowercase()), s);
            assert_eq!(
                PresentedScheme::of_value(format!("{name} tok").as_bytes()),
                s
            );
        }
        assert_eq!(PresentedScheme::Other.name(), None);
        assert_eq!(PresentedScheme::parse("Negotiate2"), PresentedScheme::Other);
        assert_eq!(PresentedScheme::parse(""), PresentedScheme::Other);
        // The raw form splits at the first space only, as the bound-connection
        // shortcut always has: a leading space or a tab is another scheme.
        assert_eq!(
            PresentedScheme::of_value(b" Negotiate x"),
            PresentedScheme::Other
        );
        assert_eq!(
            PresentedScheme::of_value(b"Negotiate\tx"),
            PresentedScheme::Other
        );
        assert_eq!(
            PresentedScheme::of_value(b"\xffNegotiate x"),
            PresentedScheme::Other
        );
        assert_eq!(
            PresentedScheme::of_value(b"NEGOTIATE"),
            PresentedScheme::Negotiate
        );
    }

    #[test]
    fn no_input_panics() {
        // Every byte prefix of a few values, and every single byte.
        for v in [
            basic("alice:secret"),
            "Negotiate abc".into(),
            "Basic ====".into(),
        ] {
            for i in 0..=v.len() {
                let _ = parse(&v.as_bytes()[..i]);
            }
        }
        for b in 0..=255u8 {
            let _ = parse(&[b]);
            let _ = parse(&[b'B', b'a', b's', b'i', b'c', b' ', b]);
        }
    }

    #[test]
    fn challenges() {
        assert_eq!(
            basic_challenge("Corp Proxy"),
            "Basic realm=\"Corp Proxy\", charset=\"UTF-8\""
        );
        assert!(valid_realm("Corp Proxy"));
        assert!(
            !valid_realm("bad\"realm")
                && !valid_realm("")
                && !valid_realm("a\\b")
                && !valid_realm("tab\there")
        );
    }
}
