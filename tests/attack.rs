//! Hold under attack: what an unauthenticated client can make the proxy
//! spend — connection slots, time — is bounded, and each bound is pushed here
//! with the hostile case against the real binary.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection that never sends a byte is closed after the header timeout
/// counted from accept, not after the (much longer) idle timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_connection_gets_the_header_timeout_not_the_idle_timeout() {
    let gh = Gatehouse::start("header_read_timeout = \"1s\"\nidle_timeout = \"60s\"\n", "");
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let started = Instant::now();
    let text = read_until_close(&mut s, Duration::from_secs(40)).await;
    let took = started.elapsed();
    // The 408 names the header timeout; the idle timeout (60 s) would have
    // closed it without a word and later than the 40 s read gives up.
    assert_eq!(status_of(&text), 408, "{text}");
    assert!(
        took < Duration::from_secs(40),
        "closed after {took:?}: the idle timeout, not the 1 s header timeout"
    );
    // A kept-alive connection after a request still gets the idle timeout.
    let origin = Origin::start().await;
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    s.write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/hello")).as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
    let idle = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
    assert!(
        idle.is_err(),
        "a kept-alive connection is not cut at the header timeout"
    );
}

/// One client address cannot hold more than its share of the slots.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_take_every_slot() {
    let gh = Gatehouse::start("max_connections_per_address = 2\n", "");
    // Hold two connections, each proven open by an answer that keeps it.
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while held.len() < 2 {
        let mut s = TcpStream::connect(gh.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap_or(0);
        if status_of(&String::from_utf8_lossy(&buf[..n])) == 400 {
            held.push(s);
        }
        assert!(Instant::now() < deadline, "never got two slots");
    }
    let text = raw_exchange(gh.addr(), b"", Duration::from_secs(5)).await;
    assert_eq!(status_of(&text), 503, "{text}");
    assert!(text.contains("too_many_connections_from_client"), "{text}");
    // A slot given back is a slot free again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = raw_exchange(
            gh.addr(),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        if status_of(&text) == 400 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never came back: {text}");
        tokio::task::yield_now().await;
    }
}

/// `CONNECT` with a body: refused with 400 and closed, never a wedged
/// connection (hyper used to read the body while the guard waited for the
/// proxy's answer, and the connection outlived every timeout).
#[tokio::test(flavor = "multi_thread")]
async fn connect_with_a_body_is_400_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let gh = Gatehouse::start(
        "header_read_timeout = \"2s\"\nidle_timeout = \"60s\"\n",
        &local_realm(dir.path()),
    );
    let nested = b"CONNECT b:443 HTTP/1.1\r\n\r\n";
    let mut req = format!(
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: {}\r\n\r\n",
        nested.len()
    )
    .into_bytes();
    req.extend_from_slice(nested);
    for chunked in [false, true] {
        let bytes = if chunked {
            b"CONNECT a:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nCONNECT b:443 HTTP/1.1\r\n\r\n\r\n0\r\n\r\n".to_vec()
        } else {
            req.clone()
        };
        let started = Instant::now();
        let text = raw_exchange(gh.addr(), &bytes, Duration::from_secs(20)).await;
        assert_eq!(status_of(&text), 400, "{text}");
        assert!(text.contains("CONNECT with a body"), "{text}");
        assert_eq!(text.matches("HTTP/1.1").count(), 1, "one answer: {text}");
        // The read gives up after 20 s of silence: ending sooner is the
        // proxy closing, not a timeout of ours.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "closed, not left open"
        );
    }
}

/// Peak resident memory of a process, from /proc (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024
}

/// 400 concurrent requests, each with a different wrong password for a
/// known local user: argon2 checks run a bounded number at once (memory stays
/// bounded), the rest wait a bounded time and get 503 with Retry-After, and a
/// user whose credentials are cached keeps being served.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_flood_is_bounded_in_memory_and_answered() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let auth = local_realm(dir.path()).replace(
        "max_failures_per_connection = 3",
        "max_failures_per_connection = 1000",
    );
    let gh = Gatehouse::start(
        "max_connections_per_address = 5000\n",
        &format!(
            "{auth}[auth.throttle]\nuser_failures = 0\nfamiliar_failures = 0\naddress_failures = 0\n\
             [auth.password_checks]\npermits = 2\nqueue_timeout = \"1s\"\n"
        ),
    );
    let url = origin.url("/hello");
    let get = |user_pass: String| {
        let url = url.clone();
        let addr = gh.addr();
        async move {
            let raw = format!(
                "GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
                basic(&user_pass)
            );
            raw_exchange(addr, raw.as_bytes(), Duration::from_secs(60)).await
        }
    };
    // bob's credentials are verified and cached before the flood.
    assert_eq!(status_of(&get("bob:bob-pw".into()).await), 200);
    let flood: Vec<_> = (0..400)
        .map(|i| tokio::spawn(get(format!("alice:wrong-{i}"))))
        .collect();
    // During the flood the cached user is served.
    for _ in 0..5 {
        assert_eq!(status_of(&get("bob:bob-pw".into()).await), 200);
    }
    let mut refused = 0;
    let mut busy = 0;
    for f in flood {
        let text = f.await.unwrap();
        match status_of(&text) {
            407 => refused += 1,
            503 => {
                assert!(text.contains("retry-after: 1"), "{text}");
                assert!(text.contains("authentication_busy"), "{text}");
                busy += 1;
            }
            other => panic!("unexpected {other}: {text}"),
        }
    }
    assert_eq!(refused + busy, 400);
    assert!(busy > 0, "some checks waited longer than the queue timeout");
    let peak = peak_rss_mib(gh.pid());
    assert!(
        peak < 300,
        "peak RSS {peak} MiB: argon2 checks are not bounded"
    );
    assert!(gh.stderr().contains("password checks busy"));
}
