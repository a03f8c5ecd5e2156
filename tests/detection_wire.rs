//! Detection on the tunnel's own connection, tried as the tools built to get
//! through proxies would try it: a server that is genuine until a verdict is
//! cached, one that recognises its own clients by a secret in the
//! ClientHello, a name whose addresses differ between dial and probe, and a
//! resumption nobody saw verified. Real sockets throughout; the clients are
//! rustls and Python's `ssl` (OpenSSL), which resumes sessions as browsers do.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::tls_lab::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const NAME: &str = "origin.example.test";

/// A proxy with the local realm and detection on, trusting `ca`, the lab
/// names in `hosts` (TOML inline table body), CONNECT open to `ports`.
fn proxy(dir: &std::path::Path, ca: &TestCa, ports: &[u16], hosts: &str) -> Gatehouse {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let cfg = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ {hosts} }}\n\
         [tunnel]\nallowed_ports = [{}]\n\
         [detection]\nenabled = true\ntimeout = \"3s\"\nca_file = \"{}\"\n",
        local_realm(dir),
        ports.join(", "),
        ca.pem_path.display()
    );
    Gatehouse::start("", &cfg)
}

fn auth() -> String {
    format!(
        "User-Agent: Mozilla/5.0\r\nProxy-Authorization: {}\r\n",
        basic("bob:bob-pw")
    )
}

/// A rustls client through a fresh tunnel to `dest`, SNI `sni`.
async fn rustls_client(
    proxy: SocketAddr,
    dest: &str,
    sni: &str,
    ca: &TestCa,
) -> Result<String, String> {
    let t = connect_through(proxy, dest, &auth())
        .await
        .map_err(|s| format!("CONNECT answered {s}"))?;
    tls_through(t, sni, &ca.cert).await
}

/// A client with a secret agreement with its server: its ClientHello (SNI
/// `sni`) and then its payload; returns every byte the proxy let back.
async fn evasive_client(proxy: SocketAddr, dest: &str, sni: &str) -> Vec<u8> {
    let mut s = connect_through(proxy, dest, &auth())
        .await
        .expect("the CONNECT itself is answered 200");
    let mut first = client_hello(sni);
    first.extend_from_slice(PAYLOAD_MARKER);
    let _ = s.write_all(&first).await;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    reply
}

/// What a fake answers a ClientHello with.
type FakeFlight = fn(&[u8]) -> Vec<u8>;

/// Plays a fake on `tcp`: reads the ClientHello, answers `flight` (by
/// default a certificate-less ServerHello + ServerHelloDone), records
/// everything the client sends.
async fn play_fake(tcp: TcpStream, seen: Received) {
    play(tcp, seen, server_hello_without_certificate).await
}

async fn play(mut tcp: TcpStream, seen: Received, flight: FakeFlight) {
    let idx = {
        let mut all = seen.0.lock().unwrap();
        all.push(Vec::new());
        all.len() - 1
    };
    let mut buf = [0u8; 8192];
    let mut answered = false;
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        seen.0.lock().unwrap()[idx].extend_from_slice(&buf[..n]);
        if !answered {
            answered = true;
            if tcp.write_all(&flight(&buf[..n])).await.is_err() {
                break;
            }
        }
    }
}

/// A server genuine (TLS `versions`, a valid certificate) for its first
/// `genuine` connections, a fake answering `fake` after: the verdict-cache
/// attack.
async fn chameleon(
    ca: &TestCa,
    genuine: usize,
    versions: &[&'static rustls::SupportedProtocolVersion],
    fake: FakeFlight,
) -> (SocketAddr, Received) {
    let tls = acceptor(ca.leaf(&[NAME]), versions);
    let listener = bind_free().await;
    let addr = listener.local_addr().unwrap();
    let seen = Received::default();
    let rec = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            n += 1;
            if n <= genuine {
                tokio::spawn(serve_tls(tls.clone(), tcp));
            } else {
                tokio::spawn(play(tcp, rec.clone(), fake));
            }
        }
    });
    (addr, seen)
}

