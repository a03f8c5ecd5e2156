//! `gatehouse explain`: how the proxy would handle a request. It gathers the
//! facts the proxy would have (addresses resolved the same way, groups from
//! the realms) and prints the [`plan`] the proxy's own code makes of them —
//! no decision logic of its own, so it cannot drift from what the proxy does.

use std::net::SocketAddr;
use std::process::ExitCode;

use http::Method;

use gatehouse::config::Config;
use gatehouse::directory::identity::{Group, Identity};
use gatehouse::policy::{ConnectMode, Decision, Detected, Facts};
use gatehouse::protocol::{ProtocolKind, TlsVersion};
use gatehouse::proxy::plan::{self, judge_detected, Plan, Progress, Settings};
use gatehouse::resolve::Host;
use gatehouse::server::runtime::Runtime;
use gatehouse::tunnel::inspect::{next_step, Next, Spoken};

use crate::users::runtime;

/// The request `explain` is asked about (its command-line arguments).
#[derive(clap::Args)]
pub struct ExplainRequest {
    /// The user (groups are looked up in the realms).
    #[arg(long)]
    pub user: Option<String>,
    /// Extra groups for the user (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// The request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// `host:port` for CONNECT, an absolute URL otherwise.
    #[arg(long)]
    pub url: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    /// The client's address.
    #[arg(long, default_value = "127.0.0.1")]
    pub client: std::net::IpAddr,
    /// For CONNECT: the protocol detection found (tls, http, ssh, unknown).
    #[arg(long, value_parser = protocol_kind)]
    pub protocol: Option<ProtocolKind>,
    /// For CONNECT with TLS: the ClientHello's SNI.
    #[arg(long)]
    pub sni: Option<String>,
    /// For CONNECT with TLS: the ClientHello's JA4 (the access log's `x-ja4`).
    #[arg(long)]
    pub ja4: Option<String>,
    /// For CONNECT with TLS: the ClientHello's JA3N (`x-ja3n`).
    #[arg(long)]
    pub ja3n: Option<String>,
    /// For CONNECT with TLS: the highest version offered (1.0 … 1.3).
    #[arg(long, value_parser = tls_version)]
    pub tls_version: Option<TlsVersion>,
    /// For CONNECT with TLS: an ALPN protocol offered (repeatable).
    #[arg(long)]
    pub alpn: Vec<String>,
}

/// `--protocol`: a name detection gives.
fn protocol_kind(name: &str) -> Result<ProtocolKind, String> {
    ProtocolKind::from_name(name).ok_or_else(|| format!("one of {}", ProtocolKind::names()))
}

/// `--tls-version`: a name rules use, or `unknown` (what detection makes
/// of a version no rule can name).
fn tls_version(name: &str) -> Result<TlsVersion, String> {
    match TlsVersion::from_name(name) {
        Some(v) => Ok(v),
        None if name.eq_ignore_ascii_case("unknown") => Ok(TlsVersion::from_wire(0)),
        None => Err(format!("one of {}, unknown", TlsVersion::names())),
    }
}

/// The destination, and (not for CONNECT) the URL `url` rules see: an
/// `http://` URL as the proxy forwards it, or an `https://` one as a
/// request decrypted from an intercepted tunnel — normalised either way.
fn target(method: &Method, url: &str) -> Result<(Host, u16, Option<String>), String> {
    let uri = url.parse::<http::Uri>().map_err(|e| e.to_string())?;
    if method == Method::CONNECT {
        let (host, port) = gatehouse::tunnel::connect_target(&uri).map_err(|e| e.to_string())?;
        return Ok((host, port, None));
    }
    let (host, port, scheme) = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => {
            let auth = uri.authority().ok_or("an https:// URL needs a host")?;
            let host = gatehouse::resolve::host::canonical(auth.host()).map_err(|e| e.0)?;
            (host, auth.port_u16().unwrap_or(443), "https")
        }
        _ => {
            let t = gatehouse::forward::target(&uri).map_err(|e| e.to_string())?;
            (t.host, t.port, "http")
        }
    };
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    let normal = gatehouse::policy::url::absolute(scheme, &host.to_string(), port, pq)
        .map_err(|e| format!("{e}: the proxy answers 400"))?;
    Ok((host, port, Some(normal)))
}

