//! Kerberos sign-ins through a proxy: every connection carries a fresh
//! SPNEGO token (a new GSS context, so a new AP-REQ with its own
//! authenticator, as a browser sends for each new connection), one GET with
//! `Connection: close`, then the proxy closes.
//!
//! Tokens are made before the clock starts (MIT's initiator through
//! libgssapi, from the credential cache in KRB5CCNAME), so the client's own
//! Kerberos work is not in the measured window; they are checked to be
//! distinct, and used within seconds, far inside the acceptor's 5-minute
//! clock skew.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::users::exchange;
use crate::Res;

/// `count` SPNEGO tokens for `service` (`HTTP@proxy.example.test`), base64,
/// made on every core (the proxy is idle meanwhile), checked distinct.
fn tokens(service: &str, count: usize) -> Res<Vec<String>> {
    let cred = Cred::acquire(None, None, CredUsage::Initiate, None)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = count.div_ceil(threads);
    let parts: Vec<Res<Vec<String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let cred = cred.clone();
                let n = per.min(count.saturating_sub(t * per));
                s.spawn(move || make(&cred, service, n))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("token thread panicked".into()))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(count);
    for part in parts {
        out.extend(part?);
    }
    let distinct: HashSet<&String> = out.iter().collect();
    if distinct.len() != out.len() {
        return Err("two GSS contexts gave the same token".into());
    }
    Ok(out)
}

fn make(cred: &Cred, service: &str, count: usize) -> Res<Vec<String>> {
    let target = Name::new(service.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut ctx = ClientCtx::new(
            Some(cred.clone()),
            target.duplicate()?,
            CtxFlags::GSS_C_MUTUAL_FLAG | CtxFlags::GSS_C_SEQUENCE_FLAG,
            Some(GSS_MECH_SPNEGO),
        );
        let tok = ctx.step(None, None)?.ok_or("GSS made no initial token")?;
        out.push(base64::engine::general_purpose::STANDARD.encode(&*tok));
    }
    Ok(out)
}

pub async fn run(
    proxy: SocketAddr,
    url: String,
    service: String,
    count: usize,
    clients: usize,
    seconds: u64,
) -> Res<()> {
    let made = Instant::now();
    let svc = service.clone();
    let tokens = Arc::new(tokio::task::spawn_blocking(move || tokens(&svc, count)).await??);
    let gen_secs = made.elapsed().as_secs_f64();
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (next, done, errors, url, tokens, first_error) = (
            next.clone(),
            done.clone(),
            errors.clone(),
            url.clone(),
            tokens.clone(),
            first_error.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else { break };
                let req = format!(
                    "GET {url} HTTP/1.1\r\nHost: bench\r\nProxy-Authorization: Negotiate {token}\r\nConnection: close\r\n\r\n"
                );
                let outcome = match TcpStream::connect(proxy).await {
                    Ok(mut s) => {
                        let _ = s.set_nodelay(true);
                        let r = tokio::time::timeout(Duration::from_secs(30), exchange(&mut s, req.as_bytes(), &mut buf)).await;
                        // Let the proxy close first (Connection: close): no TIME_WAIT pile-up here.
                        let mut rest = [0u8; 1024];
                        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut rest)).await {
                            if n == 0 {
                                break;
                            }
                        }
                        match r {
                            Ok(Ok((200, _))) => Ok(()),
                            Ok(Ok((status, _))) => Err(format!("status {status}")),
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(_) => Err("timed out".into()),
                        }
                    }
                    Err(e) => Err(format!("connect: {e}")),
                };
                match outcome {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e);
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
    let used = next.load(Ordering::Relaxed).min(count);
    println!(
        "rate {:.1} done {} errors {} seconds {:.3} tokens {} used {} exhausted {} gen_rate {:.0}",
        n as f64 / secs,
        n,
        errors.load(Ordering::Relaxed),
        secs,
        count,
        used,
        used >= count,
        count as f64 / gen_secs.max(1e-9),
    );
    if let Some(e) = first_error.lock().unwrap().as_ref() {
        eprintln!("first error: {e}");
    }
    Ok(())
}

/// One token sent on two new connections: a working replay cache lets the
/// first through and refuses the second. Prints "first S1 second S2".
pub async fn replay(proxy: SocketAddr, url: String, service: String) -> Res<()> {
    let token = tokio::task::spawn_blocking(move || tokens(&service, 1))
        .await??
        .remove(0);
    let req = format!(
        "GET {url} HTTP/1.1\r\nHost: bench\r\nProxy-Authorization: Negotiate {token}\r\nConnection: close\r\n\r\n"
    );
    let mut codes = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy).await?;
        let mut buf = Vec::new();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            exchange(&mut s, req.as_bytes(), &mut buf),
        )
        .await;
        codes.push(match r {
            Ok(Ok((status, _))) => status.to_string(),
            Ok(Err(e)) => format!("error:{e}"),
            Err(_) => "timeout".into(),
        });
    }
    println!("first {} second {}", codes[0], codes[1]);
    Ok(())
}
