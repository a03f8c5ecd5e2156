//! Copies bytes both ways between client and server until either side
//! closes, the tunnel idles out, or shutdown's deadline passes.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::stream::ClientStream;

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
    /// Bytes relayed from the client to the server.
    pub client_to_server: u64,
    /// Bytes relayed from the server to the client.
    pub server_to_client: u64,
    /// How the relay ended.
    pub end: End,
}

#[derive(Default)]
struct Meter {
    client_to_server: AtomicU64,
    server_to_client: AtomicU64,
    /// Last activity, in ms since the relay started.
    last_ms: AtomicU64,
}

impl Meter {
    /// Counts `n` bytes one way and notes the activity.
    fn moved(&self, count: &AtomicU64, n: u64, start: Instant) {
        count.fetch_add(n, Ordering::Relaxed);
        self.last_ms
            .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// Bytes read per syscall while a direction is busy.
const CHUNK: usize = 64 * 1024;

/// Relay buffers kept for reuse on each worker thread. A direction takes one
/// when data arrives and gives it back when its socket runs dry, so a short
/// exchange costs no malloc of 64 KiB (and no heap consolidation glibc runs
/// when a chunk that large is freed). Bounded: at most `SPARE` per thread.
struct Chunk(Vec<u8>);

const SPARE: usize = 8;

thread_local! {
    static SPARES: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Chunk {
    fn take() -> Self {
        let spare = SPARES.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        Chunk(spare.unwrap_or_else(|| vec![0; CHUNK]))
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        let b = std::mem::take(&mut self.0);
        let _ = SPARES.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE {
                s.push(b);
            }
        });
    }
}

/// How a tunnel's bytes are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// read(2)/write(2) through a buffer (portable).
    Buffered,
    /// splice(2) through a pipe, inside the kernel (Linux).
    Splice,
}

impl Transfer {
    /// Splice where the platform has it, else buffered.
    pub fn splice_if_available() -> Self {
        if cfg!(target_os = "linux") {
            Transfer::Splice
        } else {
            Transfer::Buffered
        }
    }
}

/// Relays between the client and the server. A direction holds a buffer (or
/// pipe) only while data is flowing — it is given back whenever the socket
/// runs dry — so an idle plain tunnel costs two sockets and a task, not two
/// buffers. A client on a TLS listener is read through rustls, which holds
/// its own record buffers; that direction keeps one buffer while it lives.
pub async fn relay(
    client: ClientStream,
    mut server: TcpStream,
    transfer: Transfer,
    idle: Duration,
    stop: CancellationToken,
) -> Outcome {
    let meter = Meter::default();
    let start = Instant::now();
    let end = {
        let both = async {
            let client = match client {
                ClientStream::Plain(client) => client,
                ClientStream::Tls(tls) => {
                    let (mut cr, mut cw) = tokio::io::split(*tls);
                    let (mut sr, mut sw) = server.split();
                    let up = copy_decrypted(&mut cr, &mut sw, &meter, start);
                    let down = pump(&mut sr, &mut cw, &meter.server_to_client, &meter, start);
                    return tokio::try_join!(up, down).map(drop);
                }
            };
            let mut client = client;
            #[cfg(target_os = "linux")]
            if transfer == Transfer::Splice {
                let up = super::splice::pump(&client, &server, |n| {
                    meter.moved(&meter.client_to_server, n, start)
                });
                let down = super::splice::pump(&server, &client, |n| {
                    meter.moved(&meter.server_to_client, n, start)
                });
                return tokio::try_join!(up, down).map(drop);
            }
            let _ = transfer;
            let (mut cr, mut cw) = client.split();
            let (mut sr, mut sw) = server.split();
            let up = pump(&mut cr, &mut sw, &meter.client_to_server, &meter, start);
            let down = pump(&mut sr, &mut cw, &meter.server_to_client, &meter, start);
            tokio::try_join!(up, down).map(drop)
        };
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
///
/// The wait for data holds no buffer. The read itself goes through
/// `poll_read`, which tells tokio a short read drained the socket, so the
/// next wait needs no extra `read(2)` that would only say "would block".
async fn pump<W: AsyncWrite + Unpin>(
    src: &mut ReadHalf<'_>,
    dst: &mut W,
    count: &AtomicU64,
    meter: &Meter,
    start: Instant,
) -> io::Result<()> {
    use tokio::io::{AsyncRead, ReadBuf};
    loop {
        src.readable().await?;
        let mut chunk = Chunk::take();
        let mut rb = ReadBuf::new(&mut chunk.0);
        let read = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *src).poll_read(cx, &mut rb) {
                std::task::Poll::Pending => None, // nothing after all: wait without the buffer
                std::task::Poll::Ready(r) => Some(r),
            })
        })
        .await;
        let n = match read {
            // No data after all, or this task's cooperative budget is spent
            // (poll_read says Pending for both): give the budget back to the
            // scheduler if it is spent, then wait without the buffer.
            None => {
                drop(chunk);
                tokio::task::consume_budget().await;
                continue;
            }
            Some(r) => r.map(|()| rb.filled().len())?,
        };
        if n == 0 {
            // Half-close: pass the end of stream on, keep the other direction.
            let _ = dst.shutdown().await;
            return Ok(());
        }
        dst.write_all(&chunk.0[..n]).await?;
        // A TLS client's records may wait in rustls until flushed (a no-op
        // on a plain socket).
        dst.flush().await?;
        meter.moved(count, n as u64, start);
    }
}

