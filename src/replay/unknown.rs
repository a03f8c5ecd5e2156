//! Facts a log line does not record, and the rules whose outcome hangs on
//! them. Replay never guesses such a fact: a rule that reads one and could
//! have matched (it matches once the unknown conditions are dropped) at or
//! before the rule that decided its layer makes the transaction's new
//! decision unknown, and the rule is named and counted.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::USER_AGENT;

use crate::policy::fingerprint::Field;
use crate::policy::rule::{Atom, HeaderCond, Rule};
use crate::policy::{Facts, Policy};

/// A set of facts a line lacks (bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Unknowns(u8);

impl Unknowns {
    /// Request headers other than User-Agent: no format logs them.
    pub const HEADERS: Self = Self(1);
    /// The User-Agent (Squid does not log it).
    pub const USER_AGENT: Self = Self(2);
    /// The realm that vouched for the user: not logged.
    pub const REALM: Self = Self(4);
    /// The user's groups (Squid).
    pub const GROUPS: Self = Self(8);
    /// The addresses the destination resolved to (a line without `r-ip`).
    pub const ADDRESSES: Self = Self(16);
    /// TLS version and ALPN offered: JA4 summarises them, no field holds them.
    pub const TLS_DETAIL: Self = Self(32);
    /// Detection's protocol, SNI and JA3N (Squid).
    pub const DETECTED: Self = Self(64);

    /// Both sets.
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Holds every bit of `other`.
    pub fn has(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

fn header_unknown(h: &HeaderCond, u: Unknowns) -> bool {
    if h.name == USER_AGENT {
        u.has(Unknowns::USER_AGENT)
    } else {
        u.has(Unknowns::HEADERS)
    }
}

fn field_unknown(f: Field, u: Unknowns) -> bool {
    match f {
        Field::TlsVersion | Field::Alpn => u.has(Unknowns::TLS_DETAIL),
        Field::Ja4 | Field::Ja3n => u.has(Unknowns::DETECTED),
    }
}

/// An atom with the unknown part dropped; `None`: the atom itself is
/// unknown (it could hold).
fn relax_atom(a: &Atom, u: Unknowns) -> Option<Atom> {
    match a {
        Atom::Realm(_) if u.has(Unknowns::REALM) => None,
        Atom::Group(_) if u.has(Unknowns::GROUPS) => None,
        Atom::Header(h) => Some(Atom::Header(
            h.iter()
                .filter(|c| !header_unknown(c, u))
                .cloned()
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn atom_reads(a: &Atom, u: Unknowns) -> bool {
    match a {
        Atom::Realm(_) => u.has(Unknowns::REALM),
        Atom::Group(_) => u.has(Unknowns::GROUPS),
        Atom::Header(h) => h.iter().any(|c| header_unknown(c, u)),
        _ => false,
    }
}

/// Does `r` read a fact in `u`?
pub fn reads(r: &Rule, u: Unknowns) -> bool {
    r.headers.iter().any(|h| header_unknown(h, u))
        || (r.upgrades.is_some() && u.has(Unknowns::HEADERS))
        || (r.realms.is_some() && u.has(Unknowns::REALM))
        || (r.groups.is_some() && u.has(Unknowns::GROUPS))
        || (r.dests.is_some() && u.has(Unknowns::ADDRESSES))
        || ((r.protocols.is_some() || r.snis.is_some()) && u.has(Unknowns::DETECTED))
        || r.fingerprints.iter().any(|(f, _)| field_unknown(*f, u))
        || r.sources.as_ref().is_some_and(|objs| {
            objs.iter()
                .flat_map(|o| o.iter().flatten())
                .any(|a| atom_reads(a, u))
        })
}

/// `r` without its conditions on facts in `u` (they could hold), or `None`
/// when it reads none.
pub fn relax(r: &Rule, u: Unknowns) -> Option<Rule> {
    if !reads(r, u) {
        return None;
    }
    let mut out = r.clone();
    out.headers.retain(|h| !header_unknown(h, u));
    if u.has(Unknowns::HEADERS) {
        out.upgrades = None;
    }
    if u.has(Unknowns::REALM) {
        out.realms = None;
    }
    if u.has(Unknowns::GROUPS) {
        out.groups = None;
    }
    if u.has(Unknowns::ADDRESSES) {
        out.dests = None;
    }
    if u.has(Unknowns::DETECTED) {
        out.protocols = None;
        out.snis = None;
    }
    out.fingerprints.retain(|(f, _)| !field_unknown(*f, u));
    out.sources = r.sources.as_ref().map(|objs| {
        objs.iter()
            .map(|o| {
                // An alternative list holding an unknown atom could hold:
                // it becomes an always-true atom (no header condition).
                let alts = o
                    .iter()
                    .map(|alts| {
                        let relaxed: Option<Vec<Atom>> =
                            alts.iter().map(|a| relax_atom(a, u)).collect();
                        relaxed.unwrap_or_else(|| vec![Atom::Header(Vec::new())])
                    })
                    .collect();
                Arc::new(alts)
            })
            .collect()
    });
    Some(out)
}

/// For each layer, each rule relaxed for one set of unknowns.
type Relaxed = Vec<Vec<Option<Rule>>>;

/// Relaxed policies per set of unknowns, built on first use (a worker
/// keeps one; a run meets a handful of sets).
#[derive(Default)]
pub struct Scanner {
    relaxed: HashMap<Unknowns, Relaxed>,
}

impl Scanner {
    /// The rules that read a fact in `u` and could have decided a layer
    /// for these facts: at or before the rule that matched.
    pub fn needed(&mut self, policy: &Policy, u: Unknowns, facts: &Facts<'_>) -> Vec<Arc<str>> {
        let relaxed = self.relaxed.entry(u).or_insert_with(|| {
            policy
                .layers()
                .iter()
                .map(|l| l.rules.iter().map(|r| relax(r, u)).collect())
                .collect()
        });
        let mut out = Vec::new();
        for (layer, rel) in policy.layers().iter().zip(relaxed.iter()) {
            if rel.iter().all(Option::is_none) {
                continue;
            }
            let hit = layer.first_match(facts);
            let upto = hit
                .and_then(|h| layer.rules.iter().position(|r| std::ptr::eq(r, h)))
                .unwrap_or(layer.rules.len().saturating_sub(1));
            for (rule, relaxed) in layer.rules.iter().zip(rel).take(upto + 1) {
                if relaxed.as_ref().is_some_and(|r| r.matches(facts)) {
                    out.push(rule.name.clone());
                }
            }
        }
        out
    }
}
