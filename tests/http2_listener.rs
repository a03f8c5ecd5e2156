//! HTTP/2 to the proxy on its TLS listener (`http2.listener = true`), from
//! a Rust HTTP/2 client (hyper): CONNECT on streams (RFC 9113 §8.5), two
//! tunnels side by side on one connection, each logged; an `http://`
//! request forwarded; a `407` on a stream and the connection going on; a
//! client that never sends a request closed after the header timeout.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::tls_lab::TestCa;
use common::*;
use http::{header, Method, Request, StatusCode};
use http_body_util::Empty;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROXY: &str = "proxy.example.test";

struct Lab {
    gh: Gatehouse,
    ca: TestCa,
    tls_port: u16,
    _dir: tempfile::TempDir,
}

fn lab(listener_extra: &str, extra: &str) -> Lab {
    lab_with(listener_extra, extra, true)
}

fn lab_with(listener_extra: &str, extra: &str, h2: bool) -> Lab {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (cert, key) = ca.leaf_pem(dir.path(), &[PROXY]);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tls_port = free_port();
    let listener = format!(
        "tls_addresses = [\"127.0.0.1:{tls_port}\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n{listener_extra}",
        cert.display(),
        key.display()
    );
    // `extra` may go on with more `[http2]` keys.
    let on = if h2 { "[http2]\nlistener = true\n" } else { "" };
    let cfg = format!("{}{on}{extra}", local_realm(dir.path()));
    Lab {
        gh: Gatehouse::start(&listener, &cfg),
        ca,
        tls_port,
        _dir: dir,
    }
}

/// TLS to the proxy's listener, offering `h2` and `http/1.1`.
async fn tls_to_proxy(l: &Lab) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(l.ca.cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", l.tls_port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from(PROXY).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap()
}

/// An HTTP/2 connection to the proxy's TLS listener (ALPN `h2` checked).
async fn h2_to_proxy(
    l: &Lab,
) -> (
    SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tls = tls_to_proxy(l).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

fn connect(target: std::net::SocketAddr, auth: Option<&str>) -> Request<Empty<Bytes>> {
    let mut b = Request::builder()
        .method(Method::CONNECT)
        .uri(target.to_string());
    if let Some(a) = auth {
        b = b.header(header::PROXY_AUTHORIZATION, basic(a));
    }
    b.body(Empty::new()).unwrap()
}

/// Opens a tunnel on a stream and checks the far end echoes through it.
async fn tunnel_echoes(
    send: &mut SendRequest<Empty<Bytes>>,
    echo: std::net::SocketAddr,
    word: &[u8],
) {
    let resp = send
        .send_request(connect(echo, Some("bob:bob-pw")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    io.write_all(word).await.unwrap();
    let mut got = vec![0u8; word.len()];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, word);
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_and_http_requests_on_streams_of_one_http2_connection() {
    let echo = echo_server().await;
    let origin = Origin::start().await;
    let l = lab(
        "",
        &format!("[tunnel]\nallowed_ports = [{}]\n", echo.port()),
    );
    let (mut send, _conn) = h2_to_proxy(&l).await;

    // No credentials: a 407 on the stream, with the challenge.
    let resp = send.send_request(connect(echo, None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    assert!(resp.headers().contains_key(header::PROXY_AUTHENTICATE));

    // Two tunnels side by side on the same connection.
    let mut send2 = send.clone();
    let (a, b) = tokio::join!(
        tunnel_echoes(&mut send, echo, b"first tunnel"),
        tunnel_echoes(&mut send2, echo, b"second tunnel"),
    );
    let ((), ()) = (a, b);

    // An http:// request (`:scheme http`, `:authority` the origin) is forwarded.
    let get = Request::builder()
        .uri(format!("http://{}/over-h2", origin.addr))
        .header(header::PROXY_AUTHORIZATION, basic("bob:bob-pw"))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(get).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(origin.requests(), 1);
    drop((send, send2, _conn));

    // One line per stream: the 407, the GET, and each tunnel when it ends.
    let lines = tokio::task::block_in_place(|| l.gh.log_lines(4));
    let connects: Vec<_> = lines
        .iter()
        .filter(|x| x["cs-method"] == "CONNECT" && x["sc-status"] == "200")
        .collect();
    assert_eq!(connects.len(), 2, "{lines:?}");
    assert!(
        connects.iter().all(|x| x["cs-username"] == "bob"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|x| x["sc-status"] == "407"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|x| x["cs-method"] == "GET" && x["sc-status"] == "200"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stream_over_the_uri_or_header_count_limit_is_refused_and_logged() {
    let origin = Origin::start().await;
    let l = lab("max_uri_bytes = 200\nmax_headers = 20\n", "");
    let (mut send, _conn) = h2_to_proxy(&l).await;
    let long = format!("http://{}/{}", origin.addr, "a".repeat(300));
    let req = Request::builder().uri(long).body(Empty::new()).unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::URI_TOO_LONG);
    let mut many = Request::builder().uri(format!("http://{}/many", origin.addr));
    for i in 0..30 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let resp = send
        .send_request(many.body(Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // The connection goes on, and nothing reached the origin.
    let plain = Request::builder()
        .uri(format!("http://{}/plain", origin.addr))
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(plain).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    assert_eq!(origin.requests(), 0);
    let lines = tokio::task::block_in_place(|| l.gh.log_lines(3));
    assert!(lines.iter().any(|x| x["sc-status"] == "414"), "{lines:?}");
    assert!(lines.iter().any(|x| x["sc-status"] == "431"), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_that_sends_no_request_is_closed_after_the_header_timeout() {
    let l = lab("header_read_timeout = \"1s\"\n", "");
    let (_send, conn) = h2_to_proxy(&l).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "the silent HTTP/2 connection was kept open");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_is_not_offered_on_the_tls_listener_unless_configured() {
    let l = lab_with("", "", false);
    let tls = tls_to_proxy(&l).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_accepted_streams_on_the_tls_listener_ends_the_connection() {
    let origin = Origin::start().await;
    let l = lab("", "max_client_resets = 30\n");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/flood/h2_attack.py");
    let pem = l._dir.path().join("ca.pem");
    let out = tokio::process::Command::new("python3")
        .arg(script)
        .args([
            "accepted",
            "--tls-listener",
            "--scheme",
            "http",
            "--batch",
            "10",
        ])
        .args(["--count", "30", "--auth", "bob:bob-pw", "--ca"])
        .arg(&pem)
        .arg("--proxy")
        .arg(format!("127.0.0.1:{}", l.tls_port))
        .arg("--target")
        .arg(origin.addr.to_string())
        .args(["--path", "/slow/5000", "--proxy-name", PROXY])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(r["closed"], true, "{r}");
    assert!(r["done"].as_u64().unwrap() <= 4, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_connect_stream_takes_a_place_under_the_per_address_cap() {
    let echo = echo_server().await;
    // The connection takes one place, its first tunnel the second.
    let l = lab(
        "max_connections_per_address = 2\n",
        &format!("[tunnel]\nallowed_ports = [{}]\n", echo.port()),
    );
    let (mut send, _conn) = h2_to_proxy(&l).await;
    let first = send
        .send_request(connect(echo, Some("bob:bob-pw")))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let _tunnel = hyper::upgrade::on(first).await.unwrap();
    let second = send
        .send_request(connect(echo, Some("bob:bob-pw")))
        .await
        .unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    let lines = tokio::task::block_in_place(|| l.gh.log_lines(1));
    assert!(lines.iter().any(|x| x["sc-status"] == "503"), "{lines:?}");
}
