//! The replay's counts: per (old → new) decision, with a few example lines;
//! merged from the workers in any order (sums and bounded lists only).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::judge::Verdict;

/// How many example lines a group keeps.
pub const EXAMPLES: usize = 3;

/// One (old → new) group.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    /// Transactions in it.
    pub count: u64,
    /// The first few lines, as logged.
    pub examples: Vec<String>,
}

impl Group {
    fn add(&mut self, line: &str) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(line.chars().take(400).collect());
        }
    }

    fn merge(&mut self, other: Group) {
        self.count += other.count;
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }
}

/// Everything a run counted.
#[derive(Debug, Default)]
pub struct Tally {
    /// Transactions read (every line that is one, malformed or not).
    pub lines: u64,
    /// Transactions replayed.
    pub replayed: u64,
    /// Changed transactions, by (old, new).
    pub changes: HashMap<(Verdict, Verdict), Group>,
    /// Transactions whose new decision hangs on a fact the log lacks.
    pub unknown: Group,
    /// The rules that needed such facts, and how often.
    pub unknown_rules: HashMap<String, u64>,
    /// Lines whose outcome was not the policy's (limits, bad requests, failed dials).
    pub not_policy: u64,
    /// Lines that could not be read, and a few of them with the reason.
    pub malformed: Group,
}

/// The same decision: same class, and the same rules when the line records them.
pub fn same(old: &Verdict, new: &Verdict) -> bool {
    old.class == new.class && (old.rule.is_none() || old.rule == new.rule)
}

impl Tally {
    /// Counts one replayed transaction.
    pub fn add(
        &mut self,
        line: &str,
        old: Verdict,
        new: Verdict,
        unknown: Vec<std::sync::Arc<str>>,
    ) {
        self.replayed += 1;
        if !unknown.is_empty() {
            self.unknown.add(line);
            for r in unknown {
                *self.unknown_rules.entry(r.to_string()).or_default() += 1;
            }
            return;
        }
        if !same(&old, &new) {
            self.changes.entry((old, new)).or_default().add(line);
        }
    }

    /// Counts a line that could not be read.
    pub fn malformed(&mut self, line: &str, why: &str) {
        self.malformed.add(&format!("{why}: {line}"));
    }

    /// Adds another worker's counts.
    pub fn merge(&mut self, other: Tally) {
        self.lines += other.lines;
        self.replayed += other.replayed;
        self.not_policy += other.not_policy;
        for (k, g) in other.changes {
            self.changes.entry(k).or_default().merge(g);
        }
        self.unknown.merge(other.unknown);
        for (r, n) in other.unknown_rules {
            *self.unknown_rules.entry(r).or_default() += n;
        }
        self.malformed.merge(other.malformed);
    }

    /// Transactions that would change.
    pub fn changed(&self) -> u64 {
        self.changes.values().map(|g| g.count).sum()
    }

    fn sorted(&self) -> Vec<(&(Verdict, Verdict), &Group)> {
        let mut v: Vec<_> = self.changes.iter().collect();
        v.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
        v
    }

    /// The human report; its last line is `N of M transactions would change`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for ((old, new), g) in self.sorted() {
            out.push_str(&format!("{} -> {}: {}\n", side(old), side(new), g.count));
            for e in &g.examples {
                out.push_str(&format!("    e.g. {e}\n"));
            }
        }
        if self.unknown.count > 0 {
            let rules: BTreeMap<_, _> = self.unknown_rules.iter().collect();
            let named: Vec<String> = rules.iter().map(|(r, n)| format!("{r} ({n})")).collect();
            out.push_str(&format!(
                "unknown: {} transactions hang on facts the log does not record, by rule: {}\n",
                self.unknown.count,
                named.join(", ")
            ));
        }
        if self.not_policy > 0 {
            out.push_str(&format!(
                "not replayed: {} transactions the policy did not decide (limits, bad requests, failed dials)\n",
                self.not_policy
            ));
        }
        if self.malformed.count > 0 {
            out.push_str(&format!("malformed: {} lines\n", self.malformed.count));
            for e in &self.malformed.examples {
                out.push_str(&format!("    e.g. {e}\n"));
            }
        }
        out.push_str(&format!(
            "{} of {} transactions would change\n",
            self.changed(),
            self.replayed
        ));
        out
    }

    /// The same as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        let changes: Vec<serde_json::Value> = self
            .sorted()
            .into_iter()
            .map(|((old, new), g)| {
                serde_json::json!({
                    "old": verdict_json(old),
                    "new": verdict_json(new),
                    "count": g.count,
                    "examples": g.examples,
                })
            })
            .collect();
        serde_json::json!({
            "changes": changes,
            "changed": self.changed(),
            "replayed": self.replayed,
            "lines": self.lines,
            "unknown": { "count": self.unknown.count, "rules": self.unknown_rules, "examples": self.unknown.examples },
            "not_policy": self.not_policy,
            "malformed": self.malformed,
        })
    }
}

fn rule_word(v: &Verdict) -> String {
    match &v.rule {
        None => "?".into(),
        Some(None) => "-".into(),
        Some(Some(r)) => r.clone(),
    }
}

fn side(v: &Verdict) -> String {
    format!("{} {}", rule_word(v), v.class.as_str())
}

fn verdict_json(v: &Verdict) -> serde_json::Value {
    serde_json::json!({ "rule": rule_word(v), "action": v.class.as_str() })
}
