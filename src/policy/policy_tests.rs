use super::*;
use std::net::IpAddr;

use http::HeaderMap;

use crate::directory::identity::{Group, Identity};
use crate::protocol::{ProtocolKind, TlsVersion};

fn identity(user: &str, groups: &[&str]) -> Identity {
    Identity {
        user: user.into(),
        realm: "local".into(),
        dn: None,
        groups: groups
            .iter()
            .map(|g| Group {
                name: g.to_string(),
                dn: None,
                nested: false,
            })
            .collect(),
    }
}

struct Req {
    id: Option<Identity>,
    client: IpAddr,
    method: http::Method,
    host: &'static str,
    addrs: Vec<IpAddr>,
    port: u16,
    headers: HeaderMap,
    cats: Vec<Arc<str>>,
    now: jiff::Timestamp,
    scheme: &'static str,
}

impl Req {
    fn connect(host: &'static str) -> Self {
        Req {
            id: None,
            client: "10.0.0.5".parse().unwrap(),
            method: http::Method::CONNECT,
            host,
            addrs: host.parse().into_iter().collect(),
            port: 443,
            headers: HeaderMap::new(),
            cats: Vec::new(),
            now: "2026-11-27T10:00:00Z".parse().unwrap(), // a Friday
            scheme: "basic",
        }
    }
    fn user(mut self, u: &str, groups: &[&str]) -> Self {
        self.id = Some(identity(u, groups));
        self
    }
    fn ua(mut self, ua: &str) -> Self {
        self.headers.insert("user-agent", ua.parse().unwrap());
        self
    }
    fn facts(&self) -> Facts<'_> {
        Facts {
            identity: self.id.as_ref(),
            auth_scheme: self.id.as_ref().map(|_| self.scheme),
            client: self.client,
            method: &self.method,
            host: self.host,
            addrs: &self.addrs,
            port: self.port,
            headers: &self.headers,
            categories: &self.cats,
            now: self.now,
            detected: None,
            url: None,
        }
    }
}

const SKYPE: &str = r#"
[objects]
skype_groups = ["Skype Users"]
[headers.no_user_agent]
"User-Agent" = "^$"
[combined.skype_source]
all = [["group:@skype_groups", "user:carol"], ["header:no_user_agent"]]

[[layers]]
name = "web-access"
[[layers.rules]]
name = "block-social"
category = ["Social Networking"]
action = "deny"
status = 403
reason = "category_blocked"
tag = "social"

[[layers]]
name = "ssl"
[[layers.rules]]
name = "skype-tunnel"
method = ["CONNECT"]
source = ["skype_source"]
action = "tunnel"
tag = "skype"
"#;

#[test]
fn the_seed_rule_tunnels_only_allowed_users_without_user_agent() {
    let p = Policy::from_toml(SKYPE).unwrap();
    let d = p.decide(
        &Req::connect("157.55.56.152")
            .user("alice", &["Skype Users"])
            .facts(),
    );
    assert_eq!(
        (d.verdict.clone(), d.connect),
        (Verdict::Allow, ConnectMode::Tunnel)
    );
    assert_eq!(d.connect_rule.as_deref(), Some("skype-tunnel"));
    assert_eq!(d.tags, vec![Arc::from("skype")]);
    // The same user's browser (with a User-Agent) is still detected.
    let d = p.decide(
        &Req::connect("157.55.56.152")
            .user("alice", &["Skype Users"])
            .ua("Mozilla/5.0")
            .facts(),
    );
    assert_eq!(d.connect, ConnectMode::Detect);
    // Others are detected; carol is allowed by name.
    assert_eq!(
        p.decide(&Req::connect("x").user("bob", &["staff"]).facts())
            .connect,
        ConnectMode::Detect
    );
    assert_eq!(
        p.decide(&Req::connect("x").user("Carol", &[]).facts())
            .connect,
        ConnectMode::Tunnel
    );
    assert_eq!(
        p.decide(&Req::connect("x").facts()).connect,
        ConnectMode::Detect,
        "no identity, no match"
    );
    // An empty User-Agent header counts as absent (^$).
    assert_eq!(
        p.decide(&Req::connect("x").user("carol", &[]).ua("").facts())
            .connect,
        ConnectMode::Tunnel
    );
}