/// A server that shows everyone a genuine site (TLS `versions`, a valid
/// certificate) except its own clients, known by a secret in their
/// ClientHello (here: an SNI containing "secret"), who get the fake.
async fn two_faced(
    ca: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (SocketAddr, Received, Arc<AtomicUsize>) {
    let tls = acceptor(ca.leaf(&[NAME, "secret.example.test"]), versions);
    let listener = bind_free().await;
    let addr = listener.local_addr().unwrap();
    let seen = Received::default();
    let genuine = Arc::new(AtomicUsize::new(0));
    let (rec, count) = (seen.clone(), genuine.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, rec, count) = (tls.clone(), rec.clone(), count.clone());
            tokio::spawn(async move {
                let mut peek = [0u8; 2048];
                let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(10), tcp.peek(&mut peek)).await
                else {
                    return;
                };
                if peek[..n].windows(6).any(|w| w == b"secret") {
                    play_fake(tcp, rec).await;
                } else {
                    count.fetch_add(1, Ordering::SeqCst);
                    serve_tls(tls, tcp).await;
                }
            });
        }
    });
    (addr, seen, genuine)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls12_is_verified_on_the_wire_without_a_probe() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, accepted) =
        tls_origin_counting(ca.leaf(&[NAME]), &[&rustls::version::TLS12]).await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[origin.port()],
        &format!("\"{NAME}\" = [\"127.0.0.1\"]"),
    );
    let dest = format!("{NAME}:{}", origin.port());
    for _ in 0..2 {
        let greeting = rustls_client(gh.addr(), &dest, NAME, &ca).await.unwrap();
        assert_eq!(greeting, "hello over tls\n");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the two tunnels only: no probe"
    );
    for l in gh.log_lines(2) {
        assert_eq!(l["s-action"], "TCP_ACCELERATED");
        assert_eq!(l["x-sni"], NAME);
        assert_eq!(l["r-ip"], "127.0.0.1");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tls13_is_probed_at_the_dialled_address_once_per_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, accepted) =
        tls_origin_counting(ca.leaf(&[NAME]), &[&rustls::version::TLS13]).await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[origin.port()],
        &format!("\"{NAME}\" = [\"127.0.0.1\"]"),
    );
    let dest = format!("{NAME}:{}", origin.port());
    for _ in 0..2 {
        let greeting = rustls_client(gh.addr(), &dest, NAME, &ca).await.unwrap();
        assert_eq!(greeting, "hello over tls\n");
    }
    // Two tunnels and one probe: the verdict is kept per (address, SNI).
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    // Both genuine tunnels logged (at their ends) before the next one, so
    // the lines are in the order the tunnels were made.
    gh.log_lines(2);
    // A name the certificate does not cover is probed on its own, and
    // refused (by address: a named CONNECT for another SNI is refused before).
    let by_address = format!("127.0.0.1:{}", origin.port());
    assert!(
        rustls_client(gh.addr(), &by_address, "other.example.test", &ca)
            .await
            .is_err()
    );
    let lines = gh.log_lines(3);
    assert_eq!(lines[2]["x-exception-id"], "ssl_domain_mismatch");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_genuine_until_its_verdict_is_cached_is_caught_when_it_switches() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (node, seen) = chameleon(
        &ca,
        2,
        &[&rustls::version::TLS12],
        server_hello_without_certificate,
    )
    .await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[node.port()],
        &format!("\"{NAME}\" = [\"127.0.0.1\"]"),
    );
    let dest = format!("{NAME}:{}", node.port());
    // Genuine twice (a probe, had there been one, would have used the second).
    for _ in 0..2 {
        assert_eq!(
            rustls_client(gh.addr(), &dest, NAME, &ca).await.unwrap(),
            "hello over tls\n"
        );
    }
    // Both logged (at their tunnels' ends) before the fake is tried.
    gh.log_lines(2);
    // Then the fake: the same address, the same SNI, a verdict "cached" —
    // and still refused, because this connection's own flight has no certificate.
    let reply = evasive_client(gh.addr(), &dest, NAME).await;
    assert!(
        reply.is_empty(),
        "the client saw nothing of the fake: {reply:?}"
    );
    assert_eq!(seen.connections(), 1, "the fake saw one connection");
    assert!(
        !seen.any_contains(PAYLOAD_MARKER),
        "and only the ClientHello"
    );
    let lines = gh.log_lines(3);
    assert_eq!(lines[2]["s-action"], "TCP_DENIED");
    assert_eq!(lines[2]["x-exception-id"], "ssl_server_cert_missing");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_knows_its_clients_by_a_secret_cannot_show_them_a_fake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (node, seen, genuine) = two_faced(&ca, &[&rustls::version::TLS12]).await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[node.port()],
        &format!("\"{NAME}\" = [\"127.0.0.1\"], \"secret.example.test\" = [\"127.0.0.1\"]"),
    );
    // Everyone else sees the genuine site, through the proxy too.
    let dest = format!("{NAME}:{}", node.port());
    assert_eq!(
        rustls_client(gh.addr(), &dest, NAME, &ca).await.unwrap(),
        "hello over tls\n"
    );
    gh.log_lines(1);
    // Its own client is shown the fake, on the tunnel's connection: refused.
    let reply = evasive_client(
        gh.addr(),
        &format!("secret.example.test:{}", node.port()),
        "secret.example.test",
    )
    .await;
    assert!(reply.is_empty(), "{reply:?}");
    assert!(
        !seen.any_contains(PAYLOAD_MARKER),
        "nothing after the ClientHello reached it"
    );
    assert_eq!(
        genuine.load(Ordering::SeqCst),
        1,
        "and no probe was made to be fooled"
    );
    let lines = gh.log_lines(2);
    assert_eq!(lines[1]["x-exception-id"], "ssl_server_cert_missing");
    assert_eq!(lines[1]["x-sni"], "secret.example.test");
}

