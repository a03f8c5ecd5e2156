//! IP surrogates (`[auth.surrogate] kind = "ip"`): after a user proves
//! themselves from an address, requests from it without credentials are
//! that user (`x-auth-scheme` `surrogate-ip`) — plain HTTP and CONNECT —
//! until `ttl` after the last proven request; never before a sign-in,
//! never from another address, an excluded one or a shared one; another
//! user signing in there replaces them; a revocation ends it; credentials
//! presented are checked whatever the surrogate. Clients bind distinct
//! loopback addresses (127.0.0.x): each stands for another machine.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    s.connect(to).await.unwrap()
}

/// One GET from `from`, with Basic `creds` or none; the status.
async fn get(gh: &Gatehouse, from: &str, url: &str, creds: Option<&str>) -> u16 {
    let auth = creds.map_or(String::new(), |c| {
        format!("Proxy-Authorization: {}\r\n", basic(c))
    });
    let mut s = connect_from(from, gh.addr()).await;
    let raw = format!("GET {url} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(FIRST_BYTE, s.read_to_string(&mut out)).await;
    status_of(&out)
}

/// A CONNECT from `from` without credentials: its status, and on 200 the
/// tunnel (checked to carry bytes both ways).
async fn connect_without_credentials(gh: &Gatehouse, from: &str, dest: SocketAddr) -> u16 {
    let mut s = connect_from(from, gh.addr()).await;
    let raw = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n");
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(FIRST_BYTE, s.read(&mut byte))
            .await
            .expect("an answer")
            .unwrap();
        assert_eq!(n, 1, "closed before the answer's head ended");
        head.push(byte[0]);
    }
    let status = status_of(&String::from_utf8_lossy(&head));
    if status == 200 {
        s.write_all(b"through the tunnel").await.unwrap();
        let mut back = [0u8; 18];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"through the tunnel");
    }
    status
}

/// The access log's lines for requests from `from`, in order.
fn lines_from(
    gh: &Gatehouse,
    from: &str,
    n: usize,
) -> Vec<std::collections::HashMap<String, String>> {
    gh.log_lines(n)
        .into_iter()
        .filter(|l| l["c-ip"] == from)
        .collect()
}

fn config(dir: &std::path::Path, surrogate: &str, admin: SocketAddr, echo: SocketAddr) -> String {
    format!(
        "{}[auth.surrogate]\n{surrogate}\n[tunnel]\nallowed_ports = [{}]\n[admin]\naddress = \"{admin}\"\n",
        local_realm(dir),
        echo.port(),
    )
}

