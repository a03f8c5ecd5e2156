//! The one place that turns a request into a decision.
//!
//! A policy is ordered layers of rules (as ProxySG's VPM layers): in each
//! layer the first matching rule wins, and a later layer's decision refines
//! an earlier one's. Evaluation is a pure function from [`Facts`] to a
//! [`Decision`] that names the rules that decided, so the log and
//! `gatehouse explain` can say why. Compiled once at load (regexes, CIDRs,
//! time zones); a reload compiles a whole new policy or changes nothing.

mod categories;
mod compile;
mod denial;
mod entry;
mod error;
mod facts;
mod file;
pub(crate) mod fingerprint;
mod hosts;
mod index;
mod lists;
mod nets;
mod objects;
pub(crate) mod rule;
pub mod settings;
pub mod url;

use std::path::Path;
use std::sync::Arc;

use crate::directory::identity::fold;
use categories::Categories;
pub use denial::Denial;
pub use entry::{EntrySource, MatchedEntry};
pub use error::{LoadError, PolicyError};
pub use facts::{Detected, Facts, CONNECT};
use file::{DefaultVerdict, LayerKind, PolicyFile};
use index::Layer;
use rule::{Atom, Rule};
use settings::PolicyConfig;

/// What a rule tells the proxy to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Allow the request.
    Allow,
    /// Refuse it.
    Deny(Denial),
    /// CONNECT without protocol detection (raw tunnel).
    Tunnel,
    /// CONNECT with protocol detection.
    Detect,
    /// CONNECT decrypted (TLS interception).
    Intercept,
    /// CONNECT exempt from interception: detected as usual.
    Bypass,
    /// Require authentication.
    Authenticate,
    /// Do not require authentication.
    NoAuthenticate,
    /// Authenticate credentials presented; without any, let the request
    /// through as the guest (`auth.guest_user`, `auth_scheme` `guest`).
    Guest,
    /// Only adds a tag to the log.
    Tag,
}

/// Allowed, or refused with a status and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Refused.
    Deny(Denial),
}

/// How an allowed CONNECT is relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// With protocol detection.
    Detect,
    /// As a raw tunnel.
    Tunnel,
    /// Decrypted: each request inside judged and logged.
    Intercept,
}

/// The policy's answer, with the rules that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or refused.
    pub verdict: Verdict,
    /// The rule that gave the verdict (none: the default).
    pub verdict_rule: Option<Arc<str>>,
    /// The verdict came from a rule that looked at the detected protocol.
    pub verdict_by_detection: bool,
    /// The verdict came from a rule with an `upgrade` condition: when it allows,
    /// it lets the protocols it lists through (not only `websocket`; never `h2c`).
    pub verdict_by_upgrade: bool,
    /// For a CONNECT: detect or tunnel.
    pub connect: ConnectMode,
    /// The rule that chose `connect`.
    pub connect_rule: Option<Arc<str>>,
    /// Tags from `tag` rules, for the log.
    pub tags: Vec<Arc<str>>,
    /// Each layer and the rule that matched in it, for `explain`.
    pub trace: Vec<(Arc<str>, Option<Arc<str>>)>,
    /// For each entry of `trace`, in the same order: the list entries that
    /// made its rule's host, SNI, destination and client conditions hold
    /// (`host .example.com from lists/blocked.txt:1234`); empty when the
    /// layer matched no rule or its rule has no such condition.
    pub entries: Vec<Vec<MatchedEntry>>,
}

impl Decision {
    /// The names for the log's `x-rule`: verdict rule, then connect rule.
    pub fn rule_names(&self) -> Option<String> {
        let names: Vec<&str> = self
            .verdict_rule
            .iter()
            .chain(self.connect_rule.iter())
            .map(|r| r.as_ref())
            .collect();
        (!names.is_empty()).then(|| names.join(","))
    }
}

/// What the authentication layers ask of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthNeed {
    /// Authenticate (credentials presented are always checked).
    pub required: bool,
    /// Without credentials, let it through as the guest.
    pub guest: bool,
    /// The rule that said so (`None`: `auth.required`).
    pub rule: Option<Arc<str>>,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    layers: Vec<Layer>,
    /// Some rule has a `url` condition (computed once: the proxy asks per request).
    url_rules: bool,
    default: DefaultVerdict,
    /// The URL category database (`[policy] categories`).
    pub categories: Categories,
    /// Where it came from, for messages.
    pub source: String,
    /// SHA-256 (first 16 hex digits) of the policy file's text and the
    /// `allowed_*` shortcut: which policy runs, for `/metrics` (list and
    /// category files are not in it).
    pub digest: String,
}

