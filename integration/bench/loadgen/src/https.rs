//! HTTPS through CONNECT (an intercepting proxy, or a blind one): requests
//! per second on kept-alive tunnels, or new tunnels per second (CONNECT, TLS
//! handshake, one request, close).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

use crate::{tunnel, users::exchange, Res};

#[allow(clippy::too_many_arguments)]
pub async fn rate(
    proxy: String,
    target: String,
    name: String,
    clients: usize,
    seconds: u64,
    ca_pem: String,
    keepalive: bool,
    auth: Option<String>,
) -> Res<()> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca_pem)? {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every new tunnel is a full handshake: what interception costs.
    cfg.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let last_error = Arc::new(std::sync::Mutex::new(String::new()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    // Host as the CONNECT target says (port included): Squid's bump builds
    // the URL from it.
    let req = format!(
        "GET /1k.bin HTTP/1.1\r\nHost: {target}\r\n{}\r\n",
        if keepalive {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (done, errors, last_error, connector) = (
            done.clone(),
            errors.clone(),
            last_error.clone(),
            connector.clone(),
        );
        let (proxy, target, name, auth, req) = (
            proxy.clone(),
            target.clone(),
            name.clone(),
            auth.clone(),
            req.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let one = async {
                    let tcp = tunnel(proxy.parse()?, &target, &auth).await?;
                    let mut tls = connector
                        .connect(ServerName::try_from(name.clone())?, tcp)
                        .await?;
                    loop {
                        let (status, keep) = exchange(&mut tls, req.as_bytes(), &mut buf).await?;
                        if status != 200 {
                            return Err(format!("status {status}").into());
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                        if !keepalive || !keep || Instant::now() >= deadline {
                            return Res::Ok(());
                        }
                    }
                };
                if let Err(e) = one.await {
                    errors.fetch_add(1, Ordering::Relaxed);
                    *last_error.lock().unwrap() = e.to_string();
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let n = done.load(Ordering::Relaxed);
    let e = errors.load(Ordering::Relaxed);
    if e > 0 {
        eprintln!("last error: {}", last_error.lock().unwrap());
    }
    println!("rate {:.1} done {n} errors {e}", n as f64 / seconds as f64);
    Ok(())
}
