//! WebSocket through the proxy with real clients and a real server: a
//! Python `websockets` echo origin (plain and TLS), aiohttp sending the
//! upgrade to the proxy as an absolute-form GET, `websockets` itself
//! through a CONNECT (plain HTTP inside it, or TLS the policy intercepts).
//! Each upgrade is judged as any request, relayed after the origin's `101`
//! and logged once, when the relay ends, with the bytes both ways. A rule
//! with `upgrade = [..]` refuses or allows upgrades; `h2c` is refused
//! always, other protocols unless a rule names them; an origin silent after
//! its `101` is cut at the tunnel's idle timeout.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tls_lab::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PLAIN: &str = "ws.example.test";
const TLS: &str = "wss.example.test";
const FOO: &str = "foo.example.test";

const POLICY: &str = r#"
[[layers]]
name = "web"
[[layers.rules]]
name = "no-ws-for-alice"
user = ["alice"]
upgrade = ["websocket"]
action = "deny"
reason = "websocket_blocked"
[[layers.rules]]
name = "foo-upgrades"
host = ["foo.example.test"]
upgrade = ["foo", "h2c"]
action = "allow"
[[layers.rules]]
name = "intercept-wss"
method = ["CONNECT"]
host = ["wss.example.test"]
action = "intercept"
"#;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integration/websocket")
        .join(name)
}

/// The echo origin: plain, or TLS with `cert`/`key`; `--silent` after the 101.
fn echo(tls: Option<(&Path, &Path)>, silent: bool) -> TlsServer {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script("echo.py"));
    if let Some((cert, key)) = tls {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    if silent {
        cmd.arg("--silent");
    }
    tls_server(&mut cmd)
}

/// `client.py` (see there): its one output line.
fn client(mode: &str, proxy: SocketAddr, user: &str, url: &str, ca: Option<&Path>) -> String {
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script("client.py"))
        .args([mode, &proxy.to_string(), user, url]);
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    let out = cmd.output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

struct Lab {
    gh: Gatehouse,
    proxy_ca: PathBuf,
}

fn lab(dir: &Path, ca: &TestCa, ports: &[u16]) -> Lab {
    let (gh, proxy_ca) = intercept_proxy(dir, ca, ports, &[PLAIN, TLS, FOO], POLICY, "");
    Lab { gh, proxy_ca }
}

