//! The one place that turns a request into a decision.
//!
//! A policy is ordered layers of rules (as ProxySG's VPM layers): in each
//! layer the first matching rule wins, and a later layer's decision refines
//! an earlier one's. Evaluation is a pure function from [`Facts`] to a
//! [`Decision`] that names the rules that decided, so the log and
//! `gatehouse explain` can say why. Compiled once at load (regexes, CIDRs,
//! time zones); a reload compiles a whole new policy or changes nothing.

pub mod categories;
pub mod compile;
pub mod file;
pub mod settings;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use http::HeaderMap;

use crate::directory::identity::{fold, folds_to, Identity};
use categories::Categories;
use compile::{Atom, Layer, Rule};
use file::{DefaultVerdict, LayerKind, PolicyFile};
use settings::PolicyConfig;

/// What a rule tells the proxy to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny {
        status: u16,
        reason: Arc<str>,
    },
    /// CONNECT without protocol detection (raw tunnel).
    Tunnel,
    /// CONNECT with protocol detection.
    Detect,
    Authenticate,
    NoAuthenticate,
    /// Only adds a tag to the log.
    Tag,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny { status: u16, reason: Arc<str> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    Detect,
    Tunnel,
}

/// The policy's answer, with the rules that gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub verdict_rule: Option<Arc<str>>,
    /// The verdict came from a rule that looked at the detected protocol.
    pub verdict_by_detection: bool,
    pub connect: ConnectMode,
    pub connect_rule: Option<Arc<str>>,
    pub tags: Vec<Arc<str>>,
    /// Each layer and the rule that matched in it, for `explain`.
    pub trace: Vec<(Arc<str>, Option<Arc<str>>)>,
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

/// What the proxy knows when it decides.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub identity: Option<&'a Identity>,
    pub client: IpAddr,
    pub method: &'a str,
    /// The canonical host name or address literal (host patterns match it).
    pub host: &'a str,
    /// The addresses `host` resolved to — the ones that will be dialled.
    /// `dest` conditions match these; empty before resolution.
    pub addrs: &'a [IpAddr],
    pub port: u16,
    pub headers: &'a HeaderMap,
    pub categories: &'a [Arc<str>],
    pub now: jiff::Timestamp,
    /// After protocol detection on a CONNECT: the protocol and the TLS SNI.
    pub detected: Option<(&'a str, Option<&'a str>)>,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    layers: Vec<Layer>,
    default: DefaultVerdict,
    pub categories: Categories,
    /// Where it came from, for messages.
    pub source: String,
}

impl Policy {
    /// Loads and compiles the policy the config names, with the
    /// `allowed_groups`/`allowed_users` shortcut as a last layer.
    pub fn load(cfg: &PolicyConfig) -> Result<Self, String> {
        let (file, source) = match &cfg.file {
            Some(path) => (read_file(path)?, path.display().to_string()),
            None => (PolicyFile::default(), "built-in policy".to_string()),
        };
        let mut layers = compile::compile(&file, &source).map_err(|e| e.to_string())?;
        if let Some(layer) = allowed_layer(cfg) {
            layers.push(layer);
        }
        let categories = match &cfg.categories {
            Some(p) => Categories::load(p)?,
            None => Categories::default(),
        };
        Ok(Self {
            layers,
            default: file.default,
            categories,
            source,
        })
    }

    /// Compiles a policy from TOML text (tests, `explain`).
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let file: PolicyFile = toml_edit::de::from_str(text).map_err(|e| e.to_string())?;
        Ok(Self {
            layers: compile::compile(&file, "policy").map_err(|e| e.to_string())?,
            default: file.default,
            categories: Categories::default(),
            source: "policy".into(),
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

    /// Must this request authenticate? Authentication layers refine `required`.
    pub fn needs_auth(&self, facts: &Facts<'_>, required: bool) -> (bool, Option<Arc<str>>) {
        let mut need = (required, None);
        for layer in self
            .layers
            .iter()
            .filter(|l| l.kind == LayerKind::Authentication)
        {
            if let Some(rule) = layer.rules.iter().find(|r| matches(r, facts)) {
                match rule.action {
                    Action::Authenticate => need = (true, Some(rule.name.clone())),
                    Action::NoAuthenticate => need = (false, Some(rule.name.clone())),
                    _ => {}
                }
            }
        }
        need
    }

    /// Evaluates the access layers.
    pub fn decide(&self, facts: &Facts<'_>) -> Decision {
        let mut d = Decision {
            verdict: match self.default {
                DefaultVerdict::Allow => Verdict::Allow,
                DefaultVerdict::Deny => Verdict::Deny {
                    status: 403,
                    reason: "policy_denied".into(),
                },
            },
            verdict_rule: None,
            verdict_by_detection: false,
            connect: ConnectMode::Detect,
            connect_rule: None,
            tags: Vec::new(),
            trace: Vec::new(),
        };
        for layer in self.layers.iter().filter(|l| l.kind == LayerKind::Access) {
            let hit = layer.rules.iter().find(|r| matches(r, facts));
            d.trace
                .push((layer.name.clone(), hit.map(|r| r.name.clone())));
            let Some(rule) = hit else { continue };
            match &rule.action {
                Action::Allow => d.verdict = Verdict::Allow,
                Action::Deny { status, reason } => {
                    d.verdict = Verdict::Deny {
                        status: *status,
                        reason: reason.clone(),
                    }
                }
                Action::Tunnel => d.connect = ConnectMode::Tunnel,
                Action::Detect => d.connect = ConnectMode::Detect,
                Action::Authenticate | Action::NoAuthenticate | Action::Tag => {}
            }
            match &rule.action {
                Action::Allow | Action::Deny { .. } => {
                    d.verdict_rule = Some(rule.name.clone());
                    d.verdict_by_detection = rule.needs_detection();
                }
                Action::Tunnel | Action::Detect => d.connect_rule = Some(rule.name.clone()),
                _ => {}
            }
            if let Some(t) = &rule.tag {
                d.tags.push(t.clone());
            }
        }
        d
    }
}

fn read_file(path: &Path) -> Result<PolicyFile, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("policy {}: {e}", path.display()))?;
    toml_edit::de::from_str(&text).map_err(|e| format!("policy {}: {e}", path.display()))
}