impl Policy {
    /// Loads and compiles the policy the config names, with the
    /// `allowed_groups`/`allowed_users` shortcut as a last layer.
    /// List files (`host_file`, `dest_file`) are read relative to the policy file.
    pub fn load(cfg: &PolicyConfig) -> Result<Self, LoadError> {
        let (file, text, source, base) = match &cfg.file {
            Some(path) => {
                let (file, text) = read_file(path)?;
                (
                    file,
                    text,
                    path.display().to_string(),
                    path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                )
            }
            None => (
                PolicyFile::default(),
                String::new(),
                "built-in policy".to_string(),
                ".".into(),
            ),
        };
        let digest = digest(&text, &cfg.allowed_groups, &cfg.allowed_users);
        let mut layers = compile::compile(&file, &source, &base)?;
        if let Some(layer) = allowed_layer(cfg) {
            layers.push(layer);
        }
        let categories = match &cfg.categories {
            Some(p) => Categories::load(p)?,
            None => Categories::default(),
        };
        Ok(Self {
            url_rules: any_url_rule(&layers),
            layers,
            default: file.default,
            categories,
            source,
            digest,
        })
    }

    /// Compiles a policy from TOML text (tests); list files are read
    /// relative to the current directory.
    pub fn from_toml(text: &str) -> Result<Self, LoadError> {
        Self::from_toml_indexed(text, index::INDEX_FROM)
    }

    /// [`from_toml`](Self::from_toml), indexing layers of at least `index_from` rules.
    pub fn from_toml_indexed(text: &str, index_from: usize) -> Result<Self, LoadError> {
        let file: PolicyFile = toml_edit::de::from_str(text).map_err(|e| LoadError::Syntax {
            source_name: "policy".into(),
            message: e.to_string(),
        })?;
        let layers = compile::compile_indexed(&file, "policy", Path::new("."), index_from)?;
        Ok(Self {
            url_rules: any_url_rule(&layers),
            layers,
            default: file.default,
            categories: Categories::default(),
            source: "policy".into(),
            digest: digest(text, &[], &[]),
        })
    }

    /// Do the authentication layers look at destination addresses (`dest`,
    /// or categories while the category database has ranges)? Then the
    /// destination is resolved before authentication; otherwise after it,
    /// so an unauthenticated client cannot make the proxy query DNS.
    pub fn auth_needs_addresses(&self) -> bool {
        self.layers
            .iter()
            .filter(|l| l.kind == LayerKind::Authentication)
            .flat_map(|l| l.rules.iter())
            .any(|r| r.dests.is_some() || (r.categories.is_some() && self.categories.has_ranges()))
    }

    /// Does any rule look at the request URL? (Only then does the proxy
    /// spell it out for the facts.)
    pub fn has_url_rules(&self) -> bool {
        self.url_rules
    }

    /// The first rule that intercepts, if any (interception needs a CA).
    pub fn intercept_rule(&self) -> Option<&str> {
        self.layers
            .iter()
            .flat_map(|l| l.rules.iter())
            .find(|r| r.action == Action::Intercept)
            .map(|r| &*r.name)
    }

    /// The first rule that can only match after protocol detection (`protocol`,
    /// `sni`, fingerprints): with detection off it never matches.
    pub fn detection_rule(&self) -> Option<&str> {
        self.layers
            .iter()
            .flat_map(|l| l.rules.iter())
            .find(|r| r.needs_detection())
            .map(|r| &*r.name)
    }

    /// The layers, in policy order: `gatehouse replay` asks which rules
    /// read facts a log line does not record.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Must this request authenticate? Authentication layers refine `required`.
    pub fn needs_auth(&self, facts: &Facts<'_>, required: bool) -> (bool, Option<Arc<str>>) {
        let need = self.auth_need(facts, required);
        (need.required, need.rule)
    }