#[test]
fn layers_refine_and_tags_accumulate() {
    let p = Policy::from_toml(SKYPE).unwrap();
    let mut r = Req::connect("facebook.example").user("alice", &["Skype Users"]);
    r.cats = vec!["social networking".into()];
    let d = p.decide(&r.facts());
    assert_eq!(
        d.verdict,
        Verdict::Deny(crate::policy::Denial {
            status: http::StatusCode::FORBIDDEN,
            reason: "category_blocked".into()
        })
    );
    assert_eq!(d.rule_names().as_deref(), Some("block-social,skype-tunnel"));
    assert_eq!(d.tags.len(), 2);
    assert_eq!(d.trace.len(), 2);
}

#[test]
fn default_deny_and_later_allow() {
    let p = Policy::from_toml(
        r#"default = "deny"
[[layers]]
name = "a"
[[layers.rules]]
name = "staff-web"
group = ["staff"]
port = [80, "8000-8100"]
action = "allow"
"#,
    )
    .unwrap();
    let mut r = Req::connect("x").user("bob", &["Staff"]);
    r.method = http::Method::GET;
    r.port = 8080;
    assert_eq!(p.decide(&r.facts()).verdict, Verdict::Allow);
    r.port = 8101;
    assert!(matches!(p.decide(&r.facts()).verdict, Verdict::Deny(_)));
}

#[test]
fn hosts_dests_clients_and_time() {
    let p = Policy::from_toml(
        r#"[[layers]]
name = "a"
[[layers.rules]]
name = "suffix"
host = [".example.com"]
time = { days = ["fri"], from = "09:00", to = "17:00", tz = "Europe/Paris" }
action = "tag"
tag = "suffix"
[[layers.rules]]
name = "regex"
host = ["re:^cdn[0-9]+\\.example\\.net$"]
action = "tag"
tag = "regex"
[[layers.rules]]
name = "range"
dest = ["157.55.0.0/16"]
client = ["10.0.0.0/8"]
action = "tag"
tag = "range"
"#,
    )
    .unwrap();
    let tags = |host: &'static str, now: &str| {
        let mut r = Req::connect(host);
        r.now = now.parse().unwrap();
        p.decide(&r.facts())
            .tags
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
    };
    let fri_11_paris = "2026-11-27T10:00:00Z";
    assert_eq!(tags("www.example.com", fri_11_paris), vec!["suffix"]);
    assert_eq!(tags("example.com", fri_11_paris), vec!["suffix"]);
    assert!(
        tags("www.example.com", "2026-11-27T17:30:00Z").is_empty(),
        "after hours in Paris"
    );
    assert!(
        tags("www.example.com", "2026-11-28T10:00:00Z").is_empty(),
        "Saturday"
    );
    assert!(tags("badexample.com", fri_11_paris).is_empty());
    assert_eq!(tags("CDN12.example.net", fri_11_paris), vec!["regex"]);
    assert_eq!(tags("157.55.56.152", fri_11_paris), vec!["range"]);
    assert!(tags("157.56.0.1", fri_11_paris).is_empty());
}

#[test]
fn authentication_layer_exempts_clients() {
    let p = Policy::from_toml(
        r#"[[layers]]
name = "auth"
kind = "authentication"
[[layers.rules]]
name = "updaters"
client = ["10.9.0.0/16"]
action = "no-authenticate"
"#,
    )
    .unwrap();
    let mut r = Req::connect("x");
    assert_eq!(p.needs_auth(&r.facts(), true), (true, None));
    r.client = "10.9.1.1".parse().unwrap();
    assert_eq!(
        p.needs_auth(&r.facts(), true),
        (false, Some("updaters".into()))
    );
}

#[test]
fn detection_rules_wait_for_detection() {
    let p = Policy::from_toml(
        r#"[[layers]]
name = "after"
[[layers.rules]]
name = "plain-http-ok"
protocol = ["http"]
action = "allow"
[[layers.rules]]
name = "no-bad-sni"
sni = [".bad.example"]
action = "deny"
"#,
    )
    .unwrap();
    let r = Req::connect("x");
    assert_eq!(p.decide(&r.facts()).verdict_rule, None);
    let mut f = r.facts();
    f.detected = Some(Detected::protocol(ProtocolKind::Http));
    let d = p.decide(&f);
    assert_eq!(
        (d.verdict_rule.as_deref(), d.verdict_by_detection),
        (Some("plain-http-ok"), true)
    );
    f.detected = Some(Detected {
        sni: Some("www.bad.example"),
        ..Detected::protocol(ProtocolKind::Tls)
    });
    assert!(matches!(p.decide(&f).verdict, Verdict::Deny(_)));
}

