//! A compiled rule and how it matches [`Facts`]: every condition present
//! must hold (AND); each list matches when any of its entries does (OR).
//! Host, SNI, destination and client conditions are sets (`hosts.rs`,
//! `nets.rs`), so a million-entry list costs a hash lookup per label.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderName;
use ipnet::IpNet;
use regex::Regex;

use super::entry::MatchedEntry;
use super::fingerprint::{Field, TextCond};
use super::hosts::HostSet;
use super::nets::NetSet;
use super::{Action, Detected, Facts};
use crate::directory::identity::folds_to;
use crate::protocol::ProtocolKind;
use crate::upgrade::Token;

/// A header that must match a regex; an absent header is the empty string.
#[derive(Debug, Clone)]
pub struct HeaderCond {
    /// The header.
    pub name: HeaderName,
    /// Matched against its values joined with `, `.
    pub re: Regex,
}

impl HeaderCond {
    /// Does the request's header (or its absence) match?
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name).iter().peekable();
        if values.peek().is_none() {
            return self.re.is_match("");
        }
        let joined: Vec<String> = values
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        self.re.is_match(&joined.join(", "))
    }
}

/// One alternative of a combined object.
#[derive(Debug, Clone)]
pub enum Atom {
    /// User, group and realm names are held [`fold`](crate::directory::identity::fold)ed.
    User(String),
    /// A group, folded.
    Group(String),
    /// A realm, folded.
    Realm(String),
    /// A client range.
    Client(IpNet),
    /// A method, uppercase.
    Method(String),
    /// Header conditions, all of which must hold.
    Header(Vec<HeaderCond>),
}

impl Atom {
    fn matches(&self, f: &Facts<'_>) -> bool {
        match self {
            Atom::User(u) => f.identity.is_some_and(|i| folds_to(&i.user, u)),
            Atom::Group(g) => f.identity.is_some_and(|i| i.in_group(g)),
            Atom::Realm(r) => f.identity.is_some_and(|i| folds_to(&i.realm, r)),
            Atom::Client(n) => n.contains(&f.client),
            Atom::Method(m) => f.method.as_str().eq_ignore_ascii_case(m),
            Atom::Header(h) => h.iter().all(|c| c.matches(f.headers)),
        }
    }
}

/// Weekdays and a time-of-day window in a time zone.
#[derive(Debug, Clone)]
pub struct TimeCond {
    /// Bit per weekday, Monday = bit 0; 0 means every day.
    pub days: u8,
    /// Start of the window (inclusive).
    pub from: Option<jiff::civil::Time>,
    /// End of the window (exclusive); before `from` it wraps midnight.
    pub to: Option<jiff::civil::Time>,
    /// The zone the window is in.
    pub tz: jiff::tz::TimeZone,
}

impl TimeCond {
    /// Is `now` inside the window?
    pub fn matches(&self, now: jiff::Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let day = local.weekday().to_monday_zero_offset() as u8;
        if self.days != 0 && self.days & (1 << day) == 0 {
            return false;
        }
        let t = local.time();
        match (self.from, self.to) {
            (Some(f), Some(to)) if f <= to => f <= t && t < to,
            (Some(f), Some(to)) => t >= f || t < to, // wraps midnight
            (Some(f), None) => t >= f,
            (None, Some(to)) => t < to,
            (None, None) => true,
        }
    }
}

/// A `host` or `sni` condition: the rule's own patterns and the objects it
/// names, each a set shared with every rule naming the same object.
#[derive(Debug, Clone, Default)]
pub struct HostCond {
    /// The sets; the condition holds when any of them matches.
    pub sets: Vec<Arc<HostSet>>,
}

impl HostCond {
    /// Does any set match `host`?
    pub fn matches(&self, host: &str) -> bool {
        self.sets.iter().any(|s| s.matches(host))
    }

    /// The entry that matched.
    pub fn entry(&self, field: &'static str, host: &str) -> Option<MatchedEntry> {
        self.sets.iter().find_map(|s| s.entry(field, host))
    }

    /// Total number of patterns.
    pub fn len(&self) -> usize {
        self.sets.iter().map(|s| s.len()).sum()
    }
}

/// A `dest` or `client` condition: ranges, as sets.
#[derive(Debug, Clone, Default)]
pub struct NetCond {
    /// The sets; an address is inside when any of them holds it.
    pub sets: Vec<Arc<NetSet>>,
}

