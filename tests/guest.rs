//! Guest access (`action = "guest"` in an authentication layer): a request
//! without credentials that such a rule matches goes through as the guest
//! (`auth.guest_user`, `x-auth-scheme` `guest`), and later layers can keep
//! guests to what they need (`auth_scheme = ["guest"]`, or the guest's
//! user name). Credentials presented are still checked: wrong ones get
//! 407, right ones are the user. Clients bind distinct loopback addresses.

mod common;

use std::net::{IpAddr, SocketAddr};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    s.connect(to).await.unwrap()
}

/// One request from `from`, with Basic `creds` or none; the status.
async fn ask(gh: &Gatehouse, from: &str, method: &str, url: &str, creds: Option<&str>) -> u16 {
    let auth = creds.map_or(String::new(), |c| {
        format!("Proxy-Authorization: {}\r\n", basic(c))
    });
    let mut s = connect_from(from, gh.addr()).await;
    let raw = format!(
        "{method} {url} HTTP/1.1\r\nHost: {url}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(FIRST_BYTE, s.read_to_end(&mut out)).await;
    status_of(&String::from_utf8_lossy(&out))
}

/// Guests from the kiosk subnet (127.0.0.64/26) may GET, nothing else.
const POLICY: &str = r#"
[[layers]]
name = "who"
kind = "authentication"
[[layers.rules]]
name = "kiosks-as-guest"
client = ["127.0.0.64/26"]
action = "guest"

[[layers]]
name = "guests"
[[layers.rules]]
name = "guests-only-get"
auth_scheme = ["guest"]
method = ["GET"]
action = "allow"
[[layers.rules]]
name = "guests-nothing-else"
auth_scheme = ["guest"]
action = "deny"
reason = "guest_restricted"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn guests_go_through_as_the_guest_and_policy_keeps_them_small() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let cfg = format!(
        "{}guest_user = \"visitor\"\n[policy]\nfile = \"{}\"\n[tunnel]\nallowed_ports = [{}]\n",
        local_realm(dir.path()),
        policy.display(),
        echo.port()
    );
    let gh = Gatehouse::start("", &cfg);
    let url = origin.url("/");
    let kiosk = "127.0.0.70";

    assert_eq!(ask(&gh, kiosk, "GET", &url, None).await, 200);
    assert_eq!(ask(&gh, kiosk, "POST", &url, None).await, 403);
    assert_eq!(
        ask(&gh, kiosk, "CONNECT", &echo.to_string(), None).await,
        403
    );
    // Credentials presented are checked: wrong ones are refused, right
    // ones make the request the user's (not restricted as a guest).
    assert_eq!(ask(&gh, kiosk, "GET", &url, Some("alice:wrong")).await, 407);
    assert_eq!(
        ask(&gh, kiosk, "POST", &url, Some("alice:alice-pw")).await,
        200
    );
    // Outside the kiosks, no guest.
    assert_eq!(ask(&gh, "127.0.0.2", "GET", &url, None).await, 407);

    let lines = gh.log_lines(6);
    let said: Vec<(&str, &str, &str, &str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["cs-method"].as_str(),
                l["sc-status"].as_str(),
                l["cs-username"].as_str(),
                l["x-auth-scheme"].as_str(),
                l["x-rule"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            ("GET", "200", "visitor", "guest", "guests-only-get"),
            ("POST", "403", "visitor", "guest", "guests-nothing-else"),
            ("CONNECT", "403", "visitor", "guest", "guests-nothing-else"),
            ("GET", "407", "alice", "-", "-"),
            ("POST", "200", "alice", "basic", "-"),
            ("GET", "407", "-", "-", "-"),
        ]
    );
    assert_eq!(lines[1]["x-exception-id"], "guest_restricted");
    // The origin saw the guest's GET and alice's POST only.
    assert_eq!(origin.requests(), 2);
}

#[test]
fn a_guest_rule_belongs_in_an_authentication_layer() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[layers]]\nname = \"a\"\n[[layers.rules]]\nname = \"g\"\naction = \"guest\"\n",
    )
    .unwrap();
    let cfg = dir.path().join("gatehouse.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[policy]\nfile = \"{}\"\n",
            local_realm(dir.path()),
            policy.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("guest belong"), "{said}");
}

/// A guest proved nothing: when a reload drops the `guest` rule that let
/// them in, their open tunnel ends, as a reload that refuses a user ends
/// the user's (before, a guest's tunnel counted as authenticated and the
/// authentication layers were never asked again).
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_drops_the_guest_rule_ends_the_guests_tunnels() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let policy = dir.path().join("policy.toml");
    let guests_from = |net: &str| {
        format!(
            "[[layers]]\nname = \"who\"\nkind = \"authentication\"\n[[layers.rules]]\n\
             name = \"kiosks-as-guest\"\nclient = [\"{net}\"]\naction = \"guest\"\n"
        )
    };
    std::fs::write(&policy, guests_from("127.0.0.64/26")).unwrap();
    let cfg = format!(
        "{}[policy]\nfile = \"{}\"\n[tunnel]\nallowed_ports = [{}]\n",
        local_realm(dir.path()),
        policy.display(),
        echo.port()
    );
    let gh = Gatehouse::start("", &cfg);

    let mut s = connect_from("127.0.0.70", gh.addr()).await;
    let connect = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n");
    s.write_all(connect.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(FIRST_BYTE, s.read(&mut byte))
            .await
            .expect("the CONNECT is answered")
            .unwrap();
        assert_eq!(n, 1, "the CONNECT is answered: {head:?}");
        head.push(byte[0]);
    }
    assert_eq!(status_of(&String::from_utf8_lossy(&head)), 200);
    s.write_all(b"guest-1").await.unwrap();
    let mut back = [0u8; 7];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"guest-1");

    // The kiosks are guests no more.
    std::fs::write(&policy, guests_from("127.0.0.200/32")).unwrap();
    gh.signal("HUP");
    gh.wait_stderr("open tunnels re-judged", 1);
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the guest's tunnel was closed: {read:?}"
    );
    let line = &gh.log_lines(1)[0];
    assert_eq!(line["cs-username"], "guest");
    assert_eq!(line["x-exception-id"], "tunnel_revoked");
}
