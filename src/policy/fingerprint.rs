//! Conditions on what a TLS client said in its ClientHello: `ja4`, `ja3n`,
//! `tls_version` and `alpn`. Each is a set of exact values (a hash set,
//! compared case-insensitively) and `re:` regexes (one [`RegexSet`]);
//! `@object` entries are expanded by the compiler before they get here.
//! Exact values are checked for their shape when the policy loads, so a
//! mistyped fingerprint is an error naming the rule, not a rule that never
//! matches.

use std::collections::HashSet;

use regex::RegexSet;

use crate::protocol::TlsVersion;

/// Which ClientHello fact a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// JA4 (`t13d1516h2_8daaf6152771_e5627efa2ab1`).
    Ja4,
    /// JA3N, an MD5 in hex.
    Ja3n,
    /// The highest version offered: `1.0` … `1.3`.
    TlsVersion,
    /// Any offered ALPN protocol (`h2`, `http/1.1`).
    Alpn,
}

impl Field {
    /// Why `v` cannot be an exact value of this field, if it cannot.
    fn check(self, v: &str) -> Result<(), String> {
        let ok = match self {
            Field::Ja4 => is_ja4(v),
            Field::Ja3n => v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()),
            Field::TlsVersion => TlsVersion::from_name(v).is_some(),
            Field::Alpn => !v.is_empty() && v.len() <= 255,
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Field::Ja4 => format!(
                "{v:?} is not a JA4 fingerprint (like t13d1516h2_8daaf6152771_e5627efa2ab1)"
            ),
            Field::Ja3n => format!("{v:?} is not a JA3N fingerprint (32 hex digits)"),
            Field::TlsVersion => format!("{v:?}: one of {}", TlsVersion::names()),
            Field::Alpn => format!("{v:?} is not an ALPN protocol name"),
        })
    }
}

/// `t` + 2 version chars + `d`/`i` + 4 digits + 2 ALPN chars, then two
/// 12-hex-digit hashes.
fn is_ja4(v: &str) -> bool {
    let parts: Vec<&str> = v.split('_').collect();
    let hex12 = |s: &str| s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts[..] {
        [a, b, c] => {
            a.len() == 10
                && a.is_ascii()
                && matches!(a.as_bytes()[0], b't' | b'q' | b'd')
                && matches!(a.as_bytes()[3], b'd' | b'i')
                && a[4..8].bytes().all(|b| b.is_ascii_digit())
                && hex12(b)
                && hex12(c)
        }
        _ => false,
    }
}

/// One fingerprint condition, compiled.
#[derive(Debug, Clone)]
pub struct TextCond {
    exact: HashSet<String>,
    patterns: Option<RegexSet>,
}

impl TextCond {
    /// Compiles the entries of one rule field; `re:` entries are regexes
    /// over the whole value, case-insensitive.
    pub fn compile(field: Field, entries: &[String]) -> Result<Self, String> {
        let mut exact = HashSet::new();
        let mut regexes = Vec::new();
        for e in entries {
            match e.strip_prefix("re:") {
                Some(re) => regexes.push(format!("(?i)^(?:{re})$")),
                None => {
                    let v = e.to_ascii_lowercase();
                    field.check(&v)?;
                    exact.insert(v);
                }
            }
        }
        let patterns = if regexes.is_empty() {
            None
        } else {
            Some(RegexSet::new(&regexes).map_err(|e| format!("bad regex: {e}"))?)
        };
        Ok(TextCond { exact, patterns })
    }

    /// Does `value` match an exact entry or a regex?
    pub fn matches(&self, value: &str) -> bool {
        let exact = if value.bytes().any(|b| b.is_ascii_uppercase()) {
            self.exact.contains(&value.to_ascii_lowercase())
        } else {
            self.exact.contains(value)
        };
        exact || self.patterns.as_ref().is_some_and(|p| p.is_match(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(field: Field, v: &[&str]) -> Result<TextCond, String> {
        TextCond::compile(field, &v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn exact_values_and_regexes() {
        let c = cond(
            Field::Ja4,
            &["t13d1516h2_8daaf6152771_e5627efa2ab1", "re:t12i.*"],
        )
        .unwrap();
        assert!(c.matches("t13d1516h2_8daaf6152771_e5627efa2ab1"));
        assert!(c.matches("T13D1516H2_8DAAF6152771_E5627EFA2AB1"));
        assert!(c.matches("t12i0406h1_000000000000_000000000000"));
        assert!(!c.matches("t13d1516h2_8daaf6152771_e5627efa2ab2"));
        let alpn = cond(Field::Alpn, &["h2"]).unwrap();
        assert!(alpn.matches("h2") && !alpn.matches("h2c"));
    }

    #[test]
    fn mistyped_values_are_refused() {
        assert!(cond(Field::Ja4, &["t13d1516h2_8daaf6152771"]).is_err());
        assert!(cond(Field::Ja4, &["x13d1516h2_8daaf6152771_e5627efa2ab1"]).is_err());
        assert!(cond(Field::Ja3n, &["abc"]).is_err());
        assert!(cond(Field::TlsVersion, &["1.4"]).is_err());
        assert!(cond(Field::TlsVersion, &["1.3", "1.2"]).is_ok());
        assert!(cond(Field::Alpn, &["re:("]).is_err());
    }
}
