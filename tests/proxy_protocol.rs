//! The PROXY protocol (`listener.proxy_protocol_from`): a balancer's header
//! names the client, and that address is the client's everywhere — the
//! access log's c-ip, `client` rules, the per-address cap. Headers are
//! written by hand (v1 text, v2 bytes) on real sockets; untrusted sources
//! bind other loopback addresses (127.0.0.x).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls_lab::TestCa;
use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Trusts the test client's own address only.
const TRUST_LOOPBACK_1: &str = "proxy_protocol_from = [\"127.0.0.1/32\"]\n";

async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    s.connect(to).await.unwrap()
}

fn v1(source: &str) -> Vec<u8> {
    format!("PROXY TCP4 {source} 127.0.0.1 40001 3128\r\n").into_bytes()
}

/// A v2 PROXY (or LOCAL) header for an IPv4 source, with a NOOP TLV.
fn v2(source: [u8; 4], local: bool) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(if local { 0x20 } else { 0x21 });
    h.push(0x11); // TCP over IPv4
    h.extend_from_slice(&15u16.to_be_bytes()); // 12 address bytes + a 3-byte TLV
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&40002u16.to_be_bytes());
    h.extend_from_slice(&3128u16.to_be_bytes());
    h.extend_from_slice(&[0x04, 0x00, 0x00]); // PP2_TYPE_NOOP, empty
    h
}

/// Writes `bytes` on `s`, then reads until the proxy closes.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> String {
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn get(origin: &Origin, path: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        origin.url(path)
    )
}

