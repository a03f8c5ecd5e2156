//! TLS interception on real sockets: curl and Python's `http.client` through
//! an intercepting policy to an HTTPS origin (hyper over rustls), with a URL
//! rule inside HTTPS, an origin whose certificate fails, a client that
//! refuses the minted certificate, a certificate-less fake caught, and the
//! seed's allowed group still tunnelling raw.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::tls_lab::*;
use common::*;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const NAME: &str = "origin.example.test";

type Seen = Arc<Mutex<Vec<String>>>;

/// An HTTPS origin: `/` greets, `/echo` echoes the body, `/chunked` streams
/// three chunks, `/admin` is a secret. Records each request's method and path.
async fn https_origin(
    chain: (
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    ),
) -> (SocketAddr, Seen) {
    let tls = acceptor(chain, rustls::DEFAULT_VERSIONS);
    let listener = bind_free().await;
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
struct Chunks(std::collections::VecDeque<Bytes>);

impl futures_core::Stream for Chunks {
    type Item = Result<Frame<Bytes>, Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

struct Lab {
    gh: Gatehouse,
    proxy_ca: std::path::PathBuf,
}

/// A proxy with the local realm, `origin_ca` trusted for origins, an
/// interception CA, `policy` and `extra` config.
fn lab(dir: &std::path::Path, ca: &TestCa, ports: &[u16], policy: &str, extra: &str) -> Lab {
    let (proxy_ca, proxy_key) = gatehouse::intercept::ca::init(&dir.join("proxy-ca")).unwrap();
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let cfg = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ \"{NAME}\" = [\"127.0.0.1\"] }}\n\
         [tunnel]\nallowed_ports = [{}]\n\
         [detection]\nenabled = true\ntimeout = \"3s\"\nca_file = \"{}\"\n\
         [intercept]\nca_cert = \"{}\"\nca_key = \"{}\"\n\
         [policy]\nfile = \"{}\"\n{extra}",
        local_realm(dir),
        ports.join(", "),
        ca.pem_path.display(),
        proxy_ca.display(),
        proxy_key.display(),
        policy_path.display(),
    );
    Lab {
        gh: Gatehouse::start("", &cfg),
        proxy_ca,
    }
}

const INTERCEPT_BOB: &str = r#"
[[layers]]
name = "https"
[[layers.rules]]
name = "intercept-bob"
method = ["CONNECT"]
user = ["bob"]
action = "intercept"
[[layers.rules]]
name = "no-admin"
url = ["^https://[^/]+/admin"]
action = "deny"
reason = "admin_blocked"
"#;

fn curl(proxy: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-x", &format!("http://{proxy}")])
        .args(["--proxy-user", "bob:bob-pw"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_inside_https_are_judged_forwarded_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let origin_ca = TestCa::new(dir.path());
    let (origin, seen) = https_origin(origin_ca.leaf(&[NAME])).await;
    let l = lab(dir.path(), &origin_ca, &[origin.port()], INTERCEPT_BOB, "");
    let base = format!("https://{NAME}:{}", origin.port());
    let ca = l.proxy_ca.to_str().unwrap();
    let w = "\n[%{http_code} %{num_connects}]\n";
    let (ok, out) = tokio::task::block_in_place(|| {
        curl(
            l.gh.addr(),
            &[
                "--cacert",
                ca,
                "-w",
                w,
                &format!("{base}/"),
                &format!("{base}/chunked"),
                &format!("{base}/admin"),
                "--next",
                "-x",
                &format!("http://{}", l.gh.addr()),
                "--proxy-user",
                "bob:bob-pw",
                "--cacert",
                ca,
                "-w",
                w,
                "-d",
                "posted-body",
                &format!("{base}/echo"),
            ],
        )
    });
    assert!(ok, "{out}");
    assert!(out.contains("hello from origin\n[200 1]"), "{out}");
    assert!(
        out.contains("one-two-three\n[200 0]"),
        "kept alive, streamed: {out}"
    );
    assert!(
        out.contains("admin_blocked") && out.contains("[403 0]"),
        "{out}"
    );
    assert!(out.contains("posted-body\n[200 0]"), "{out}");
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /", "GET /chunked", "POST /echo"],
        "the origin never saw /admin"
    );
    let lines = l.gh.log_lines(5);
    let inner: Vec<_> = lines
        .iter()
        .filter(|x| x["x-intercepted"] == "1" && x["cs-method"] != "CONNECT")
        .collect();
    assert_eq!(inner.len(), 4, "{lines:?}");
    for x in &inner {
        assert_eq!(x["cs-uri-scheme"], "https");
        assert_eq!(x["cs-username"], "bob");
        assert_eq!(x["cs-host"], NAME);
    }
    let admin = inner.iter().find(|x| x["cs-uri-path"] == "/admin").unwrap();
    assert_eq!(admin["x-exception-id"], "admin_blocked");
    assert_eq!(admin["x-rule"], "no-admin");
    assert_eq!(admin["sc-status"], "403");
    let echo = inner.iter().find(|x| x["cs-uri-path"] == "/echo").unwrap();
    assert_eq!(
        (echo["cs-method"].as_str(), echo["cs-bytes"].as_str()),
        ("POST", "11")
    );
}
