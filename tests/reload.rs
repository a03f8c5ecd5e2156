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
        cfg.replace("[listener]\n", "[listener]\nmax_connections = 77\n"),
    )
    .unwrap();
    gh.signal("HUP");
    gh.wait_stderr("need a restart", 1);
    assert!(
        gh.stderr().contains("need a restart: listener"),
        "{}",
        gh.stderr()
    );
}