/// The access log line for `path`.
fn line_for(gh: &Gatehouse, path: &str) -> std::collections::HashMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = parse_elff(&std::fs::read_to_string(&gh.log_path).unwrap_or_default());
        if let Some(l) = lines.into_iter().find(|l| l["cs-uri-path"] == path) {
            return l;
        }
        assert!(Instant::now() < deadline, "no log line for {path}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_balancers_header_names_the_client_v1_and_v2() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start(TRUST_LOOPBACK_1, "");
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let req = [v1("203.0.113.7"), get(&origin, "/v1").into_bytes()].concat();
    let text = exchange(&mut s, &req).await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(line_for(&gh, "/v1")["c-ip"], "203.0.113.7");

    // v2, the header in its own segment before the request.
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    s.write_all(&v2([198, 51, 100, 9], false)).await.unwrap();
    s.flush().await.unwrap();
    let text = exchange(&mut s, get(&origin, "/v2").as_bytes()).await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(line_for(&gh, "/v2")["c-ip"], "198.51.100.9");

    // v2 LOCAL (a health check): the balancer's own address stays.
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let req = [
        v2([198, 51, 100, 9], true),
        get(&origin, "/local").into_bytes(),
    ]
    .concat();
    let text = exchange(&mut s, &req).await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(line_for(&gh, "/local")["c-ip"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_source_without_a_header_is_never_forwarded() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start(
        &format!("{TRUST_LOOPBACK_1}header_read_timeout = \"1s\"\n"),
        "",
    );
    // A plain request where the header should be: refused at once.
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let text = exchange(&mut s, get(&origin, "/plain").as_bytes()).await;
    assert_eq!(status_of(&text), 400, "{text}");
    assert!(text.contains("proxy_protocol_invalid"), "{text}");
    // Half a header, then silence: closed at the header timeout.
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let started = Instant::now();
    let text = exchange(&mut s, b"PROXY TCP4 203.0.113.7 ").await;
    let took = started.elapsed();
    // `exchange` gives up after 10 s: ending sooner is the proxy closing.
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    assert_eq!(status_of(&text), 400, "{text}");
    assert_eq!(origin.requests(), 0, "nothing was forwarded");
    let refusals = gh.log_lines(2);
    assert!(refusals
        .iter()
        .all(|l| l["x-exception-id"] == "proxy_protocol_invalid" && l["c-ip"] == "127.0.0.1"));
    assert!(gh
        .stderr()
        .contains("without a valid PROXY protocol header"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_sources_header_is_a_bad_request() {
    let origin = Origin::start().await;
    let gh = Gatehouse::start(TRUST_LOOPBACK_1, "");
    let mut s = connect_from("127.0.0.2", gh.addr()).await;
    let req = [v1("203.0.113.7"), get(&origin, "/spoof").into_bytes()].concat();
    let text = exchange(&mut s, &req).await;
    assert_eq!(status_of(&text), 400, "{text}");
    assert_eq!(origin.requests(), 0);
    // (The readiness probe's empty connection from 127.0.0.1 is logged too.)
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let lines = parse_elff(&std::fs::read_to_string(&gh.log_path).unwrap_or_default());
        assert!(
            lines.iter().all(|l| l["c-ip"] != "203.0.113.7"),
            "{lines:?}"
        );
        if let Some(l) = lines.into_iter().find(|l| l["c-ip"] == "127.0.0.2") {
            break l;
        }
        assert!(Instant::now() < deadline, "no line for the real peer");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(line["x-exception-id"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_and_the_per_address_cap_see_the_headers_client() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[layers]]\nname = \"clients\"\n[[layers.rules]]\nname = \"no-test-net\"\n\
         client = [\"203.0.113.0/24\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let gh = Gatehouse::start(
        &format!("{TRUST_LOOPBACK_1}max_connections_per_address = 1\n"),
        &format!("[policy]\nfile = \"{}\"\n", policy.display()),
    );
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let req = [v1("203.0.113.7"), get(&origin, "/denied").into_bytes()].concat();
    let text = exchange(&mut s, &req).await;
    assert_eq!(status_of(&text), 403, "{text}");
    assert_eq!(line_for(&gh, "/denied")["x-rule"], "no-test-net");

    // One connection per client: a second from the same header source is
    // refused, one from another source (same balancer) is served.
    let mut held = TcpStream::connect(gh.addr()).await.unwrap();
    held.write_all(
        &[
            v1("198.51.100.1"),
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ]
        .concat(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 512];
    let n = held.read(&mut buf).await.unwrap();
    assert_eq!(
        status_of(&String::from_utf8_lossy(&buf[..n])),
        400,
        "held open"
    );
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let text = exchange(
        &mut s,
        &[v1("198.51.100.1"), get(&origin, "/x").into_bytes()].concat(),
    )
    .await;
    assert_eq!(status_of(&text), 503, "{text}");
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let req = [v1("198.51.100.2"), get(&origin, "/other").into_bytes()].concat();
    assert_eq!(status_of(&exchange(&mut s, &req).await), 200);
}

/// A proxy trusting 127.0.0.1 with a TLS listener; its port.
fn tls_proxy(dir: &std::path::Path, ca: &TestCa, extra: &str) -> (Gatehouse, u16) {
    let (cert, key) = ca.leaf_pem(dir, &["proxy.example.test"]);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let port = free_port();
    let gh = Gatehouse::start(
        &format!(
            "{TRUST_LOOPBACK_1}{extra}tls_addresses = [\"127.0.0.1:{port}\"]\n\
             tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
        "",
    );
    (gh, port)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_a_tls_listener_the_header_comes_before_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let ca = TestCa::new(dir.path());
    let (gh, port) = tls_proxy(dir.path(), &ca, "");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(&v2([192, 0, 2, 44], false)).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("proxy.example.test").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS after the PROXY header");
    let text = exchange(&mut tls, get(&origin, "/tls").as_bytes()).await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(line_for(&gh, "/tls")["c-ip"], "192.0.2.44");
}

/// The header and the TLS handshake share one header timeout from accept:
/// a slow header leaves the handshake only what is left of it. The proxy
/// says how long it gave the handshake, so no clock of ours decides.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_header_then_a_stalled_handshake_share_one_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (gh, port) = tls_proxy(dir.path(), &ca, "header_read_timeout = \"4s\"\n");
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let header = v2([192, 0, 2, 44], false);
    tcp.write_all(&header[..10]).await.unwrap();
    // A slow client (not a wait for readiness): the rest of the header
    // after 1 s (well inside the 4 s), then a ClientHello that never comes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tcp.write_all(&header[10..]).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled handshake was kept open");
    gh.wait_stderr("no TLS handshake within", 1);
    let stderr = gh.stderr();
    assert!(
        !stderr.contains("no TLS handshake within 4s"),
        "the handshake got a whole timeout of its own:\n{stderr}"
    );
}
