//! HTTP/2 attacks sent for real (raw frames from Python's `h2`, see
//! integration/flood/h2_attack.py) at an intercepted connection: Rapid
//! Reset as published (HEADERS + RST_STREAM in one burst), its variant
//! that resets streams the proxy already accepted, and a CONTINUATION
//! flood. Each is bounded: the connection ends, the origin saw at most a
//! bounded number of requests, and the proxy still serves a normal client.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::tls_lab::*;
use common::*;
use http_body_util::Full;

const NAME: &str = "origin.example.test";

const POLICY: &str = r#"
[[layers]]
name = "web"
[[layers.rules]]
name = "intercept-bob"
method = ["CONNECT"]
user = ["bob"]
action = "intercept"
"#;

/// An HTTP/2-only TLS origin counting the requests it receives; `/hold`
/// is never answered (a stream the client can only cancel).
async fn h2_origin(ca: &TestCa) -> (SocketAddr, Arc<AtomicUsize>) {
    let chain = ca.leaf(&[NAME]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain.0, chain.1)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = bind_free().await;
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let hold = hyper::service::service_fn(move |req: http::Request<_>| {
                    let seen = seen.clone();
                    async move {
                        let hold = req.uri().path() == "/hold";
                        let _body: hyper::body::Incoming = req.into_body();
                        seen.fetch_add(1, Ordering::SeqCst);
                        if hold {
                            std::future::pending::<()>().await;
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .max_concurrent_streams(1000)
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), hold)
                        .await;
            });
        }
    });
    (addr, count)
}

struct Lab {
    gh: Gatehouse,
    proxy_ca: std::path::PathBuf,
    origin: SocketAddr,
    requests: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

async fn lab(extra: &str) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, requests) = h2_origin(&ca).await;
    let (gh, proxy_ca) = intercept_proxy(dir.path(), &ca, &[origin.port()], &[NAME], POLICY, extra);
    Lab {
        gh,
        proxy_ca,
        origin,
        requests,
        _dir: dir,
    }
}

impl Lab {
    /// Runs the attack script in `mode`; its JSON report.
    async fn attack(&self, mode: &str, args: &[&str]) -> serde_json::Value {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/flood/h2_attack.py");
        let out = tokio::process::Command::new("python3")
            .arg(script)
            .arg(mode)
            .arg("--proxy")
            .arg(self.gh.addr().to_string())
            .args(["--auth", "bob:bob-pw", "--target"])
            .arg(format!("{NAME}:{}", self.origin.port()))
            .arg("--ca")
            .arg(&self.proxy_ca)
            .args(args)
            .output()
            .await
            .expect("python3 runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// A normal client afterwards: one GET, answered 200 by the origin.
    async fn still_serves(&self) {
        let before = self.requests.load(Ordering::SeqCst);
        let r = self.attack("get", &["--path", "/"]).await;
        assert_eq!(r["statuses"], serde_json::json!(["200"]), "{r}");
        assert_eq!(self.requests.load(Ordering::SeqCst), before + 1);
    }
}

/// ENHANCE_YOUR_CALM (RFC 9113 §7).
const ENHANCE_YOUR_CALM: u64 = 0xb;

#[tokio::test(flavor = "multi_thread")]
async fn rapid_reset_ends_the_connection_and_the_origin_sees_a_bounded_number() {
    let l = lab("[http2]\nmax_client_resets = 50\n").await;
    let r = l.attack("rapid", &["--count", "5000"]).await;
    let calm = r["goaway"].as_u64() == Some(ENHANCE_YOUR_CALM);
    assert!(calm || r["closed"] == true, "{r}");
    // At most the streams h2 let through before its own counter (20), ours
    // (50) and the concurrent-stream limit (100) could let reach the origin.
    let seen = l.requests.load(Ordering::SeqCst);
    assert!(seen <= 170, "origin saw {seen} requests: {r}");
    l.still_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resetting_streams_after_the_proxy_accepted_them_ends_the_connection() {
    // h2's pending-accept counter never sees these: each stream is
    // accepted (its PING answered after it) before the client cancels it.
    let l = lab("[http2]\nmax_client_resets = 50\n").await;
    let r = l
        .attack("accepted", &["--count", "30", "--batch", "20"])
        .await;
    assert_eq!(r["closed"], true, "{r}");
    let rounds = r["done"].as_u64().unwrap();
    assert!(
        rounds <= 3,
        "{rounds} rounds of 20 resets before the close: {r}"
    );
    let seen = l.requests.load(Ordering::SeqCst);
    assert!(seen <= 80, "origin saw {seen} requests: {r}");
    l.still_serves().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continuation_flood_is_cut_off_and_reaches_no_origin() {
    let l = lab("").await;
    // 2,000 frames of 16 KB: 32 MB of one header block, if nothing stops it.
    let r = l.attack("continuation", &["--count", "2000"]).await;
    assert_eq!(r["closed"], true, "{r}");
    let sent = r["done"].as_u64().unwrap();
    assert!(sent < 2000, "every CONTINUATION frame was taken: {r}");
    assert_eq!(l.requests.load(Ordering::SeqCst), 0, "{r}");
    l.still_serves().await;
}
