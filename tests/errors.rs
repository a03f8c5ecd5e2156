//! Every refusal is a clear answer with an exception id, and a log line.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(5);

/// Sends `raw`, checks the status and exception id of the answer, and that the
/// access log recorded the same.
async fn expect(
    gh: &Gatehouse,
    raw: &[u8],
    status: u16,
    exception: &str,
    log_index: usize,
) -> String {
    let text = raw_exchange(gh.addr(), raw, WAIT).await;
    assert_eq!(status_of(&text), status, "{text}");
    assert!(
        text.contains(&format!("x-exception-id: {exception}")),
        "{text}"
    );
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    assert!(
        body.starts_with("Gatehouse: ") && body.contains(exception),
        "body names the reason: {body}"
    );
    let line = &gh.log_lines(log_index + 1)[log_index];
    assert_eq!(line["sc-status"], status.to_string(), "{line:?}");
    assert_eq!(line["x-exception-id"], exception, "{line:?}");
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_requests() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start("max_header_bytes = 4096\nmax_uri_bytes = 512\n", "");
    let u = origin.url("/hello");
    let mut i = 0;
    let mut case = |raw: String, status, exc| {
        i += 1;
        (raw, status, exc, i - 1)
    };
    let cases = vec![
        case("GARBAGE\r\n\r\n".into(), 400, "invalid_request"),
        case(format!("GET {u} HTTP/1.1\r\nBad Header: x\r\n\r\n"), 400, "invalid_request"),
        case(format!("GET {u} HTTP/1.1\r\nX: {}\r\n\r\n", "v".repeat(5000)), 431, "request_header_too_large"),
        case(format!("GET {u}/{} HTTP/1.1\r\n\r\n", "p".repeat(600)), 414, "request_uri_too_long"),
        case(
            format!("POST {u} HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
            "invalid_request",
        ),
        case(format!("POST {u} HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"), 400, "invalid_request"),
        case("GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(), 400, "invalid_request"),
        case(format!("GET https://{}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", origin.addr), 400, "unsupported_protocol"),
        case("\x16\x03\x01\x00\x25\x01\x00\x00\x21\x03\x03".into(), 400, "invalid_request"),
    ];
    for (raw, status, exc, idx) in cases {
        expect(&gh, raw.as_bytes(), status, exc, idx).await;
    }
    assert_eq!(origin.requests(), 0, "nothing refused may reach the origin");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_failures_are_502_and_504() {
    let origin = Origin::start().await;
    let closed = closed_port();
    let closed = closed.port;
    let gh = Gatehouse::start(
        "",
        "[resolver]\nsystem = false\n[forward]\nresponse_timeout = \"1s\"\n",
    );
    let get = |url: String| format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(
        &gh,
        get("http://unknown.example.test/".into()).as_bytes(),
        502,
        "dns_unresolved_hostname",
        0,
    )
    .await;
    expect(
        &gh,
        get(format!("http://127.0.0.1:{closed}/")).as_bytes(),
        502,
        "tcp_error",
        1,
    )
    .await;
    expect(
        &gh,
        get(origin.url("/slow/3000")).as_bytes(),
        504,
        "gateway_timeout",
        2,
    )
    .await;
    let lines = gh.log_lines(3);
    assert!(
        lines.iter().all(|l| l["s-action"] == "TCP_ERR_MISS"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_port_not_allowed_is_403() {
    let echo = echo_server().await;
    let gh = Gatehouse::start("", "");
    let raw = format!("CONNECT {echo} HTTP/1.1\r\nHost: {echo}\r\n\r\nsecret-payload");
    let text = expect(&gh, raw.as_bytes(), 403, "policy_denied", 0).await;
    assert!(text.contains("connection: close"), "{text}");
    let line = &gh.log_lines(1)[0];
    assert_eq!(line["s-action"], "TCP_DENIED");
    assert_eq!(line["x-rule"], "builtin:connect-ports");
}

#[tokio::test(flavor = "multi_thread")]
async fn loops_are_refused() {
    let gh = Gatehouse::start("", "");
    let me = gh.addr();
    expect(
        &gh,
        format!("GET http://{me}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        508,
        "loop_detected",
        0,
    )
    .await;
    expect(
        &gh,
        format!(
            "GET http://localhost:{}/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            me.port()
        )
        .as_bytes(),
        508,
        "loop_detected",
        1,
    )
    .await;
    let origin = Origin::start().await;
    let via = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nVia: 1.1 other, 1.1 gatehouse\r\n\r\n",
        origin.url("/")
    );
    expect(&gh, via.as_bytes(), 508, "loop_detected", 2).await;
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_header_is_cut_off_with_408() {
    let gh = Gatehouse::start("header_read_timeout = \"1s\"\n", "");
    let mut s = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
    use tokio::io::AsyncWriteExt;
    s.write_all(b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let text = read_until_close(&mut s, Duration::from_secs(30)).await;
    // The 408 is the header timeout's own answer; the read gives up after
    // 30 s of silence, so ending sooner is the proxy closing.
    assert_eq!(status_of(&text), 408, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cut off after the header timeout"
    );
    assert_eq!(gh.log_lines(1)[0]["x-exception-id"], "request_timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connection_is_closed_quietly() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start("idle_timeout = \"1s\"\n", "");
    let mut s = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
    use tokio::io::AsyncWriteExt;
    let raw = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url("/hello")
    );
    s.write_all(raw.as_bytes()).await.unwrap();
    let text = read_until_close(&mut s, Duration::from_secs(10)).await;
    assert_eq!(status_of(&text), 200);
    assert!(
        text.ends_with("hello from origin"),
        "closed without another answer: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_limit_get_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gh = Gatehouse::start("max_connections = 1\n", "");
    // Take the only slot, proven by an answer that keeps the connection open
    // (the readiness probe's connection may still hold it for a moment).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let _held = loop {
        let mut s = tokio::net::TcpStream::connect(gh.addr()).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        if status_of(&String::from_utf8_lossy(&buf[..n])) == 400 {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "never got the slot");
    };
    let text = raw_exchange(gh.addr(), b"", Duration::from_secs(5)).await;
    assert_eq!(status_of(&text), 503, "{text}");
    assert!(text.contains("too_many_connections"), "{text}");
    let lines = gh.log_lines(2);
    assert!(
        lines
            .iter()
            .any(|l| l["x-exception-id"] == "too_many_connections"),
        "{lines:?}"
    );
}
