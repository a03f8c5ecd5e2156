//! TLS through CONNECT: an origin with a certificate from its own CA, and a
//! client that measures handshakes per second through a proxy (whose SSL check
//! trusts that CA) or directly.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{tunnel, Res};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS origin: `addr` speaks TLS 1.3 (and 1.2), `addr12` (if given)
/// TLS 1.2 only, both with the same certificate from the same CA.
pub async fn origin(addr: SocketAddr, ca_out: String, addr12: Option<SocketAddr>) -> Res<()> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Gatehouse Bench CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["*.bench.test".to_string(), "bench.test".to_string()])?
        .signed_by(&key, &issuer)?;
    let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let acceptor = |versions: &[&'static rustls::SupportedProtocolVersion]| -> Res<_> {
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
    };
    let default = acceptor(rustls::DEFAULT_VERSIONS)?;
    let tls12 = acceptor(&[&rustls::version::TLS12])?;
    // The CA goes out before the ports open: a caller that waits for a port has it.
    std::fs::write(&ca_out, ca_cert.pem())?;
    let l = TcpListener::bind(addr).await?;
    if let Some(a) = addr12 {
        let l12 = TcpListener::bind(a).await?;
        tokio::spawn(serve(l12, tls12));
    }
    serve(l, default).await
}

async fn serve(l: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> Res<()> {
    loop {
        let (s, _) = l.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let Ok(mut tls) = acceptor.accept(s).await else {
                return;
            };
            let mut b = [0u8; 5];
            if tls.read_exact(&mut b).await.is_ok() {
                let _ = tls.write_all(b"pong\n").await;
                let _ = tls.shutdown().await;
            }
        });
    }
}

/// Handshakes per second: CONNECT (unless `direct`), a TLS handshake with
/// SNI `www.bench.test` (warm) or a new name each time (cold), ping/pong, and
/// the origin's close coming back.
pub async fn rate(
    proxy: String,
    target: String,
    clients: usize,
    seconds: u64,
    ca_pem: String,
    cold: bool,
    auth: Option<String>,
) -> Res<()> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca_pem)? {
        roots.add(c?)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Full handshakes every time: warm and cold then differ only in the proxy.
    cfg.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    // Names unique across runs against the same proxy, so "cold" stays cold.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let run = format!("{}x{}", std::process::id(), now.as_millis() % 1_000_000);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    let last_error = Arc::new(std::sync::Mutex::new(String::new()));
    for _ in 0..clients {
        let (done, errors, seq, connector, proxy, target, auth, run, last_error) = (
            done.clone(),
            errors.clone(),
            seq.clone(),
            connector.clone(),
            proxy.clone(),
            target.clone(),
            auth.clone(),
            run.clone(),
            last_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let name = if cold {
                    format!("c{run}-{}.bench.test", seq.fetch_add(1, Ordering::Relaxed))
                } else {
                    "www.bench.test".to_string()
                };
                let one = async {
                    let tcp = if proxy == "direct" {
                        let s = TcpStream::connect(&target).await?;
                        s.set_nodelay(true)?;
                        s
                    } else {
                        tunnel(proxy.parse()?, &target, &auth).await?
                    };
                    let mut tls = connector.connect(ServerName::try_from(name)?, tcp).await?;
                    tls.write_all(b"ping\n").await?;
                    let mut b = [0u8; 5];
                    tls.read_exact(&mut b).await?;
                    let mut rest = Vec::new();
                    let _ = tls.read_to_end(&mut rest).await;
                    Res::Ok(())
                };
                match one.await {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        *last_error.lock().unwrap() = e.to_string();
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let n = done.load(Ordering::Relaxed);
    let e = errors.load(Ordering::Relaxed);
    println!(
        "rate {:.1} done {} errors {}",
        n as f64 / seconds as f64,
        n,
        e
    );
    if e > 0 {
        eprintln!("last error: {}", last_error.lock().unwrap());
    }
    Ok(())
}
