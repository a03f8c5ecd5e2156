//! Plain HTTP inside a CONNECT (ProxySG's "Detect Protocol" for HTTP), with
//! the client that really does it: Node's undici `ProxyAgent` tunnels even
//! `http://` URLs. Each request inside goes to the HTTP path — judged with
//! the tunnel's identity, its own method, headers and `http://` URL,
//! forwarded, logged as its own line — and the CONNECT's line follows when
//! the tunnel ends. A `protocol = ["http"]` rule can still refuse it.

mod common;

use std::path::Path;

use common::tls_lab::TestCa;
use common::*;

/// A proxy with the local realm, detection on (bob is detected), CONNECT
/// open to `port`, the lab name `plain.example.test`, and `policy`.
fn proxy(dir: &Path, port: u16, policy: &str) -> Gatehouse {
    let ca = TestCa::new(dir);
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let cfg = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ \"plain.example.test\" = [\"127.0.0.1\"] }}\n\
         [tunnel]\nallowed_ports = [{port}]\n\
         [detection]\nenabled = true\ntimeout = \"3s\"\nca_file = \"{}\"\n\
         [policy]\nfile = \"{}\"\n",
        local_realm(dir),
        ca.pem_path.display(),
        policy_path.display(),
    );
    Gatehouse::start("", &cfg)
}

/// undici's ProxyAgent through `proxy` as bob: one output line per URL.
fn undici(proxy: std::net::SocketAddr, urls: &[String]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/browser/undici_get.mjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .arg(format!("http://{proxy}"))
        .arg(basic("bob:bob-pw"))
        .args(urls)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

const POLICY: &str = r#"
[[layers]]
name = "web"
[[layers.rules]]
name = "no-admin"
url = ["^http://[^/]+/status/"]
action = "deny"
reason = "admin_blocked"
[[layers.rules]]
name = "no-evil-agent"
header = { "User-Agent" = "^evil" }
action = "deny"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn undici_http_through_a_connect_is_served_judged_and_logged_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let gh = proxy(dir.path(), port, POLICY);
    let url = |p: &str| format!("http://plain.example.test:{port}{p}");
    let (addr, urls) = (
        gh.addr(),
        [url("/bytes/5"), url("/status/204"), url("/bytes/7")],
    );
    let out = tokio::task::block_in_place(|| undici(addr, &urls));
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out[0].starts_with("200 "), "{out:?}");
    assert!(
        out[1].starts_with("403 "),
        "a url rule inside the tunnel: {out:?}"
    );
    assert!(out[2].starts_with("200 "), "{out:?}");
    assert_eq!(origin.requests(), 2, "the refused request never left");
    let lines = gh.log_lines(4);
    let inner: Vec<_> = lines.iter().filter(|l| l["cs-method"] == "GET").collect();
    assert_eq!(inner.len(), 3, "{lines:?}");
    for l in &inner {
        assert_eq!(l["cs-username"], "bob");
        assert_eq!(l["cs-host"], "plain.example.test");
        assert_eq!(l["cs-uri-scheme"], "http");
        assert_eq!(l["cs(User-Agent)"], "undici-test");
    }
    assert_eq!(
        (
            inner[1]["sc-status"].as_str(),
            inner[1]["x-exception-id"].as_str()
        ),
        ("403", "admin_blocked")
    );
    assert_eq!(inner[1]["x-rule"], "no-admin");
    let connect = lines.iter().find(|l| l["cs-method"] == "CONNECT").unwrap();
    assert_eq!(
        (connect["x-protocol"].as_str(), connect["s-action"].as_str()),
        ("http", "TCP_TUNNELED")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_rule_reads_the_request_inside_not_the_connect() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let gh = proxy(dir.path(), port, POLICY);
    // The CONNECT's own User-Agent is harmless; the request inside is not.
    let auth = format!(
        "User-Agent: Mozilla/5.0\r\nProxy-Authorization: {}\r\n",
        basic("bob:bob-pw")
    );
    let mut t =
        common::tls_lab::connect_through(gh.addr(), &format!("plain.example.test:{port}"), &auth)
            .await
            .unwrap();
    t.write_all(
        b"POST /echo HTTP/1.1\r\nHost: plain.example.test\r\nUser-Agent: evil-uploader/1.0\r\n\
          Content-Length: 6\r\nConnection: close\r\n\r\nsecret",
    )
    .await
    .unwrap();
    let mut reply = String::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        t.read_to_string(&mut reply),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_can_still_refuse_http_inside_a_connect() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let policy = r#"
[[layers]]
name = "tunnels"
[[layers.rules]]
name = "no-http-in-tunnels"
protocol = ["http"]
action = "deny"
reason = "http_tunnel_refused"
"#;
    let gh = proxy(dir.path(), port, policy);
    let urls = [format!("http://plain.example.test:{port}/bytes/5")];
    let addr = gh.addr();
    let out = tokio::task::block_in_place(|| undici(addr, &urls));
    assert!(out[0].starts_with("ERROR"), "{out:?}");
    assert_eq!(origin.requests(), 0);
    let l = &gh.log_lines(1)[0];
    assert_eq!(
        (l["x-exception-id"].as_str(), l["x-rule"].as_str()),
        ("http_tunnel_refused", "no-http-in-tunnels")
    );
}