/// Binds `ip` on the same port as `like` (loopback has all of 127/8).
async fn bind_beside(ip: &str, port: u16) -> TcpListener {
    TcpListener::bind((ip, port)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_address_dialled_is_the_address_judged() {
    // A name with two addresses: the fake's first, the genuine site's
    // second. The fake takes one connection and stops listening, so a
    // second look-up (a probe) would land on the genuine site.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let genuine_l = bind_free_on("127.0.0.2").await;
    let port = genuine_l.local_addr().unwrap().port();
    let fake_l = bind_beside("127.0.0.3", port).await;
    let tls = acceptor(ca.leaf(&[NAME]), &[&rustls::version::TLS12]);
    let genuine = Arc::new(AtomicUsize::new(0));
    let count = genuine.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = genuine_l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_tls(tls.clone(), tcp));
        }
    });
    let seen = Received::default();
    let rec = seen.clone();
    tokio::spawn(async move {
        if let Ok((tcp, _)) = fake_l.accept().await {
            drop(fake_l);
            play_fake(tcp, rec).await;
        }
    });
    let gh = proxy(
        dir.path(),
        &ca,
        &[port],
        &format!("\"{NAME}\" = [\"127.0.0.3\", \"127.0.0.2\"]"),
    );
    let reply = evasive_client(gh.addr(), &format!("{NAME}:{port}"), NAME).await;
    assert!(reply.is_empty(), "{reply:?}");
    assert!(!seen.any_contains(PAYLOAD_MARKER));
    assert_eq!(
        genuine.load(Ordering::SeqCst),
        0,
        "the genuine address was never asked"
    );
    let l = &gh.log_lines(1)[0];
    assert_eq!(l["x-exception-id"], "ssl_server_cert_missing");
    assert_eq!(l["r-ip"], "127.0.0.3", "the log names the address judged");
}

async fn bind_free_on(ip: &str) -> TcpListener {
    TcpListener::bind((ip, 0)).await.unwrap()
}