#[test]
fn fingerprint_rules_match_what_the_client_hello_said() {
    let p = Policy::from_toml(
        r#"[objects]
tunnel-tools = ["t13d1715h2_5b57614c22b0_3d5424432f57", "re:t12i.*"]
[[layers]]
name = "tls"
[[layers.rules]]
name = "no-tunnel-tools"
ja4 = ["@tunnel-tools"]
action = "deny"
[[layers.rules]]
name = "no-old-tls"
tls_version = ["1.0", "1.1"]
action = "deny"
[[layers.rules]]
name = "h2-only-by-ja3n"
alpn = ["h2"]
ja3n = ["0123456789abcdef0123456789abcdef"]
action = "deny"
"#,
    )
    .unwrap();
    let r = Req::connect("x");
    let alpn = vec!["h2".to_string()];
    let tls = |ja4: &'static str, version: &'static str| Detected {
        ja4: Some(ja4),
        ja3n: Some("ffffffffffffffffffffffffffffffff"),
        tls_version: TlsVersion::from_name(version),
        ..Detected::protocol(ProtocolKind::Tls)
    };
    let rule = |d: Detected<'_>| {
        let mut f = r.facts();
        f.detected = Some(d);
        p.decide(&f).verdict_rule
    };
    assert_eq!(
        rule(tls("t13d1715h2_5b57614c22b0_3d5424432f57", "1.3")).as_deref(),
        Some("no-tunnel-tools")
    );
    assert_eq!(
        rule(tls("t12i0406h1_000000000000_000000000000", "1.2")).as_deref(),
        Some("no-tunnel-tools")
    );
    assert_eq!(
        rule(tls("t13d1516h2_8daaf6152771_e5627efa2ab1", "1.3")),
        None
    );
    assert_eq!(
        rule(tls("t13d1516h2_8daaf6152771_e5627efa2ab1", "1.1")).as_deref(),
        Some("no-old-tls")
    );
    // Both conditions of a rule must hold: ALPN alone is not enough.
    let mut d = tls("t13d1516h2_8daaf6152771_e5627efa2ab1", "1.3");
    d.alpn = &alpn;
    assert_eq!(rule(d), None);
    d.ja3n = Some("0123456789ABCDEF0123456789ABCDEF");
    assert_eq!(rule(d).as_deref(), Some("h2-only-by-ja3n"));
    // Not TLS: no fingerprint to match.
    assert_eq!(rule(Detected::protocol(ProtocolKind::Ssh)), None);
}

#[test]
fn mistakes_name_the_rule_and_field() {
    let cases = [
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\nhost=[\"re:(\"]\naction=\"allow\"\n", "field `host`"),
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\nclient=[\"10.0.0.0/33\"]\naction=\"allow\"\n", "field `client`"),
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\ngroup=[\"@nope\"]\naction=\"allow\"\n", "no object named"),
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\naction=\"deny\"\nstatus=407\n", "field `status`"),
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\naction=\"allow\"\nport=[\"9-1\"]\n", "field `port`"),
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\naction=\"allow\"\ntime={tz=\"Mars/Olympus\"}\n", "field `time`"),
        ("[[layers]]\nname=\"l\"\nkind=\"authentication\"\n[[layers.rules]]\nname=\"r1\"\ngroup=[\"x\"]\naction=\"no-authenticate\"\n", "authentication layer"),
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\naction=\"allow\"\n[[layers.rules]]\nname=\"r1\"\naction=\"allow\"\n", "unique"),
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\naction=\"allow\"\nprotocol=[\"quic\"]\n", "field `protocol`"),
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\naction=\"deny\"\nja4=[\"t13d\"]\n", "field `ja4`"),
        ("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\naction=\"deny\"\ntls_version=[\"1.4\"]\n", "field `tls_version`"),
    ];
    for (text, want) in cases {
        let e = Policy::from_toml(text).unwrap_err().to_string();
        assert!(e.contains("rule \"r1\"") && e.contains(want), "{want}: {e}");
    }
    let e = Policy::from_toml(
        "[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r\"\nacton=\"allow\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("acton"), "{e}");
}

