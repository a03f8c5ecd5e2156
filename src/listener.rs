//! Accepting clients: the connection limit, the per-connection state, the
//! framing guard, and hyper's HTTP/1.1 server on top.

pub mod framing;
pub(crate) mod guard;
pub(crate) mod h2;
pub mod proxy_header;
pub(crate) mod settings;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::convert::Infallible;
use std::future::Future;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::accesslog::{AccessLog, AccessRecord};
use crate::body::ResponseBody;
use crate::conn::{slots, ConnState};
use crate::error::ProxyError;
use crate::stream::ClientStream;
use framing::Limits;
use guard::{GuardedStream, Timeouts};
use settings::ListenerConfig;

/// What serves each request: the proxy's phases, given to the listener by
/// whoever starts it (the listener knows connections, not requests).
pub trait Service: Send + Sync + 'static {
    /// What the listener reads its limits and certificate from.
    type Settings: Settings;

    /// The settings in force now; a connection copies the few it keeps
    /// (limits, timeouts) when it is accepted.
    fn settings(&self) -> Arc<Self::Settings>;

    /// The answer to one request on `conn`.
    fn serve(
        self: Arc<Self>,
        conn: Arc<ConnState>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static;
}

/// The listener's part of the running configuration (`[listener]` and
/// the TLS listeners' certificate), swapped whole by a reload.
pub trait Settings: Send + Sync + 'static {
    /// `[listener]` limits and timeouts.
    fn listener(&self) -> &ListenerConfig;
    /// The TLS listeners' certificate, when any listener speaks TLS.
    fn tls(&self) -> Option<&Arc<rustls::ServerConfig>>;
    /// `[http2]`: the limits of an HTTP/2 connection on a TLS listener.
    fn http2(&self) -> &crate::http2::Http2Config;
}

/// What every accept loop shares.
pub struct Acceptor<S> {
    /// Serves the requests.
    pub service: Arc<S>,
    /// Where refusals before a request (overload, framing) are logged.
    pub log: AccessLog,
    /// One permit per open client connection.
    pub slots: slots::Limit,
    /// Open connections per client address, capped.
    pub per_address: Arc<crate::conn::slots::PerAddress>,
    /// Cancelled on SIGTERM/SIGINT: stop accepting, finish what is in flight.
    pub graceful: CancellationToken,
    /// Every connection task, for shutdown to wait on.
    pub connections: TaskTracker,
    /// The next connection's id.
    pub next_id: AtomicU64,
}