const SHARED: &str = "[[listener.shared_addresses]]\ncidrs = [\"127.0.0.8/32\"]\n";

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_in_lends_its_address_a_surrogate_for_http_and_connect() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let surrogate = "kind = \"ip\"\nttl = \"15m\"\nexclude = [\"127.0.0.9/32\"]";
    let gh = Gatehouse::start(SHARED, &config(dir.path(), surrogate, admin, echo));
    gh.wait_stderr("admin endpoints", 1);
    let url = origin.url("/");
    let (a, b) = ("127.0.0.2", "127.0.0.3");

    // Not before a sign-in.
    assert_eq!(get(&gh, a, &url, None).await, 407);
    assert_eq!(connect_without_credentials(&gh, a, echo).await, 407);
    // alice signs in from a: a's requests without credentials are alice's.
    assert_eq!(get(&gh, a, &url, Some("alice:alice-pw")).await, 200);
    assert_eq!(get(&gh, a, &url, None).await, 200);
    // Java's case: a CONNECT that never answers a 407.
    assert_eq!(connect_without_credentials(&gh, a, echo).await, 200);
    // Not from another address.
    assert_eq!(get(&gh, b, &url, None).await, 407);
    // Credentials presented are checked: wrong ones are refused.
    assert_eq!(get(&gh, a, &url, Some("alice:wrong")).await, 407);
    assert_eq!(get(&gh, a, &url, Some("mallory:x")).await, 407);

    // A tunnel is logged when it ends: CONNECTs and GETs apart.
    let a_lines = lines_from(&gh, a, 8);
    let of = |method: &str| -> Vec<(String, String, String)> {
        a_lines
            .iter()
            .filter(|l| l["cs-method"] == method)
            .map(|l| {
                (
                    l["sc-status"].clone(),
                    l["cs-username"].clone(),
                    l["x-auth-scheme"].clone(),
                )
            })
            .collect()
    };
    let t = |s: &str, u: &str, x: &str| (s.to_string(), u.to_string(), x.to_string());
    assert_eq!(
        of("GET"),
        [
            t("407", "-", "-"),
            t("200", "alice", "basic"),
            t("200", "alice", "surrogate-ip"),
            t("407", "alice", "-"),
            t("407", "mallory", "-"),
        ]
    );
    let mut connects = of("CONNECT");
    connects.sort();
    assert_eq!(
        connects,
        [t("200", "alice", "surrogate-ip"), t("407", "-", "-")]
    );
    let gets: Vec<_> = a_lines.iter().filter(|l| l["cs-method"] == "GET").collect();
    assert!(
        gets[2]["cs-auth-group"].contains("staff"),
        "the surrogate carries alice's groups: {:?}",
        gets[2]
    );

    // bob signs in from a: the address is his now, and that is logged.
    assert_eq!(get(&gh, a, &url, Some("bob:bob-pw")).await, 200);
    gh.wait_stderr("IP surrogate replaced by another user", 1);
    assert_eq!(get(&gh, a, &url, None).await, 200);
    let last = lines_from(&gh, a, 10).pop().unwrap();
    assert_eq!(
        (last["cs-username"].as_str(), last["x-auth-scheme"].as_str()),
        ("bob", "surrogate-ip")
    );

    // Revoking bob ends the surrogate at once.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["revoke", "--user", "bob", "--config"])
        .arg(&gh.config_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(get(&gh, a, &url, None).await, 407);
    // ... until bob proves himself again.
    assert_eq!(get(&gh, a, &url, Some("bob:bob-pw")).await, 200);
    assert_eq!(get(&gh, a, &url, None).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn excluded_and_shared_addresses_never_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let surrogate = "kind = \"ip\"\nexclude = [\"127.0.0.9/32\"]";
    let gh = Gatehouse::start(SHARED, &config(dir.path(), surrogate, admin, echo));
    let url = origin.url("/");
    for from in ["127.0.0.9", "127.0.0.8"] {
        assert_eq!(get(&gh, from, &url, Some("alice:alice-pw")).await, 200);
        assert_eq!(get(&gh, from, &url, None).await, 407, "{from}");
        assert_eq!(connect_without_credentials(&gh, from, echo).await, 407);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &local_realm(dir.path()));
    let url = origin.url("/");
    assert_eq!(
        get(&gh, "127.0.0.4", &url, Some("alice:alice-pw")).await,
        200
    );
    assert_eq!(get(&gh, "127.0.0.4", &url, None).await, 407);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_surrogate_ends_ttl_after_the_last_sign_in_however_much_it_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = Gatehouse::start(
        "",
        &config(dir.path(), "kind = \"ip\"\nttl = \"2s\"", admin, echo),
    );
    let url = origin.url("/");
    let from = "127.0.0.5";
    let signed_in = Instant::now();
    assert_eq!(get(&gh, from, &url, Some("alice:alice-pw")).await, 200);
    // Used without pause, it still ends: only a sign-in extends it.
    let mut used = 0;
    let ended = loop {
        match get(&gh, from, &url, None).await {
            200 => used += 1,
            407 => break signed_in.elapsed(),
            other => panic!("answered {other}"),
        }
        assert!(
            signed_in.elapsed() < Duration::from_secs(30),
            "the surrogate outlived its ttl"
        );
        // A poll's pace, not a wait for readiness: the loop ends on the 407.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(used > 0, "the surrogate worked before it ended");
    assert!(ended >= Duration::from_secs(2), "ended after {ended:?}");
}

/// One GET through a trusted balancer (127.0.0.1) whose PROXY header
/// names `client`; the status.
async fn get_via_balancer(gh: &Gatehouse, client: &str, url: &str, creds: Option<&str>) -> u16 {
    let auth = creds.map_or(String::new(), |c| {
        format!("Proxy-Authorization: {}\r\n", basic(c))
    });
    let mut s = connect_from("127.0.0.1", gh.addr()).await;
    let raw = format!(
        "PROXY TCP4 {client} 127.0.0.1 40001 3128\r\n\
         GET {url} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = tokio::time::timeout(FIRST_BYTE, s.read_to_string(&mut out)).await;
    status_of(&out)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_surrogate_is_the_client_the_proxy_protocol_names_not_the_balancer() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = Gatehouse::start(
        "proxy_protocol_from = [\"127.0.0.1/32\"]\n",
        &config(
            dir.path(),
            "kind = \"ip\"\nexclude = [\"198.51.100.0/24\"]",
            admin,
            echo,
        ),
    );
    let url = origin.url("/");
    assert_eq!(
        get_via_balancer(&gh, "192.0.2.7", &url, Some("alice:alice-pw")).await,
        200
    );
    assert_eq!(get_via_balancer(&gh, "192.0.2.7", &url, None).await, 200);
    assert_eq!(get_via_balancer(&gh, "192.0.2.8", &url, None).await, 407);
    // An excluded client behind the balancer.
    assert_eq!(
        get_via_balancer(&gh, "198.51.100.3", &url, Some("bob:bob-pw")).await,
        200
    );
    assert_eq!(get_via_balancer(&gh, "198.51.100.3", &url, None).await, 407);
    let lines = gh.log_lines(5);
    assert_eq!(lines[1]["c-ip"], "192.0.2.7");
    assert_eq!(lines[1]["x-auth-scheme"], "surrogate-ip");
}

/// Surrogates kept to what they need: the policy matches the scheme.
const KEEP_SURROGATES_SMALL: &str = r#"
[[layers]]
name = "surrogates"
[[layers.rules]]
name = "surrogates-read-only"
auth_scheme = ["surrogate-ip"]
method = ["POST", "CONNECT"]
action = "deny"
reason = "surrogate_restricted"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn policy_keeps_surrogates_to_what_they_need() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, KEEP_SURROGATES_SMALL).unwrap();
    let cfg = format!(
        "{}[policy]\nfile = \"{}\"\n",
        config(dir.path(), "kind = \"ip\"", admin, echo),
        policy.display()
    );
    let gh = Gatehouse::start("", &cfg);
    let url = origin.url("/");
    let from = "127.0.0.6";
    assert_eq!(get(&gh, from, &url, Some("alice:alice-pw")).await, 200);
    assert_eq!(get(&gh, from, &url, None).await, 200);
    assert_eq!(connect_without_credentials(&gh, from, echo).await, 403);
    let lines = gh.log_lines(3);
    assert_eq!(lines[2]["x-rule"], "surrogates-read-only");
    assert_eq!(lines[2]["x-exception-id"], "surrogate_restricted");
    assert_eq!(lines[2]["cs-username"], "alice");
    // With her credentials, alice may.
    let mut s = connect_from(from, gh.addr()).await;
    let raw = format!(
        "CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\nProxy-Authorization: {}\r\n\r\n",
        basic("alice:alice-pw")
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
}

/// A directory watch that reports the user changed ends their surrogate:
/// the groups it carried may be gone. Against OpenLDAP (syncrepl).
#[tokio::test(flavor = "multi_thread")]
async fn a_directory_change_to_the_user_ends_their_surrogate() {
    let lab = common::lab::Slapd::start();
    let realm = lab.realm_file("memberof", "watch = \"syncrepl\"\ncache_ttl = \"10m\"\n");
    let origin = Origin::start().await;
    let cfg = format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\n[auth.surrogate]\nkind = \"ip\"\n",
        realm.display()
    );
    let gh = Gatehouse::start("", &cfg);
    gh.wait_stderr("directory watch (syncrepl) following", 1);
    let url = origin.url("/");
    let from = "127.0.0.7";
    assert_eq!(get(&gh, from, &url, Some("alice:alice-pw")).await, 200);
    assert_eq!(get(&gh, from, &url, None).await, 200);
    let before = gh.log_lines(2).pop().unwrap();
    assert_eq!(before["x-auth-scheme"], "surrogate-ip");
    assert!(before["cs-auth-group"].contains("telephony"), "{before:?}");

    // groupOfNames needs a member: carol takes alice's place.
    lab.modify(
        "dn: cn=telephony,ou=groups,dc=example,dc=test\nchangetype: modify\n\
         add: member\nmember: uid=carol,ou=people,dc=example,dc=test\n-\n\
         delete: member\nmember: uid=alice,ou=people,dc=example,dc=test\n",
    );
    gh.wait_stderr(
        "directory change: cached identities and credentials dropped",
        1,
    );
    assert_eq!(get(&gh, from, &url, None).await, 407);
    // Signed in again, the surrogate carries her groups as they are now.
    assert_eq!(get(&gh, from, &url, Some("alice:alice-pw")).await, 200);
    assert_eq!(get(&gh, from, &url, None).await, 200);
    let after = gh.log_lines(5).pop().unwrap();
    assert_eq!(after["x-auth-scheme"], "surrogate-ip");
    assert!(!after["cs-auth-group"].contains("telephony"), "{after:?}");
}
