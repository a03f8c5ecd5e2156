//! Copies bytes both ways between client and server until either side
//! closes, the tunnel idles out, or shutdown's deadline passes.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
    async fn stop_ends_the_relay() {
        let (_c_far, c_near) = duplex(64);
        let (s_near, _s_far) = duplex(64);
        let stop = CancellationToken::new();
        stop.cancel();
        let out = relay(c_near, s_near, Duration::from_secs(30), stop).await;
        assert_eq!(out.end, End::Shutdown);
    }
}