#[test]
fn dest_matches_the_resolved_addresses() {
    let p = Policy::from_toml(
        r#"default = "deny"
[[layers]]
name = "a"
[[layers.rules]]
name = "no-loopback"
dest = ["127.0.0.0/8", "::1/128"]
action = "deny"
[[layers.rules]]
name = "intranet"
dest = ["10.0.0.0/8"]
action = "allow"
"#,
    )
    .unwrap();
    let auth = Policy::from_toml(
        "[[layers]]\nname=\"auth\"\nkind=\"authentication\"\n\
         [[layers.rules]]\nname=\"x\"\ndest=[\"10.0.0.0/8\"]\naction=\"no-authenticate\"\n",
    )
    .unwrap();
    let verdict_rule = |addrs: &[&str]| {
        let mut r = Req::connect("name.example.test");
        r.addrs = addrs.iter().map(|a| a.parse().unwrap()).collect();
        p.decide(&r.facts()).verdict_rule.map(|r| r.to_string())
    };
    // The name itself is no address: only what it resolved to counts.
    assert_eq!(verdict_rule(&["127.0.0.1"]).as_deref(), Some("no-loopback"));
    assert_eq!(verdict_rule(&["::1"]).as_deref(), Some("no-loopback"));
    assert_eq!(verdict_rule(&["10.1.1.1"]).as_deref(), Some("intranet"));
    // Deny: any address inside; allow: every address inside.
    assert_eq!(
        verdict_rule(&["10.1.1.1", "127.0.0.1"]).as_deref(),
        Some("no-loopback")
    );
    assert_eq!(verdict_rule(&["10.1.1.1", "192.0.2.1"]), None);
    assert_eq!(verdict_rule(&[]), None, "unresolved grants nothing");
    assert!(!p.auth_needs_addresses());
    assert!(auth.auth_needs_addresses());
    let mut r = Req::connect("name.example.test");
    assert!(
        auth.needs_auth(&r.facts(), true).0,
        "no address, no exemption"
    );
    r.addrs = vec!["10.2.3.4".parse().unwrap()];
    assert!(!auth.needs_auth(&r.facts(), true).0);
}

#[test]
fn names_in_rules_and_objects_match_caselessly_beyond_ascii() {
    let p = Policy::from_toml(
        r#"
[objects]
aerzte = ["ÄRZTE"]
[combined.strassen]
all = [["user:STRASSE", "group:@aerzte"]]
[[layers]]
name = "l"
[[layers.rules]]
name = "deny-doctors"
group = ["Ärzte"]
action = "deny"
[[layers.rules]]
name = "deny-juergen"
user = ["JÜRGEN"]
realm = ["Zentrale"]
action = "deny"
[[layers.rules]]
name = "tunnel-strasse"
source = ["strassen"]
action = "tunnel"
"#,
    )
    .unwrap();
    let rule = |r: &Req| p.decide(&r.facts()).verdict_rule;
    // ASCII-insensitive equality left these apart: the deny failed open.
    for g in ["Ärzte", "ärzte", "A\u{308}RZTE"] {
        let r = Req::connect("x").user("someone", &[g]);
        assert_eq!(rule(&r).as_deref(), Some("deny-doctors"), "{g:?}");
    }
    let mut r = Req::connect("x").user("jürgen", &[]);
    r.id.as_mut().unwrap().realm = "zentrale".into();
    assert_eq!(rule(&r).as_deref(), Some("deny-juergen"));
    r.id.as_mut().unwrap().realm = "local".into();
    assert_eq!(rule(&r), None);
    // ß and SS are one name under full case folding.
    let r = Req::connect("x").user("straße", &[]);
    assert_eq!(
        p.decide(&r.facts()).connect_rule.as_deref(),
        Some("tunnel-strasse")
    );
}

#[test]
fn the_shipped_blocklist_example_loads_and_names_its_entries() {
    let cfg = PolicyConfig {
        file: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/blocklists-policy.toml")),
        ..Default::default()
    };
    let p = Policy::load(&cfg).unwrap();
    let mut q = Req::connect("x.ads.example");
    q.method = http::Method::GET;
    let d = p.decide(&q.facts());
    assert_eq!(d.verdict_rule.as_deref(), Some("blocked-domains"));
    assert_eq!(
        d.entries[0][0].to_string(),
        "host .ads.example from lists/blocked-domains.txt:4"
    );
    let mut q = Req::connect("fine.example");
    q.addrs = vec!["198.51.100.7".parse().unwrap()];
    let d = p.decide(&q.facts());
    assert_eq!(d.verdict_rule.as_deref(), Some("blocked-networks"));
    assert_eq!(
        d.entries[0][0].to_string(),
        "dest 198.51.100.7/32 from lists/bad-nets.txt:3"
    );
    assert!(p.decide(&Req::connect("ads.example.org").facts()).verdict == Verdict::Allow);
    assert!(p.decide(&Req::connect("a.tracker.example").facts()).verdict != Verdict::Allow);
}

