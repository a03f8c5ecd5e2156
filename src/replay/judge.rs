//! A recorded transaction judged twice: what the line says was decided,
//! and what the proxy's own [`plan`] decides of the same facts under the
//! new policy — the facts built as `gatehouse explain` builds them.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};

use super::line::{Format, Line};
use super::unknown::{Scanner, Unknowns};
use crate::directory::identity::{Group, Identity};
use crate::policy::{ConnectMode, Detected, Facts, Policy};
use crate::protocol::ProtocolKind;
use crate::proxy::plan::{self, judge_detected, Plan, Progress, Settings};
use crate::tunnel::inspect::{next_step, Next, Spoken};

/// What happened to a transaction, as far as the policy decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Asked for credentials (407).
    Authenticate,
    /// Refused.
    Deny,
    /// An HTTP request forwarded.
    Allow,
    /// A CONNECT relayed raw, without detection.
    Tunnel,
    /// A CONNECT relayed after protocol detection (and the TLS check).
    Detect,
    /// A CONNECT decrypted.
    Intercept,
}

impl Class {
    /// The report's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Authenticate => "AUTHENTICATE",
            Class::Deny => "DENY",
            Class::Allow => "ALLOW",
            Class::Tunnel => "TUNNEL",
            Class::Detect => "DETECT",
            Class::Intercept => "INTERCEPT",
        }
    }
}

/// A decision: its class and the rules the log's `x-rule` names
/// (`None` inside: no rule; outer `None`: the line does not record it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Verdict {
    /// What happened.
    pub class: Class,
    /// `x-rule`.
    pub rule: Option<Option<String>>,
}

/// Exceptions that are no decision of the policy (malformed requests,
/// limits, failed or throttled credentials, interception failures): such a
/// line is not replayed.
const NOT_POLICY: &[&str] = &[
    "invalid_request",
    "request_header_too_large",
    "request_uri_too_long",
    "request_timeout",
    "unsupported_protocol",
    "proxy_protocol_invalid",
    "too_many_connections",
    "too_many_connections_from_client",
    "directory_unavailable",
    "authentication_throttled",
    "authentication_busy",
];

/// What the line records was decided; `None`: not a policy decision.
pub fn old(l: &Line) -> Option<Verdict> {
    let rule = l.rule.clone();
    let named = rule.as_ref().is_some_and(Option::is_some);
    let exception = l.exception.as_deref().unwrap_or("");
    let connect = l.method == http::Method::CONNECT;
    let class = if l.status == 407 {
        return Some(Verdict {
            class: Class::Authenticate,
            rule: Some(None),
        });
    } else if NOT_POLICY.contains(&exception)
        || (l.format == Format::Squid && matches!(l.status, 400 | 408 | 414 | 429 | 431 | 503))
        || exception.starts_with("account_")
        || (l.intercepted && l.denied && !named)
    {
        return None;
    } else if connect && l.action == "TCP_INTERCEPTED" {
        Class::Intercept
    } else if connect && l.action == "TCP_ERR_MISS" && !l.denied {
        // The dial failed before the tunnel: raw or detected is not logged.
        return None;
    } else if l.denied && connect && !named && !exception.is_empty() && detection_failure(exception)
    {
        // Detection ran and the world (client, server) ended it, not a rule.
        Class::Detect
    } else if l.denied {
        Class::Deny
    } else if connect && l.protocol.is_none() && l.format != Format::Squid {
        Class::Tunnel
    } else if connect && l.format == Format::Squid && l.action == "TCP_TUNNELED" && l.ja4.is_none()
    {
        // Squid logs no protocol: a tunnel without a ClientHello is taken
        // as raw (a detected non-TLS protocol reads the same).
        Class::Tunnel
    } else if connect {
        Class::Detect
    } else {
        Class::Allow
    };
    Some(Verdict { class, rule })
}

/// Detection's own refusals that no rule makes (`protocol_not_allowed` is
/// the policy's: no rule allowed the protocol).
fn detection_failure(e: &str) -> bool {
    e.starts_with("ssl_")
        || matches!(
            e,
            "client_closed" | "client_error" | "detection_timeout" | "protocol_not_tls"
        )
}

/// The new decision, and the rules whose outcome hangs on facts the line lacks.
pub struct New {
    /// What the new policy decides.
    pub verdict: Verdict,
    /// Rules that read an unrecorded fact and could have decided.
    pub unknown: Vec<std::sync::Arc<str>>,
}