impl NetCond {
    /// Is `ip` inside?
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.sets.iter().any(|s| s.contains(ip))
    }

    /// The entry that holds `ip`.
    pub fn entry(&self, field: &'static str, ip: &IpAddr) -> Option<MatchedEntry> {
        self.sets.iter().find_map(|s| s.entry(field, ip))
    }
}

/// A rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique in the policy; the log's `x-rule`.
    pub name: Arc<str>,
    /// Must the request be (un)authenticated?
    pub authenticated: Option<bool>,
    /// Names, [`fold`](crate::directory::identity::fold)ed (as are `groups`, `realms`, `categories`).
    pub users: Option<Vec<String>>,
    /// Group names, folded.
    pub groups: Option<Vec<String>>,
    /// Realm names, folded.
    pub realms: Option<Vec<String>>,
    /// How the identity was obtained (`x-auth-scheme` without `-cached`).
    pub auth_schemes: Option<Vec<String>>,
    /// Client address ranges.
    pub clients: Option<NetCond>,
    /// Methods, uppercase.
    pub methods: Option<Vec<String>>,
    /// Destination host patterns.
    pub hosts: Option<HostCond>,
    /// Ranges the resolved addresses are checked against.
    pub dests: Option<NetCond>,
    /// Inclusive port ranges.
    pub ports: Option<Vec<(u16, u16)>>,
    /// Header conditions, all of which must hold.
    pub headers: Vec<HeaderCond>,
    /// Combined objects: any of them, each an AND of ORs.
    pub sources: Option<Vec<Arc<Vec<Vec<Atom>>>>>,
    /// Category names, folded.
    pub categories: Option<Vec<String>>,
    /// Time window.
    pub time: Option<TimeCond>,
    /// Detected protocols.
    pub protocols: Option<Vec<ProtocolKind>>,
    /// TLS SNI patterns.
    pub snis: Option<HostCond>,
    /// ClientHello facts: JA4, JA3N, highest version offered, ALPN offered.
    pub fingerprints: Vec<(Field, TextCond)>,
    /// Regexes over the request's full URL.
    pub urls: Option<regex::RegexSet>,
    /// Protocol upgrades the request offers (see [`Rule::upgrade_matches`]).
    pub upgrades: Option<Vec<Token>>,
    /// What the rule does when it matches.
    pub action: Action,
    /// A tag for the log.
    pub tag: Option<Arc<str>>,
}

impl Rule {
    /// A rule with no conditions (it matches every request), doing
    /// `action`: construction sites set only the conditions they use,
    /// `Rule { methods: .., ..Rule::new(name, action) }`.
    pub fn new(name: Arc<str>, action: Action) -> Self {
        Rule {
            name,
            authenticated: None,
            users: None,
            groups: None,
            realms: None,
            auth_schemes: None,
            clients: None,
            methods: None,
            hosts: None,
            dests: None,
            ports: None,
            headers: Vec::new(),
            sources: None,
            categories: None,
            time: None,
            protocols: None,
            snis: None,
            fingerprints: Vec::new(),
            urls: None,
            upgrades: None,
            action,
            tag: None,
        }
    }

    /// Conditions that need an authenticated identity.
    pub fn needs_identity(&self) -> bool {
        self.authenticated.is_some()
            || self.users.is_some()
            || self.groups.is_some()
            || self.realms.is_some()
            || self.auth_schemes.is_some()
            || self.sources.is_some()
    }

    /// Conditions only known after protocol detection.
    pub fn needs_detection(&self) -> bool {
        self.protocols.is_some() || self.snis.is_some() || !self.fingerprints.is_empty()
    }

