//! Basic authentication against a real OpenLDAP (integration/lab/slapd):
//! groups and nesting, escaping, empty passwords, the caches, and outages.

mod common;

use std::time::Duration;

use common::lab::Slapd;
use common::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=test";

fn auth_section(realm: &std::path::Path, extra: &str) -> String {
    format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\n{extra}\n",
        realm.display()
    )
}

/// The lab directory, an origin, and Gatehouse authenticating against the
/// directory's memberof realm with default settings.
async fn memberof_lab() -> (Slapd, Origin, Gatehouse) {
    let lab = Slapd::start();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &auth_section(&lab.realm_file("memberof", ""), ""));
    (lab, origin, gh)
}

/// One GET through the proxy with these credentials; returns the status.
async fn get_as(gh: &Gatehouse, url: &str, user_pass: &str) -> u16 {
    let raw = format!(
        "GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
        basic(user_pass)
    );
    status_of(&raw_exchange(gh.addr(), raw.as_bytes(), Duration::from_secs(10)).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn right_password_passes_with_nested_groups_in_the_log() {
    let lab = Slapd::start();
    let origin = Origin::start().await;
    for strategy in ["memberof", "member-search"] {
        let gh = Gatehouse::start("", &auth_section(&lab.realm_file(strategy, ""), ""));
        assert_eq!(
            get_as(&gh, &origin.url("/"), "alice:alice-pw").await,
            200,
            "{strategy}"
        );
        assert_eq!(
            get_as(&gh, &origin.url("/"), "carol:carol-pw").await,
            200,
            "{strategy}"
        );
        assert_eq!(
            get_as(&gh, &origin.url("/"), "bob:bob-pw").await,
            200,
            "{strategy}"
        );
        let lines = gh.log_lines(3);
        let groups = |i: usize| {
            let mut g: Vec<String> = lines[i]["cs-auth-group"]
                .split(',')
                .map(str::to_string)
                .collect();
            g.sort();
            g
        };
        assert_eq!(lines[0]["cs-username"], "alice");
        assert_eq!(
            groups(0),
            vec!["Skype Users", "staff", "telephony"],
            "{strategy}"
        );
        assert_eq!(lines[1]["cs-auth-group"], "-", "carol is in no group");
        // bob's loop-a ↔ loop-b cycle ends.
        assert_eq!(groups(2), vec!["loop-a", "loop-b", "staff"], "{strategy}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_empty_and_injected_credentials_are_refused() {
    let (lab, origin, gh) = memberof_lab().await;
    let url = origin.url("/");
    assert_eq!(get_as(&gh, &url, "alice:wrong").await, 407);
    assert_eq!(get_as(&gh, &url, "alice:").await, 407);
    assert_eq!(
        lab.binds_for(ALICE_DN),
        1,
        "the empty password never reached a bind"
    );
    for user in [
        "*",
        "*)(uid=*",
        "alice)(|(uid=*",
        "ali*",
        "*)(objectClass=*))(&(uid=x",
    ] {
        assert_eq!(
            get_as(&gh, &url, &format!("{user}:alice-pw")).await,
            407,
            "{user}"
        );
    }
    assert_eq!(
        lab.binds_for(ALICE_DN),
        1,
        "injected filters matched nobody"
    );
    // Names that need escaping work when they are real.
    assert_eq!(get_as(&gh, &url, "a*b:astarb-pw").await, 200);
    assert_eq!(get_as(&gh, &url, "o'brien:obrien-pw").await, 200);
    assert_eq!(get_as(&gh, &url, "a*b:wrong").await, 407);
    let lines = gh.log_lines(10);
    assert_eq!(lines[7]["cs-username"], "a*b");
    assert_eq!(lines[8]["cs-username"], "o'brien");
    assert_eq!(lines[8]["cs-auth-group"], "staff");
    assert_eq!(lines[9]["s-action"], "TCP_AUTH_MISS");
    assert_eq!(origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_turns_a_thousand_requests_into_one_bind() {
    let (lab, origin, gh) = memberof_lab().await;
    let url = origin.url("/bytes/10");
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (url, addr) = (url.clone(), gh.addr());
        tasks.push(tokio::spawn(async move {
            let mut c = proxy_conn(addr).await;
            for _ in 0..100 {
                let req = http::Request::builder()
                    .uri(&url)
                    .header("proxy-authorization", basic("alice:alice-pw"))
                    .body(empty())
                    .unwrap();
                let resp = ready(&mut c).await.send_request(req).await.unwrap();
                assert_eq!(resp.status(), 200);
                read_all(resp).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(origin.requests(), 1000);
    assert_eq!(
        lab.binds_for(ALICE_DN),
        1,
        "1000 requests, 10 connections at once: one directory bind"
    );
    let lines = gh.log_lines(1000);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["x-auth-scheme"] == "basic")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_user_in_known_groups_costs_one_search_and_one_bind() {
    let (lab, origin, gh) = memberof_lab().await;
    let url = origin.url("/");
    // alice: staff and telephony (nested in Skype Users) — her lookup learns
    // the parents of both groups.
    assert_eq!(get_as(&gh, &url, "alice:alice-pw").await, 200);
    let (searches, binds) = (lab.searches(), lab.all_binds());
    // o'brien is in staff only, whose parents are now known.
    assert_eq!(get_as(&gh, &url, "o'brien:obrien-pw").await, 200);
    assert_eq!(
        (lab.searches() - searches, lab.all_binds() - binds),
        (1, 1),
        "a new user in known groups: the user search and the password bind, nothing else"
    );
    let lines = gh.log_lines(2);
    assert_eq!(lines[1]["cs-auth-group"], "staff");
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_outage_cached_users_keep_working_new_users_get_503() {
    let mut lab = Slapd::start();
    let origin = Origin::start().await;
    // Everything is stale at once (1 ms), so every request tries the directory
    // and the stale-if-error path is what keeps alice going.
    let realm = lab.realm_file(
        "memberof",
        "cache_ttl = \"1ms\"\noperation_timeout = \"2s\"\nconnect_timeout = \"2s\"",
    );
    let gh = Gatehouse::start(
        "",
        &auth_section(&realm, "credential_ttl = \"1ms\"\nstale_grace = \"1h\""),
    );
    let url = origin.url("/");
    assert_eq!(get_as(&gh, &url, "alice:alice-pw").await, 200);
    lab.stop();
    assert_eq!(
        get_as(&gh, &url, "alice:alice-pw").await,
        200,
        "cached user served stale"
    );
    let raw = format!(
        "GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
        basic("bob:bob-pw")
    );
    let text = raw_exchange(gh.addr(), raw.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(status_of(&text), 503, "{text}");
    assert!(
        text.contains("directory_unavailable") && text.contains("directory unavailable"),
        "{text}"
    );
    assert!(
        gh.stderr().contains("directory unavailable"),
        "reason logged: {}",
        gh.stderr()
    );
    lab.run();
    assert_eq!(
        get_as(&gh, &url, "bob:bob-pw").await,
        200,
        "recovers without restart"
    );
    assert_eq!(get_as(&gh, &url, "alice:alice-pw").await, 200);
    let lines = gh.log_lines(5);
    assert_eq!(lines[2]["x-exception-id"], "directory_unavailable");
    assert_eq!(lines[2]["cs-username"], "bob");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_change_is_seen_after_the_ttl() {
    let lab = Slapd::start();
    let origin = Origin::start().await;
    let realm = lab.realm_file("memberof", "cache_ttl = \"1ms\"");
    let gh = Gatehouse::start("", &auth_section(&realm, "credential_ttl = \"1ms\""));
    let url = origin.url("/");
    assert_eq!(get_as(&gh, &url, "carol:carol-pw").await, 200);
    lab.modify("dn: cn=telephony,ou=groups,dc=example,dc=test\nchangetype: modify\nadd: member\nmember: uid=carol,ou=people,dc=example,dc=test\n");
    assert_eq!(get_as(&gh, &url, "carol:carol-pw").await, 200);
    let lines = gh.log_lines(2);
    assert_eq!(lines[0]["cs-auth-group"], "-");
    let mut groups: Vec<&str> = lines[1]["cs-auth-group"].split(',').collect();
    groups.sort();
    assert_eq!(groups, vec!["Skype Users", "telephony"]);
}

#[test]
fn auth_test_and_check_against_the_directory() {
    let mut lab = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gatehouse.toml");
    std::fs::write(&cfg, auth_section(&lab.realm_file("member-search", ""), "")).unwrap();
    let run = |args: &[&str], stdin: &str| {
        run_with_input(
            std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
                .args(args)
                .arg("--config")
                .arg(&cfg),
            stdin,
        )
    };
    let out = run(&["auth-test", "--user", "alice"], "alice-pw\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("dn:     {ALICE_DN}")), "{text}");
    assert!(text.contains("Skype Users (nested)"), "{text}");
    let out = run(&["auth-test", "--user", "alice"], "nope\n");
    assert!(!out.status.success());
    let out = run(&["check"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    lab.stop();
    let out = run(&["check"], "");
    assert_eq!(out.status.code(), Some(3), "unreachable directory reported");
    assert!(String::from_utf8_lossy(&out.stdout).contains("UNREACHABLE"));
}
