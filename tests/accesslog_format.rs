//! The access log's formats hold their shape whatever a client writes: a
//! user name made to look like Squid columns stays one column, a Unicode
//! line separator never reaches the file raw (ELFF, Squid, JSON); and
//! `accesslog.path` takes `off` (no writer) and `/dev/null`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A proxy with the local realm logging with these `[accesslog]` keys.
fn proxy(dir: &std::path::Path, accesslog: &str) -> Gatehouse {
    Gatehouse::start_logging(Some(accesslog), "", &local_realm(dir), &[])
}

/// curl through `gh` as `user`, to `url`: the status.
fn curl_as(gh: &Gatehouse, user: &str, url: &str) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["-x", &format!("http://{}", gh.addr())])
        .args(["--proxy-user", user, url])
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The log's text once it holds `n` lines.
fn log_text(gh: &Gatehouse, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&gh.log_path).unwrap_or_default();
        if text.lines().filter(|l| !l.starts_with('#')).count() >= n {
            return text;
        }
        assert!(Instant::now() < deadline, "{n} lines expected: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

const FORGED: &str = "x TCP_MISS/200 HIER_DIRECT/6.6.6.6 text/html";

#[tokio::test(flavor = "multi_thread")]
async fn a_squid_line_keeps_its_columns_whatever_the_user_name_says() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = proxy(dir.path(), "path = \"{log_path}\"\nformat = \"squid\"");
    let url = origin.url("/");
    let status = tokio::task::block_in_place(|| curl_as(&gh, &format!("{FORGED}:pw"), &url));
    assert_eq!(status, "407");
    let text = tokio::task::block_in_place(|| log_text(&gh, 1));
    let line = text.lines().next().unwrap();
    let cols: Vec<&str> = line.split(' ').filter(|c| !c.is_empty()).collect();
    assert_eq!(cols.len(), 11, "{line}");
    assert!(cols[3].starts_with("TCP_AUTH_MISS/407"), "{line}");
    assert_eq!(
        cols[7], "x%20TCP_MISS/200%20HIER_DIRECT/6.6.6.6%20text/html",
        "{line}"
    );
    assert!(cols[8].starts_with("HIER_"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_separator_in_a_header_is_escaped_in_every_format() {
    let origin = Origin::start().await;
    let url = origin.url("/");
    // The attempted user of a refused Proxy-Authorization is logged as sent
    // (control characters, U+0085 among them, make the header unreadable).
    let user = "eve\u{2028}fake\u{2029}line";
    for format in ["elff", "squid", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let gh = proxy(
            dir.path(),
            &format!("path = \"{{log_path}}\"\nformat = \"{format}\""),
        );
        let status = tokio::task::block_in_place(|| curl_as(&gh, &format!("{user}:pw"), &url));
        assert_eq!(status, "407");
        let text = tokio::task::block_in_place(|| log_text(&gh, 1));
        assert!(
            !text.contains(['\u{2028}', '\u{2029}']),
            "{format}: {text:?}"
        );
        assert!(text.contains("eve"), "{format}: the user is logged: {text}");
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
            assert_eq!(v["username"], user, "the same value, escaped");
        }
    }
}

/// The proxy's threads' names (Linux).
fn threads(pid: u32) -> Vec<String> {
    let dir = format!("/proc/{pid}/task");
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_log_can_be_off_or_dev_null_and_the_proxy_serves() {
    let origin = Origin::start().await;
    let url = origin.url("/");
    for (path, writer) in [("off", false), ("/dev/null", true)] {
        let dir = tempfile::tempdir().unwrap();
        let gh = proxy(dir.path(), &format!("path = \"{path}\""));
        let status = tokio::task::block_in_place(|| curl_as(&gh, "bob:bob-pw", &url));
        assert_eq!(status, "200", "{path}: {}", gh.stderr());
        assert!(!gh.log_path.exists(), "{path}: no file of ours");
        assert_eq!(
            threads(gh.pid()).iter().any(|t| t == "accesslog"),
            writer,
            "{path}: the writer thread"
        );
    }
    assert!(std::fs::metadata("/dev/null")
        .map(|m| !m.is_file())
        .unwrap_or(false));
}