#[test]
fn list_file_objects_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.txt");
    std::fs::write(&hosts, "example.com\n").unwrap();
    let rule = |field: &str| {
        format!("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r\"\n{field} = [\"@x\"]\naction=\"deny\"\n")
    };
    let obj = |o: &str| format!("[objects]\nx = {o}\n");
    let h = format!("{{ host_file = {:?} }}", hosts.display().to_string());
    let cases = [
        (obj(&h) + &rule("host"), None),
        (obj(&h) + &rule("sni"), None),
        (obj(&h) + &rule("dest"), Some("holds names, not addresses")),
        (obj(&h) + &rule("group"), Some("is a list file")),
        (
            obj("{ host_file = \"/nonexistent/x.txt\" }") + &rule("host"),
            Some("/nonexistent/x.txt"),
        ),
        (
            obj("{ host_file = \"a\", dest_file = \"b\" }"),
            Some("one of host_file or dest_file"),
        ),
        (
            obj("{ hosts_file = \"a\" }"),
            Some("{ host_file = \"FILE\" }"),
        ),
    ];
    for (text, want) in cases {
        match (Policy::from_toml(&text), want) {
            (Ok(_), None) => {}
            (Err(e), Some(want)) => assert!(e.to_string().contains(want), "{want}: {e}"),
            (Ok(_), Some(want)) => panic!("accepted, wanted {want}: {text}"),
            (Err(e), None) => panic!("{e}: {text}"),
        }
    }
}

#[test]
fn a_rule_without_conditions_matches_every_request() {
    let r = rule::Rule::new("all".into(), Action::Tag);
    assert!(!r.needs_identity() && !r.needs_detection());
    let q = Req::connect("anything.example");
    assert!(r.matches(&q.facts()));
    let mut f = q.facts();
    f.detected = Some(Detected::protocol(ProtocolKind::Ssh));
    assert!(r.matches(&f));
    // Setting a condition is naming it; the rest stay absent.
    let gets = rule::Rule {
        methods: Some(vec!["GET".into()]),
        ..rule::Rule::new("gets".into(), Action::Allow)
    };
    assert!(!gets.matches(&q.facts()));
    let mut get = Req::connect("anything.example");
    get.method = http::Method::GET;
    assert!(gets.matches(&get.facts()));
    assert!(!get.facts().is_connect() && q.facts().is_connect());
}

#[test]
fn deny_status_and_protocol_names_are_checked_at_compile() {
    let rule =
        |extra: &str| format!("[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\n{extra}\n");
    let e = Policy::from_toml(&rule("action=\"deny\"\nstatus=302")).unwrap_err();
    assert!(e.to_string().contains("rule \"r1\", field `status`"), "{e}");
    let e = Policy::from_toml(&rule("action=\"deny\"\nreason=\"a b\"")).unwrap_err();
    assert!(e.to_string().contains("field `reason`"), "{e}");
    let p = Policy::from_toml(&rule("action=\"deny\"\nstatus=451\nreason=\"legal\"")).unwrap();
    let d = p.decide(&Req::connect("x").facts());
    let want = crate::policy::Denial {
        status: http::StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
        reason: "legal".into(),
    };
    assert_eq!(d.verdict, Verdict::Deny(want));
    let e = Policy::from_toml(&rule("action=\"allow\"\nprotocol=[\"TLS\", \"quic\"]")).unwrap_err();
    assert!(
        e.to_string()
            .contains("field `protocol`: \"quic\": one of tls, http, ssh, unknown"),
        "{e}"
    );
    let p = Policy::from_toml(&rule("action=\"allow\"\nprotocol=[\"SSH\"]")).unwrap();
    let q = Req::connect("x");
    let mut f = q.facts();
    f.detected = Some(Detected::protocol(ProtocolKind::Ssh));
    assert_eq!(p.decide(&f).verdict_rule.as_deref(), Some("r1"));
    f.detected = Some(Detected::protocol(ProtocolKind::Tls));
    assert_eq!(p.decide(&f).verdict_rule, None);
}