/// Python's `ssl` (OpenSSL) at TLS 1.2 (or 1.3): one full handshake (direct to the
/// origin, or through the proxy), then a resumption of that session through
/// the proxy. Prints `reused=<bool> greeting=<text>` per connection.
const PY_RESUME: &str = r#"
import socket, ssl, sys
proxy_port, origin_port, name, cafile, auth, first_direct, maxver = sys.argv[1:8]
ctx = ssl.create_default_context(cafile=cafile)
ctx.maximum_version = ssl.TLSVersion.TLSv1_3 if maxver == "1.3" else ssl.TLSVersion.TLSv1_2
def tunnel():
    s = socket.create_connection(("127.0.0.1", int(proxy_port)), timeout=10)
    s.sendall(f"CONNECT {name}:{origin_port} HTTP/1.1\r\nHost: {name}:{origin_port}\r\nUser-Agent: python\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        c = s.recv(1)
        if not c:
            sys.exit("proxy closed: " + head.decode())
        head += c
    assert head.startswith(b"HTTP/1.1 200"), head
    return s
session = None
for i in range(2):
    if i == 0 and first_direct == "1":
        raw = socket.create_connection(("127.0.0.1", int(origin_port)), timeout=10)
    else:
        raw = tunnel()
    try:
        t = ctx.wrap_socket(raw, server_hostname=name, session=session)
        greeting = t.recv(64).decode().strip()
    except (ssl.SSLError, OSError) as e:
        print(f"failed={type(e).__name__}", flush=True)
        sys.exit(0)
    print(f"reused={t.session_reused} greeting={greeting}", flush=True)
    session = t.session
    t.close()
"#;

fn python_resume(
    proxy: SocketAddr,
    origin: SocketAddr,
    ca: &TestCa,
    first_direct: bool,
    max_version: &str,
) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            PY_RESUME,
            &proxy.port().to_string(),
            &origin.port().to_string(),
            NAME,
            ca.pem_path.to_str().unwrap(),
            &basic("bob:bob-pw"),
            if first_direct { "1" } else { "0" },
            max_version,
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

#[tokio::test(flavor = "multi_thread")]
async fn a_real_client_resumes_a_session_verified_here_without_a_probe() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, accepted) =
        tls_origin_counting(ca.leaf(&[NAME]), &[&rustls::version::TLS12]).await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[origin.port()],
        &format!("\"{NAME}\" = [\"127.0.0.1\"]"),
    );
    let (gh_addr, o) = (gh.addr(), origin);
    let ca_ = &ca;
    let out = tokio::task::block_in_place(|| python_resume(gh_addr, o, ca_, false, "1.2"));
    assert_eq!(
        out,
        "reused=False greeting=hello over tls\nreused=True greeting=hello over tls\n"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "no probe for the resumption"
    );
    assert!(gh
        .log_lines(2)
        .iter()
        .all(|l| l["s-action"] == "TCP_ACCELERATED"));
    // A session the proxy never saw verified (the first handshake went
    // direct): its resumption is checked by a probe of the same address.
    let out = tokio::task::block_in_place(|| python_resume(gh_addr, o, ca_, true, "1.2"));
    assert_eq!(
        out,
        "reused=False greeting=hello over tls\nreused=True greeting=hello over tls\n"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2 + 3,
        "direct, tunnel, and the probe"
    );
}