/// Client to server when the client is TLS to the proxy: whatever rustls
/// has decrypted, written on, until the client's end of stream.
async fn copy_decrypted<R: AsyncRead + Unpin>(
    src: &mut R,
    dst: &mut WriteHalf<'_>,
    meter: &Meter,
    start: Instant,
) -> io::Result<()> {
    let mut chunk = Chunk::take();
    loop {
        let n = src.read(&mut chunk.0).await?;
        if n == 0 {
            let _ = dst.shutdown().await;
            return Ok(());
        }
        dst.write_all(&chunk.0[..n]).await?;
        meter.moved(&meter.client_to_server, n as u64, start);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// (far client, near client, near server, far server): two real loopback pairs.
    async fn pairs() -> (TcpStream, TcpStream, TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let far_client = TcpStream::connect(addr).await.unwrap();
        let (near_client, _) = l.accept().await.unwrap();
        let far_server = TcpStream::connect(addr).await.unwrap();
        let (near_server, _) = l.accept().await.unwrap();
        (far_client, near_client, near_server, far_server)
    }

    #[test]
    fn relay_buffers_are_reused_and_bounded() {
        let first = Chunk::take();
        let ptr = first.0.as_ptr();
        drop(first);
        assert_eq!(Chunk::take().0.as_ptr(), ptr, "a returned buffer is reused");
        let many: Vec<Chunk> = (0..SPARE + 3).map(|_| Chunk::take()).collect();
        drop(many);
        assert_eq!(
            SPARES.with(|s| s.borrow().len()),
            SPARE,
            "spares are bounded"
        );
        assert_eq!(Chunk::take().0.len(), CHUNK);
    }

    #[tokio::test]
    async fn copies_half_closes_and_counts() {
        let (mut far_client, near_client, near_server, mut far_server) = pairs().await;
        let task = tokio::spawn(relay(
            near_client.into(),
            near_server,
            Transfer::splice_if_available(),
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

    /// Both directions busy at once, through an echo at the far end: what a
    /// bulk tunnel does. Each transfer mode must move every byte.
    async fn bulk_both_ways(transfer: Transfer) {
        let (far_client, near_client, near_server, far_server) = pairs().await;
        let relay = tokio::spawn(relay(
            near_client.into(),
            near_server,
            transfer,
            Duration::from_secs(30),
            CancellationToken::new(),
        ));
        let echo = tokio::spawn(async move {
            let (mut r, mut w) = far_server.into_split();
            tokio::io::copy(&mut r, &mut w).await.unwrap();
        });
        let total = 64 << 20;
        let (mut r, mut w) = far_client.into_split();
        let writer = tokio::spawn(async move {
            let chunk = vec![5u8; 100_000];
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len());
                w.write_all(&chunk[..n]).await.unwrap();
                left -= n;
            }
            w
        });
        let mut buf = vec![0u8; 1 << 16];
        let mut got = 0;
        while got < total {
            let n = tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf))
                .await
                .expect("the relay stalled")
                .unwrap();
            assert!(n > 0, "closed after {got} bytes");
            got += n;
        }
        drop(writer.await.unwrap());
        drop(r);
        let out = relay.await.unwrap();
        assert_eq!(out.client_to_server, total as u64);
        assert_eq!(out.server_to_client, total as u64);
        echo.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffered_bulk_both_ways() {
        bulk_both_ways(Transfer::Buffered).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn splice_bulk_both_ways() {
        bulk_both_ways(Transfer::splice_if_available()).await;
    }

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_is_closed() {
        let (_fc, near_client, near_server, _fs) = pairs().await;
        let out = relay(
            near_client.into(),
            near_server,
            Transfer::splice_if_available(),
            Duration::from_secs(30),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(out.end, End::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_postpones_idle() {
        let (mut far_client, near_client, near_server, mut far_server) = pairs().await;
        let task = tokio::spawn(relay(
            near_client.into(),
            near_server,
            Transfer::splice_if_available(),
            Duration::from_secs(30),
            CancellationToken::new(),
        ));
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_secs(20)).await;
            far_client.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            far_server.read_exact(&mut b).await.unwrap();
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
        let (_fc, near_client, near_server, _fs) = pairs().await;
        let stop = CancellationToken::new();
        stop.cancel();
        let out = relay(
            near_client.into(),
            near_server,
            Transfer::splice_if_available(),
            Duration::from_secs(30),
            stop,
        )
        .await;
        assert_eq!(out.end, End::Shutdown);
    }
}
