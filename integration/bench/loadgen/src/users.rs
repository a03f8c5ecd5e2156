//! Many users through one authenticating proxy: keep-alive GETs, each with the
//! Basic credentials of the next user in line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Res;

pub async fn run(
    proxy: SocketAddr,
    url: String,
    first: u64,
    count: u64,
    clients: usize,
    mode: String,
) -> Res<()> {
    let once = mode == "once";
    let deadline = if once {
        None
    } else {
        Some(Instant::now() + Duration::from_secs(mode.parse()?))
    };
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, done, errors, url) = (next.clone(), done.clone(), errors.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn: Option<TcpStream> = None;
            let mut buf = Vec::with_capacity(4096);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if once && i >= count {
                    break;
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let n = first + i % count;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("u{n:04}:pw-{n:04}"));
                let req = format!("GET {url} HTTP/1.1\r\nHost: bench\r\nProxy-Authorization: Basic {token}\r\n\r\n");
                let s = match conn.as_mut() {
                    Some(s) => s,
                    None => {
                        let Ok(s) = TcpStream::connect(proxy).await else {
                            errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let _ = s.set_nodelay(true);
                        conn.insert(s)
                    }
                };
                match exchange(s, req.as_bytes(), &mut buf).await {
                    Ok((200, keep)) => {
                        done.fetch_add(1, Ordering::Relaxed);
                        if !keep {
                            conn = None;
                        }
                    }
                    Ok((_, keep)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if !keep {
                            conn = None;
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "rate {:.1} done {} errors {} seconds {:.3}",
        n as f64 / secs,
        n,
        errors.load(Ordering::Relaxed),
        secs
    );
    Ok(())
}

/// One request and its response (head parsed by httparse, body by Content-Length).
/// Returns the status and whether the connection stays open.
pub(crate) async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> Res<(u16, bool)> {
    s.write_all(req).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = resp.parse(buf)? {
            let status = resp.code.unwrap_or(0);
            let mut len = 0usize;
            let mut keep = true;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    len = std::str::from_utf8(h.value)?.trim().parse()?;
                } else if h.name.eq_ignore_ascii_case("connection")
                    && h.value.eq_ignore_ascii_case(b"close")
                {
                    keep = false;
                }
            }
            let mut have = buf.len() - head;
            while have < len {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err("closed in body".into());
                }
                have += n;
            }
            return Ok((status, keep));
        }
        if buf.len() > 64 * 1024 {
            return Err("head too long".into());
        }
    }
}