fn header_map(headers: &[String]) -> Result<http::HeaderMap, String> {
    let mut map = http::HeaderMap::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: NAME: VALUE"))?;
        match (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) {
            (Ok(n), Ok(v)) => {
                map.append(n, v);
            }
            _ => return Err(format!("--header {h:?} is not a valid header")),
        }
    }
    Ok(map)
}

/// The user as the realms know them (the first realm that knows the name),
/// plus `--group`s.
fn identity(built: &Runtime, user: &str, extra: &[String]) -> Identity {
    let realms = built.snapshot.realms.clone();
    let found = runtime()
        .block_on(realms.lookup(user))
        .ok()
        .flatten()
        .map(|id| (*id).clone());
    let mut id = found.unwrap_or_else(|| Identity {
        user: user.to_lowercase(),
        realm: "explain".into(),
        dn: None,
        groups: Vec::new(),
    });
    id.groups.extend(extra.iter().map(|g| Group {
        name: g.clone(),
        dn: None,
        nested: false,
    }));
    id
}

fn print_identity(identity: Option<&Identity>) {
    let Some(id) = identity else {
        println!("identity:       none");
        return;
    };
    let groups: Vec<String> = id
        .groups
        .iter()
        .map(|g| {
            if g.nested {
                format!("{} (nested)", g.name)
            } else {
                g.name.clone()
            }
        })
        .collect();
    println!(
        "identity:       {} (realm {}), groups: {}",
        id.user,
        id.realm,
        groups.join(", ")
    );
}

fn print_trace(d: &Decision) {
    for ((layer, rule), entries) in d.trace.iter().zip(&d.entries) {
        println!(
            "layer {layer:?}: {}",
            rule.as_deref()
                .map_or("no rule matched".to_string(), |r| format!("rule {r:?}"))
        );
        for e in entries {
            println!("  matched {e}");
        }
    }
}

/// Prints the plan; `x-rule` and `s-action` lines say what the access log
/// would, for scripts (and the test that compares them with the proxy's).
fn print_plan(p: &Plan) {
    let (decision, action, rule) = match p {
        Plan::Refuse(r) => {
            if let Some(d) = &r.decision {
                print_trace(d);
            }
            println!(
                "decision:       DENY {} {} (rule {})",
                r.error.status().as_u16(),
                r.error.exception_id(),
                r.rule.as_deref().unwrap_or("-")
            );
            ("refuse", r.error.s_action().as_str(), r.rule.clone())
        }
        Plan::Forward(d) | Plan::Tunnel { decision: d, .. } => {
            print_trace(d);
            let mut line = format!(
                "decision:       ALLOW (rule {})",
                d.verdict_rule.as_deref().unwrap_or("default")
            );
            let (plan, action) = match p {
                Plan::Tunnel { .. } if d.connect == ConnectMode::Intercept => {
                    line.push_str(&format!(
                        ", CONNECT: intercept (rule {})",
                        d.connect_rule.as_deref().unwrap_or("-")
                    ));
                    (
                        "intercept",
                        "TCP_INTERCEPTED, each request inside its own line",
                    )
                }
                Plan::Tunnel { detect: false, .. } => {
                    let why = match (d.connect, &d.connect_rule) {
                        (ConnectMode::Tunnel, Some(r)) => format!("rule {r}"),
                        _ => "detection is off".to_string(),
                    };
                    line.push_str(&format!(", CONNECT: tunnel ({why})"));
                    ("tunnel", "TCP_TUNNELED")
                }
                Plan::Tunnel { .. } => {
                    line.push_str(", CONNECT: detect");
                    ("detect", "after detection")
                }
                _ => ("forward", "TCP_MISS or TCP_NC_MISS"),
            };
            if !d.tags.is_empty() {
                let tags: Vec<&str> = d.tags.iter().map(|t| t.as_ref()).collect();
                line.push_str(&format!(", tags: {}", tags.join(",")));
            }
            println!("{line}");
            (plan, action, d.rule_names())
        }
        Plan::Authenticate { rule, .. } => {
            println!(
                "decision:       AUTHENTICATE 407 ({})",
                rule.as_deref()
                    .map_or("auth.required".to_string(), |r| format!("rule {r}"))
            );
            ("authenticate", "TCP_DENIED", None)
        }
        Plan::Resolve => unreachable!("explain resolves before it plans"),
    };
    println!("plan:           {decision}");
    println!("s-action:       {action}");
    println!("x-rule:         {}", rule.as_deref().unwrap_or("-"));
}