/// Accepts on one listener until shutdown; `tls`: clients speak TLS to it.
pub async fn accept_loop<S: Service>(listener: TcpListener, acc: Arc<Acceptor<S>>, tls: bool) {
    // Bound to one address, every connection's local address is that one: no
    // getsockname(2) per connection. Only a wildcard bind must ask.
    let fixed_local = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    loop {
        let (stream, peer) = tokio::select! {
            _ = acc.graceful.cancelled() => return,
            res = listener.accept() => match res {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let Some(local) = fixed_local.or_else(|| stream.local_addr().ok()) else {
            continue;
        };
        let id = acc.next_id.fetch_add(1, Ordering::Relaxed);
        let at = Accepted {
            peer,
            local,
            id,
            tls,
            started: tokio::time::Instant::now(),
        };
        let behind_balancer = {
            let settings = acc.service.settings();
            proxy_header::trusted(&settings.listener().proxy_protocol_from, peer.ip())
        };
        if behind_balancer {
            // The client is known only after its PROXY header: the global
            // permit bounds the read, the address's place is taken after.
            match acc.slots.global.try_take() {
                Ok(global) => {
                    acc.connections
                        .spawn(behind_a_balancer(stream, at, acc.clone(), global))
                }
                Err(_) => acc.connections.spawn(refuse_overload(
                    stream,
                    peer,
                    local,
                    acc.log.clone(),
                    ProxyError::TooManyConnections,
                )),
            };
            continue;
        }
        match slots::take(&acc.slots.global, &acc.per_address, peer.ip()) {
            Ok(slot) => {
                acc.connections
                    .spawn(serve_connection(stream, at, acc.clone(), slot));
            }
            Err(full) => {
                acc.connections.spawn(refuse_overload(
                    stream,
                    peer,
                    local,
                    acc.log.clone(),
                    full.into(),
                ));
            }
        }
    }
}

impl From<slots::Full> for ProxyError {
    fn from(full: slots::Full) -> Self {
        match full {
            slots::Full::Proxy => ProxyError::TooManyConnections,
            slots::Full::Address => ProxyError::TooManyFromClient,
        }
    }
}

/// A connection from `listener.proxy_protocol_from`: its PROXY header, read
/// within the header timeout, names the client; then the client's place
/// under the per-address cap, then the connection as any other. Without a
/// valid header: logged, answered 400 on a plain listener, closed.
async fn behind_a_balancer<S: Service>(
    mut tcp: TcpStream,
    mut at: Accepted,
    acc: Arc<Acceptor<S>>,
    global: tokio::sync::OwnedSemaphorePermit,
) {
    let deadline = at.started + acc.service.settings().listener().header_read_timeout;
    let read = tokio::time::timeout_at(deadline, proxy_header::read(&mut tcp)).await;
    let source = match read
        .unwrap_or_else(|_| Err("no whole PROXY protocol header within the header timeout".into()))
    {
        Ok(source) => source,
        Err(why) => {
            tracing::warn!(balancer = %at.peer, reason = %why, "connection without a valid PROXY protocol header closed");
            let e = ProxyError::ProxyProtocol(why);
            if !at.tls {
                answer_and_close(&mut tcp, &e.to_wire()).await;
            }
            let mut r = AccessRecord::new(at.peer.ip(), at.local.ip());
            r.set_error(&e);
            acc.log.write(r);
            return;
        }
    };
    if let Some(client) = source {
        tracing::debug!(balancer = %at.peer, %client, "client address from the PROXY protocol header");
        at.peer = client;
    }
    match slots::take_address(global, &acc.per_address, at.peer.ip()) {
        Ok(slot) => serve_connection(tcp, at, acc, slot).await,
        Err(full) => refuse_overload(tcp, at.peer, at.local, acc.log.clone(), full.into()).await,
    }
}

/// Writes `answer` and closes our side, then reads (and drops) what the
/// client still sends, for at most 2 s and 64 KiB: closing with its bytes
/// unread would reset the connection, maybe before it read the answer.
async fn answer_and_close(tcp: &mut TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(answer).await?;
        tcp.shutdown().await?;
        let (mut sink, mut left) = ([0u8; 4096], 64 * 1024usize);
        while left > 0 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Over a connection limit: a clear 503, logged, and the socket closed.
async fn refuse_overload(
    mut stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    log: AccessLog,
    e: ProxyError,
) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(&e.to_wire()).await?;
        stream.shutdown().await
    })
    .await;
    let mut r = AccessRecord::new(peer.ip(), local.ip());
    r.set_error(&e);
    log.write(r);
}

/// Where a connection came in.
struct Accepted {
    peer: SocketAddr,
    local: SocketAddr,
    id: u64,
    /// On a TLS listener.
    tls: bool,
    /// When it was accepted: the header timeout counts from here.
    started: tokio::time::Instant,
}

/// What a connection keeps of `[listener]` for its life.
struct Kept {
    limits: Limits,
    timeouts: Timeouts,
    /// `[http2]`, for a TLS client that chooses `h2`.
    http2: Option<crate::http2::Http2Config>,
}