/// `allowed_groups = [...]` / `allowed_users = [...]`: the seed's rule —
/// these users' CONNECTs without a User-Agent skip protocol detection.
fn allowed_layer(cfg: &PolicyConfig) -> Option<Layer> {
    if cfg.allowed_groups.is_empty() && cfg.allowed_users.is_empty() {
        return None;
    }
    let no_ua = compile::HeaderCond {
        name: http::header::USER_AGENT,
        re: regex::Regex::new("^$").expect("a constant regex"),
    };
    let who: Vec<Atom> = cfg
        .allowed_groups
        .iter()
        .map(|g| Atom::Group(fold(g)))
        .chain(cfg.allowed_users.iter().map(|u| Atom::User(fold(u))))
        .collect();
    Some(Layer {
        name: "allowed-groups".into(),
        kind: LayerKind::Access,
        rules: vec![Rule {
            name: "allowed-groups-tunnel".into(),
            authenticated: None,
            users: None,
            groups: None,
            realms: None,
            clients: None,
            methods: Some(vec!["CONNECT".into()]),
            hosts: None,
            dests: None,
            ports: None,
            headers: vec![no_ua],
            sources: Some(vec![Arc::new(vec![who])]),
            categories: None,
            time: None,
            protocols: None,
            snis: None,
            action: Action::Tunnel,
            tag: None,
        }],
    })
}

fn atom_matches(a: &Atom, f: &Facts<'_>) -> bool {
    match a {
        Atom::User(u) => f.identity.is_some_and(|i| folds_to(&i.user, u)),
        Atom::Group(g) => f.identity.is_some_and(|i| i.in_group(g)),
        Atom::Realm(r) => f.identity.is_some_and(|i| folds_to(&i.realm, r)),
        Atom::Client(n) => n.contains(&f.client),
        Atom::Method(m) => f.method.eq_ignore_ascii_case(m),
        Atom::Header(h) => h.iter().all(|c| c.matches(f.headers)),
    }
}

/// A `dest` condition against every address the destination resolved to.
/// A rule that restricts (deny, detect, authenticate, tag) matches when any
/// address is in its ranges; a rule that grants (allow, tunnel,
/// no-authenticate) only when all are, and there are some. Either way a name
/// with one address inside and one outside cannot slip past: the proxy may
/// dial any of them.
fn dest_matches(r: &Rule, nets: &[ipnet::IpNet], addrs: &[IpAddr]) -> bool {
    let inside = |ip: &IpAddr| nets.iter().any(|n| n.contains(ip));
    match r.action {
        Action::Allow | Action::Tunnel | Action::NoAuthenticate => {
            !addrs.is_empty() && addrs.iter().all(inside)
        }
        Action::Deny { .. } | Action::Detect | Action::Authenticate | Action::Tag => {
            addrs.iter().any(inside)
        }
    }
}

/// Every condition present must hold.
fn matches(r: &Rule, f: &Facts<'_>) -> bool {
    let id = f.identity;
    let any = |list: &Option<Vec<String>>, pred: &dyn Fn(&str) -> bool| {
        list.as_ref().is_none_or(|l| l.iter().any(|x| pred(x)))
    };
    if r.needs_detection() && f.detected.is_none() {
        return false;
    }
    r.authenticated.is_none_or(|want| want == id.is_some())
        && any(&r.users, &|u| id.is_some_and(|i| folds_to(&i.user, u)))
        && any(&r.groups, &|g| id.is_some_and(|i| i.in_group(g)))
        && any(&r.realms, &|x| id.is_some_and(|i| folds_to(&i.realm, x)))
        && r.clients
            .as_ref()
            .is_none_or(|l| l.iter().any(|n| n.contains(&f.client)))
        && any(&r.methods, &|m| f.method.eq_ignore_ascii_case(m))
        && r.hosts
            .as_ref()
            .is_none_or(|l| l.iter().any(|h| h.matches(f.host)))
        && r.dests.as_ref().is_none_or(|l| dest_matches(r, l, f.addrs))
        && r.ports
            .as_ref()
            .is_none_or(|l| l.iter().any(|(a, b)| (*a..=*b).contains(&f.port)))
        && r.headers.iter().all(|h| h.matches(f.headers))
        && r.sources.as_ref().is_none_or(|objs| {
            objs.iter().any(|all| {
                all.iter()
                    .all(|alts| alts.iter().any(|a| atom_matches(a, f)))
            })
        })
        && any(&r.categories, &|c| {
            f.categories.iter().any(|x| folds_to(x, c))
        })
        && r.time.as_ref().is_none_or(|t| t.matches(f.now))
        && any(&r.protocols, &|p| {
            f.detected.is_some_and(|(proto, _)| proto == p)
        })
        && r.snis.as_ref().is_none_or(|l| {
            f.detected
                .and_then(|(_, sni)| sni)
                .is_some_and(|sni| l.iter().any(|h| h.matches(sni)))
        })
}

#[cfg(test)]
#[path = "policy/policy_tests.rs"]
mod tests;