#[test]
fn guest_rules_and_auth_scheme_conditions() {
    let p = Policy::from_toml(
        r#"
[[layers]]
name = "auth"
kind = "authentication"
[[layers.rules]]
name = "updates-as-guest"
host = [".updates.example"]
action = "guest"

[[layers]]
name = "access"
[[layers.rules]]
name = "guests-only-updates"
auth_scheme = ["guest"]
host = [".updates.example"]
action = "allow"
[[layers.rules]]
name = "no-guest-elsewhere"
auth_scheme = ["GUEST"]
action = "deny"
[[layers.rules]]
name = "surrogates-no-connect-22"
auth_scheme = ["surrogate-ip"]
port = [22]
action = "deny"
"#,
    )
    .unwrap();
    let r = Req::connect("dl.updates.example");
    let need = p.auth_need(&r.facts(), true);
    assert!(need.required && need.guest, "{need:?}");
    assert_eq!(need.rule.as_deref(), Some("updates-as-guest"));
    let other = Req::connect("www.example");
    assert!(!p.auth_need(&other.facts(), true).guest);
    let verdict = |mut r: Req, scheme: &'static str| {
        r = r.user("anyone", &[]);
        r.scheme = scheme;
        p.decide(&r.facts()).verdict_rule.map(|r| r.to_string())
    };
    assert_eq!(
        verdict(Req::connect("dl.updates.example"), "guest").as_deref(),
        Some("guests-only-updates")
    );
    assert_eq!(
        verdict(Req::connect("www.example"), "guest").as_deref(),
        Some("no-guest-elsewhere")
    );
    assert_eq!(verdict(Req::connect("www.example"), "basic"), None);
    let mut ssh = Req::connect("www.example");
    ssh.port = 22;
    assert_eq!(
        verdict(ssh, "surrogate-ip").as_deref(),
        Some("surrogates-no-connect-22")
    );
    // Unknown schemes, and guest or auth_scheme where they do not belong.
    for (bad, says) in [
        (
            "[[layers]]\nname = \"a\"\n[[layers.rules]]\nname = \"x\"\nauth_scheme = [\"digest\"]\naction = \"allow\"",
            "one of basic",
        ),
        (
            "[[layers]]\nname = \"a\"\n[[layers.rules]]\nname = \"x\"\naction = \"guest\"",
            "guest belong",
        ),
        (
            "[[layers]]\nname = \"a\"\nkind = \"authentication\"\n[[layers.rules]]\nname = \"x\"\nauth_scheme = [\"basic\"]\naction = \"guest\"",
            "identity",
        ),
    ] {
        let e = Policy::from_toml(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn upgrade_conditions_grant_all_restrict_any() {
    let text = r#"
[[layers]]
name = "upgrades"
[[layers.rules]]
name = "no-ws-for-guests"
user = ["guest"]
upgrade = ["websocket"]
action = "deny"
reason = "no_websocket"
[[layers.rules]]
name = "irc-ok"
upgrade = ["WebSocket", "irc/2"]
action = "allow"
"#;
    let p = Policy::from_toml(text).unwrap();
    let ask = |user: Option<&str>, upgrade: Option<&str>| {
        let mut q = Req::connect("chat.example");
        q.method = http::Method::GET;
        if let Some(u) = user {
            q = q.user(u, &[]);
        }
        if let Some(up) = upgrade {
            q.headers.insert("connection", "Upgrade".parse().unwrap());
            q.headers.insert("upgrade", up.parse().unwrap());
        }
        let d = p.decide(&q.facts());
        (
            d.verdict_rule.as_deref().map(str::to_owned),
            d.verdict_by_upgrade,
        )
    };
    // A restricting rule matches when any offered protocol is listed.
    assert_eq!(
        ask(Some("guest"), Some("websocket")).0.as_deref(),
        Some("no-ws-for-guests")
    );
    assert_eq!(
        ask(Some("guest"), Some("irc, websocket")).0.as_deref(),
        Some("no-ws-for-guests")
    );
    assert_eq!(ask(Some("guest"), Some("irc")).0.as_deref(), Some("irc-ok"));
    // A granting rule only when every one is: h2c beside websocket is not granted.
    assert_eq!(
        ask(Some("alice"), Some("irc/2, websocket")),
        (Some("irc-ok".into()), true)
    );
    assert_eq!(ask(Some("alice"), Some("websocket, h2c")), (None, false));
    // No upgrade asked: neither matches.
    assert_eq!(ask(Some("guest"), None), (None, false));
    // A bad name is an error located at its rule and field.
    let e = Policy::from_toml(
        "[[layers]]\nname=\"l\"\n[[layers.rules]]\nname=\"r1\"\nupgrade=[\"web socket\"]\naction=\"allow\"\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("rule \"r1\", field `upgrade`"),
        "{e}"
    );
}
