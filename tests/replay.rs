//! `gatehouse replay`: the real proxy serves a table of requests (allowed,
//! denied, unauthenticated, a raw tunnel, a malformed request) under one
//! policy and logs them; replaying its log under a changed policy must
//! report exactly the transactions that change, by rule — in each format.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(5);

const OLD: &str = r#"
default = "allow"

[[layers]]
name = "sites"
[[layers.rules]]
name = "block-news"
host = [".news.test"]
action = "deny"
reason = "blocked_news"
[[layers.rules]]
name = "staff-social"
group = ["staff"]
host = ["social.test"]
action = "allow"
[[layers.rules]]
name = "deny-social"
host = ["social.test"]
action = "deny"
reason = "social"

[[layers]]
name = "tunnels"
[[layers.rules]]
name = "skype-tunnel"
group = ["Skype Users"]
method = ["CONNECT"]
action = "tunnel"
"#;

/// News allowed now, bob kept off site.test, the raw tunnel gone, and an
/// API-key rule whose header no log records.
const NEW: &str = r#"
default = "allow"

[[layers]]
name = "sites"
[[layers.rules]]
name = "api-clients"
host = ["api.test"]
header = { "X-Api-Key" = "^k$" }
action = "deny"
reason = "api"
[[layers.rules]]
name = "bob-site"
user = ["bob"]
host = ["site.test"]
action = "deny"
reason = "not_for_bob"
[[layers.rules]]
name = "staff-social"
group = ["staff"]
host = ["social.test"]
action = "allow"
[[layers.rules]]
name = "deny-social"
host = ["social.test"]
action = "deny"
reason = "social"
"#;

fn get(user: Option<&str>, host: &str, port: u16) -> String {
    let auth = user.map_or(String::new(), |u| {
        format!("Proxy-Authorization: {}\r\n", basic(&format!("{u}:{u}-pw")))
    });
    format!("GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}Connection: close\r\n\r\n")
}

