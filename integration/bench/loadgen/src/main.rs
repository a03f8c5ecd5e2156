//! Bench tools for CONNECT tunnels, which wrk cannot drive:
//!
//!   loadgen echo ADDR                      echo server (bulk tunnels, idle tunnels)
//!   loadgen pong ADDR                      reads 5 bytes, answers "pong\n", closes first
//!   loadgen connect-rate PROXY TARGET CLIENTS SECONDS [USER:PASS]
//!                                          CONNECT + ping/pong + close, in a loop; prints "rate N"
//!   loadgen bulk PROXY|direct TARGET TUNNELS BYTES [USER:PASS]
//!                                          BYTES each way per tunnel; prints "mbps N"
//!   loadgen idle PROXY TARGET COUNT [USER:PASS]
//!                                          opens COUNT tunnels, prints "ready N", holds them until stdin closes
//!   loadgen users PROXY URL FIRST COUNT CLIENTS once|SECONDS
//!                                          GETs with Basic credentials of users u<FIRST>..u<FIRST+COUNT-1>
//!                                          (password pw-<n>) over keep-alive connections: each once
//!                                          (a cold pass), or round-robin for SECONDS
//!   loadgen tls-origin ADDR CA_PEM_OUT [ADDR12]
//!                                          TLS origin for *.bench.test (its own CA, written to CA_PEM_OUT);
//!                                          reads 5 bytes, answers "pong\n", closes first; ADDR12 speaks TLS 1.2 only
//!   loadgen tls-rate PROXY|direct TARGET CLIENTS SECONDS CA_PEM warm|cold [USER:PASS]
//!                                          CONNECT + TLS handshake + ping/pong + close, in a loop;
//!                                          warm: one SNI; cold: a new SNI (new verdict) per tunnel
//!   loadgen https-rate PROXY HOST:PORT NAME CLIENTS SECONDS CA_PEM keepalive|new [USER:PASS]
//!                                          GET /1k.bin over TLS through CONNECT: kept-alive
//!                                          requests per second, or a new tunnel per request
//!   loadgen negotiate PROXY URL SERVICE TOKENS CLIENTS SECONDS
//!                                          Kerberos sign-ins: TOKENS fresh SPNEGO tokens for SERVICE
//!                                          (HTTP@host, from the ccache in KRB5CCNAME) made first, then
//!                                          one new connection per token: GET URL, Connection: close
//!   loadgen negotiate-replay PROXY URL SERVICE
//!                                          one fresh token sent twice (two connections): prints
//!                                          "first S1 second S2" (a replay cache refuses the second)
//!   loadgen ntlm PROXY URL DOMAIN PREFIX USERS CLIENTS SECONDS
//!                                          NTLM handshakes, each on a new connection (type 1 → 407
//!                                          with the type 2 → type 3 → 200, then close), as users
//!                                          DOMAIN\\PREFIX000.. (password <user>-Pw1), computed live
//!                                          by gss-ntlmssp; prints "rate N done N refused N busy N ..."
//!   loadgen ntlm-direct DOMAIN PREFIX USERS HELPERS SECONDS HELPER_COMMAND...
//!                                          the same handshakes with no proxy: HELPERS squid-2.5-ntlmssp
//!                                          helpers (ntlm_auth ...) driven directly (the ceiling)
//!   loadgen shim ADDR PROXY TARGET         each connection to ADDR becomes a CONNECT to TARGET
//!                                          through PROXY, then raw bytes both ways (for h2load,
//!                                          which cannot speak to a proxy itself)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod https;
mod negotiate;
mod ntlm;
mod tls;
mod users;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "echo" => echo(arg(1).parse()?).await,
        "pong" => pong(arg(1).parse()?).await,
        "connect-rate" => {
            connect_rate(
                arg(1).parse()?,
                arg(2),
                arg(3).parse()?,
                arg(4).parse()?,
                args.get(5).cloned(),
            )
            .await
        }
        "bulk" => {
            bulk(
                arg(1),
                arg(2),
                arg(3).parse()?,
                arg(4).parse()?,
                args.get(5).cloned(),
            )
            .await
        }
        "idle" => {
            idle(
                arg(1).parse()?,
                arg(2),
                arg(3).parse()?,
                args.get(4).cloned(),
            )
            .await
        }
        "users" => {
            users::run(
                arg(1).parse()?,
                arg(2),
                arg(3).parse()?,
                arg(4).parse()?,
                arg(5).parse()?,
                arg(6),
            )
            .await
        }
        "tls-origin" => {
            let addr12 = args.get(3).map(|a| a.parse()).transpose()?;
            tls::origin(arg(1).parse()?, arg(2), addr12).await
        }
        "tls-rate" => {
            tls::rate(
                arg(1),
                arg(2),
                arg(3).parse()?,
                arg(4).parse()?,
                arg(5),
                arg(6) == "cold",
                args.get(7).cloned(),
            )
            .await
        }
        "https-rate" => {
            https::rate(
                arg(1),
                arg(2),
                arg(3),
                arg(4).parse()?,
                arg(5).parse()?,
                arg(6),
                arg(7) == "keepalive",
                args.get(8).cloned(),
            )
            .await
        }
        "negotiate" => {
            negotiate::run(
                arg(1).parse()?,
                arg(2),
                arg(3),
                arg(4).parse()?,
                arg(5).parse()?,
                arg(6).parse()?,
            )
            .await
        }
        "negotiate-replay" => negotiate::replay(arg(1).parse()?, arg(2), arg(3)).await,
        "ntlm" => {
            ntlm::run(
                arg(1).parse()?,
                arg(2),
                arg(3),
                arg(4),
                arg(5).parse()?,
                arg(6).parse()?,
                arg(7).parse()?,
            )
            .await
        }
        "ntlm-direct" => {
            ntlm::direct(
                args[6..].to_vec(),
                arg(1),
                arg(2),
                arg(3).parse()?,
                arg(4).parse()?,
                arg(5).parse()?,
            )
            .await
        }
        "shim" => shim(arg(1).parse()?, arg(2).parse()?, arg(3)).await,
        _ => Err("usage: see the source".into()),
    }
}

