//! SIGHUP reloads the policy whole: a broken one changes nothing, a good one
//! changes new decisions, and an open tunnel survives either.

mod common;

use common::tls_lab::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn policy(bob_tunnels: bool, echo_port: u16) -> String {
    let mut p = format!(
        "[[layers]]\nname = \"tunnels\"\n[[layers.rules]]\nname = \"alice-echo\"\nuser = [\"alice\"]\nport = [{echo_port}]\naction = \"tunnel\"\n"
    );
    if bob_tunnels {
        p.push_str("[[layers.rules]]\nname = \"bob-tunnel\"\nuser = [\"bob\"]\nmethod = [\"CONNECT\"]\naction = \"tunnel\"\n");
    }
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_old_policy_on_error_and_open_tunnels_on_success() {
    let dir = tempfile::tempdir().unwrap();
    let (node, _) = supernode().await;
    let echo = echo_server().await;
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy(true, echo.port())).unwrap();
    let cfg = format!(
        "{}[tunnel]\nallowed_ports = [{}, {}]\n[detection]\nenabled = true\n[policy]\nfile = \"{}\"\n",
        local_realm(dir.path()),
        node.port(),
        echo.port(),
        policy_path.display()
    );
    let gh = Gatehouse::start("", &cfg);
    // alice's raw tunnel to the echo server stays open throughout.
    let mut open = connect_through(
        gh.addr(),
        &echo.to_string(),
        &format!("Proxy-Authorization: {}\r\n", basic("alice:alice-pw")),
    )
    .await
    .unwrap();
    let roundtrip = async |s: &mut tokio::net::TcpStream, m: &[u8]| {
        s.write_all(m).await.unwrap();
        let mut back = vec![0u8; m.len()];
        s.read_exact(&mut back).await.unwrap();
        assert_eq!(back, m);
    };
    roundtrip(&mut open, b"one").await;
    let bob = basic("bob:bob-pw");
    assert!(
        !skype(gh.addr(), node, &bob).await.reply.is_empty(),
        "v1: bob tunnels"
    );

    std::fs::write(&policy_path, "[[layers]]\nname = \"broken\"\n[[layers.rules]]\nname = \"x\"\nhost = [\"re:(\"]\naction = \"allow\"\n").unwrap();
    gh.signal("HUP");
    gh.wait_stderr("policy reload refused", 1);
    assert!(
        gh.stderr().contains("rule \\\"x\\\"") || gh.stderr().contains("rule \"x\""),
        "the reason names the rule"
    );
    assert!(
        !skype(gh.addr(), node, &bob).await.reply.is_empty(),
        "broken v2 changed nothing"
    );
    roundtrip(&mut open, b"two").await;

    std::fs::write(&policy_path, policy(false, echo.port())).unwrap();
    gh.signal("HUP");
    gh.wait_stderr("policy reloaded", 1);
    assert!(
        skype(gh.addr(), node, &bob).await.reply.is_empty(),
        "v3: bob is detected and stopped"
    );
    roundtrip(&mut open, b"three").await;
    drop(open);
    let lines = gh.log_lines(4);
    let actions: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["cs-username"].as_str(), l["s-action"].as_str()))
        .collect();
    assert!(actions.contains(&("bob", "TCP_DENIED")), "{actions:?}");
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == ("bob", "TCP_TUNNELED"))
            .count(),
        2,
        "{actions:?}"
    );
    let alice = lines.iter().find(|l| l["cs-username"] == "alice").unwrap();
    assert_eq!(alice["s-action"], "TCP_TUNNELED");
    assert_eq!(
        alice["cs-bytes"], "11",
        "one tunnel carried all three exchanges"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rereads_the_detection_ca_and_refuses_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let (old_ca, new_ca) = (TestCa::new(&d1), TestCa::new(&d2));
    let origin = tls_origin(new_ca.leaf(&["origin.example.test"])).await;
    let gh = Gatehouse::start(
        "",
        &format!(
            "[tunnel]\nallowed_ports = [{}]\n[detection]\nenabled = true\nca_file = \"{}\"\n",
            origin.port(),
            old_ca.pem_path.display()
        ),
    );
    let ua = "User-Agent: Mozilla/5.0\r\n";
    let t = connect_through(gh.addr(), &origin.to_string(), ua)
        .await
        .unwrap();
    assert!(
        tls_through(t, "origin.example.test", &new_ca.cert)
            .await
            .is_err(),
        "the origin's CA is not trusted yet"
    );
    let cfg = std::fs::read_to_string(&gh.config_path).unwrap();
    let cfg = cfg.replace(
        &old_ca.pem_path.display().to_string(),
        &new_ca.pem_path.display().to_string(),
    );
    std::fs::write(&gh.config_path, &cfg).unwrap();
    gh.signal("HUP");
    gh.wait_stderr("policy reloaded", 1);
    let t = connect_through(gh.addr(), &origin.to_string(), ua)
        .await
        .unwrap();
    assert_eq!(
        tls_through(t, "origin.example.test", &new_ca.cert)
            .await
            .unwrap(),
        "hello over tls\n",
        "the new CA file is read on SIGHUP"
    );
    // A setting read only at start-up: the reload is refused, naming it.
    std::fs::write(
        &gh.config_path,
        cfg.replace("addresses = [\"127.0.0.1:", "addresses = [\"127.0.0.2:"),
    )
    .unwrap();
    gh.signal("HUP");
    gh.wait_stderr("need a restart", 1);
    assert!(
        gh.stderr().contains("need a restart: listener.addresses"),
        "{}",
        gh.stderr()
    );
}

