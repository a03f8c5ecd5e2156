//! Copies bytes both ways between client and server until either side
//! closes, the tunnel idles out, or shutdown's deadline passes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both sides finished normally.
    Closed,
    /// No byte either way for the idle timeout.
    Idle,
    /// The shutdown deadline passed.
    Shutdown,
    /// A socket error on either side.
    Error,
}

/// Bytes moved, for the access log.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub client_to_server: u64,
    pub server_to_client: u64,
    pub end: End,
}

#[derive(Default)]
struct Meter {
    client_to_server: AtomicU64,
    server_to_client: AtomicU64,
    /// Last activity, in ms since the relay started.
    last_ms: AtomicU64,
}

/// A stream whose reads are counted and stamped.
struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
    start: Instant,
    from_client: bool,
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let m = &self.meter;
            let counter = if self.from_client {
                &m.client_to_server
            } else {
                &m.server_to_client
            };
            counter.fetch_add(n, Ordering::Relaxed);
            m.last_ms
                .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Relays until done. `preloaded` counts client bytes already sent upstream
/// (replayed after inspection).
pub async fn relay<C, S>(client: C, server: S, idle: Duration, stop: CancellationToken) -> Outcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let meter = Arc::new(Meter::default());
    let start = Instant::now();
    let mut client = Metered {
        inner: client,
        meter: meter.clone(),
        start,
        from_client: true,
    };
    let mut server = Metered {
        inner: server,
        meter: meter.clone(),
        start,
        from_client: false,
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    tokio::pin!(copy);
    let end = loop {
        let last = start + Duration::from_millis(meter.last_ms.load(Ordering::Relaxed));
        tokio::select! {
            res = &mut copy => break if res.is_ok() { End::Closed } else { End::Error },
            _ = tokio::time::sleep_until(last + idle) => {
                let now_last = start + Duration::from_millis(meter.last_ms.load(Ordering::Relaxed));
                if now_last + idle <= Instant::now() {
                    break End::Idle;
                }
            }
            _ = stop.cancelled() => break End::Shutdown,
        }
    };
    Outcome {
        client_to_server: meter.client_to_server.load(Ordering::Relaxed),
        server_to_client: meter.server_to_client.load(Ordering::Relaxed),
        end,
    }
}

/// Bytes read per syscall while a direction is busy.
const CHUNK: usize = 64 * 1024;

/// Relays between two sockets. A direction holds a buffer only while data is
/// flowing — it is dropped whenever the socket runs dry — so an idle tunnel
/// costs two sockets and a task, not two buffers.
pub async fn relay_tcp(
    mut client: TcpStream,
    mut server: TcpStream,
    idle: Duration,
    stop: CancellationToken,
) -> Outcome {
    let meter = Meter::default();
    let start = Instant::now();
    let end = {
        let (cr, mut cw) = client.split();
        let (sr, mut sw) = server.split();
        let up = pump(&cr, &mut sw, &meter.client_to_server, &meter, start);
        let down = pump(&sr, &mut cw, &meter.server_to_client, &meter, start);
        let both = async { tokio::try_join!(up, down) };
        tokio::pin!(both);
        loop {
            let last = start + Duration::from_millis(meter.last_ms.load(Ordering::Relaxed));
            tokio::select! {
                res = &mut both => break if res.is_ok() { End::Closed } else { End::Error },
                _ = tokio::time::sleep_until(last + idle) => {
                    let now_last = start + Duration::from_millis(meter.last_ms.load(Ordering::Relaxed));
                    if now_last + idle <= Instant::now() {
                        break End::Idle;
                    }
                }
                _ = stop.cancelled() => break End::Shutdown,
            }
        }
    };
    Outcome {
        client_to_server: meter.client_to_server.load(Ordering::Relaxed),
        server_to_client: meter.server_to_client.load(Ordering::Relaxed),
        end,
    }
}

/// One direction: read what is ready, write it all, until end of stream.
async fn pump(
    src: &ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    count: &AtomicU64,
    meter: &Meter,
    start: Instant,
) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut buf: Option<Vec<u8>> = None;
    loop {
        src.readable().await?;
        let b = buf.get_or_insert_with(|| Vec::with_capacity(CHUNK));
        b.clear();
        match src.try_read_buf(b) {
            Ok(0) => {
                // Half-close: pass the end of stream on, keep the other direction.
                let _ = dst.shutdown().await;
                return Ok(());
            }
            Ok(n) => {
                dst.write_all(&b[..n]).await?;
                count.fetch_add(n as u64, Ordering::Relaxed);
                meter
                    .last_ms
                    .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf = None,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_and_counts() {
        let (mut c_far, c_near) = duplex(1024);
        let (s_near, mut s_far) = duplex(1024);
        let task = tokio::spawn(relay(
            c_near,
            s_near,
            Duration::from_secs(5),
            CancellationToken::new(),
        ));
        c_far.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        s_far.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        s_far.write_all(b"world!").await.unwrap();
        let mut buf = [0u8; 6];
        c_far.read_exact(&mut buf).await.unwrap();
        drop(c_far);
        drop(s_far);
        let out = task.await.unwrap();
        assert_eq!((out.client_to_server, out.server_to_client), (5, 6));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_is_closed() {
        let (_c_far, c_near) = duplex(64);
        let (s_near, _s_far) = duplex(64);
        let out = relay(
            c_near,
            s_near,
            Duration::from_secs(30),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(out.end, End::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_postpones_idle() {
        let (mut c_far, c_near) = duplex(64);
        let (s_near, mut s_far) = duplex(64);
        let task = tokio::spawn(relay(
            c_near,
            s_near,
            Duration::from_secs(30),
            CancellationToken::new(),
        ));
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            c_far.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            s_far.read_exact(&mut b).await.unwrap();
        }
        assert!(
            !task.is_finished(),
            "80 s of traffic every 20 s must not idle out"
        );
        let out = task.await.unwrap();
        assert_eq!(out.end, End::Idle);
        assert_eq!(out.client_to_server, 4);
    }

    #[tokio::test]
    async fn tcp_relay_copies_half_closes_and_counts() {
        use tokio::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut far_client = TcpStream::connect(addr).await.unwrap();
        let (near_client, _) = l.accept().await.unwrap();
        let mut far_server = TcpStream::connect(addr).await.unwrap();
        let (near_server, _) = l.accept().await.unwrap();
        let task = tokio::spawn(relay_tcp(
            near_client,
            near_server,
            Duration::from_secs(5),
            CancellationToken::new(),
        ));
        let big = vec![7u8; 3 * CHUNK + 5];
        far_client.write_all(&big).await.unwrap();
        far_client.shutdown().await.unwrap();
        let mut got = Vec::new();
        far_server.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got.len(),
            big.len(),
            "everything, then the client's end of stream"
        );
        far_server
            .write_all(b"reply after half-close")
            .await
            .unwrap();
        drop(far_server);
        let mut back = Vec::new();
        far_client.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"reply after half-close");
        let out = task.await.unwrap();
        assert_eq!(
            (out.client_to_server, out.server_to_client, out.end),
            (big.len() as u64, 22, End::Closed)
        );
    }

    #[tokio::test]
    async fn stop_ends_the_relay() {
        let (_c_far, c_near) = duplex(64);
        let (s_near, _s_far) = duplex(64);
        let stop = CancellationToken::new();
        stop.cancel();
        let out = relay(c_near, s_near, Duration::from_secs(30), stop).await;
        assert_eq!(out.end, End::Shutdown);
    }
}
