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