/// One request on a new connection: the status of its answer's head (the
/// connection, a tunnel's too, closed right after).
async fn status(gh: &Gatehouse, request: String) -> u16 {
    let mut s = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(FIRST_BYTE, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    status_of(&String::from_utf8_lossy(&head))
}

/// `status`, asked again while the answer is the per-address limit's 503:
/// the previous exchange's connection may not have been let go of yet (the
/// client sees the close a moment before the proxy gives its place back;
/// on a busy machine, more than a moment).
async fn settled(gh: &Gatehouse, request: String) -> u16 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match status(gh, request.clone()).await {
            503 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            other => return other,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_tunnel_resolver_limits_and_the_log_and_sigusr1_reopens_it() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let other = echo_server().await;
    let gh = Gatehouse::start(
        "max_connections_per_address = 10\n",
        &format!(
            "[tunnel]\nallowed_ports = [{}]\n[resolver]\nsystem = false\n\
             hosts = {{ \"one.example.test\" = [\"127.0.0.1\"] }}\n",
            echo.port()
        ),
    );
    let connect = |port: u16| format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n");
    let get = |name: &str| {
        format!(
            "GET http://{name}:{}/ HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n",
            origin.addr.port()
        )
    };
    assert_eq!(status(&gh, connect(other.port())).await, 403);
    assert_eq!(status(&gh, get("one.example.test")).await, 200);
    assert_ne!(status(&gh, get("two.example.test")).await, 200);

    // New ports, a new lab name, a lower per-address limit, JSON to a new file.
    let log2 = dir.path().join("access2.log");
    let cfg = std::fs::read_to_string(&gh.config_path).unwrap();
    let new = cfg
        .replace(
            &format!("allowed_ports = [{}]", echo.port()),
            &format!("allowed_ports = [{}]", other.port()),
        )
        .replace("\"one.example.test\"", "\"two.example.test\"")
        .replace(
            "max_connections_per_address = 10",
            "max_connections_per_address = 1",
        )
        .replace(
            &gh.log_path.display().to_string(),
            &log2.display().to_string(),
        )
        .replace("format = \"elff\"", "format = \"json\"");
    std::fs::write(&gh.config_path, new).unwrap();
    gh.signal("HUP");
    gh.wait_stderr("configuration reloaded", 1);
    assert_eq!(settled(&gh, connect(other.port())).await, 200);
    assert_eq!(settled(&gh, get("two.example.test")).await, 200);
    let refused = settled(&gh, get("one.example.test")).await;
    assert!(refused != 200 && refused != 503, "{refused}");
    // One connection per address now: a second one at once gets 503.
    let held = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
    assert_eq!(status(&gh, get("two.example.test")).await, 503);
    drop(held);

    // The old file kept what came before; the new one is JSON.
    let old = std::fs::read_to_string(&gh.log_path).unwrap();
    assert!(
        old.contains("one.example.test") && !old.contains('{'),
        "{old}"
    );
    let wait_for = |path: &std::path::Path, needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not in {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let json = wait_for(&log2, "two.example.test");
    assert!(json.lines().all(|l| l.starts_with('{')), "{json}");

    // logrotate: the file moved away, SIGUSR1, the next line in a new file.
    let rotated = dir.path().join("access2.log.1");
    std::fs::rename(&log2, &rotated).unwrap();
    gh.signal("USR1");
    gh.wait_stderr("access log reopened", 1);
    let after = format!(
        "GET http://two.example.test:{}/after-rotate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.addr.port()
    );
    assert_eq!(settled(&gh, after).await, 200);
    wait_for(&log2, "/after-rotate");
    let rotated = std::fs::read_to_string(&rotated).unwrap();
    assert!(rotated.contains("two.example.test") && !rotated.contains("/after-rotate"));
}
