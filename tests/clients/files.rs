//! A static file origin on loopback, plain or TLS: what a package index, an
//! apt repository or a git server (dumb HTTP) is to its clients. `GET` and
//! `HEAD`; a directory serves its `index.html`; a query is ignored (git's
//! `info/refs?service=…` gets the dumb `info/refs`); `..` is refused.

use std::convert::Infallible;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

type Chain = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// Serves `root` on a free loopback port (TLS with `chain` if given); the port.
pub async fn serve(root: PathBuf, chain: Option<Chain>) -> u16 {
    let listener = crate::common::bind_free().await;
    let port = listener.local_addr().unwrap().port();
    let tls = chain.map(|c| crate::common::tls_lab::acceptor(c, rustls::DEFAULT_VERSIONS));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (root, tls) = (root.clone(), tls.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(root.clone(), req));
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(tls) => {
                        if let Ok(s) = tls.accept(tcp).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                }
            });
        }
    });
    port
}

async fn answer(
    root: PathBuf,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    let status = |s: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::from(s.as_str().to_string())));
        *r.status_mut() = s;
        Ok(r)
    };
    if path.split('/').any(|seg| seg == "..") {
        return status(StatusCode::BAD_REQUEST);
    }
    let mut file = root.join(path.trim_start_matches('/'));
    if file.is_dir() {
        file = file.join("index.html");
    }
    let Ok(bytes) = tokio::fs::read(&file).await else {
        return status(StatusCode::NOT_FOUND);
    };
    let kind = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html",
        Some("txt") => "text/plain",
        Some("whl" | "deb") => "application/octet-stream",
        _ => "application/octet-stream",
    };
    let len = bytes.len();
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(bytes)
    };
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert("content-type", kind.parse().unwrap());
    r.headers_mut()
        .insert("content-length", len.to_string().parse().unwrap());
    Ok(r)
}
