//! The admin endpoints as a monitoring system uses them: scrape `/metrics`
//! before and after known traffic and check the counters moved by exactly
//! that traffic; `/healthz`; `/readyz` with a directory that does not answer.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let text = raw_exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status_of(&text), body)
}

/// The value of the sample `series` (name and labels as exposed), 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn counters_move_by_exactly_the_traffic_sent() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = Gatehouse::start(
        "",
        &format!(
            "{}[admin]\naddress = \"{admin}\"\n",
            local_realm(dir.path())
        ),
    );
    gh.wait_stderr("admin endpoints", 1);
    assert_eq!(get(admin, "/healthz").await.0, 200);
    assert_eq!(get(admin, "/readyz").await, (200, "ready\n".into()));
    let (status, before) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let auth = basic("bob:bob-pw");
    for _ in 0..3 {
        let r = raw_exchange(
            gh.addr(),
            format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {auth}\r\nConnection: close\r\n\r\n",
                origin.url("/")
            )
            .as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status_of(&r), 200, "{r}");
    }
    for _ in 0..2 {
        let r = raw_exchange(
            gh.addr(),
            format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                origin.url("/")
            )
            .as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status_of(&r), 407);
    }
    let r = raw_exchange(
        gh.addr(),
        format!("CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {auth}\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&r), 403);
    gh.log_lines(6);
    let (_, after) = get(admin, "/metrics").await;
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    let ok = delta(r#"gatehouse_transactions_total{s_action="TCP_MISS",scheme="http"}"#)
        + delta(r#"gatehouse_transactions_total{s_action="TCP_NC_MISS",scheme="http"}"#);
    assert_eq!(ok, 3.0, "{after}");
    assert_eq!(
        delta(r#"gatehouse_refusals_total{reason="authentication_required"}"#),
        2.0
    );
    assert_eq!(
        delta(r#"gatehouse_refusals_total{reason="policy_denied"}"#),
        1.0
    );
    assert_eq!(
        delta(r#"gatehouse_transactions_total{s_action="TCP_DENIED",scheme="tcp"}"#),
        1.0,
        "{after}"
    );
    assert!(delta(r#"gatehouse_bytes_total{direction="sc"}"#) > 0.0);
    // bob's password was checked once (three connections: one load, two hits).
    assert_eq!(
        delta(r#"gatehouse_credential_cache_total{result="load"}"#),
        1.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"gatehouse_credential_cache_total{result="hit"}"#),
        2.0
    );
    assert!(
        after.contains(r#"gatehouse_policy{source="built-in policy",digest=""#),
        "{after}"
    );
    assert!(after.contains("gatehouse_open_connections "), "{after}");
    // SIGHUP: a reload counted.
    gh.signal("HUP");
    gh.wait_stderr("policy reloaded", 1);
    let (_, reloaded) = get(admin, "/metrics").await;
    assert_eq!(
        sample(&reloaded, r#"gatehouse_reloads_total{result="ok"}"#),
        1.0
    );
    assert_eq!(get(admin, "/nope").await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_names_a_directory_that_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let dead = closed_port();
    let dead = dead.port;
    let realm = dir.path().join("corp.toml");
    std::fs::write(
        &realm,
        format!(
            "kind = \"ldap\"\nname = \"corp\"\nurls = [\"ldap://127.0.0.1:{dead}\"]\ntls = \"none\"\n\
             bind_dn = \"cn=svc\"\nbind_password_env = \"LAB_BIND_PW\"\nuser_base = \"ou=people,dc=x\"\n\
             user_filter = \"(uid={{user}})\"\nlogin_attribute = \"uid\"\n\
             group_base = \"ou=groups,dc=x\"\ngroup_strategy = \"memberof\"\nconnect_timeout = \"500ms\"\n"
        ),
    )
    .unwrap();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = Gatehouse::start_with_env(
        "",
        &format!(
            "[auth]\nrequired = true\nrealms = [\"{}\"]\n[admin]\naddress = \"{admin}\"\n",
            realm.display()
        ),
        &[("LAB_BIND_PW", "x")],
    );
    gh.wait_stderr("admin endpoints", 1);
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("realm corp"), "{body}");
    assert_eq!(get(admin, "/healthz").await.0, 200, "alive, not ready");
}

#[test]
fn the_admin_address_cannot_be_a_proxy_address() {
    let e = gatehouse::config::Config::from_toml(
        "[listener]\naddresses = [\"127.0.0.1:3128\"]\n[admin]\naddress = \"127.0.0.1:3128\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("admin.address"), "{e}");
}

/// Evaluates a PAC file the way a browser does (the standard helper
/// functions, with a fixed name table for dnsResolve) and prints
/// `host -> answer` for each host given.
const NODE_PAC: &str = r#"
const fs = require("fs");
const [pacFile, ...hosts] = process.argv.slice(1);
const names = { "wiki.corp.example": "10.1.2.3", "www.example.test": "93.184.216.34", "printer": "10.9.9.9", "lab.internal": "192.168.7.7" };
function isPlainHostName(h) { return h.indexOf(".") < 0; }
function dnsDomainIs(h, d) { return h.length >= d.length && h.substring(h.length - d.length) === d; }
function dnsResolve(h) { return /^[0-9.]+$/.test(h) ? h : (names[h] || null); }
function ip4(s) { return s.split(".").reduce((a, o) => (a * 256) + Number(o), 0); }
function isInNet(ip, net, mask) { const m = ip4(mask); return ((ip4(ip) & m) >>> 0) === ((ip4(net) & m) >>> 0); }
eval(fs.readFileSync(pacFile, "utf8"));
for (const h of hosts) console.log(h + " -> " + FindProxyForURL("https://" + h + "/", h));
"#;

#[tokio::test(flavor = "multi_thread")]
async fn browsers_get_a_pac_file_that_sends_internal_names_direct() {
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = Gatehouse::start(
        "",
        &format!(
            "[admin]\naddress = \"{admin}\"\n[pac]\nproxy = \"proxy.corp.example:3128\"\n\
             direct_domains = [\"corp.example\"]\ndirect_networks = [\"192.168.0.0/16\"]\n\
             direct_plain_hosts = true\n"
        ),
    );
    gh.wait_stderr("admin endpoints", 1);
    let (status, js) = get(admin, "/proxy.pac").await;
    assert_eq!(status, 200, "{js}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.pac");
    std::fs::write(&file, &js).unwrap();
    let out = std::process::Command::new("node")
        .args(["-e", NODE_PAC])
        .arg(&file)
        .args([
            "wiki.corp.example",
            "corp.example",
            "printer",
            "lab.internal",
            "www.example.test",
            "notcorp.example",
            "192.168.1.20",
            "8.8.8.8",
        ])
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proxy = "PROXY proxy.corp.example:3128";
    let want = format!(
        "wiki.corp.example -> DIRECT\ncorp.example -> DIRECT\nprinter -> DIRECT\nlab.internal -> DIRECT\n\
         www.example.test -> {proxy}\nnotcorp.example -> {proxy}\n192.168.1.20 -> DIRECT\n8.8.8.8 -> {proxy}\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

/// Directory operations are timed by realm, operation and outcome: a right
/// and a wrong password against a real slapd move exactly their series.
#[tokio::test(flavor = "multi_thread")]
async fn directory_operations_are_timed_by_outcome() {
    let lab = common::lab::Slapd::start();
    let origin = Origin::start().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = Gatehouse::start(
        "",
        &format!(
            "[auth]\nrequired = true\nrealms = [\"{}\"]\n[admin]\naddress = \"{admin}\"\n",
            lab.realm_file("memberof", "").display()
        ),
    );
    gh.wait_stderr("admin endpoints", 1);
    let (_, before) = get(admin, "/metrics").await;
    for (creds, want) in [("alice:alice-pw", 200), ("bob:not-bobs", 407)] {
        let r = raw_exchange(
            gh.addr(),
            format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
                origin.url("/"),
                basic(creds)
            )
            .as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(status_of(&r), want, "{r}");
    }
    gh.log_lines(2);
    let (_, after) = get(admin, "/metrics").await;
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    let count = |op: &str, outcome: &str| {
        delta(&format!(
            r#"gatehouse_directory_operation_seconds_count{{realm="lab",op="{op}",outcome="{outcome}"}}"#
        ))
    };
    assert_eq!(count("bind", "ok"), 1.0, "{after}");
    assert_eq!(count("bind", "wrong_password"), 1.0, "{after}");
    assert!(count("search", "ok") >= 2.0, "the users found: {after}");
    assert_eq!(count("search", "unavailable"), 0.0);
    // Two users looked up once each; alice authenticated by Basic.
    assert_eq!(
        delta(r#"gatehouse_directory_cache_total{realm="lab",result="load"}"#),
        2.0,
        "{after}"
    );
    assert_eq!(
        delta(r#"gatehouse_authentications_total{scheme="basic",cached="no"}"#),
        1.0
    );
}

/// `admin.max_connections` and `admin.max_connections_per_address`: a
/// client holding connections open is refused past its share, and past the
/// listener's total every client is; a connection given back is free again.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_listener_caps_connections_in_all_and_per_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = Gatehouse::start(
        "",
        &format!("[admin]\naddress = \"{admin}\"\nmax_connections = 3\nmax_connections_per_address = 2\n"),
    );
    gh.wait_stderr("admin endpoints", 1);
    // A kept-alive connection from `from`, proven open by an answer, or the
    // status of the refusal.
    let open = |from: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut s = socket.connect(admin).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap_or(0);
        (status_of(&String::from_utf8_lossy(&buf[..n])), s)
    };
    let (a1, a1s) = open("127.0.0.2").await;
    let (a2, _a2s) = open("127.0.0.2").await;
    assert_eq!((a1, a2), (200, 200));
    let (a3, _) = open("127.0.0.2").await;
    assert_eq!(a3, 503, "a third from one address");
    let (b1, _b1s) = open("127.0.0.3").await;
    assert_eq!(b1, 200);
    let (c1, _) = open("127.0.0.4").await;
    assert_eq!(c1, 503, "a fourth in all");
    drop(a1s);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (c, _s) = open("127.0.0.4").await;
        if c == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::task::yield_now().await;
    }
}
