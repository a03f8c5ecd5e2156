//! The far ends of CONNECT tunnels for the detection tests, all real sockets:
//! a TLS origin with a certificate from a test CA, a self-signed one, a Skype
//! "supernode" that answers a hello with a ServerHello and no Certificate, an
//! SSH-looking server, and the Skype client itself.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The marker the Skype client sends after its hello: it must never reach a
/// supernode while detection refuses the tunnel.
pub const PAYLOAD_MARKER: &[u8] = b"SKYPE-PAYLOAD-MARKER";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test CA, written to `ca.pem` in `dir` (for `detection.ca_file`).
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert: CertificateDer<'static>,
    pub pem_path: PathBuf,
}

impl TestCa {
    pub fn new(dir: &std::path::Path) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Gatehouse Test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem_path = dir.join("ca.pem");
        std::fs::write(&pem_path, cert.pem()).unwrap();
        TestCa {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
            pem_path,
        }
    }

    /// A leaf certificate for `names` (DNS names or IPs), signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }
}

impl TestCa {
    /// A leaf for `names` written as PEM files in `dir` (for servers that
    /// are not rustls): (certificate path, key path).
    pub fn leaf_pem(&self, dir: &std::path::Path, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (dir.join("leaf.pem"), dir.join("leaf.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// A self-signed certificate for `names`.
pub fn self_signed(names: &[&str]) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    (
        vec![ck.cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
    )
}

/// A TLS origin: after the handshake it greets, then echoes.
pub async fn tls_origin(
    chain: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> SocketAddr {
    tls_origin_counting(chain, rustls::DEFAULT_VERSIONS).await.0
}

/// A rustls acceptor for `chain`, speaking only `versions`.
pub fn acceptor(
    chain: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsAcceptor {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain.0, chain.1)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

/// Completes a TLS handshake on `tcp`, greets, then echoes.
pub async fn serve_tls(acceptor: tokio_rustls::TlsAcceptor, tcp: TcpStream) {
    let Ok(mut tls) = acceptor.accept(tcp).await else {
        return;
    };
    if tls.write_all(b"hello over tls\n").await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while let Ok(n) = tls.read(&mut buf).await {
        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// A TLS origin speaking only `versions`, with the count of TCP connections
/// it accepted (the tunnels' and any probe's).
pub async fn tls_origin_counting(
    chain: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> (SocketAddr, Arc<AtomicUsize>) {
    let acceptor = acceptor(chain, versions);
    let listener = super::bind_free().await;
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_tls(acceptor.clone(), tcp));
        }
    });
    (addr, accepted)
}

/// Everything a test server received, per connection.
#[derive(Clone, Default)]
pub struct Received(pub Arc<Mutex<Vec<Vec<u8>>>>);

impl Received {
    pub fn any_contains(&self, needle: &[u8]) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.windows(needle.len()).any(|w| w == needle))
    }
    pub fn connections(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

pub async fn recording_server(
    greeting: fn(&[u8]) -> Vec<u8>,
    speaks_first: bool,
) -> (SocketAddr, Received) {
    let listener = super::bind_free().await;
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let rec = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let rec = rec.clone();
            tokio::spawn(async move {
                let idx = {
                    let mut all = rec.0.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                if speaks_first {
                    let _ = s.write_all(&greeting(&[])).await;
                }
                let mut answered = speaks_first;
                let mut buf = [0u8; 8192];
                while let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await
                {
                    if n == 0 {
                        break;
                    }
                    rec.0.lock().unwrap()[idx].extend_from_slice(&buf[..n]);
                    if !answered {
                        answered = true;
                        if s.write_all(&greeting(&buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    (addr, received)
}

/// A TLS 1.2 ServerHello followed by ServerHelloDone: no Certificate.
pub fn server_hello_without_certificate(_: &[u8]) -> Vec<u8> {
    let mut hello = vec![0x03, 0x03];
    hello.extend_from_slice(&[0x42; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&[0xc0, 0x2f]); // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    hello.push(0); // no compression
    let mut hs = vec![0x02, 0, 0, hello.len() as u8];
    hs.extend_from_slice(&hello);
    hs.extend_from_slice(&[0x0e, 0, 0, 0]); // ServerHelloDone
    let mut record = vec![0x16, 0x03, 0x03];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Skype's supernode: speaks "TLS" with no certificate, records what it gets.
pub async fn supernode() -> (SocketAddr, Received) {
    recording_server(server_hello_without_certificate, false).await
}

/// A server that greets with an SSH banner.
pub async fn ssh_server() -> (SocketAddr, Received) {
    recording_server(|_| b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec(), true).await
}

/// A syntactically valid ClientHello, as rustls writes it, for `name`.
pub fn client_hello(name: &str) -> Vec<u8> {
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), server_name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

/// Sends a CONNECT through the proxy and returns the stream after a 200,
/// or the status line's code when refused.
pub async fn connect_through(
    proxy: SocketAddr,
    dest: &str,
    extra_headers: &str,
) -> Result<TcpStream, u16> {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n{extra_headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    let status = super::status_of(&String::from_utf8_lossy(&head));
    if status == 200 {
        Ok(s)
    } else {
        Err(status)
    }
}

/// What the Skype client got back after sending its hello and payload.
pub struct SkypeResult {
    pub reply: Vec<u8>,
}

/// Skype: CONNECT without User-Agent, a ClientHello, then payload; reads
/// whatever comes back until the proxy closes or 3 s of silence.
pub async fn skype(proxy: SocketAddr, dest: SocketAddr, auth: &str) -> SkypeResult {
    let mut s = connect_through(
        proxy,
        &dest.to_string(),
        &format!("Proxy-Authorization: {auth}\r\n"),
    )
    .await
    .expect("the CONNECT itself is answered 200");
    let mut first = client_hello(&dest.ip().to_string());
    first.extend_from_slice(PAYLOAD_MARKER);
    let _ = s.write_all(&first).await;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
    }
    SkypeResult { reply }
}

/// A browser-style TLS client through the tunnel: real handshake, reads the greeting.
pub async fn tls_through(
    tunnel: TcpStream,
    sni: &str,
    ca: &CertificateDer<'static>,
) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut tls = connector
        .connect(name, tunnel)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf).await.map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// What an HTTPS origin saw: `METHOD /path`, one per request.
pub type Seen = Arc<Mutex<Vec<String>>>;

/// An HTTPS origin: `/` greets, `/echo` echoes the body, `/chunked` streams
/// three chunks, `/admin` is a secret. Records each request's method and path.
pub async fn https_origin(
    chain: (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
) -> (SocketAddr, Seen) {
    let tls = acceptor(chain, rustls::DEFAULT_VERSIONS);
    let listener = super::bind_free().await;
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let rec = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, rec) = (tls.clone(), rec.clone());
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let rec = rec.clone();
                    async move {
                        rec.lock()
                            .unwrap()
                            .push(format!("{} {}", req.method(), req.uri().path()));
                        let path = req.uri().path().to_string();
                        let body: http_body_util::combinators::BoxBody<Bytes, Infallible> =
                            match path.as_str() {
                                "/echo" => {
                                    let b = req.into_body().collect().await.unwrap().to_bytes();
                                    Full::new(b).boxed()
                                }
                                "/chunked" => StreamBody::new(Chunks(
                                    ["one-", "two-", "three"].map(Bytes::from).into(),
                                ))
                                .boxed(),
                                "/admin" => Full::new(Bytes::from("secret admin page")).boxed(),
                                _ => Full::new(Bytes::from("hello from origin")).boxed(),
                            };
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A body of a few chunks with no length: hyper sends it chunked.
pub struct Chunks(std::collections::VecDeque<Bytes>);

impl futures_core::Stream for Chunks {
    type Item = Result<Frame<Bytes>, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

impl TestCa {
    /// A leaf for `names` carrying `key` (any type rcgen can sign with,
    /// e.g. an RSA key from [`rsa_key`]), signed by this CA: (DER, PEM).
    pub fn leaf_with_key(
        &self,
        names: &[&str],
        key: &KeyPair,
    ) -> (CertificateDer<'static>, String) {
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(key, &self.issuer).unwrap();
        (cert.der().clone(), cert.pem())
    }
}

/// A 2048-bit RSA key (rcgen with ring cannot generate one), made by
/// `openssl genpkey` and written to `path` as PKCS#8 PEM.
pub fn rsa_key(path: &std::path::Path) -> KeyPair {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(path)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    KeyPair::from_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A TLS server process, killed when dropped, and the port it accepts on.
pub struct TlsServer {
    child: std::process::Child,
    pub port: u16,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd`, a server that prints `ACCEPT 127.0.0.1:<port>` once it
/// listens (as `openssl s_server` does), and returns when it does.
pub fn tls_server(cmd: &mut std::process::Command) -> TlsServer {
    use std::io::BufRead;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let port = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "{cmd:?} exited");
        if let Some(port) = line.trim().strip_prefix("ACCEPT 127.0.0.1:") {
            break port.parse().unwrap();
        }
    };
    // Drained, so that the server never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    TlsServer { child, port }
}

/// `openssl s_server -www` with `cert` and `key` and `args`, on a port the
/// kernel picks. It serves one connection at a time.
pub fn s_server(cert: &std::path::Path, key: &std::path::Path, args: &[&str]) -> TlsServer {
    tls_server(
        std::process::Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-www", "-cert"])
            .arg(cert)
            .arg("-key")
            .arg(key)
            .args(args),
    )
}

/// An OpenSSL server (Python's `ssl`) answering `GET` as `s_server -www`
/// does (`New, TLSv1.2, Cipher is …`), one thread per connection.
const PY_WWW: &str = r#"
import socket, ssl, sys, threading
cert, key, version, ciphers = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, "TLSv1_" + version[-1])
if ciphers:
    ctx.set_ciphers(ciphers)
srv = socket.create_server(("127.0.0.1", 0))
print(f"ACCEPT 127.0.0.1:{srv.getsockname()[1]}", flush=True)
def serve(c):
    try:
        c.settimeout(60)
        t = ctx.wrap_socket(c, server_side=True)
        req = b""
        while b"\r\n\r\n" not in req:
            d = t.recv(4096)
            if not d:
                return
            req += d
        t.sendall(f"HTTP/1.0 200 ok\r\n\r\nNew, {t.version()}, Cipher is {t.cipher()[0]}\n".encode())
        t.unwrap()
    except (ssl.SSLError, OSError):
        pass
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// [`PY_WWW`] speaking only TLS `version` ("1.2", "1.3"), `ciphers` (OpenSSL
/// syntax; empty: the defaults): for a server that must answer a second
/// connection (the proxy's probe) while the first one's handshake waits.
pub fn threaded_www(
    cert: &std::path::Path,
    key: &std::path::Path,
    version: &str,
    ciphers: &str,
) -> TlsServer {
    tls_server(
        std::process::Command::new("python3")
            .args(["-c", PY_WWW])
            .arg(cert)
            .arg(key)
            .args([version, ciphers]),
    )
}

/// Python's `ssl` through the proxy: CONNECT by hand (Basic `user_pass`),
/// TLS ≤ `version` offering only `cipher` at TLS 1.2 (empty: the defaults),
/// `GET /`; prints the answer.
const PY_GET: &str = r#"
import socket, ssl, sys
proxy_port, dest, cafile, auth, version, cipher = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)
ctx.maximum_version = getattr(ssl.TLSVersion, "TLSv1_" + version[-1])
if cipher:
    ctx.set_ciphers(cipher)
s = socket.create_connection(("127.0.0.1", int(proxy_port)), timeout=60)
s.sendall(f"CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
head = b""
while not head.endswith(b"\r\n\r\n"):
    c = s.recv(1)
    if not c:
        sys.exit("proxy closed: " + head.decode())
    head += c
assert head.startswith(b"HTTP/1.1 200"), head
name = dest.rsplit(":", 1)[0]
t = ctx.wrap_socket(s, server_hostname=name)
t.sendall(f"GET / HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
body = b""
while c := t.recv(65536):
    body += c
print(body.decode(errors="replace"))
"#;

/// Runs a client to completion: its stdout; a failure fails the test.
pub async fn client_output(cmd: &mut tokio::process::Command) -> String {
    let out = cmd
        .output()
        .await
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?}: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `GET https://dest/` with Python's `ssl` through `proxy` (see [`PY_GET`]).
pub async fn python_get(
    proxy: SocketAddr,
    dest: &str,
    ca: &TestCa,
    user_pass: &str,
    version: &str,
    cipher: &str,
) -> String {
    client_output(
        tokio::process::Command::new("python3")
            .args(["-c", PY_GET, &proxy.port().to_string(), dest])
            .arg(&ca.pem_path)
            .args([&super::basic(user_pass), version, cipher]),
    )
    .await
}

/// `GET https://dest/` with curl through `proxy` (Basic `user_pass`),
/// trusting `ca`, with `tls_args` (e.g. `--tls-max 1.2 --ciphers …`).
pub async fn curl_get(
    proxy: SocketAddr,
    dest: &str,
    ca: &TestCa,
    user_pass: &str,
    tls_args: &[&str],
) -> String {
    client_output(
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "60", "--cacert"])
            .arg(&ca.pem_path)
            .arg("--proxy")
            .arg(format!("http://{user_pass}@{proxy}"))
            .args(tls_args)
            .arg(format!("https://{dest}/")),
    )
    .await
}

/// `GET /` with rustls (TLS `version` only, ECDHE suites) through a tunnel
/// to `dest` opened with `headers`; the answer, read until the server closes.
pub async fn rustls_get(
    proxy: SocketAddr,
    dest: &str,
    headers: &str,
    ca: &TestCa,
    version: &'static rustls::SupportedProtocolVersion,
) -> String {
    let tunnel = connect_through(proxy, dest, headers).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = dest.rsplit_once(':').map_or(dest, |(host, _)| host);
    let name = ServerName::try_from(name.to_string()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let mut tls = connector.connect(name, tunnel).await.unwrap();
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let (mut body, mut buf) = (Vec::new(), [0u8; 16384]);
    while let Ok(n @ 1..) = tls.read(&mut buf).await {
        body.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// A TLS vector with a 16-bit length.
pub fn tls_vec16(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u16).to_be_bytes()[..], body].concat()
}

/// A handshake message: type, 24-bit length, body.
pub fn tls_handshake(kind: u8, body: &[u8]) -> Vec<u8> {
    [&[kind][..], &(body.len() as u32).to_be_bytes()[1..], body].concat()
}

/// A TLS 1.2 record of content type `kind`.
pub fn tls_record(kind: u8, body: &[u8]) -> Vec<u8> {
    [&[kind, 3, 3][..], &tls_vec16(body)].concat()
}

/// A TLS 1.2 ClientHello for `name`, written by hand as an OpenSSL client
/// with RSA key exchange enabled would: AES128-GCM-SHA256 (0x009c) and the
/// two ECDHE-AES128-GCM suites (0xc02b, 0xc02f), x25519 and P-256, ECDSA,
/// RSA-PSS and PKCS#1 SHA-256 signatures; offering to resume session `sid`.
/// Its client random is `[0x5c; 32]`.
pub fn client_hello12(name: &str, sid: &[u8]) -> Vec<u8> {
    // A fresh random, as every real client sends.
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).unwrap();
    client_hello12_with(name, sid, random)
}

/// [`client_hello12`] with a chosen client random (to play one again).
pub fn client_hello12_with(name: &str, sid: &[u8], random: [u8; 32]) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend(random);
    body.push(sid.len() as u8);
    body.extend(sid);
    body.extend([0, 6, 0x00, 0x9c, 0xc0, 0x2b, 0xc0, 0x2f, 1, 0]);
    let ext = |kind: u16, body: Vec<u8>| [&kind.to_be_bytes()[..], &tls_vec16(&body)].concat();
    let sni = [&[0u8][..], &tls_vec16(name.as_bytes())].concat();
    let exts = [
        ext(0, tls_vec16(&sni)),
        ext(10, tls_vec16(&[0, 0x1d, 0, 0x17])),
        ext(11, vec![1, 0]),
        ext(13, tls_vec16(&[4, 3, 8, 4, 4, 1])),
    ]
    .concat();
    body.extend(tls_vec16(&exts));
    tls_record(0x16, &tls_handshake(1, &body))
}

/// What an [`answering_server`] sends once the [`PAYLOAD_MARKER`] reached it.
pub const PAYLOAD_ACK: &[u8] = b"SERVER-GOT-PAYLOAD";

/// How a server answers the ClientHello on its `n`th connection (0-based).
pub type Answer = Arc<dyn Fn(usize, &[u8]) -> Vec<u8> + Send + Sync>;

/// A server that reads each connection's first record (the ClientHello),
/// answers it with `answer`, records everything it receives, and sends
/// [`PAYLOAD_ACK`] once the [`PAYLOAD_MARKER`] arrived. Its port.
pub async fn answering_server(answer: Answer) -> (u16, Received) {
    let listener = super::bind_free().await;
    let port = listener.local_addr().unwrap().port();
    let seen = Received::default();
    let rec = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            let (rec, answer) = (rec.clone(), answer.clone());
            tokio::spawn(async move {
                let idx = {
                    let mut all = rec.0.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let (mut got, mut buf) = (Vec::new(), [0u8; 8192]);
                let (mut answered, mut acked) = (false, false);
                while let Ok(Ok(k @ 1..)) =
                    tokio::time::timeout(Duration::from_secs(20), tcp.read(&mut buf)).await
                {
                    got.extend_from_slice(&buf[..k]);
                    rec.0.lock().unwrap()[idx].extend_from_slice(&buf[..k]);
                    let hello = got
                        .get(3..5)
                        .map(|l| 5 + u16::from_be_bytes([l[0], l[1]]) as usize);
                    let mut out = Vec::new();
                    if !answered && hello.is_some_and(|l| got.len() >= l) {
                        answered = true;
                        out = answer(n, &got);
                    }
                    if !acked
                        && got
                            .windows(PAYLOAD_MARKER.len())
                            .any(|w| w == PAYLOAD_MARKER)
                    {
                        acked = true;
                        out.extend(PAYLOAD_ACK);
                    }
                    if tcp.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
            n += 1;
        }
    });
    (port, seen)
}

/// A proxy with the local realm, detection trusting `ca`, an interception
/// CA (its certificate's path returned, for clients to trust), the lab
/// `names` on 127.0.0.1, CONNECT open to `ports`, the policy file
/// `policy`, and `extra` config.
pub fn intercept_proxy(
    dir: &std::path::Path,
    ca: &TestCa,
    ports: &[u16],
    names: &[&str],
    policy: &str,
    extra: &str,
) -> (super::Gatehouse, PathBuf) {
    let (proxy_ca, proxy_key) = gatehouse::intercept::ca::init(&dir.join("proxy-ca")).unwrap();
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let hosts: Vec<String> = names
        .iter()
        .map(|n| format!("\"{n}\" = [\"127.0.0.1\"]"))
        .collect();
    let cfg = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ {} }}\n\
         [tunnel]\nallowed_ports = [{}]\n\
         [detection]\nenabled = true\ntimeout = \"3s\"\nca_file = \"{}\"\n\
         [intercept]\nca_cert = \"{}\"\nca_key = \"{}\"\n\
         [policy]\nfile = \"{}\"\n{extra}",
        super::local_realm(dir),
        hosts.join(", "),
        ports.join(", "),
        ca.pem_path.display(),
        proxy_ca.display(),
        proxy_key.display(),
        policy_path.display(),
    );
    (super::Gatehouse::start("", &cfg), proxy_ca)
}