    /// What the authentication layers ask of this request: the last layer
    /// whose rule matched decides.
    pub fn auth_need(&self, facts: &Facts<'_>, required: bool) -> AuthNeed {
        let mut need = AuthNeed {
            required,
            guest: false,
            rule: None,
        };
        for layer in self
            .layers
            .iter()
            .filter(|l| l.kind == LayerKind::Authentication)
        {
            if let Some(rule) = layer.first_match(facts) {
                let (required, guest) = match rule.action {
                    Action::Authenticate => (true, false),
                    Action::NoAuthenticate => (false, false),
                    Action::Guest => (true, true),
                    _ => continue,
                };
                need = AuthNeed {
                    required,
                    guest,
                    rule: Some(rule.name.clone()),
                };
            }
        }
        need
    }

    /// Evaluates the access layers.
    pub fn decide(&self, facts: &Facts<'_>) -> Decision {
        let mut d = Decision {
            verdict: match self.default {
                DefaultVerdict::Allow => Verdict::Allow,
                DefaultVerdict::Deny => Verdict::Deny(Denial::policy_denied()),
            },
            verdict_rule: None,
            verdict_by_detection: false,
            verdict_by_upgrade: false,
            connect: ConnectMode::Detect,
            connect_rule: None,
            tags: Vec::new(),
            trace: Vec::new(),
            entries: Vec::new(),
        };
        for layer in self.layers.iter().filter(|l| l.kind == LayerKind::Access) {
            let hit = layer.first_match(facts);
            d.trace
                .push((layer.name.clone(), hit.map(|r| r.name.clone())));
            d.entries
                .push(hit.map(|r| r.entries(facts)).unwrap_or_default());
            let Some(rule) = hit else { continue };
            match &rule.action {
                Action::Allow => d.verdict = Verdict::Allow,
                Action::Deny(denial) => d.verdict = Verdict::Deny(denial.clone()),
                Action::Tunnel => d.connect = ConnectMode::Tunnel,
                Action::Detect | Action::Bypass => d.connect = ConnectMode::Detect,
                Action::Intercept => d.connect = ConnectMode::Intercept,
                Action::Authenticate | Action::NoAuthenticate | Action::Guest | Action::Tag => {}
            }
            match &rule.action {
                Action::Allow | Action::Deny(_) => {
                    d.verdict_rule = Some(rule.name.clone());
                    d.verdict_by_detection = rule.needs_detection();
                    d.verdict_by_upgrade = rule.upgrades.is_some();
                }
                Action::Tunnel | Action::Detect | Action::Intercept | Action::Bypass => {
                    d.connect_rule = Some(rule.name.clone())
                }
                _ => {}
            }
            if let Some(t) = &rule.tag {
                d.tags.push(t.clone());
            }
        }
        d
    }
}

fn any_url_rule(layers: &[Layer]) -> bool {
    layers
        .iter()
        .flat_map(|l| l.rules.iter())
        .any(|r| r.urls.is_some())
}

fn read_file(path: &Path) -> Result<(PolicyFile, String), LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file = toml_edit::de::from_str(&text).map_err(|e| LoadError::Syntax {
        source_name: path.display().to_string(),
        message: e.to_string(),
    })?;
    Ok((file, text))
}

fn digest(text: &str, groups: &[String], users: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(text.as_bytes());
    for g in groups {
        h.update(b"\0group:");
        h.update(g.as_bytes());
    }
    for u in users {
        h.update(b"\0user:");
        h.update(u.as_bytes());
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `allowed_groups = [...]` / `allowed_users = [...]`: the seed's rule —
/// these users' CONNECTs without a User-Agent skip protocol detection.
fn allowed_layer(cfg: &PolicyConfig) -> Option<Layer> {
    if cfg.allowed_groups.is_empty() && cfg.allowed_users.is_empty() {
        return None;
    }
    let no_ua = rule::HeaderCond {
        name: http::header::USER_AGENT,
        re: regex::Regex::new("^$").expect("a constant regex"),
    };
    let who: Vec<Atom> = cfg
        .allowed_groups
        .iter()
        .map(|g| Atom::Group(fold(g)))
        .chain(cfg.allowed_users.iter().map(|u| Atom::User(fold(u))))
        .collect();
    Some(Layer::new(
        "allowed-groups".into(),
        LayerKind::Access,
        vec![Rule {
            methods: Some(vec!["CONNECT".into()]),
            headers: vec![no_ua],
            sources: Some(vec![Arc::new(vec![who])]),
            ..Rule::new("allowed-groups-tunnel".into(), Action::Tunnel)
        }],
        index::INDEX_FROM,
    ))
}

#[cfg(test)]
#[path = "policy/policy_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "policy/reference_tests.rs"]
mod reference_tests;
