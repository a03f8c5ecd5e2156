//! The request's path as a value: given what is known so far, what happens
//! next. Pure — no I/O, no clock, no shared state — so the proxy and
//! `gatehouse explain` take the same decisions by calling the same code.
//!
//! The proxy calls [`plan`] in a loop: each [`Plan::Resolve`] or
//! [`Plan::Authenticate`] it carries out adds a fact (the addresses, the
//! identity) and it asks again, until the plan is to refuse, forward or
//! tunnel.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::error::ProxyError;
use crate::policy::{ConnectMode, Decision, Detected, Facts, Policy, Verdict};
use crate::protocol::ProtocolKind;
use crate::resolve::Refused;
use crate::tunnel::detect::{ClientHello, Protocol};
use crate::tunnel::inspect::PolicySays;

/// The request-level settings a plan depends on, besides the policy.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// `tunnel.allowed_ports`: CONNECT to any other port is refused first.
    pub connect_ports: &'a crate::tunnel::settings::Ports,
    /// `destinations.refuse`, checked against every resolved address.
    pub refused: &'a Refused,
    /// Where this proxy listens: a destination that is the proxy is a loop.
    pub listening: &'a [SocketAddr],
    /// `auth.required`, which authentication layers refine.
    pub auth_required: bool,
    /// `detection.enabled`: off, every allowed CONNECT is a raw tunnel.
    pub detection: bool,
}

/// How far the request has come: which facts are in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// `facts.addrs` are the destination's resolved addresses.
    pub resolved: bool,
    /// Authentication is done (`facts.identity` is whoever it proved).
    pub authenticated: bool,
}

/// A refusal, with what the log's `x-rule` and `x-tags` should say.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The answer.
    pub error: ProxyError,
    /// The rule (or `builtin:` check) that refused.
    pub rule: Option<String>,
    /// Tags added by the rules that matched.
    pub tags: Vec<Arc<str>>,
    /// The policy's decision, when the access layers refused.
    pub decision: Option<Decision>,
}

/// What happens next.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Answer with this error.
    Refuse(Refusal),
    /// Resolve the destination (once): its addresses are what the policy
    /// judges and the only ones dialled.
    Resolve,
    /// Ask for credentials; `rule` is the authentication rule that said so
    /// (`None`: `auth.required`).
    Authenticate {
        /// The rule that required authentication, if one did.
        rule: Option<Arc<str>>,
        /// A `guest` rule: without credentials (or a surrogate), the guest.
        guest: bool,
    },
    /// Forward the HTTP request.
    Forward(Decision),
    /// Answer the CONNECT with `200` and run the tunnel.
    Tunnel {
        /// The access decision (rules, tags).
        decision: Decision,
        /// Detect the protocol (and check TLS) before relaying a byte.
        detect: bool,
    },
}

/// True when any of `addrs` with `port` is this proxy itself.
fn is_self(listening: &[SocketAddr], addrs: &[IpAddr], port: u16) -> bool {
    listening.iter().any(|l| {
        l.port() == port
            && addrs.iter().any(|ip| {
                *ip == l.ip()
                    || (l.ip().is_unspecified() && (ip.is_loopback() || ip.is_unspecified()))
            })
    })
}

fn refuse(error: ProxyError, rule: Option<String>) -> Plan {
    Plan::Refuse(Refusal {
        error,
        rule,
        tags: Vec::new(),
        decision: None,
    })
}

/// The next step for a request with these facts.
///
/// Order: the built-in CONNECT port check; the resolved addresses against
/// `destinations.refuse` and this proxy; resolution before authentication
/// only for an address literal or a policy whose authentication layers
/// look at addresses (otherwise an unauthenticated client could make the
/// proxy query DNS); authentication; resolution; the access layers.
pub fn plan(policy: &Policy, settings: &Settings<'_>, facts: &Facts<'_>, at: Progress) -> Plan {
    let connect = facts.is_connect();
    if connect && !settings.connect_ports.contains(facts.port) {
        return refuse(
            ProxyError::PortNotAllowed(facts.port),
            Some("builtin:connect-ports".into()),
        );
    }
    if at.resolved {
        if let Some(ip) = settings.refused.find(facts.addrs) {
            return refuse(
                ProxyError::DestinationRefused(ip),
                Some("builtin:destinations".into()),
            );
        }
        if is_self(settings.listening, facts.addrs, facts.port) {
            return refuse(ProxyError::Loop, None);
        }
    }
    if !at.authenticated {
        let literal = facts.host.parse::<IpAddr>().is_ok();
        if !at.resolved && (literal || policy.auth_needs_addresses()) {
            return Plan::Resolve;
        }
        let need = policy.auth_need(facts, settings.auth_required);
        if need.required {
            return Plan::Authenticate {
                rule: need.rule,
                guest: need.guest,
            };
        }
    }
    if !at.resolved {
        return Plan::Resolve;
    }
    let decision = policy.decide(facts);
    if let Verdict::Deny(denial) = &decision.verdict {
        let error = ProxyError::PolicyDenied {
            denial: denial.clone(),
            rule: decision
                .verdict_rule
                .clone()
                .unwrap_or_else(|| "default".into()),
        };
        return Plan::Refuse(Refusal {
            error,
            rule: decision.rule_names(),
            tags: decision.tags.clone(),
            decision: Some(decision),
        });
    }
    if connect {
        let detect = settings.detection && decision.connect == ConnectMode::Detect;
        Plan::Tunnel { decision, detect }
    } else {
        Plan::Forward(decision)
    }
}

/// The policy's say on what detection found (`facts.detected` set), and
/// the rule that said it — the log's `x-rule` for the tunnel.
pub fn judge_detected(policy: &Policy, facts: &Facts<'_>) -> (PolicySays, Option<Arc<str>>) {
    let d = policy.decide(facts);
    let tls = facts
        .detected
        .is_some_and(|x| x.protocol == ProtocolKind::Tls);
    let (says, rule) = match d.verdict {
        Verdict::Deny(denial) => (PolicySays::Deny(denial.reason), d.verdict_rule),
        // The CONNECT's mode, with what the ClientHello said known (an SNI
        // or fingerprint rule may intercept, or bypass, here).
        Verdict::Allow if tls && d.connect == ConnectMode::Intercept => {
            (PolicySays::Intercept, d.connect_rule)
        }
        Verdict::Allow if d.verdict_by_detection => (PolicySays::Allow, d.verdict_rule),
        Verdict::Allow => (PolicySays::Nothing, None),
    };
    // A refusal names its rule whatever it looked at: an address CONNECT is
    // judged again by its SNI's name, where a host rule may refuse it.
    let named =
        d.verdict_by_detection || matches!(says, PolicySays::Intercept | PolicySays::Deny(_));
    (says, rule.filter(|_| named))
}

/// The facts detection found, as the policy sees them.
pub fn detected(p: &Protocol) -> Detected<'_> {
    match p {
        Protocol::Tls(h) => detected_tls(h),
        other => Detected::protocol(other.kind()),
    }
}

/// A ClientHello's facts, as the policy sees them.
pub fn detected_tls(h: &ClientHello) -> Detected<'_> {
    Detected {
        protocol: ProtocolKind::Tls,
        sni: h.sni.as_deref(),
        ja4: Some(&h.ja4),
        ja3n: Some(&h.ja3n),
        tls_version: Some(h.tls_version()),
        alpn: &h.alpn,
    }
}
