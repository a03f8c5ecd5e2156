//! The indexed evaluator against a straightforward one: the linear matcher
//! the policy used before sets and indexes (kept here as the reference),
//! on random policies and random requests.

use std::net::IpAddr;

use http::HeaderMap;
use proptest::prelude::*;

use super::hosts::Pattern;
use super::rule::{NetCond, Rule};
use super::*;
use crate::directory::identity::{folds_to, Group, Identity};

/// The old host matcher: one pattern at a time.
fn old_host_matches(p: &Pattern, host: &str) -> bool {
    let host = host.trim_end_matches('.');
    match p {
        Pattern::Exact(h) => host.eq_ignore_ascii_case(h),
        Pattern::Suffix(s) => {
            let s = format!(".{s}");
            let lower = host.to_ascii_lowercase();
            lower.ends_with(s.as_str()) || lower == s[1..]
        }
        Pattern::Regex(re) => regex::Regex::new(&format!("(?i){re}"))
            .unwrap()
            .is_match(host),
    }
}

fn old_hosts(c: &rule::HostCond, host: &str) -> bool {
    c.sets
        .iter()
        .flat_map(|s| s.patterns())
        .any(|p| old_host_matches(&p, host))
}

fn old_in(c: &NetCond, ip: &IpAddr) -> bool {
    c.sets.iter().flat_map(|s| s.nets()).any(|n| n.contains(ip))
}

/// The old `matches`: every condition, every entry, in turn.
fn reference_matches(r: &Rule, f: &Facts<'_>) -> bool {
    let id = f.identity;
    let any = |list: &Option<Vec<String>>, pred: &dyn Fn(&str) -> bool| {
        list.as_ref().is_none_or(|l| l.iter().any(|x| pred(x)))
    };
    if r.needs_detection() && f.detected.is_none() {
        return false;
    }
    let dest_ok = |d: &NetCond| {
        if r.grants() {
            !f.addrs.is_empty() && f.addrs.iter().all(|ip| old_in(d, ip))
        } else {
            f.addrs.iter().any(|ip| old_in(d, ip))
        }
    };
    r.authenticated.is_none_or(|want| want == id.is_some())
        && any(&r.users, &|u| id.is_some_and(|i| folds_to(&i.user, u)))
        && any(&r.groups, &|g| id.is_some_and(|i| i.in_group(g)))
        && r.clients.as_ref().is_none_or(|c| old_in(c, &f.client))
        && any(&r.methods, &|m| f.method.as_str().eq_ignore_ascii_case(m))
        && r.hosts.as_ref().is_none_or(|h| old_hosts(h, f.host))
        && r.dests.as_ref().is_none_or(dest_ok)
        && r.ports
            .as_ref()
            .is_none_or(|l| l.iter().any(|(a, b)| (*a..=*b).contains(&f.port)))
}

const USERS: &[&str] = &["alice", "Bob", "carol"];
const GROUPS: &[&str] = &["staff", "Admins", "Skype Users"];
const HOSTS: &[&str] = &[
    "a.test",
    ".a.test",
    "b.a.test",
    ".b.test",
    "C.test",
    "re:^c+\\.",
    "@web",
    "10.0.0.1",
];
const PORTS: &[&str] = &["80", "443", "\"8000-8100\"", "\"1-65535\""];
const DESTS: &[&str] = &["10.0.0.0/8", "10.1.0.0/16", "192.0.2.1", "::1/128", "@nets"];
const METHODS: &[&str] = &["GET", "CONNECT"];

/// `Some(a subset of pool)`, or `None` (the condition is absent).
fn pick(pool: &'static [&'static str]) -> impl Strategy<Value = Option<Vec<&'static str>>> {
    prop::option::weighted(
        0.4,
        prop::collection::vec(any::<bool>(), pool.len()).prop_map(move |mask| {
            pool.iter()
                .zip(mask)
                .filter_map(|(p, m)| m.then_some(*p))
                .collect()
        }),
    )
}