/// Prints each step the proxy would take for a request, and its decision.
pub fn explain(config: &Config, q: &ExplainRequest) -> ExitCode {
    let built = match Runtime::build(std::sync::Arc::new(config.clone())) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let policy = &built.snapshot.policy;
    let Ok(method) = Method::from_bytes(q.method.to_ascii_uppercase().as_bytes()) else {
        eprintln!("gatehouse explain: --method {:?} is not a method", q.method);
        return ExitCode::from(2);
    };
    let (host, port, url) = match target(&method, &q.url) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("gatehouse explain: --url: {e}");
            return ExitCode::from(2);
        }
    };
    let headers = match header_map(&q.headers) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("gatehouse explain: {e}");
            return ExitCode::from(2);
        }
    };
    println!("request:        {method} {} from {}", q.url, q.client);
    if let Some(u) = url.as_ref().filter(|u| **u != q.url) {
        println!("url (judged):   {u}");
    }
    // The addresses the proxy would judge, resolved the same way.
    let addrs = match runtime().block_on(built.snapshot.resolver.resolve(&host)) {
        Ok(a) => a,
        Err(e) => {
            println!("resolution:     {host}: {e}");
            println!("decision:       502 dns_unresolved_hostname");
            return ExitCode::SUCCESS;
        }
    };
    let host = host.to_string();
    let identity = q.user.as_ref().map(|u| identity(&built, u, &q.groups));
    print_identity(identity.as_ref());
    let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    println!("addresses:      {}", shown.join(", "));
    let categories = policy.categories.lookup(&host, &addrs);
    let cats: Vec<&str> = categories.iter().map(|c| c.as_ref()).collect();
    println!(
        "categories:     {}",
        if cats.is_empty() {
            "-".into()
        } else {
            cats.join(", ")
        }
    );
    let listening: Vec<SocketAddr> = config.listener.addresses.clone();
    let settings = Settings {
        connect_ports: &config.tunnel.allowed_ports,
        refused: &built.snapshot.refused,
        listening: &listening,
        auth_required: config.auth.required,
        detection: config.detection.enabled,
    };
    let facts = Facts {
        identity: None,
        auth_scheme: None,
        client: q.client,
        method: &method,
        host: &host,
        addrs: &addrs,
        port,
        headers: &headers,
        categories: &categories,
        now: jiff::Timestamp::now(),
        detected: None,
        url: url.as_deref(),
    };
    let mut at = Progress {
        resolved: true,
        authenticated: false,
    };
    let mut p = plan::plan(policy, &settings, &facts, at);
    let facts = Facts {
        identity: identity.as_ref(),
        ..facts
    };
    if let Plan::Authenticate { rule, guest } = &p {
        println!(
            "authentication: required ({}){}",
            rule.as_deref()
                .map_or("auth.required".to_string(), |r| format!("rule {r}")),
            if *guest {
                "; without credentials, the guest"
            } else {
                ""
            }
        );
        if identity.is_some() {
            at.authenticated = true;
            p = plan::plan(policy, &settings, &facts, at);
        }
    } else if !matches!(p, Plan::Refuse(_)) {
        println!("authentication: not required");
    }
    print_plan(&p);
    if let (Some(proto), Plan::Tunnel { detect: true, .. }) = (q.protocol, &p) {
        let after = Facts {
            detected: Some(Detected {
                protocol: proto,
                sni: q.sni.as_deref(),
                ja4: q.ja4.as_deref(),
                ja3n: q.ja3n.as_deref(),
                tls_version: q.tls_version,
                alpn: &q.alpn,
            }),
            ..facts
        };
        let (says, rule) = judge_detected(policy, &after);
        let line = match next_step(&says, Spoken::kind(proto)) {
            Next::Refuse(reason) => format!("DENY {}", reason.as_str()),
            Next::CheckCertificate => "TLS: passes if the server's certificate is valid".into(),
            Next::Pass => format!("ALLOW {proto}"),
            Next::Intercept => "INTERCEPT: decrypted, each request inside judged".into(),
            Next::ServeHttp => "HTTP: served on the HTTP path, each request inside judged".into(),
        };
        match rule {
            Some(rule) => println!("after detection ({proto}): {line} (rule {rule:?})"),
            None => println!("after detection ({proto}): {line}"),
        }
    }
    ExitCode::SUCCESS
}
