//! Host patterns compiled to sets whose lookup cost does not grow with
//! their size: exact names and domain suffixes in hash maps walked by the
//! name's labels (a name of n labels costs n + 1 lookups, whether the list
//! holds ten entries or ten million), regexes in one [`RegexSet`].
//!
//! Patterns are canonicalised at compile time exactly as request hosts are
//! (`crate::resolve::host::canonical`: lowercase, IDNA to punycode, no
//! trailing dot), so `Bücher.Example.` in a list matches a request for
//! `xn--bcher-kva.example`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;

use regex::RegexSet;

use super::entry::{MatchedEntry, Origin};
use crate::resolve::host::{self, Host};

/// One host pattern, canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `example.com`: that name only (or an address literal).
    Exact(String),
    /// `.example.com`: the domain and every name under it (held without the dot).
    Suffix(String),
    /// `re:...`: a regex over the whole host, case-insensitive.
    Regex(String),
}

impl Pattern {
    /// Reads one pattern as written in a policy or list file.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(re) = s.strip_prefix("re:") {
            regex::Regex::new(&format!("(?i){re}"))
                .map_err(|e| format!("bad regex {re:?}: {e}"))?;
            return Ok(Pattern::Regex(re.to_string()));
        }
        let (suffix, name) = match s.strip_prefix('.') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        if name.is_empty() {
            return Err("empty host pattern".into());
        }
        // A bare IPv6 literal is how `Facts::host` spells an IPv6 destination.
        if let Ok(ip) = name.parse::<IpAddr>() {
            return ip_pattern(suffix, ip, s);
        }
        match host::canonical(name) {
            Ok(Host::Name(n)) if suffix => Ok(Pattern::Suffix(n)),
            Ok(Host::Name(n)) => Ok(Pattern::Exact(n)),
            Ok(Host::Ip(ip)) => ip_pattern(suffix, ip, s),
            Err(e) => Err(format!("{s:?}: {e}")),
        }
    }
}

fn ip_pattern(suffix: bool, ip: IpAddr, s: &str) -> Result<Pattern, String> {
    if suffix {
        return Err(format!(
            "{s:?}: a leading '.' takes a domain name, not an address"
        ));
    }
    Ok(Pattern::Exact(host::fold(ip).to_string()))
}

/// Which kind of pattern matched.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Exact,
    Suffix,
    Regex,
}

/// A set of host patterns. Each entry keeps the line it was read from
/// (0 when written in the policy file) for `explain`.
#[derive(Debug, Default)]
pub struct HostSet {
    exact: HashMap<Box<str>, u32>,
    suffix: HashMap<Box<str>, u32>,
    regex: Option<RegexSet>,
    regexes: Vec<(Box<str>, u32)>,
    /// The list file the entries came from.
    pub origin: Origin,
}

impl HostSet {
    /// An empty set with room for `exact` names and `suffix` domains, so a
    /// big list is not rehashed (and its old tables left in the heap) as it grows.
    pub fn with_capacity(exact: usize, suffix: usize) -> Self {
        HostSet {
            exact: HashMap::with_capacity(exact),
            suffix: HashMap::with_capacity(suffix),
            ..HostSet::default()
        }
    }

    /// Adds a pattern read at `line`; the first of duplicates is kept.
    pub fn insert(&mut self, p: Pattern, line: u32) {
        match p {
            Pattern::Exact(n) => {
                self.exact.entry(n.into()).or_insert(line);
            }
            Pattern::Suffix(n) => {
                self.suffix.entry(n.into()).or_insert(line);
            }
            Pattern::Regex(r) => self.regexes.push((r.into(), line)),
        }
    }

    /// Builds the regex set; call once after the last [`insert`](Self::insert).
    pub fn finish(&mut self) -> Result<(), regex::Error> {
        self.exact.shrink_to_fit();
        self.suffix.shrink_to_fit();
        if !self.regexes.is_empty() {
            let set = RegexSet::new(self.regexes.iter().map(|(r, _)| format!("(?i){r}")))?;
            self.regex = Some(set);
        }
        Ok(())
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.exact.len() + self.suffix.len() + self.regexes.len()
    }

    /// No patterns at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether it holds regexes (which an index over names cannot cover).
    pub fn has_regex(&self) -> bool {
        !self.regexes.is_empty()
    }

    /// Does any pattern match `host`? (No allocation for a canonical host.)
    pub fn matches(&self, host: &str) -> bool {
        self.hit(host).is_some()
    }

    /// The most specific matching pattern and its line: an exact name, else
    /// the longest suffix, else the first regex.
    pub fn find(&self, host: &str) -> Option<(Pattern, u32)> {
        let (kind, text, line) = self.hit(host)?;
        let text = text.to_string();
        let p = match kind {
            Kind::Exact => Pattern::Exact(text),
            Kind::Suffix => Pattern::Suffix(text),
            Kind::Regex => Pattern::Regex(text),
        };
        Some((p, line))
    }

    /// [`find`](Self::find), borrowing the pattern's text from the set.
    fn hit(&self, host: &str) -> Option<(Kind, &str, u32)> {
        let h = lookup_form(host);
        if let Some((k, line)) = self.exact.get_key_value(h.as_ref()) {
            return Some((Kind::Exact, k, *line));
        }
        if !self.suffix.is_empty() {
            for tail in tails(&h) {
                if let Some((k, line)) = self.suffix.get_key_value(tail) {
                    return Some((Kind::Suffix, k, *line));
                }
            }
        }
        let set = self.regex.as_ref()?;
        // Regexes see the host as the old matcher did: trailing dots gone, case kept.
        let i = set.matches(host.trim_end_matches('.')).iter().next()?;
        let (re, line) = &self.regexes[i];
        Some((Kind::Regex, re, *line))
    }

    /// The matched entry, as `explain` shows it.
    pub fn entry(&self, field: &'static str, host: &str) -> Option<MatchedEntry> {
        let (p, line) = self.find(host)?;
        Some(MatchedEntry {
            field,
            pattern: p.to_string(),
            source: self.origin.at(line),
        })
    }

    /// Every pattern (exact names, suffixes, regexes), in no fixed order.
    pub fn patterns(&self) -> impl Iterator<Item = Pattern> + '_ {
        let exact = self.exact.keys().map(|k| Pattern::Exact(k.to_string()));
        let suffix = self.suffix.keys().map(|k| Pattern::Suffix(k.to_string()));
        let regex = self
            .regexes
            .iter()
            .map(|(r, _)| Pattern::Regex(r.to_string()));
        exact.chain(suffix).chain(regex)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Exact(n) => f.write_str(n),
            Pattern::Suffix(n) => write!(f, ".{n}"),
            Pattern::Regex(r) => write!(f, "re:{r}"),
        }
    }
}

/// The host as the sets hold names: without trailing dots, ASCII lowercase
/// (already so for a canonical host, so no allocation on the request path).
pub fn lookup_form(host: &str) -> Cow<'_, str> {
    let h = host.trim_end_matches('.');
    if h.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(h.to_ascii_lowercase())
    } else {
        Cow::Borrowed(h)
    }
}

/// The name itself, then what follows each dot: `a.b.c`, `b.c`, `c`. A
/// suffix `.b.c` matches exactly when one of these is `b.c`.
pub fn tails(h: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(h), |t| t.split_once('.').map(|(_, rest)| rest))
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
mod tests;
