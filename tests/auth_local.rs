//! 407 challenges and Basic authentication against the local realm.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::ntlm::read_response;

#[tokio::test(flavor = "multi_thread")]
async fn challenge_then_credentials_on_the_same_connection() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &local_realm(dir.path()));
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let url = origin.url("/hello");
    // A POST with a body, no credentials: 407, the body drained, the connection kept.
    s.write_all(
        format!("POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
            .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(status_of(&r), 407, "{r}");
    assert!(
        r.contains("proxy-authenticate: Basic realm=\"Corp Proxy\", charset=\"UTF-8\""),
        "{r}"
    );
    assert!(!r.contains("connection: close"), "{r}");
    s.write_all(
        format!(
            "GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\n\r\n",
            basic("alice:alice-pw")
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s).await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(
        origin.requests(),
        1,
        "the refused request never reached the origin"
    );
    assert!(origin.last_seen().header("proxy-authorization").is_none());
    let lines = gh.log_lines(2);
    assert_eq!(lines[0]["sc-status"], "407");
    assert_eq!(lines[0]["x-exception-id"], "authentication_required");
    assert_eq!(lines[0]["cs-username"], "-");
    assert_eq!(lines[1]["cs-username"], "alice");
    assert_eq!(lines[1]["x-auth-scheme"], "basic");
    let groups: Vec<&str> = lines[1]["cs-auth-group"].split(',').collect();
    for g in ["staff", "telephony", "Skype Users"] {
        assert!(groups.contains(&g), "{g} in {groups:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_garbage_and_empty_credentials_are_407_and_logged_without_password() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &local_realm(dir.path()));
    let url = origin.url("/hello");
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let cases = [
        basic("alice:wrong-secret-pw"),
        basic("alice:"),
        basic(":alice-pw"),
        basic("nocolon"),
        basic("nobody:whatever-pw"),
        "Basic !!!notbase64".to_string(),
        format!("Basic {}", b64(&[0xff, 0xfe, b':', b'x'])),
        "Basic".to_string(),
        "Negotiate YIIGHAYGKwYBBQUCoIIGEDCCBgygMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHg"
            .to_string(),
        "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAO5CAAAADw==".to_string(),
        "".to_string(),
    ];
    for value in &cases {
        let raw = format!("GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {value}\r\nConnection: close\r\n\r\n");
        let text = raw_exchange(gh.addr(), raw.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(status_of(&text), 407, "{value:?}: {text}");
        assert!(text.contains("proxy-authenticate: Basic"), "{text}");
    }
    assert_eq!(origin.requests(), 0);
    let lines = gh.log_lines(cases.len());
    assert_eq!(lines[0]["s-action"], "TCP_AUTH_MISS");
    assert_eq!(
        lines[0]["cs-username"], "alice",
        "the attempted user is logged"
    );
    assert_eq!(lines[4]["cs-username"], "nobody");
    let log = std::fs::read_to_string(&gh.log_path).unwrap();
    assert!(
        !log.contains("wrong-secret-pw") && !log.contains("whatever-pw"),
        "passwords never logged"
    );
    assert!(
        !gh.stderr().contains("wrong-secret-pw"),
        "nor in diagnostics"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &local_realm(dir.path()));
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let raw = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\n\r\n",
        origin.url("/"),
        basic("alice:nope")
    );
    for attempt in 1..=3 {
        s.write_all(raw.as_bytes()).await.unwrap();
        let r = read_response(&mut s).await;
        assert_eq!(status_of(&r), 407, "{r}");
        assert_eq!(
            r.contains("connection: close"),
            attempt == 3,
            "attempt {attempt}: {r}"
        );
    }
    let mut b = [0u8; 1];
    assert_eq!(
        s.read(&mut b).await.unwrap(),
        0,
        "closed after the third failure"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_cached_and_connect_is_authenticated_too() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let gh = Gatehouse::start(
        "",
        &format!(
            "{}[tunnel]\nallowed_ports = [{}]\n",
            local_realm(dir.path()),
            echo.port()
        ),
    );
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let url = origin.url("/hello");
    for _ in 0..3 {
        s.write_all(
            format!(
                "GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\n\r\n",
                basic("bob:bob-pw")
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(status_of(&read_response(&mut s).await), 200);
    }
    // CONNECT: challenged first, on a connection that stays open, then tunnelled.
    let mut t = TcpStream::connect(gh.addr()).await.unwrap();
    t.write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut t).await;
    assert_eq!(status_of(&r), 407, "{r}");
    t.write_all(
        format!(
            "CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\nProxy-Authorization: {}\r\n\r\n",
            basic("alice:alice-pw")
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut t).await;
    assert_eq!(status_of(&r), 200, "{r}");
    t.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    t.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"ping");
    drop(t);
    let lines = gh.log_lines(5);
    let schemes: Vec<&str> = lines[..3]
        .iter()
        .map(|l| l["x-auth-scheme"].as_str())
        .collect();
    assert_eq!(schemes, vec!["basic", "basic-cached", "basic-cached"]);
    let tunnel = lines
        .iter()
        .find(|l| l["s-action"] == "TCP_TUNNELED")
        .unwrap();
    assert_eq!(tunnel["cs-username"], "alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_with_proxy_user() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let gh = Gatehouse::start(
        "",
        &format!(
            "{}[tunnel]\nallowed_ports = [{}]\n",
            local_realm(dir.path()),
            echo.port()
        ),
    );
    let proxy = format!("http://{}", gh.addr());
    let url = origin.url("/bytes/100");
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("curl")
                .args(args)
                .output()
                .unwrap()
        })
    };
    let ok = run(vec![
        "-sS".into(),
        "-x".into(),
        proxy.clone(),
        "--proxy-user".into(),
        "alice:alice-pw".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        url.clone(),
    ])
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
    let bad = run(vec![
        "-sS".into(),
        "-x".into(),
        proxy.clone(),
        "--proxy-user".into(),
        "alice:bad".into(),
        "-o".into(),
        "/dev/null".into(),
        "-w".into(),
        "%{http_code}".into(),
        url,
    ])
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "407");
    let tunnel = run(vec![
        "-sS".into(),
        "-p".into(),
        "-x".into(),
        proxy,
        "--proxy-user".into(),
        "alice:alice-pw".into(),
        "--max-time".into(),
        "3".into(),
        "--http0.9".into(),
        format!("http://{echo}/through"),
    ])
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&tunnel.stdout).starts_with("GET /through HTTP/1.1"),
        "{}",
        String::from_utf8_lossy(&tunnel.stderr)
    );
    let lines = gh.log_lines(3);
    assert!(
        lines
            .iter()
            .any(|l| l["s-action"] == "TCP_TUNNELED" && l["cs-username"] == "alice"),
        "{lines:?}"
    );
}