/// Serves the table through a proxy logging in `format`; returns the log.
async fn record(format: &str) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.toml");
    std::fs::write(&old, OLD).unwrap();
    std::fs::write(dir.path().join("new.toml"), NEW).unwrap();
    let hosts = [
        "news.test",
        "www.news.test",
        "social.test",
        "site.test",
        "api.test",
    ]
    .map(|h| format!("\"{h}\" = [\"127.0.0.1\"]"))
    .join(", ");
    let extra = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ {hosts} }}\n\
         [tunnel]\nallowed_ports = [{port}]\n[detection]\nenabled = true\n[policy]\nfile = \"{}\"\n",
        local_realm(dir.path()),
        old.display()
    );
    let log = dir.path().join("access.log");
    let accesslog = format!("path = \"{}\"\nformat = \"{format}\"", log.display());
    let mut gh = Gatehouse::start_logging(Some(&accesslog), "", &extra, &[]);
    let table = [
        (Some("alice"), "news.test", 403),
        (Some("bob"), "www.news.test", 403),
        (Some("alice"), "social.test", 200),
        (Some("bob"), "social.test", 403),
        (Some("bob"), "site.test", 200),
        (Some("alice"), "site.test", 200),
        (None, "site.test", 407),
        (Some("bob"), "api.test", 200),
    ];
    for (user, host, status) in table {
        let answer = raw_exchange(gh.addr(), get(user, host, port).as_bytes(), WAIT).await;
        assert_eq!(status_of(&answer), status, "{user:?} {host}: {answer}");
    }
    // alice's group's raw tunnel: the 200, then she closes it.
    let auth = basic("alice:alice-pw");
    let connect = format!(
        "CONNECT site.test:{port} HTTP/1.1\r\nHost: site.test:{port}\r\nProxy-Authorization: {auth}\r\n\r\n"
    );
    let mut s = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(connect.as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
    drop(s);
    // Not a policy decision: origin-form to a proxy.
    let answer = raw_exchange(gh.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", WAIT).await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    // Every transaction written (the tunnel's line comes at its end).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let n = text.lines().filter(|l| !l.starts_with('#')).count();
        if n >= 10 || std::time::Instant::now() > deadline {
            assert_eq!(n, 10, "{text}");
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    gh.terminate();
    let config = gh.config_path.clone();
    // Keep the config past the proxy: copy it beside the log.
    let kept = dir.path().join("gatehouse.toml");
    std::fs::copy(&config, &kept).unwrap();
    drop(gh);
    (dir, kept, text)
}

fn replay(config: &std::path::Path, dir: &std::path::Path, json: bool) -> (String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(["replay", "--config"]).arg(config);
    cmd.arg("--policy").arg(dir.join("new.toml"));
    if json {
        cmd.arg("--json");
    }
    cmd.arg(dir.join("access.log"));
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

/// The changes replay must find in a log that records rules (ELFF, JSON).
fn assert_report(text: &str) {
    assert!(text.contains("block-news DENY -> - ALLOW: 2\n"), "{text}");
    assert!(text.contains("- ALLOW -> bob-site DENY: 1\n"), "{text}");
    assert!(
        text.contains("skype-tunnel TUNNEL -> - DETECT: 1\n"),
        "{text}"
    );
    assert!(text.contains("unknown: 1 transactions hang on facts the log does not record, by rule: api-clients (1)\n"), "{text}");
    assert!(text.contains("not replayed: 1 transactions"), "{text}");
    assert!(!text.contains("malformed"), "{text}");
    assert!(
        text.ends_with("4 of 9 transactions would change\n"),
        "{text}"
    );
    // Each change shown by its example lines.
    assert_eq!(text.matches("    e.g. ").count(), 4, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_reports_what_a_new_policy_changes_in_an_elff_log() {
    let (dir, config, text) = record("elff").await;
    assert!(text.starts_with("#Software"), "{text}");
    let (out, _) = replay(&config, dir.path(), false);
    assert_report(&out);
    // A malformed line is counted, and nothing else moves.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("access.log"))
        .unwrap();
    use std::io::Write;
    f.write_all(b"2026-01-01 truncated\n").unwrap();
    let (out, _) = replay(&config, dir.path(), false);
    assert!(out.contains("malformed: 1 lines\n"), "{out}");
    assert!(out.ends_with("4 of 9 transactions would change\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_reads_a_json_log_and_answers_in_json() {
    let (dir, config, text) = record("json").await;
    assert!(text.starts_with('{'), "{text}");
    let (out, _) = replay(&config, dir.path(), false);
    assert_report(&out);
    let (out, _) = replay(&config, dir.path(), true);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["changed"].as_u64(), v["replayed"].as_u64()),
        (Some(4), Some(9))
    );
    assert_eq!(v["changes"][0]["old"]["rule"], "block-news");
    assert_eq!(v["changes"][0]["new"]["action"], "ALLOW");
    assert_eq!(v["unknown"]["rules"]["api-clients"], 1);
}

/// Squid records no groups, rule or User-Agent: the group rule's outcomes
/// are unknown, and the old rule is `?` (compared by action alone).
#[tokio::test(flavor = "multi_thread")]
async fn replay_reads_a_squid_log_with_what_it_records() {
    let (dir, config, _) = record("squid").await;
    let (out, _) = replay(&config, dir.path(), false);
    assert!(out.contains("? DENY -> - ALLOW: 2\n"), "{out}");
    assert!(out.contains("? ALLOW -> bob-site DENY: 1\n"), "{out}");
    assert!(out.contains("? TUNNEL -> - DETECT: 1\n"), "{out}");
    assert!(
        out.contains("unknown: 3 transactions hang on facts the log does not record, by rule: api-clients (1), staff-social (2)\n"),
        "{out}"
    );
    assert!(out.ends_with("4 of 9 transactions would change\n"), "{out}");
}
