//! TLS fingerprints from real clients: JA4 as Gatehouse computes it agrees
//! with an independent implementation (ja4plus, FoxIO's rules) on the
//! ClientHellos that Python's `ssl` (OpenSSL), curl and rustls really send;
//! and a policy that denies one client's JA4 stops that client, not another.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::tls_lab::*;
use common::*;
use gatehouse::tunnel::detect::{classify, Classified, Protocol};
use tokio::io::AsyncReadExt;

const NAME: &str = "origin.example.test";

/// Python's `ssl` as a client of `port` on loopback, asking for `NAME`
/// with ALPN h2 and http/1.1; the handshake's outcome is ignored.
const PY_HELLO: &str = r#"
import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2", "http/1.1"])
try:
    ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5),
                    server_hostname=sys.argv[2])
except (ssl.SSLError, OSError):
    pass
"#;

/// The independent JA4 of a ClientHello record given in hex.
const PY_JA4PLUS: &str = r#"
import sys
from scapy.all import IP, TCP, Raw
from ja4plus.fingerprinters.ja4 import JA4Fingerprinter
hello = bytes.fromhex(sys.argv[1])
pkt = IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=443, flags="PA", seq=1) / Raw(load=hello)
print(JA4Fingerprinter().process_packet(pkt))
"#;

/// Runs `client` against a listener and returns the first bytes it sent
/// (its ClientHello): the listener closes once a whole record is in.
async fn capture(client: impl FnOnce(u16) + Send + 'static) -> Vec<u8> {
    let listener = bind_free().await;
    let port = listener.local_addr().unwrap().port();
    let run = tokio::task::spawn_blocking(move || client(port));
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !matches!(classify(&buf), Classified::Done(_)) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("the client sends its hello")
            .unwrap();
        assert!(n > 0, "the client closed before its hello");
        buf.extend_from_slice(&chunk[..n]);
    }
    drop(s);
    run.await.unwrap();
    buf
}

fn python_hello(port: u16) {
    std::process::Command::new("python3")
        .args(["-c", PY_HELLO, &port.to_string(), NAME])
        .output()
        .expect("python3 runs");
}

fn curl_hello(port: u16) {
    std::process::Command::new("curl")
        .args([
            "-sk",
            "--max-time",
            "5",
            "--resolve",
            &format!("{NAME}:{port}:127.0.0.1"),
            &format!("https://{NAME}:{port}/"),
        ])
        .output()
        .expect("curl runs");
}

fn ours(hello: &[u8]) -> String {
    match classify(hello) {
        Classified::Done(Protocol::Tls(h)) => h.ja4.clone(),
        other => panic!("not a ClientHello: {other:?}"),
    }
}

fn theirs(hello: &[u8]) -> String {
    let hex: String = hello.iter().map(|b| format!("{b:02x}")).collect();
    let out = std::process::Command::new("python3")
        .args(["-c", PY_JA4PLUS, &hex])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "ja4plus (integration/install-deps installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn ja4_agrees_with_an_independent_implementation_on_real_clients() {
    let hellos = [
        ("python ssl", capture(python_hello).await),
        ("curl", capture(curl_hello).await),
        ("rustls, SNI", client_hello(NAME)),
        ("rustls, an address: no SNI", client_hello("127.0.0.1")),
    ];
    let mut seen = Vec::new();
    for (client, hello) in &hellos {
        let ja4 = ours(hello);
        assert_eq!(ja4, theirs(hello), "{client}");
        seen.push(ja4);
    }
    assert!(
        seen[0].starts_with("t13d") && seen[0].contains("h2_"),
        "{seen:?}"
    );
    assert!(seen[3].starts_with("t13i"), "{seen:?}");
    assert_ne!(seen[0], seen[2], "OpenSSL and rustls speak differently");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_on_one_clients_ja4_stops_that_client_only() {
    let python_ja4 = ours(&capture(python_hello).await);
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let origin = tls_origin(ca.leaf(&[NAME])).await;
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[objects]\ntunnel-tools = [\"{python_ja4}\"]\n\
             [[layers]]\nname = \"fingerprints\"\n\
             [[layers.rules]]\nname = \"no-tunnel-tools\"\nja4 = [\"@tunnel-tools\"]\n\
             action = \"deny\"\nreason = \"tunnel_tool_fingerprint\"\n"
        ),
    )
    .unwrap();
    let cfg = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ \"{NAME}\" = [\"127.0.0.1\"] }}\n\
         [tunnel]\nallowed_ports = [{port}]\n\
         [detection]\nenabled = true\ntimeout = \"3s\"\nca_file = \"{ca}\"\n\
         [policy]\nfile = \"{policy}\"\n",
        local_realm(dir.path()),
        port = origin.port(),
        ca = ca.pem_path.display(),
        policy = policy.display(),
    );
    let gh = Gatehouse::start("", &cfg);
    let dest = format!("{NAME}:{}", origin.port());
    // The Python client, through the proxy: refused at its ClientHello.
    let proxy = gh.addr();
    let out = tokio::task::block_in_place(|| python_through(proxy, &dest, &ca));
    assert!(out.starts_with("failed"), "{out}");
    // rustls, the same user, the same destination: passes.
    let t = connect_through(gh.addr(), &dest, &auth()).await.unwrap();
    assert_eq!(
        tls_through(t, NAME, &ca.cert).await.unwrap(),
        "hello over tls\n"
    );
    let lines = gh.log_lines(2);
    assert_eq!(lines[0]["x-exception-id"], "tunnel_tool_fingerprint");
    assert_eq!(lines[0]["x-rule"], "no-tunnel-tools");
    assert_eq!(lines[0]["x-ja4"], python_ja4);
    assert_eq!(lines[1]["s-action"], "TCP_ACCELERATED");
    assert_ne!(lines[1]["x-ja4"], python_ja4);
    assert_eq!(lines[1]["x-ja4"].len(), 36);
    // explain, given the logged JA4, says the same.
    let explained = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["explain", "--config"])
        .arg(&gh.config_path)
        .args(["--user", "bob"])
        .args(["--method", "CONNECT", "--url", &dest, "--protocol", "tls"])
        .args(["--ja4", &python_ja4])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.contains("after detection (tls): DENY tunnel_tool_fingerprint"),
        "{text}"
    );
}

fn auth() -> String {
    format!(
        "User-Agent: Mozilla/5.0\r\nProxy-Authorization: {}\r\n",
        basic("bob:bob-pw")
    )
}

/// Python's `ssl` through a CONNECT tunnel: `ok <greeting>` or `failed <error>`.
const PY_THROUGH: &str = r#"
import socket, ssl, sys
proxy_port, dest, name, cafile, auth = sys.argv[1:6]
s = socket.create_connection(("127.0.0.1", int(proxy_port)), timeout=10)
s.sendall(f"CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += s.recv(1)
assert head.startswith(b"HTTP/1.1 200"), head
ctx = ssl.create_default_context(cafile=cafile)
ctx.set_alpn_protocols(["h2", "http/1.1"])
try:
    t = ctx.wrap_socket(s, server_hostname=name)
    print("ok", t.recv(64).decode().strip())
except (ssl.SSLError, OSError) as e:
    print("failed", type(e).__name__)
"#;

fn python_through(proxy: SocketAddr, dest: &str, ca: &TestCa) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            PY_THROUGH,
            &proxy.port().to_string(),
            dest,
            NAME,
            ca.pem_path.to_str().unwrap(),
            &basic("bob:bob-pw"),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
