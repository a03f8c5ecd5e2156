//! The seed's story, on real sockets: Skype sends CONNECT without a
//! User-Agent and a fake TLS that no certificate backs. Detection stops it;
//! the allowed group's Skype tunnels; browsers' real TLS is still checked.

mod common;

use std::time::Duration;

use common::tls_lab::*;
use common::*;

/// A proxy with the local realm (alice: telephony → Skype Users; bob: none),
/// detection on and trusting `ca`, plus `extra` config.
fn proxy(dir: &std::path::Path, ca: &TestCa, ports: &[u16], extra: &str) -> Gatehouse {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let cfg = format!(
        "{}[tunnel]\nallowed_ports = [{}]\n[detection]\nenabled = true\ntimeout = \"2s\"\nca_file = \"{}\"\n{extra}",
        local_realm(dir),
        ports.join(", "),
        ca.pem_path.display()
    );
    Gatehouse::start("", &cfg)
}

fn line_for<'a>(
    lines: &'a [std::collections::HashMap<String, String>],
    user: &str,
    port: u16,
) -> &'a std::collections::HashMap<String, String> {
    lines
        .iter()
        .find(|l| {
            l["cs-username"] == user
                && l["cs-uri-port"] == port.to_string()
                && l["sc-status"] == "200"
        })
        .unwrap_or_else(|| panic!("no line for {user} :{port} in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn detection_off_lets_everyone_tunnel() {
    // The seed's Table 1-2: every line TCP_TUNNELED.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (node, seen) = supernode().await;
    let cfg = format!(
        "{}[tunnel]\nallowed_ports = [{}]\n[detection]\nenabled = false\n",
        local_realm(dir.path()),
        node.port()
    );
    let gh = Gatehouse::start("", &cfg);
    let r = skype(gh.addr(), node, &basic("bob:bob-pw")).await;
    assert!(
        r.reply.starts_with(&[0x16, 0x03, 0x03]),
        "bob's Skype got the supernode's hello"
    );
    assert!(
        seen.any_contains(PAYLOAD_MARKER),
        "and its payload went out"
    );
    drop(ca);
    let lines = gh.log_lines(1);
    assert_eq!(lines[0]["s-action"], "TCP_TUNNELED");
    assert_eq!(lines[0]["x-protocol"], "-", "nothing was inspected");
}

#[tokio::test(flavor = "multi_thread")]
async fn detection_on_stops_skype_without_leaking_a_byte() {
    // The seed's Table 1-3: the fake TLS is caught, no certificate.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (node, seen) = supernode().await;
    let gh = proxy(dir.path(), &ca, &[node.port()], "");
    for user in ["alice:alice-pw", "bob:bob-pw"] {
        let r = skype(gh.addr(), node, &basic(user)).await;
        assert!(
            r.reply.is_empty(),
            "the client saw nothing of the supernode: {:?}",
            r.reply
        );
    }
    assert!(
        !seen.any_contains(PAYLOAD_MARKER),
        "the payload never left the proxy"
    );
    // The supernode saw the two tunnels' own connections (each got its
    // client's ClientHello, nothing after it) and no probe: TLS ≤ 1.2 is
    // verified on the tunnel's connection.
    assert_eq!(seen.connections(), 2, "the two tunnels, no probe");
    let lines = gh.log_lines(2);
    for l in &lines {
        assert_eq!(l["s-action"], "TCP_DENIED");
        assert_eq!(l["x-exception-id"], "ssl_server_cert_missing");
        assert_eq!(l["x-protocol"], "tls");
        assert_eq!(l["cs(User-Agent)"], "-");
        assert_eq!(l["x-ja3n"].len(), 32);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_group_tunnels_others_are_stopped_browsers_still_checked() {
    // The seed's Table 1-4.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (node, seen) = supernode().await;
    let origin = tls_origin(ca.leaf(&["origin.example.test", "127.0.0.1"])).await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[node.port(), origin.port()],
        "[policy]\nallowed_groups = [\"Skype Users\"]\n",
    );
    // alice is in Skype Users (nested, through telephony): her Skype tunnels.
    let r = skype(gh.addr(), node, &basic("alice:alice-pw")).await;
    assert!(r.reply.starts_with(&[0x16, 0x03, 0x03]));
    assert!(seen.any_contains(PAYLOAD_MARKER));
    // bob is not: stopped.
    let before = seen
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.windows(PAYLOAD_MARKER.len()).any(|w| w == PAYLOAD_MARKER))
        .count();
    let r = skype(gh.addr(), node, &basic("bob:bob-pw")).await;
    assert!(r.reply.is_empty());
    let after = seen
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.windows(PAYLOAD_MARKER.len()).any(|w| w == PAYLOAD_MARKER))
        .count();
    assert_eq!(before, after, "bob's payload never reached the supernode");
    // alice's browser (with a User-Agent) to a real TLS site is detected, checked, and passes.
    let t = connect_through(
        gh.addr(),
        &origin.to_string(),
        &format!(
            "User-Agent: Mozilla/5.0\r\nProxy-Authorization: {}\r\n",
            basic("alice:alice-pw")
        ),
    )
    .await
    .unwrap();
    let greeting = tls_through(t, "origin.example.test", &ca.cert)
        .await
        .unwrap();
    assert_eq!(greeting, "hello over tls\n");
    // (The browser's tunnel closed with tls_through; it is logged on close.)
    let lines = gh.log_lines(3);
    let alice_skype = line_for(&lines, "alice", node.port());
    assert_eq!(alice_skype["s-action"], "TCP_TUNNELED");
    assert_eq!(alice_skype["x-rule"], "allowed-groups-tunnel");
    let bob = lines.iter().find(|l| l["cs-username"] == "bob").unwrap();
    assert_eq!(bob["x-exception-id"], "ssl_server_cert_missing");
    let browser = lines
        .iter()
        .find(|l| l["cs-uri-port"] == origin.port().to_string())
        .unwrap();
    assert_eq!(browser["s-action"], "TCP_ACCELERATED");
    assert_eq!(browser["x-sni"], "origin.example.test");
    assert_eq!(browser["cs-username"], "alice");
    assert!(browser["cs-auth-group"].contains("Skype Users"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_certificates_and_other_protocols_are_refused_with_the_right_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let good = tls_origin(ca.leaf(&["origin.example.test"])).await;
    let selfsigned = tls_origin(self_signed(&["selfsigned.example.test"])).await;
    let (ssh, _) = ssh_server().await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[good.port(), selfsigned.port(), ssh.port()],
        "",
    );
    let auth = format!(
        "User-Agent: Mozilla/5.0\r\nProxy-Authorization: {}\r\n",
        basic("bob:bob-pw")
    );
    let refused = |r: Result<String, String>| assert!(r.is_err(), "{r:?}");
    // Self-signed.
    let t = connect_through(gh.addr(), &selfsigned.to_string(), &auth)
        .await
        .unwrap();
    refused(tls_through(t, "selfsigned.example.test", &ca.cert).await);
    // Each refusal's line is written as its transaction ends, which can be
    // after the client sees the close: wait for it before the next step, so
    // the order below is the order of the steps even on a loaded machine.
    gh.log_lines(1);
    // A name the certificate does not cover.
    let t = connect_through(gh.addr(), &good.to_string(), &auth)
        .await
        .unwrap();
    refused(tls_through(t, "other.example.test", &ca.cert).await);
    gh.log_lines(2);
    // SSH from the client.
    let mut t = connect_through(gh.addr(), &ssh.to_string(), &auth)
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    t.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await.unwrap();
    let mut b = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), t.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "refused without a byte of the server's banner");
    gh.log_lines(3);
    // TLS from the client, to a server that is not TLS.
    let t = connect_through(gh.addr(), &ssh.to_string(), &auth)
        .await
        .unwrap();
    refused(tls_through(t, "ssh.example.test", &ca.cert).await);
    let lines = gh.log_lines(4);
    let reasons: Vec<&str> = lines.iter().map(|l| l["x-exception-id"].as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "ssl_server_cert_invalid",
            "ssl_domain_mismatch",
            "protocol_not_allowed",
            "protocol_not_tls"
        ]
    );
    assert_eq!(lines[2]["x-protocol"], "ssh");
    assert_eq!(lines[1]["x-sni"], "other.example.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_clients_are_refused_after_the_detection_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (ssh, seen) = ssh_server().await;
    let gh = proxy(dir.path(), &ca, &[ssh.port()], "");
    let auth = format!("Proxy-Authorization: {}\r\n", basic("bob:bob-pw"));
    let mut t = connect_through(gh.addr(), &ssh.to_string(), &auth)
        .await
        .unwrap();
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 64];
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), t.read(&mut b))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "the server-speaks-first banner was not relayed");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "waited for the 2 s detection timeout"
    );
    assert_eq!(gh.log_lines(1)[0]["x-exception-id"], "detection_timeout");
    assert!(seen.connections() <= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_agrees_with_what_the_proxy_did() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (node, _) = supernode().await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[node.port()],
        "[policy]\nallowed_groups = [\"Skype Users\"]\n",
    );
    let explain = |user: &str, ua: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"));
        cmd.args(["explain", "--config"]).arg(&gh.config_path);
        cmd.args([
            "--user",
            user,
            "--method",
            "CONNECT",
            "--url",
            &node.to_string(),
        ]);
        if let Some(ua) = ua {
            cmd.args(["--header", &format!("User-Agent: {ua}")]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let alice = explain("alice", None);
    assert!(
        alice.contains("CONNECT: tunnel (rule allowed-groups-tunnel)"),
        "{alice}"
    );
    assert!(alice.contains("Skype Users (nested)"), "{alice}");
    let bob = explain("bob", None);
    assert!(bob.contains("CONNECT: detect"), "{bob}");
    assert!(explain("alice", Some("Mozilla/5.0")).contains("CONNECT: detect"));
    // What the proxy did with the same requests.
    skype(gh.addr(), node, &basic("alice:alice-pw")).await;
    skype(gh.addr(), node, &basic("bob:bob-pw")).await;
    let lines = gh.log_lines(2);
    let action =
        |u: &str| lines.iter().find(|l| l["cs-username"] == u).unwrap()["s-action"].clone();
    assert_eq!(action("alice"), "TCP_TUNNELED");
    assert_eq!(action("bob"), "TCP_DENIED");
}