/// Answers every ClientHello with an abbreviated handshake: a TLS 1.2
/// ServerHello echoing the client's session ID, ChangeCipherSpec and an
/// "encrypted" Finished — a resumption with no certificate to check.
fn resumed_flight(client_hello: &[u8]) -> Vec<u8> {
    // record (5) + handshake header (4) + version (2) + random (32)
    let sid_len = client_hello.get(43).copied().unwrap_or(0) as usize;
    let sid = client_hello.get(44..44 + sid_len).unwrap_or(&[]).to_vec();
    let mut hello = vec![0x03, 0x03];
    hello.extend_from_slice(&[0x42; 32]);
    hello.push(sid.len() as u8);
    hello.extend_from_slice(&sid);
    hello.extend_from_slice(&[0xc0, 0x2f, 0]);
    let mut hs = vec![0x02, 0, 0, hello.len() as u8];
    hs.extend_from_slice(&hello);
    let mut out = vec![0x16, 0x03, 0x03];
    out.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    out.extend_from_slice(&hs);
    out.extend_from_slice(&[0x14, 0x03, 0x03, 0, 1, 1]);
    out.extend_from_slice(&[0x16, 0x03, 0x03, 0, 40]);
    out.extend_from_slice(&[0x5a; 40]);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumption_nobody_saw_verified_does_not_pass_unchecked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (node, seen) = recording_server(resumed_flight, false).await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[node.port()],
        &format!("\"{NAME}\" = [\"127.0.0.1\"]"),
    );
    let reply = evasive_client(gh.addr(), &format!("{NAME}:{}", node.port()), NAME).await;
    assert!(reply.is_empty(), "{reply:?}");
    assert!(!seen.any_contains(PAYLOAD_MARKER));
    assert_eq!(
        seen.connections(),
        2,
        "the tunnel's connection and the probe"
    );
    let l = &gh.log_lines(1)[0];
    assert_eq!(l["s-action"], "TCP_DENIED");
    assert_ne!(l["x-exception-id"], "-");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls13_verdict_does_not_vouch_for_a_tls12_resumption() {
    // Genuine TLS 1.3 for a tunnel and its probe (a verdict is cached for
    // the address and SNI), then a TLS 1.2 "resumption" with no certificate.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (node, seen) = chameleon(&ca, 2, &[&rustls::version::TLS13], resumed_flight).await;
    let gh = proxy(
        dir.path(),
        &ca,
        &[node.port()],
        &format!("\"{NAME}\" = [\"127.0.0.1\"]"),
    );
    let dest = format!("{NAME}:{}", node.port());
    assert_eq!(
        rustls_client(gh.addr(), &dest, NAME, &ca).await.unwrap(),
        "hello over tls\n"
    );
    gh.log_lines(1);
    let reply = evasive_client(gh.addr(), &dest, NAME).await;
    assert!(reply.is_empty(), "{reply:?}");
    assert!(!seen.any_contains(PAYLOAD_MARKER));
    assert_eq!(
        seen.connections(),
        2,
        "the tunnel's connection and a TLS 1.2 probe"
    );
    let lines = gh.log_lines(2);
    assert_eq!(lines[1]["s-action"], "TCP_DENIED");
}

/// An OpenSSL TLS server (Python's `ssl`) speaking at most `max_version`:
/// greets, then waits for the client to close. Prints its port first.
const PY_ORIGIN: &str = r#"
import socket, ssl, sys, threading
cert, key, maxver = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.maximum_version = ssl.TLSVersion.TLSv1_3 if maxver == "1.3" else ssl.TLSVersion.TLSv1_2
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        t.sendall(b"hello over tls\n")
        t.recv(1)
    except (ssl.SSLError, OSError):
        pass
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Kills the OpenSSL origin when the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl_origin(dir: &std::path::Path, ca: &TestCa, max_version: &str) -> (Child, SocketAddr) {
    use std::io::BufRead;
    let (cert, key) = ca.leaf_pem(dir, &[NAME]);
    let mut child = std::process::Command::new("python3")
        .args([
            "-c",
            PY_ORIGIN,
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
            max_version,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("the origin printed its port");
    (Child(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_clients_and_servers_pass_at_tls12_and_tls13_with_resumption() {
    for version in ["1.2", "1.3"] {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path());
        let (_origin, addr) = openssl_origin(dir.path(), &ca, version);
        let gh = proxy(
            dir.path(),
            &ca,
            &[addr.port()],
            &format!("\"{NAME}\" = [\"127.0.0.1\"]"),
        );
        let (gh_addr, ca_) = (gh.addr(), &ca);
        let out = tokio::task::block_in_place(|| python_resume(gh_addr, addr, ca_, false, version));
        assert_eq!(
            out, "reused=False greeting=hello over tls\nreused=True greeting=hello over tls\n",
            "TLS {version}"
        );
        // rustls through the same proxy, to the OpenSSL server.
        assert_eq!(
            rustls_client(gh.addr(), &format!("{NAME}:{}", addr.port()), NAME, &ca)
                .await
                .unwrap(),
            "hello over tls\n"
        );
        assert!(
            gh.log_lines(3)
                .iter()
                .all(|l| l["s-action"] == "TCP_ACCELERATED"),
            "TLS {version}"
        );
    }
}
