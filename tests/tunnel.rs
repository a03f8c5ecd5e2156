//! CONNECT tunnels through the real binary to a real echo server, and shutdown.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a tunnel to `dest` and returns the stream after the 200.
async fn open_tunnel(gh: &Gatehouse, dest: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    s.write_all(format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            s.read(&mut b).await.unwrap(),
            1,
            "closed during CONNECT: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert_eq!(status_of(&head), 200, "{head}");
    s
}

async fn echo_round(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, payload);
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_relays_both_ways_and_logs_on_close() {
    relays_both_ways_and_logs_on_close(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_relays_with_splice_too() {
    relays_both_ways_and_logs_on_close(true).await;
}

async fn relays_both_ways_and_logs_on_close(splice: bool) {
    let echo = echo_server().await;
    let gh = Gatehouse::start(
        "",
        &format!(
            "[tunnel]\nallowed_ports = [{}]\nsplice = {splice}\n",
            echo.port()
        ),
    );
    let mut s = open_tunnel(&gh, echo).await;
    echo_round(&mut s, b"hello through the tunnel").await;
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&big).await.unwrap();
        w.shutdown().await.unwrap();
        big
    });
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, writer.await.unwrap());
    let line = &gh.log_lines(1)[0];
    assert_eq!(line["s-action"], "TCP_TUNNELED");
    assert_eq!(line["cs-method"], "CONNECT");
    assert_eq!(line["cs-host"], "127.0.0.1");
    assert_eq!(line["cs-uri-port"], echo.port().to_string());
    assert_eq!(line["cs-bytes"], (24 + 1_000_000).to_string());
    assert_eq!(line["sc-bytes"], (24 + 1_000_000).to_string());
    assert_eq!(line["sc-status"], "200");
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_failures_are_answered() {
    let closed = closed_port();
    let closed = closed.port;
    let gh = Gatehouse::start(
        "",
        &format!("[tunnel]\nallowed_ports = [443, {closed}]\n[resolver]\nsystem = false\n"),
    );
    let refused = raw_exchange(
        gh.addr(),
        format!("CONNECT 127.0.0.1:{closed} HTTP/1.1\r\n\r\n").as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&refused), 502, "{refused}");
    let dns = raw_exchange(
        gh.addr(),
        b"CONNECT nowhere.example.test:443 HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&dns), 502, "{dns}");
    assert!(dns.contains("dns_unresolved_hostname"));
    let no_port = raw_exchange(
        gh.addr(),
        b"CONNECT example.test HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&no_port), 400, "{no_port}");
    let lines = gh.log_lines(3);
    assert_eq!(lines[0]["s-action"], "TCP_ERR_MISS");
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_lets_an_open_tunnel_finish() {
    let echo = echo_server().await;
    // A grace period no machine is slow enough to reach: the exit below is
    // the tunnel's end, not the grace period's.
    let gh_cfg = format!(
        "[tunnel]\nallowed_ports = [{}]\n[shutdown]\ngrace_period = \"10min\"\n",
        echo.port()
    );
    let mut gh = Gatehouse::start("", &gh_cfg);
    let mut s = open_tunnel(&gh, echo).await;
    echo_round(&mut s, b"before").await;
    gh.send_term();
    // New connections are refused once the listener is closed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(gh.addr()).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        tokio::task::yield_now().await;
    }
    // The open tunnel still works during the grace period.
    echo_round(&mut s, b"during shutdown").await;
    drop(s);
    // Exits when the tunnel is done, long before the grace period runs out.
    let status = gh.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit status {status}");
    let line = &gh.log_lines(1)[0];
    assert_eq!(line["s-action"], "TCP_TUNNELED");
    assert_eq!(line["cs-bytes"], "21");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_deadline_closes_a_lingering_tunnel_and_logs_it() {
    let echo = echo_server().await;
    let cfg = format!("[tunnel]\nallowed_ports = [{}]\n", echo.port());
    let mut gh = Gatehouse::start("", &cfg);
    let mut s = open_tunnel(&gh, echo).await;
    echo_round(&mut s, b"x").await;
    let started = std::time::Instant::now();
    gh.send_term();
    // The harness sets grace_period = 5s: the tunnel is cut then, not left hanging.
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut b))
        .await
        .expect("tunnel never closed");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "closed before the grace period"
    );
    assert!(gh.wait_exit(Duration::from_secs(10)).success());
    assert_eq!(gh.log_lines(1)[0]["s-action"], "TCP_TUNNELED");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_tunnel_counts_against_max_connections() {
    let echo = echo_server().await;
    let gh = Gatehouse::start(
        "max_connections = 1\n",
        &format!("[tunnel]\nallowed_ports = [{}]\n", echo.port()),
    );
    // Readiness opens no connection of its own: the only slot is free.
    let mut tunnel = common::tls_lab::connect_through(gh.addr(), &echo.to_string(), "")
        .await
        .expect("the tunnel opens in the only slot");
    echo_round(&mut tunnel, b"held").await;
    let text = raw_exchange(gh.addr(), b"", Duration::from_secs(5)).await;
    assert_eq!(
        status_of(&text),
        503,
        "the tunnel holds the only slot: {text}"
    );
    drop(tunnel);
}

#[tokio::test(flavor = "multi_thread")]
async fn bytes_sent_with_the_connect_are_relayed() {
    let echo = echo_server().await;
    let gh = Gatehouse::start(
        "",
        &format!("[tunnel]\nallowed_ports = [{}]\n", echo.port()),
    );
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    // Some clients send their first bytes without waiting for the 200.
    s.write_all(format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\nEARLY-BYTES").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 256];
    while !got.ends_with(b"EARLY-BYTES") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&b[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    drop(s);
    assert_eq!(gh.log_lines(1)[0]["cs-bytes"], "11");
}

/// Signals are caught before the proxy says it listens: a SIGHUP (or
/// SIGUSR1) the moment it is ready never kills it, and a SIGTERM then is
/// a graceful stop, not the default action's death.
#[tokio::test(flavor = "multi_thread")]
async fn signals_the_moment_it_listens_are_caught() {
    let mut gh = Gatehouse::start("", "");
    gh.signal("HUP");
    gh.signal("USR1");
    let text = raw_exchange(
        gh.addr(),
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&text), 400, "still serving: {text}");
    let mut gh2 = Gatehouse::start("", "");
    gh2.send_term();
    let status = gh2.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit status {status}: {}", gh2.stderr());
    gh.send_term();
    assert!(gh.wait_exit(Duration::from_secs(60)).success());
}
