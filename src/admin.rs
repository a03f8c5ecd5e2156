//! Operator commands: `check` (directories), `passwd`, `auth-test`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use gatehouse::config::Config;
use gatehouse::directory::{Realm, RealmVerdict};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded runtime always builds")
}

/// A password from the terminal (no echo), or one line of stdin.
fn read_password(prompt: &str, confirm: bool) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let pw = rpassword::prompt_password(prompt).map_err(|e| e.to_string())?;
        if confirm && rpassword::prompt_password("Again: ").map_err(|e| e.to_string())? != pw {
            return Err("the passwords differ".into());
        }
        return Ok(pw);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn passwd(users: &Path, user: &str, groups: &[String]) -> ExitCode {
    let result = read_password(&format!("Password for {user}: "), true).and_then(|pw| {
        let groups = (!groups.is_empty()).then_some(groups);
        gatehouse::directory::local::set_password(users, user, &pw, groups)
    });
    match result {
        Ok(()) => {
            println!("{user}: password set in {}", users.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn realms(config: &Config) -> Result<Vec<Realm>, String> {
    Realm::build_all(&config.realm_configs, &config.auth)
}

/// Builds every realm and asks each directory for its base.
pub fn check_realms(config: &Config) -> ExitCode {
    let realms = match realms(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let mut unreachable = 0;
    if let Some(n) = config.auth.negotiate.as_ref().filter(|_| {
        config
            .auth
            .schemes
            .contains(&gatehouse::config::Scheme::Negotiate)
    }) {
        match gatehouse::auth::negotiate::describe_keytab(n) {
            Ok(report) => println!("negotiate: {report}"),
            Err(e) => {
                unreachable += 1;
                println!("negotiate: PROBLEM: {e}");
            }
        }
    }
    runtime().block_on(async {
        for realm in &realms {
            let started = Instant::now();
            match realm {
                Realm::Local(r) => println!("realm {}: local, {} users", r.name(), r.user_count()),
                Realm::Ldap(r) => match r.probe().await {
                    Ok(()) => println!(
                        "realm {}: directory answered in {:?}",
                        r.name(),
                        started.elapsed()
                    ),
                    Err(e) => {
                        unreachable += 1;
                        println!("realm {}: UNREACHABLE: {e}", r.name());
                    }
                },
            }
        }
    });
    if unreachable > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

/// `wbinfo -a` for the proxy: which realm accepts the user, with what groups.
pub fn auth_test(config: &Config, user: &str) -> ExitCode {
    let realms = match realms(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let password = match read_password(&format!("Password for {user}: "), false) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gatehouse auth-test: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ok = runtime().block_on(async {
        for realm in &realms {
            let started = Instant::now();
            let verdict = realm.verify(user, &password).await;
            let took = started.elapsed();
            match verdict {
                RealmVerdict::Verified(id) => {
                    println!("realm:  {}", realm.name());
                    println!("user:   {}", id.user);
                    println!("dn:     {}", id.dn.as_deref().unwrap_or("-"));
                    println!("groups: {}", id.groups.len());
                    for g in &id.groups {
                        let how = if g.nested { " (nested)" } else { "" };
                        println!("  {}{how}  {}", g.name, g.dn.as_deref().unwrap_or(""));
                    }
                    println!("time:   {took:?}");
                    return true;
                }
                RealmVerdict::UnknownUser => {
                    println!("realm {}: no such user ({took:?})", realm.name())
                }
                RealmVerdict::BadPassword => {
                    println!("realm {}: password refused ({took:?})", realm.name());
                    return false;
                }
                RealmVerdict::Refused(why) => {
                    println!(
                        "realm {}: account refused: {} ({took:?})",
                        realm.name(),
                        why.as_str()
                    );
                    return false;
                }
                RealmVerdict::Unavailable(u) => {
                    println!("realm {}: unavailable: {u} ({took:?})", realm.name())
                }
                RealmVerdict::Busy(why) => {
                    println!("realm {}: busy: {why} ({took:?})", realm.name())
                }
            }
        }
        false
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The request `explain` is asked about.
pub struct ExplainRequest {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub method: String,
    pub url: String,
    pub headers: Vec<String>,
    pub client: std::net::IpAddr,
    pub protocol: Option<String>,
    pub sni: Option<String>,
}

/// Prints each layer's matching rule and the final decision for a request,
/// exactly as the running proxy would decide it.
pub fn explain(config: &Config, q: &ExplainRequest) -> ExitCode {
    use gatehouse::auth::identity::{Group, Identity};
    use gatehouse::policy::{ConnectMode, Facts, Policy, Verdict};

    let policy = match Policy::load(&config.policy) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(2);
        }
    };
    let method = q.method.to_ascii_uppercase();
    let (host, port) = if method == "CONNECT" {
        match q
            .url
            .parse::<http::Uri>()
            .map_err(|e| e.to_string())
            .and_then(|u| gatehouse::tunnel::connect_target(&u).map_err(|e| e.to_string()))
        {
            Ok(t) => t,
            Err(e) => {
                eprintln!("gatehouse explain: --url: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        match q
            .url
            .parse::<http::Uri>()
            .map_err(|e| e.to_string())
            .and_then(|u| gatehouse::forward::target(&u).map_err(|e| e.to_string()))
        {
            Ok(t) => (t.host, t.port),
            Err(e) => {
                eprintln!("gatehouse explain: --url: {e}");
                return ExitCode::from(2);
            }
        }
    };
    // The addresses the proxy would judge, resolved the same way.
    let resolver = gatehouse::resolve::Resolver::new(&config.resolver);
    let addrs = match runtime().block_on(resolver.resolve(&host)) {
        Ok(a) => a,
        Err(e) => {
            println!("request:        {method} {} from {}", q.url, q.client);
            println!("resolution:     {host}: {e}");
            println!("decision:       502 dns_unresolved_hostname");
            return ExitCode::SUCCESS;
        }
    };
    let host = host.to_string();
    let mut headers = http::HeaderMap::new();
    for h in &q.headers {
        let Some((name, value)) = h.split_once(':') else {
            eprintln!("gatehouse explain: --header {h:?}: NAME: VALUE");
            return ExitCode::from(2);
        };
        match (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_str(value.trim()),
        ) {
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => {
                eprintln!("gatehouse explain: --header {h:?} is not a valid header");
                return ExitCode::from(2);
            }
        }
    }
    // The user's groups, from the realms as the proxy would see them.
    let identity = q.user.as_ref().map(|user| {
        let found = realms(config).ok().and_then(|realms| {
            runtime().block_on(async {
                for r in &realms {
                    if let Ok(Some(id)) = r.lookup(user).await {
                        return Some((*id).clone());
                    }
                }
                None
            })
        });
        let mut id = found.unwrap_or_else(|| Identity {
            user: user.to_lowercase(),
            realm: "explain".into(),
            dn: None,
            groups: Vec::new(),
        });
        id.groups.extend(q.groups.iter().map(|g| Group {
            name: g.clone(),
            dn: None,
            nested: false,
        }));
        id
    });
    let categories = policy.categories.lookup(&host, &addrs);
    let facts = Facts {
        identity: identity.as_ref(),
        client: q.client,
        method: &method,
        host: &host,
        addrs: &addrs,
        port,
        headers: &headers,
        categories: &categories,
        now: jiff::Timestamp::now(),
        detected: None,
    };
    println!("request:        {method} {} from {}", q.url, q.client);
    match &identity {
        Some(id) => {
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
        None => println!("identity:       none"),
    }
    let shown: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    println!("addresses:      {}", shown.join(", "));
    let cats: Vec<&str> = categories.iter().map(|c| c.as_ref()).collect();
    println!(
        "categories:     {}",
        if cats.is_empty() {
            "-".into()
        } else {
            cats.join(", ")
        }
    );
    if method == "CONNECT" && !config.tunnel.allowed_ports.contains(&port) {
        println!("built-in:       CONNECT to port {port} is not in tunnel.allowed_ports");
        println!("decision:       DENY 403 policy_denied (rule builtin:connect-ports)");
        return ExitCode::SUCCESS;
    }
    let refused = gatehouse::resolve::Refused::new(&config.destinations.refuse);
    if let Some(ip) = refused.find(&addrs) {
        println!("built-in:       {ip} is in destinations.refuse");
        println!("decision:       DENY 403 destination_refused (rule builtin:destinations)");
        return ExitCode::SUCCESS;
    }
    let (auth, auth_rule) = policy.needs_auth(&facts, config.auth.required);
    println!(
        "authentication: {} ({})",
        if auth { "required" } else { "not required" },
        auth_rule
            .as_deref()
            .map_or("auth.required".to_string(), |r| format!("rule {r}"))
    );
    let d = policy.decide(&facts);
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
    let verdict = match &d.verdict {
        Verdict::Allow => "ALLOW".to_string(),
        Verdict::Deny { status, reason } => format!("DENY {status} {reason}"),
    };
    let mut line = format!(
        "decision:       {verdict} (rule {})",
        d.verdict_rule.as_deref().unwrap_or("default")
    );
    if method == "CONNECT" && d.verdict == Verdict::Allow {
        let mode = if !config.detection.enabled {
            "tunnel (detection is off)".to_string()
        } else {
            match d.connect {
                ConnectMode::Tunnel => {
                    format!("tunnel (rule {})", d.connect_rule.as_deref().unwrap_or("-"))
                }
                ConnectMode::Detect => "detect".to_string(),
            }
        };
        line.push_str(&format!(", CONNECT: {mode}"));
    }
    if !d.tags.is_empty() {
        let tags: Vec<&str> = d.tags.iter().map(|t| t.as_ref()).collect();
        line.push_str(&format!(", tags: {}", tags.join(",")));
    }
    println!("{line}");
    if let Some(p) = &q.protocol {
        let after = policy.decide(&Facts {
            detected: Some((p.as_str(), q.sni.as_deref())),
            ..facts
        });
        let says = match (&after.verdict, after.verdict_by_detection, p.as_str()) {
            (Verdict::Deny { status, reason }, _, _) => format!("DENY {status} {reason}"),
            (Verdict::Allow, _, "tls") => "TLS: passes if the server's certificate is valid".into(),
            (Verdict::Allow, true, _) => format!(
                "ALLOW {p} (rule {})",
                after.verdict_rule.as_deref().unwrap_or("-")
            ),
            (Verdict::Allow, false, _) => {
                format!("DENY protocol_not_allowed ({p} needs an explicit rule)")
            }
        };
        println!("after detection ({p}): {says}");
    }
    ExitCode::SUCCESS
}