/// Judges `l` under `policy` with the proxy's own plan.
pub fn new(policy: &Policy, settings: &Settings<'_>, scan: &mut Scanner, l: &Line) -> New {
    let mut headers = HeaderMap::new();
    if let Some(ua) = l.user_agent.as_ref().and_then(|u| u.as_deref()) {
        if let Ok(v) = HeaderValue::from_str(ua) {
            headers.insert(http::header::USER_AGENT, v);
        }
    }
    let literal = l.host.parse::<IpAddr>().ok();
    let addrs: Vec<IpAddr> = l.remote_ip.or(literal).into_iter().collect();
    let mut unknowns = Unknowns::HEADERS;
    if addrs.is_empty() {
        unknowns = unknowns.with(Unknowns::ADDRESSES);
    }
    if l.user_agent.is_none() {
        unknowns = unknowns.with(Unknowns::USER_AGENT);
    }
    let identity = l
        .user
        .as_ref()
        .filter(|_| l.authenticated)
        .map(|u| Identity {
            user: u.clone(),
            realm: "replay".into(),
            dn: None,
            groups: l
                .groups
                .iter()
                .flatten()
                .map(|g| Group {
                    name: g.clone(),
                    dn: None,
                    nested: false,
                })
                .collect(),
        });
    if identity.is_some() {
        unknowns = unknowns.with(Unknowns::REALM);
        if l.groups.is_none() {
            unknowns = unknowns.with(Unknowns::GROUPS);
        }
    }
    let categories = policy.categories.lookup(&l.host, &addrs);
    let connect = l.method == http::Method::CONNECT;
    let url = (!connect && policy.has_url_rules())
        .then(|| {
            let scheme = if l.intercepted { "https" } else { "http" };
            let path = if l.path.is_empty() { "/" } else { &l.path };
            let pq = match &l.query {
                Some(q) => format!("{path}?{q}"),
                None => path.to_string(),
            };
            crate::policy::url::absolute(scheme, &l.host, l.port, &pq).ok()
        })
        .flatten();
    let method = if connect {
        http::Method::CONNECT
    } else {
        l.method.clone()
    };
    let mut facts = Facts {
        identity: None,
        auth_scheme: None,
        client: l.client,
        method: &method,
        host: &l.host,
        addrs: &addrs,
        port: l.port,
        headers: &headers,
        categories: &categories,
        now: l.at,
        detected: None,
        url: url.as_deref(),
    };
    // A request inside an intercepted tunnel was authenticated with it.
    let mut at = Progress {
        resolved: true,
        authenticated: l.intercepted,
    };
    if l.intercepted {
        facts.identity = identity.as_ref();
    }
    let mut p = plan::plan(policy, settings, &facts, at);
    if let (Plan::Authenticate { .. }, Some(id)) = (&p, &identity) {
        facts.identity = Some(id);
        at.authenticated = true;
        p = plan::plan(policy, settings, &facts, at);
    }
    let (class, rule) = match p {
        Plan::Authenticate { .. } | Plan::Resolve => (Class::Authenticate, None),
        Plan::Refuse(r) => (Class::Deny, r.rule),
        Plan::Forward(d) => (Class::Allow, d.rule_names()),
        Plan::Tunnel { decision, detect } => {
            let class = match (decision.connect, detect) {
                (ConnectMode::Intercept, _) => Class::Intercept,
                (_, false) => Class::Tunnel,
                (_, true) => Class::Detect,
            };
            let mut rule = decision.rule_names();
            let found = l.protocol.as_deref().and_then(ProtocolKind::from_name);
            if let (Class::Detect, Some(proto_kind)) = (class, found) {
                // What detection found is on the line: judge it as the tunnel does.
                let after = Facts {
                    detected: Some(Detected {
                        protocol: proto_kind,
                        sni: l.sni.as_deref(),
                        ja4: l.ja4.as_deref(),
                        ja3n: l.ja3n.as_deref(),
                        tls_version: None,
                        alpn: &[],
                    }),
                    ..facts.clone()
                };
                unknowns = unknowns.with(Unknowns::TLS_DETAIL);
                if l.format == Format::Squid {
                    unknowns = unknowns.with(Unknowns::DETECTED);
                }
                let (says, by) = judge_detected(policy, &after);
                let spoken = match proto_kind {
                    ProtocolKind::Tls => Spoken::Tls,
                    ProtocolKind::Http => Spoken::Http,
                    _ => Spoken::Other,
                };
                let unknown = scan.needed(policy, unknowns, &after);
                if let Some(by) = by {
                    rule = Some(by.to_string());
                }
                let class = match next_step(&says, spoken) {
                    Next::Refuse(_) => Class::Deny,
                    Next::Intercept => Class::Intercept,
                    _ => Class::Detect,
                };
                return New {
                    verdict: Verdict {
                        class,
                        rule: Some(rule),
                    },
                    unknown,
                };
            }
            (class, rule)
        }
    };
    New {
        verdict: Verdict {
            class,
            rule: Some(rule),
        },
        unknown: scan.needed(policy, unknowns, &facts),
    }
}