/// The log's lines for upgraded requests (a GET answered `101`).
fn upgraded(gh: &Gatehouse, at_least: usize) -> Vec<std::collections::HashMap<String, String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<_> = gh
            .log_lines(0)
            .into_iter()
            .filter(|l| l["cs-method"] == "GET" && l["sc-status"] == "101")
            .collect();
        if lines.len() >= at_least || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn bytes(line: &std::collections::HashMap<String, String>, field: &str) -> u64 {
    line[field].parse().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_form_upgrade_is_relayed_and_logged_once_with_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let server = echo(None, false);
    let lab = lab(dir.path(), &ca, &[server.port]);
    let url = format!("ws://{PLAIN}:{}/chat", server.port);
    let out =
        tokio::task::block_in_place(|| client("absolute", lab.gh.addr(), "bob:bob-pw", &url, None));
    assert!(out.starts_with("OK 3 "), "{out}");
    let lines = upgraded(&lab.gh, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(l["cs-username"], "bob");
    assert_eq!(l["cs-host"], PLAIN);
    assert_eq!(l["cs-uri-path"], "/chat");
    assert_eq!(l["x-exception-id"], "-");
    // Three masked messages up (and the handshake), three echoed down.
    assert!(bytes(l, "cs-bytes") > 3 * 32, "{l:?}");
    assert!(bytes(l, "sc-bytes") > 3 * 32, "{l:?}");
    // The transaction's one line: nothing else was logged for it.
    assert_eq!(lab.gh.log_lines(1).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_intercepted_websocket_echoes_and_is_logged_inside() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (cert, key) = ca.leaf_pem(dir.path(), &[TLS]);
    let server = echo(Some((&cert, &key)), false);
    let lab = lab(dir.path(), &ca, &[server.port]);
    let url = format!("wss://{TLS}:{}/live", server.port);
    let out = tokio::task::block_in_place(|| {
        client(
            "connect",
            lab.gh.addr(),
            "bob:bob-pw",
            &url,
            Some(&lab.proxy_ca),
        )
    });
    assert!(out.starts_with("OK 3 "), "{out}");
    let lines = upgraded(&lab.gh, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let l = &lines[0];
    assert_eq!(
        (l["x-intercepted"].as_str(), l["cs-uri-scheme"].as_str()),
        ("1", "https")
    );
    assert!(
        bytes(l, "cs-bytes") > 3 * 32 && bytes(l, "sc-bytes") > 3 * 32,
        "{l:?}"
    );
    // The CONNECT's own line follows when the tunnel ends.
    let all = lab.gh.log_lines(2);
    let connect = all.iter().find(|l| l["cs-method"] == "CONNECT").unwrap();
    assert_eq!(connect["s-action"], "TCP_INTERCEPTED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_websocket_in_plain_http_inside_a_connect_echoes() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let server = echo(None, false);
    let lab = lab(dir.path(), &ca, &[server.port]);
    let url = format!("ws://{PLAIN}:{}/feed", server.port);
    let out =
        tokio::task::block_in_place(|| client("connect", lab.gh.addr(), "bob:bob-pw", &url, None));
    assert!(out.starts_with("OK 3 "), "{out}");
    let lines = upgraded(&lab.gh, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["cs-uri-scheme"], "http");
    assert_eq!(lines[0]["x-intercepted"], "-");
    let all = lab.gh.log_lines(2);
    let connect = all.iter().find(|l| l["cs-method"] == "CONNECT").unwrap();
    assert_eq!(connect["x-protocol"], "http");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_refuses_upgrades_for_a_user_and_nothing_reaches_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let origin = Origin::start().await;
    let lab = lab(dir.path(), &ca, &[origin.addr.port()]);
    let url = format!("ws://{PLAIN}:{}/chat", origin.addr.port());
    let (addr, plain) = (lab.gh.addr(), url.clone());
    let out =
        tokio::task::block_in_place(|| client("absolute", addr, "alice:alice-pw", &plain, None));
    assert_eq!(out, "STATUS 403");
    // Inside a CONNECT too (plain HTTP found there).
    let out = tokio::task::block_in_place(|| client("connect", addr, "alice:alice-pw", &url, None));
    assert_eq!(out, "STATUS 403");
    assert_eq!(origin.requests(), 0, "a refused upgrade sent nothing on");
    let lines = lab.gh.log_lines(2);
    let refused: Vec<_> = lines.iter().filter(|l| l["cs-method"] == "GET").collect();
    assert_eq!(refused.len(), 2, "{lines:?}");
    for l in refused {
        assert_eq!(
            (l["x-rule"].as_str(), l["x-exception-id"].as_str()),
            ("no-ws-for-alice", "websocket_blocked")
        );
    }
}

/// A raw absolute-form upgrade to `host` on the origin's port, as bob.
async fn raw_upgrade(proxy: SocketAddr, host: &str, port: u16, upgrade: &str) -> String {
    let req = format!(
        "GET http://{host}:{port}/bytes/5 HTTP/1.1\r\nHost: {host}:{port}\r\n\
         Proxy-Authorization: {}\r\nConnection: Upgrade\r\nUpgrade: {upgrade}\r\n\
         Connection: close\r\n\r\n",
        basic("bob:bob-pw")
    );
    raw_exchange(proxy, req.as_bytes(), Duration::from_secs(2)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn other_protocols_need_a_rule_and_h2c_is_refused_always() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let lab = lab(dir.path(), &ca, &[port]);
    let addr = lab.gh.addr();
    // No rule names `foo` for this host: refused by the proxy itself.
    let reply = raw_upgrade(addr, PLAIN, port, "foo/1").await;
    assert_eq!(status_of(&reply), 403, "{reply}");
    assert!(reply.contains("upgrade_refused"), "{reply}");
    // `h2c` is refused even where a rule names it.
    let reply = raw_upgrade(addr, FOO, port, "h2c").await;
    assert_eq!(status_of(&reply), 403, "{reply}");
    assert_eq!(origin.requests(), 0);
    // Where a rule names `foo` it goes on; the origin's 200 is just a response.
    let reply = raw_upgrade(addr, FOO, port, "foo/1").await;
    assert_eq!(status_of(&reply), 200, "{reply}");
    assert_eq!(origin.requests(), 1);
    let seen = origin.last_seen();
    assert_eq!(seen.header("upgrade"), Some("foo/1"));
    assert_eq!(seen.header("connection"), Some("upgrade"));
    let lines = lab.gh.log_lines(3);
    let rules: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["x-rule"].as_str(), l["x-exception-id"].as_str()))
        .collect();
    assert_eq!(
        rules,
        [
            ("builtin:upgrade", "upgrade_refused"),
            ("builtin:upgrade", "upgrade_refused"),
            ("foo-upgrades", "-")
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_silent_after_its_101_is_cut_at_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = echo(None, true);
    let cfg = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ \"{PLAIN}\" = [\"127.0.0.1\"] }}\n\
         [tunnel]\nidle_timeout = \"2s\"\n",
        local_realm(dir.path()),
    );
    let gh = Gatehouse::start("", &cfg);
    let port = server.port;
    let mut s = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
    let req = format!(
        "GET http://{PLAIN}:{port}/ HTTP/1.1\r\nHost: {PLAIN}:{port}\r\n\
         Proxy-Authorization: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        basic("bob:bob-pw")
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "closed before the 101");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let upgraded_at = Instant::now();
    // Neither side says a word: the proxy closes the relay after 2 s.
    let rest = read_until_close(&mut s, Duration::from_secs(30)).await;
    let held = upgraded_at.elapsed();
    assert!(rest.is_empty(), "{rest:?}");
    assert!(held >= Duration::from_millis(1900), "{held:?}");
    assert!(held < Duration::from_secs(25), "{held:?}");
    let lines = gh.log_lines(1);
    assert_eq!(
        (
            lines[0]["sc-status"].as_str(),
            lines[0]["x-exception-id"].as_str()
        ),
        ("101", "tunnel_idle_timeout")
    );
}
