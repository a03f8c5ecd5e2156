//! Copies bytes both ways between client and server until either side
//! closes, the tunnel idles out, or shutdown's deadline passes.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

    #[tokio::test]
    async fn copies_half_closes_and_counts() {
        let (mut far_client, near_client, near_server, mut far_server) = pairs().await;
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

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_is_closed() {
        let (_fc, near_client, near_server, _fs) = pairs().await;
        let out = relay_tcp(
            near_client,
            near_server,
            Duration::from_secs(30),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(out.end, End::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn activity_postpones_idle() {
        let (mut far_client, near_client, near_server, mut far_server) = pairs().await;
        let task = tokio::spawn(relay_tcp(
            near_client,
            near_server,
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
        let out = relay_tcp(near_client, near_server, Duration::from_secs(30), stop).await;
        assert_eq!(out.end, End::Shutdown);
    }
}