/// A CONNECT per accepted connection, then the bytes copied both ways.
async fn shim(addr: SocketAddr, proxy: SocketAddr, target: String) -> Res<()> {
    let listener = TcpListener::bind(addr).await?;
    loop {
        let (mut client, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let Ok(mut up) = TcpStream::connect(proxy).await else {
                return;
            };
            let _ = up.set_nodelay(true);
            let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
            if up.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while !got.ends_with(b"\r\n\r\n") && got.len() < 4096 {
                match up.read(&mut b).await {
                    Ok(1) => got.push(b[0]),
                    _ => return,
                }
            }
            if !got.starts_with(b"HTTP/1.1 200") {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        });
    }
}

async fn echo(addr: SocketAddr) -> Res<()> {
    let l = TcpListener::bind(addr).await?;
    loop {
        let (mut s, _) = l.accept().await?;
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let (mut r, mut w) = s.split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
    }
}

async fn pong(addr: SocketAddr) -> Res<()> {
    let l = TcpListener::bind(addr).await?;
    loop {
        let (mut s, _) = l.accept().await?;
        tokio::spawn(async move {
            let mut b = [0u8; 5];
            if s.read_exact(&mut b).await.is_ok() {
                let _ = s.write_all(b"pong\n").await;
            }
            // The server closes first (no TIME_WAIT pile-up on the client side).
        });
    }
}

/// CONNECT through `proxy` to `target`; the stream after the 200.
pub(crate) async fn tunnel(
    proxy: SocketAddr,
    target: &str,
    auth: &Option<String>,
) -> Res<TcpStream> {
    let mut s = TcpStream::connect(proxy).await?;
    s.set_nodelay(true)?;
    let auth = auth
        .as_ref()
        .map(|a| {
            format!(
                "Proxy-Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(a)
            )
        })
        .unwrap_or_default();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n").as_bytes())
        .await?;
    // The target speaks only after we do, so everything read before our first
    // write is the proxy's answer: read it in whole chunks, not byte by byte
    // (the load generator shares the CPUs with the proxy it measures).
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 512];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).await?;
        if n == 0 {
            return Err("proxy closed during CONNECT".into());
        }
        head.extend_from_slice(&b[..n]);
        if head.len() > 8192 {
            return Err("CONNECT answer too long".into());
        }
    }
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        return Err(format!("CONNECT refused: {}", String::from_utf8_lossy(&head)).into());
    }
    Ok(s)
}

async fn connect_rate(
    proxy: SocketAddr,
    target: String,
    clients: usize,
    seconds: u64,
    auth: Option<String>,
) -> Res<()> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (done, errors, target, auth) =
            (done.clone(), errors.clone(), target.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let one = async {
                    let mut s = tunnel(proxy, &target, &auth).await?;
                    s.write_all(b"ping\n").await?;
                    let mut b = [0u8; 5];
                    s.read_exact(&mut b).await?;
                    // Wait for the origin's close to come back through the proxy.
                    let mut rest = [0u8; 1];
                    let _ = s.read(&mut rest).await;
                    Res::Ok(())
                };
                match one.await {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "rate {:.1} done {} errors {}",
        n as f64 / seconds as f64,
        n,
        errors.load(Ordering::Relaxed)
    );
    Ok(())
}

async fn bulk(
    proxy: String,
    target: String,
    tunnels: usize,
    bytes: u64,
    auth: Option<String>,
) -> Res<()> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..tunnels {
        let (proxy, target, auth) = (proxy.clone(), target.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let s = if proxy == "direct" {
                let s = TcpStream::connect(&target).await?;
                s.set_nodelay(true)?;
                s
            } else {
                tunnel(proxy.parse()?, &target, &auth).await?
            };
            let (mut r, mut w) = s.into_split();
            let writer = tokio::spawn(async move {
                let buf = vec![0x5au8; 256 * 1024];
                let mut left = bytes;
                while left > 0 {
                    let n = left.min(buf.len() as u64) as usize;
                    w.write_all(&buf[..n]).await?;
                    left -= n as u64;
                }
                // No half-close: Squid tears a tunnel down on the client's FIN,
                // dropping data still in flight. Close after reading everything.
                Res::Ok(w)
            });
            let mut buf = vec![0u8; 256 * 1024];
            let mut got = 0u64;
            while got < bytes {
                let n = r.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            let _w = writer.await??;
            if got != bytes {
                return Err(format!("short read {got} of {bytes}").into());
            }
            Res::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    // Payload moved each way, summed over tunnels, in MB/s (10^6).
    println!(
        "mbps {:.1} seconds {:.3}",
        (bytes * tunnels as u64) as f64 / secs / 1e6,
        secs
    );
    Ok(())
}

async fn idle(proxy: SocketAddr, target: String, count: usize, auth: Option<String>) -> Res<()> {
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        match tunnel(proxy, &target, &auth).await {
            Ok(s) => held.push(s),
            Err(e) => {
                println!("failed-at {i} {e}");
                break;
            }
        }
    }
    println!("ready {}", held.len());
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    drop(held);
    Ok(())
}