fn rule_text() -> impl Strategy<Value = String> {
    (
        pick(USERS),
        pick(GROUPS),
        pick(HOSTS),
        pick(PORTS),
        pick(DESTS),
        pick(METHODS),
        0..3u8,
    )
        .prop_map(|(users, groups, hosts, ports, dests, methods, action)| {
            let quoted = |v: Vec<&str>| {
                let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
                format!("[{}]", q.join(", "))
            };
            let mut t = String::new();
            for (key, v) in [
                ("user", users),
                ("group", groups),
                ("host", hosts),
                ("dest", dests),
                ("method", methods),
            ] {
                if let Some(v) = v {
                    t.push_str(&format!("{key} = {}\n", quoted(v)));
                }
            }
            if let Some(p) = ports {
                t.push_str(&format!("port = [{}]\n", p.join(", ")));
            }
            t.push_str(match action {
                0 => "action = \"allow\"\n",
                1 => "action = \"deny\"\n",
                _ => "action = \"tag\"\ntag = \"t\"\n",
            });
            t
        })
}

fn policy_text(rules: &[String]) -> String {
    let mut t = String::from(
        "[objects]\nweb = [\"www.d.test\", \".e.test\"]\nnets = [\"198.51.100.0/24\"]\n\
         [[layers]]\nname = \"l\"\n",
    );
    for (i, r) in rules.iter().enumerate() {
        t.push_str(&format!("[[layers.rules]]\nname = \"r{i}\"\n{r}"));
    }
    t
}

#[derive(Debug, Clone)]
struct Request {
    user: Option<(&'static str, Vec<&'static str>)>,
    host: &'static str,
    port: u16,
    addrs: Vec<IpAddr>,
    method: &'static str,
}

fn request() -> impl Strategy<Value = Request> {
    let users = prop::sample::select(&["alice", "bob", "CAROL", "dave"][..]);
    let groups = prop::collection::vec(
        prop::sample::select(&["staff", "ADMINS", "skype users", "other"][..]),
        0..3,
    );
    let hosts = &[
        "a.test",
        "A.TEST.",
        "b.a.test",
        "x.b.test",
        "b.test",
        "c.test",
        "cc.test",
        "d.test",
        "www.d.test",
        "x.e.test",
        "10.0.0.1",
        "xa.test",
    ][..];
    let addrs = prop::collection::vec(
        prop::sample::select(
            &[
                "10.0.0.1",
                "10.1.2.3",
                "192.0.2.1",
                "::1",
                "8.8.8.8",
                "198.51.100.9",
            ][..],
        ),
        0..3,
    );
    (
        prop::option::of((users, groups)),
        prop::sample::select(hosts),
        prop::sample::select(&[80u16, 443, 8080, 22][..]),
        addrs,
        prop::sample::select(&["GET", "CONNECT"][..]),
    )
        .prop_map(|(user, host, port, addrs, method)| Request {
            user,
            host,
            port,
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            method,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn indexed_evaluation_is_the_linear_evaluation(
        rules in prop::collection::vec(rule_text(), 1..40),
        requests in prop::collection::vec(request(), 1..20),
    ) {
        let text = policy_text(&rules);
        let indexed = Policy::from_toml_indexed(&text, 0).unwrap();
        let headers = HeaderMap::new();
        for q in &requests {
            let id = q.user.as_ref().map(|(u, groups)| Identity {
                user: u.to_string(),
                realm: "local".into(),
                dn: None,
                groups: groups
                    .iter()
                    .map(|g| Group { name: g.to_string(), dn: None, nested: false })
                    .collect(),
            });
            let f = Facts {
                identity: id.as_ref(),
                auth_scheme: id.as_ref().map(|_| "basic"),
                client: "10.0.0.5".parse().unwrap(),
                method: &http::Method::from_bytes(q.method.as_bytes()).unwrap(),
                host: q.host,
                addrs: &q.addrs,
                port: q.port,
                headers: &headers,
                categories: &[],
                now: jiff::Timestamp::UNIX_EPOCH,
                detected: None,
                url: None,
            };
            let layer = &indexed.layers[0];
            let want = layer.rules.iter().find(|r| reference_matches(r, &f)).map(|r| &r.name);
            let got = layer.first_match(&f).map(|r| &r.name);
            prop_assert_eq!(got, want, "request {:?}\n{}", q, text);
            prop_assert_eq!(&indexed.decide(&f).trace[0].1, &want.cloned());
        }
    }
}