    /// Does every condition present hold?
    pub fn matches(&self, f: &Facts<'_>) -> bool {
        let id = f.identity;
        let any = |list: &Option<Vec<String>>, pred: &dyn Fn(&str) -> bool| {
            list.as_ref().is_none_or(|l| l.iter().any(|x| pred(x)))
        };
        if self.needs_detection() && f.detected.is_none() {
            return false;
        }
        self.authenticated.is_none_or(|want| want == id.is_some())
            && any(&self.users, &|u| id.is_some_and(|i| folds_to(&i.user, u)))
            && any(&self.groups, &|g| id.is_some_and(|i| i.in_group(g)))
            && any(&self.realms, &|x| id.is_some_and(|i| folds_to(&i.realm, x)))
            && any(&self.auth_schemes, &|s| f.auth_scheme == Some(s))
            && self.clients.as_ref().is_none_or(|c| c.contains(&f.client))
            && any(&self.methods, &|m| {
                f.method.as_str().eq_ignore_ascii_case(m)
            })
            && self.hosts.as_ref().is_none_or(|h| h.matches(f.host))
            && self
                .dests
                .as_ref()
                .is_none_or(|d| self.dest_matches(d, f.addrs))
            && self
                .ports
                .as_ref()
                .is_none_or(|l| l.iter().any(|(a, b)| (*a..=*b).contains(&f.port)))
            && self.headers.iter().all(|h| h.matches(f.headers))
            && self.sources.as_ref().is_none_or(|objs| {
                objs.iter()
                    .any(|all| all.iter().all(|alts| alts.iter().any(|a| a.matches(f))))
            })
            && any(&self.categories, &|c| {
                f.categories.iter().any(|x| folds_to(x, c))
            })
            && self.time.as_ref().is_none_or(|t| t.matches(f.now))
            && self
                .protocols
                .as_ref()
                .is_none_or(|l| f.detected.is_some_and(|d| l.contains(&d.protocol)))
            && self.snis.as_ref().is_none_or(|l| {
                f.detected
                    .and_then(|d| d.sni)
                    .is_some_and(|sni| l.matches(sni))
            })
            && self
                .urls
                .as_ref()
                .is_none_or(|set| f.url.is_some_and(|u| set.is_match(u)))
            && self
                .upgrades
                .as_ref()
                .is_none_or(|l| self.upgrade_matches(l, f.headers))
            && self.fingerprints.iter().all(|(field, c)| {
                f.detected
                    .is_some_and(|d| fingerprint_matches(*field, c, &d))
            })
    }

    /// A `dest` condition against every address the destination resolved
    /// to. A rule that restricts (deny, detect, authenticate, tag) matches
    /// when any address is in its ranges; a rule that grants (allow, tunnel,
    /// no-authenticate) only when all are, and there are some. Either way a
    /// name with one address inside and one outside cannot slip past: the
    /// proxy may dial any of them.
    fn dest_matches(&self, nets: &NetCond, addrs: &[IpAddr]) -> bool {
        if self.grants() {
            !addrs.is_empty() && addrs.iter().all(|ip| nets.contains(ip))
        } else {
            addrs.iter().any(|ip| nets.contains(ip))
        }
    }

    /// An `upgrade` condition against the protocols the request offers (as
    /// [`crate::upgrade::offered`] reads them): a rule that grants matches
    /// when every one is listed, one that restricts when any is, so a
    /// `websocket` grant cannot carry an `h2c` offered beside it. A request
    /// that offers none, or none readable, matches neither.
    fn upgrade_matches(&self, listed: &[Token], headers: &http::HeaderMap) -> bool {
        let Ok(Some(offer)) = crate::upgrade::offered(headers) else {
            return false;
        };
        if self.grants() {
            offer.tokens.iter().all(|t| listed.contains(t))
        } else {
            offer.tokens.iter().any(|t| listed.contains(t))
        }
    }

    /// Allow, tunnel and no-authenticate grant; the rest restrict.
    pub fn grants(&self) -> bool {
        matches!(
            self.action,
            Action::Allow
                | Action::Tunnel
                | Action::NoAuthenticate
                | Action::Guest
                | Action::Bypass
        )
    }

    /// The list entries behind this (matching) rule's host, SNI, destination
    /// and client conditions, for `explain`.
    pub fn entries(&self, f: &Facts<'_>) -> Vec<MatchedEntry> {
        let mut out = Vec::new();
        if let Some(h) = &self.hosts {
            out.extend(h.entry("host", f.host));
        }
        if let (Some(s), Some(sni)) = (&self.snis, f.detected.and_then(|d| d.sni)) {
            out.extend(s.entry("sni", sni));
        }
        if let Some(d) = &self.dests {
            for ip in f.addrs {
                if let Some(e) = d.entry("dest", ip) {
                    if !out.contains(&e) {
                        out.push(e);
                    }
                }
            }
        }
        if let Some(c) = &self.clients {
            out.extend(c.entry("client", &f.client));
        }
        out
    }
}

/// A fingerprint condition against what detection saw; a fact the client
/// did not give (no TLS, no ALPN) matches nothing.
fn fingerprint_matches(field: Field, c: &TextCond, d: &Detected<'_>) -> bool {
    match field {
        Field::Ja4 => d.ja4.is_some_and(|v| c.matches(v)),
        Field::Ja3n => d.ja3n.is_some_and(|v| c.matches(v)),
        Field::TlsVersion => d.tls_version.is_some_and(|v| c.matches(v.name())),
        Field::Alpn => d.alpn.iter().any(|v| c.matches(v)),
    }
}