async fn serve_connection<S: Service>(
    tcp: TcpStream,
    at: Accepted,
    acc: Arc<Acceptor<S>>,
    slot: slots::Slot,
) {
    let Accepted {
        peer,
        local,
        id,
        tls,
        started: accepted,
    } = at;
    // What the connection keeps of the settings in force: a few numbers
    // and the certificate, not the snapshot (a keep-alive connection that
    // lives for days must not pin an old policy and its lists in memory).
    let (cfg, tls_cfg) = {
        let settings = acc.service.settings();
        let l = settings.listener();
        let kept = Kept {
            limits: Limits {
                max_header_bytes: l.max_header_bytes,
                max_uri_bytes: l.max_uri_bytes,
                max_headers: l.max_headers,
            },
            timeouts: Timeouts {
                header: l.header_read_timeout,
                idle: l.idle_timeout,
            },
            http2: tls.then(|| settings.http2().clone()),
        };
        (kept, settings.tls().cloned())
    };
    // The handshake runs under the connection's slot and the header timeout:
    // a client that opens TLS and stalls holds no more than a silent one.
    let (stream, slot) = match (tls, tls_cfg) {
        // What is left of it after a PROXY header was read.
        (true, Some(tls_cfg)) => match tls::accept(
            tcp,
            tls_cfg,
            cfg.timeouts.header.saturating_sub(accepted.elapsed()),
            slot,
        )
        .await
        {
            Ok(s) => s,
            Err(why) => {
                tracing::debug!(client = %peer, error = %why, "TLS handshake with the client failed");
                return;
            }
        },
        // A TLS listener with no certificate cannot be (start-up refuses it).
        (true, None) => return,
        (false, _) => (ClientStream::Plain(tcp), slot),
    };
    let conn = ConnState::with_slot(id, peer, local, Some(slot));
    let Kept {
        limits,
        timeouts,
        http2,
    } = cfg;
    let chose_h2 = match &stream {
        ClientStream::Tls(t) => t.get_ref().1.alpn_protocol() == Some(crate::http2::ALPN_H2),
        _ => false,
    };
    if let (true, Some(cfg)) = (chose_h2, http2) {
        let kept = h2::H2Kept {
            cfg,
            max_header_bytes: limits.max_header_bytes + framing::MAX_PROXY_AUTHORIZATION,
            header_timeout: timeouts.header,
            idle_timeout: timeouts.idle,
            max_uri_bytes: limits.max_uri_bytes,
            max_headers: limits.max_headers,
            log: acc.log.clone(),
            places: (acc.slots.global.clone(), acc.per_address.clone()),
        };
        let (svc, graceful) = (acc.service.clone(), acc.graceful.clone());
        return h2::serve(stream, conn, svc, kept, accepted, graceful).await;
    }
    let io = GuardedStream::new(stream, limits, timeouts, conn.clone(), accepted);
    let (svc, conn2) = (acc.service.clone(), conn.clone());
    let service = service_fn(move |req| svc.clone().serve(conn2.clone(), req));

    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The guard enforces header and idle timeouts with our own answers.
        .header_read_timeout(None)
        .keep_alive(true)
        // The guard has already bounded the head (with room for one large
        // Proxy-Authorization); hyper must never refuse one it let through.
        .max_buf_size((limits.max_header_bytes + framing::MAX_PROXY_AUTHORIZATION) * 2);
    if limits.max_headers > 100 {
        builder.max_headers(limits.max_headers);
    }
    let served = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(served);
    let res = tokio::select! {
        res = &mut served => res,
        _ = acc.graceful.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Some(e) = conn.take_framing_error() {
        tracing::debug!(client = %peer, error = %e, "request refused before parsing");
        let mut r = AccessRecord::new(peer.ip(), local.ip());
        r.set_error(&e);
        acc.log.write(r);
    }
    match res {
        Err(e) => {
            tracing::debug!(client = %peer, requests = conn.requests(), error = %e, "connection closed")
        }
        Ok(()) => tracing::debug!(client = %peer, requests = conn.requests(), "connection closed"),
    }
}
