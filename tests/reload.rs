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
