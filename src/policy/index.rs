//! A layer of rules, indexed so that a request does not test every rule.
//!
//! Each rule is filed under its most selective atom — its user names, else
//! its host names and domains, else its groups, else its ports — when that
//! atom is a short list; a rule with none of these is tested for every
//! request. A request gathers the rules filed under its user, its groups,
//! its host's labels and its port, plus the unfiled ones, and tests them in
//! policy order: a rule can only match when its filing atom does, so the
//! first of these that matches is the first rule of the layer that matches,
//! exactly as a linear scan would find (`reference_tests.rs` checks this on
//! random policies).

use std::collections::HashMap;

use super::file::LayerKind;
use super::hosts::{lookup_form, tails, Pattern};
use super::rule::Rule;
use super::Facts;
use crate::directory::identity::fold;

/// Layers with fewer rules are scanned; the index would cost more than it saves.
pub const INDEX_FROM: usize = 16;

/// A rule is filed under each entry of its atom only while the atom lists at
/// most this many (a rule with a 10,000-name host object is better tested
/// once through its own set than filed 10,000 times).
const MAX_KEYS: usize = 64;

/// Rule positions in the layer, ascending.
type Slots = Vec<u32>;

/// A layer of rules, ready to evaluate.
#[derive(Debug)]
pub struct Layer {
    /// The layer's name, for `explain`.
    pub name: std::sync::Arc<str>,
    /// Authentication or access.
    pub kind: LayerKind,
    /// The rules, in policy order.
    pub rules: Vec<Rule>,
    index: Option<RuleIndex>,
}

impl Layer {
    /// A layer, indexed when it has at least `index_from` rules.
    pub fn new(
        name: std::sync::Arc<str>,
        kind: LayerKind,
        rules: Vec<Rule>,
        index_from: usize,
    ) -> Self {
        let index = (rules.len() >= index_from).then(|| RuleIndex::build(&rules));
        Layer {
            name,
            kind,
            rules,
            index,
        }
    }

    /// The first rule that matches, in policy order.
    pub fn first_match(&self, f: &Facts<'_>) -> Option<&Rule> {
        let Some(index) = &self.index else {
            return self.rules.iter().find(|r| r.matches(f));
        };
        index
            .candidates(f)
            .into_iter()
            .map(|i| &self.rules[i as usize])
            .find(|r| r.matches(f))
    }
}

#[derive(Debug, Default)]
struct RuleIndex {
    /// Rules filed under nothing: candidates for every request.
    always: Slots,
    by_user: HashMap<String, Slots>,
    by_group: HashMap<String, Slots>,
    by_host: HashMap<Box<str>, Slots>,
    by_domain: HashMap<Box<str>, Slots>,
    by_port: HashMap<u16, Slots>,
}

impl RuleIndex {
    fn build(rules: &[Rule]) -> Self {
        let mut ix = RuleIndex::default();
        for (i, r) in rules.iter().enumerate() {
            let i = i as u32;
            if let Some(users) = small(&r.users) {
                for u in users {
                    file(&mut ix.by_user, u.clone(), i);
                }
            } else if let Some(hosts) = r
                .hosts
                .as_ref()
                .filter(|h| h.len() <= MAX_KEYS && h.sets.iter().all(|s| !s.has_regex()))
            {
                for p in hosts.sets.iter().flat_map(|s| s.patterns()) {
                    match p {
                        Pattern::Exact(n) => file(&mut ix.by_host, n.into(), i),
                        Pattern::Suffix(n) => file(&mut ix.by_domain, n.into(), i),
                        Pattern::Regex(_) => unreachable!("filtered above"),
                    }
                }
            } else if let Some(groups) = small(&r.groups) {
                // As `Identity::in_group` compares: the rule's name folded again.
                for g in groups {
                    file(&mut ix.by_group, fold(g), i);
                }
            } else if let Some(ports) = r.ports.as_ref().filter(|p| port_count(p) <= MAX_KEYS) {
                for port in ports.iter().flat_map(|(a, b)| *a..=*b) {
                    file(&mut ix.by_port, port, i);
                }
            } else {
                ix.always.push(i);
            }
        }
        ix
    }

    /// The rules that may match `f`, ascending, without duplicates.
    fn candidates(&self, f: &Facts<'_>) -> Slots {
        let mut out = self.always.clone();
        let mut add = |s: Option<&Slots>| {
            if let Some(s) = s {
                out.extend_from_slice(s);
            }
        };
        if let Some(id) = f.identity {
            if !self.by_user.is_empty() {
                add(self.by_user.get(fold(&id.user).as_str()));
            }
            if !self.by_group.is_empty() {
                for g in &id.groups {
                    add(self.by_group.get(fold(&g.name).as_str()));
                    if let Some(dn) = &g.dn {
                        add(self.by_group.get(fold(dn).as_str()));
                    }
                }
            }
        }
        let host = lookup_form(f.host);
        add(self.by_host.get(host.as_ref()));
        if !self.by_domain.is_empty() {
            for tail in tails(&host) {
                add(self.by_domain.get(tail));
            }
        }
        add(self.by_port.get(&f.port));
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn file<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Slots>, key: K, rule: u32) {
    let slots = map.entry(key).or_default();
    if slots.last() != Some(&rule) {
        slots.push(rule);
    }
}

fn port_count(ports: &[(u16, u16)]) -> usize {
    ports.iter().map(|(a, b)| (*b - *a) as usize + 1).sum()
}

/// A list short enough to file a rule under each of its entries.
fn small(l: &Option<Vec<String>>) -> Option<&Vec<String>> {
    l.as_ref().filter(|l| l.len() <= MAX_KEYS)
}
