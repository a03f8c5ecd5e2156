//! Destination rules apply to the addresses actually dialled, whatever the
//! spelling of the host, and the built-in refusal keeps clients off
//! link-local / cloud-metadata addresses. The real binary, a real origin.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(5);

/// Every way of writing 127.0.0.1 that some client library accepts.
const LOOPBACK_SPELLINGS: [&str; 6] = [
    "127.1",
    "2130706433",
    "0x7f.1",
    "0177.0.0.1",
    "[::ffff:127.0.0.1]",
    "localhost",
];

const NO_LOOPBACK: &str = r#"
default = "allow"
[[layers]]
name = "destinations"
[[layers.rules]]
name = "no-loopback"
dest = ["127.0.0.0/8", "::1/128"]
action = "deny"
"#;

/// A proxy (no authentication, no system resolver) with `policy` and the
/// origin's port open to CONNECT.
fn proxy(dir: &std::path::Path, policy: Option<&str>, port: u16) -> Gatehouse {
    let mut extra = format!(
        "[resolver]\nsystem = false\nhosts = {{ localhost = [\"127.0.0.1\"], \
         \"metadata.test\" = [\"169.254.169.254\"], \
         \"mixed.test\" = [\"127.0.0.1\", \"169.254.169.254\"] }}\n\
         [tunnel]\nallowed_ports = [{port}, 80]\n"
    );
    if let Some(p) = policy {
        let path = dir.join("policy.toml");
        std::fs::write(&path, p).unwrap();
        extra.push_str(&format!("[policy]\nfile = \"{}\"\n", path.display()));
    }
    Gatehouse::start("", &extra)
}

fn get(host: &str, port: u16) -> String {
    format!(
        "GET http://{host}:{port}/ HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
}

fn connect(host: &str, port: u16) -> String {
    format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n")
}

/// Sends `raw`; the answer must be `status` with `exception`.
async fn expect(gh: &Gatehouse, raw: &str, status: u16, exception: &str) {
    let text = raw_exchange(gh.addr(), raw.as_bytes(), WAIT).await;
    assert_eq!(status_of(&text), status, "{raw}\n{text}");
    assert!(
        text.contains(&format!("x-exception-id: {exception}")),
        "{raw}\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_spelling_of_a_denied_address_is_denied() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let gh = proxy(dir.path(), Some(NO_LOOPBACK), port);
    for host in LOOPBACK_SPELLINGS {
        expect(&gh, &get(host, port), 403, "policy_denied").await;
        expect(&gh, &connect(host, port), 403, "policy_denied").await;
    }
    // Numbers that are no IPv4 address are refused, not looked up as names.
    for host in ["127.0.0.256", "0x100000000", "08.0.0.1", "1.2.3.4.5"] {
        expect(&gh, &get(host, port), 400, "invalid_request").await;
        expect(&gh, &connect(host, port), 400, "invalid_request").await;
    }
    let n = LOOPBACK_SPELLINGS.len() * 2;
    let lines = gh.log_lines(n + 8);
    let denied: Vec<_> = lines.iter().filter(|l| l["sc-status"] == "403").collect();
    assert_eq!(denied.len(), n, "{lines:?}");
    for l in &denied {
        assert_eq!(l["x-rule"], "no-loopback", "{l:?}");
        assert_eq!(l["x-exception-id"], "policy_denied", "{l:?}");
        // The log names the host canonically.
        assert!(
            ["127.0.0.1", "localhost"].contains(&l["cs-host"].as_str()),
            "{l:?}"
        );
    }
    assert_eq!(origin.requests(), 0);
    assert_eq!(
        origin.connections.load(Ordering::SeqCst),
        0,
        "origin saw nothing"
    );
}

/// The same spellings reach the origin when the policy allows: the denial
/// above is the rule's doing, and each spelling means the origin's address.
#[tokio::test(flavor = "multi_thread")]
async fn every_spelling_reaches_the_origin_when_allowed() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let gh = proxy(dir.path(), None, port);
    for host in LOOPBACK_SPELLINGS {
        let text = raw_exchange(gh.addr(), get(host, port).as_bytes(), WAIT).await;
        assert_eq!(status_of(&text), 200, "{host}: {text}");
        assert!(text.ends_with("hello from origin"), "{host}: {text}");
    }
    assert_eq!(origin.requests(), LOOPBACK_SPELLINGS.len());
    // The Host header names the destination, not the address dialled.
    assert_eq!(
        origin.last_seen().header("host"),
        Some(&*format!("localhost:{port}"))
    );
    // CONNECT dials the decided address as well.
    let echo = echo_server().await;
    let gh = proxy(dir.path(), None, echo.port());
    let mut s = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(connect("0x7f.1", echo.port()).as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
    s.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_link_local_are_refused_by_default() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let gh = proxy(dir.path(), None, port);
    for (raw, addr) in [
        (get("169.254.169.254", 80), "169.254.169.254"),
        (connect("169.254.169.254", 80), "169.254.169.254"),
        (get("metadata.test", 80), "169.254.169.254"),
        (connect("metadata.test", 80), "169.254.169.254"),
        (get("[fe80::1]", 80), "fe80::1"),
        (get("0.0.0.0", port), "0.0.0.0"),
        (get("0", port), "0.0.0.0"),
        // One refused address refuses the name, even though another one
        // is the (reachable) origin.
        (get("mixed.test", port), "169.254.169.254"),
        (connect("mixed.test", port), "169.254.169.254"),
    ] {
        let text = raw_exchange(gh.addr(), raw.as_bytes(), WAIT).await;
        assert_eq!(status_of(&text), 403, "{raw}\n{text}");
        assert!(
            text.contains("x-exception-id: destination_refused"),
            "{text}"
        );
        assert!(text.contains(addr), "the answer names {addr}: {text}");
    }
    // No connection was tried: an attempt to an unrouted address would
    // have answered 502/504, not the 403 each one got (a clock would say
    // less: a busy machine slows a refusal as much as an attempt).
    let lines = gh.log_lines(9);
    for l in &lines {
        assert_eq!(l["x-rule"], "builtin:destinations", "{l:?}");
        assert_eq!(l["s-action"], "TCP_DENIED", "{l:?}");
    }
    assert_eq!(origin.connections.load(Ordering::SeqCst), 0);
}
