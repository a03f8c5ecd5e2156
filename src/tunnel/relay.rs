//! Copies bytes both ways between client and server until either side
//! closes, the tunnel idles out, or shutdown's deadline passes.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Bytes read per syscall while a plain direction is busy. 256 KiB, not
/// 64: a bulk tunnel makes fewer read/write calls and wake-ups, and fewer
/// runt segments (each write ends in one: on loopback, MSS 65,483, a 64 KiB
/// write was a full segment and a 53-byte one). The proxy's CPU per GiB
/// fell by ~20% (docs/benchmarks.md, 2026-12-03); 512 KiB and 1 MiB
/// measured alike. The buffer is held only from a read to its write.
const CHUNK: usize = 256 * 1024;

/// The buffer a TLS listener client's direction keeps for the tunnel's
/// life: rustls hands out at most a few 16 KiB records per read, and an
/// idle tunnel must stay small. Also what a plain burst reads into when
/// `MAX_BIG` big buffers are out.
const TLS_CHUNK: usize = 64 * 1024;

/// `CHUNK`-sized buffers out at once, process-wide. A direction whose
/// receiver stops reading keeps its buffer until the write completes, so
/// without a cap, tunnels whose two ends both stall (a client and a server
/// of an attacker's) would hold 4× what 64 KiB reads held; with it, at most
/// 256 × 192 KiB (48 MiB) more, and bulk tunnels beyond it read 64 KiB.
const MAX_BIG: usize = 256;
static BIG_OUT: AtomicUsize = AtomicUsize::new(0);

/// Relay buffers kept for reuse on each worker thread. A direction takes one
/// when data arrives and gives it back when its socket runs dry, so a short
/// exchange costs no malloc (and no heap consolidation glibc runs when a
/// chunk that large is freed). Bounded by bytes, 512 KiB per thread of each
/// size, so what a thread keeps after a burst does not grow with `CHUNK`.
struct Chunk {
    buf: Vec<u8>,
    spares: &'static std::thread::LocalKey<Spares>,
    /// Counted in `BIG_OUT` until dropped.
    big: bool,
}

type Spares = std::cell::RefCell<Vec<Vec<u8>>>;

const SPARE_BYTES: usize = 512 * 1024;

thread_local! {
    static SPARES: Spares = const { std::cell::RefCell::new(Vec::new()) };
    static TLS_SPARES: Spares = const { std::cell::RefCell::new(Vec::new()) };
}

impl Chunk {
    /// A `CHUNK`-sized buffer for a plain direction's burst, or a
    /// `TLS_CHUNK` one when `MAX_BIG` are out.
    fn take() -> Self {
        let big = BIG_OUT
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_BIG).then_some(n + 1)
            })
            .is_ok();
        if big {
            Self::pooled(&SPARES, CHUNK, true)
        } else {
            Self::take_tls()
        }
    }

    /// A `TLS_CHUNK`-sized buffer for a decrypted client's direction.
    fn take_tls() -> Self {
        Self::pooled(&TLS_SPARES, TLS_CHUNK, false)
    }

    fn pooled(spares: &'static std::thread::LocalKey<Spares>, len: usize, big: bool) -> Self {
        let spare = spares.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        Chunk {
            buf: spare.unwrap_or_else(|| vec![0; len]),
            spares,
            big,
        }
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if self.big {
            BIG_OUT.fetch_sub(1, Ordering::AcqRel);
        }
        let b = std::mem::take(&mut self.buf);
        let _ = self.spares.try_with(|s| {
            let mut s = s.borrow_mut();
            if (s.len() + 1) * b.len() <= SPARE_BYTES {
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
                // A CONNECT stream of an HTTP/2 connection: copied as TLS is.
                ClientStream::H2(stream) => {
                    let (mut cr, mut cw) = tokio::io::split(*stream);
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
        let mut rb = ReadBuf::new(&mut chunk.buf);
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
        write_counted(dst, &chunk.buf[..n], count, meter, start).await?;
        // A TLS client's records may wait in rustls until flushed (a no-op
        // on a plain socket).
        dst.flush().await?;
    }
}

/// `write_all`, counting each partial write as it lands: a tunnel that ends
/// mid-write (idle, revoked, reset) logs the bytes it did deliver, and a
/// receiver still reading, however slowly, is activity, not idleness.
async fn write_counted<W: AsyncWrite + Unpin>(
    dst: &mut W,
    mut buf: &[u8],
    count: &AtomicU64,
    meter: &Meter,
    start: Instant,
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = dst.write(buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        meter.moved(count, n as u64, start);
        buf = &buf[n..];
    }
    Ok(())
}

/// Client to server when the client is TLS to the proxy: whatever rustls
/// has decrypted, written on, until the client's end of stream.
async fn copy_decrypted<R: AsyncRead + Unpin>(
    src: &mut R,
    dst: &mut WriteHalf<'_>,
    meter: &Meter,
    start: Instant,
) -> io::Result<()> {
    let mut chunk = Chunk::take_tls();
    loop {
        let n = src.read(&mut chunk.buf).await?;
        if n == 0 {
            let _ = dst.shutdown().await;
            return Ok(());
        }
        write_counted(dst, &chunk.buf[..n], &meter.client_to_server, meter, start).await?;
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
