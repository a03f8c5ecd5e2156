//! The relay on real loopback sockets.

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

/// Held by the tests that look at the big-buffer budget: one of them
/// exhausts it, which the others must not see.
static BUDGET: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn relay_buffers_are_reused_and_bounded() {
    let _budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    let first = Chunk::take();
    let ptr = first.buf.as_ptr();
    drop(first);
    assert_eq!(
        Chunk::take().buf.as_ptr(),
        ptr,
        "a returned buffer is reused"
    );
    let many: Vec<Chunk> = (0..SPARE_BYTES / CHUNK + 3)
        .map(|_| Chunk::take())
        .collect();
    drop(many);
    assert_eq!(
        SPARES.with(|s| s.borrow().len()) * CHUNK,
        SPARE_BYTES,
        "spares are bounded by bytes"
    );
    assert_eq!(Chunk::take().buf.len(), CHUNK);
}

/// A TLS listener client's direction holds its buffer for the tunnel's
/// life, so it must not grow with the bulk chunk; it has spares of its own.
#[test]
fn a_tls_direction_keeps_a_small_buffer_of_its_own_pool() {
    let _budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    const { assert!(TLS_CHUNK <= 64 * 1024) };
    let tls = Chunk::take_tls();
    assert_eq!(tls.buf.len(), TLS_CHUNK);
    let ptr = tls.buf.as_ptr();
    drop(tls);
    assert_eq!(
        Chunk::take().buf.len(),
        CHUNK,
        "not mixed into the bulk pool"
    );
    assert_eq!(Chunk::take_tls().buf.as_ptr(), ptr);
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

/// Big buffers are capped process-wide: past `MAX_BIG` a burst reads into
/// a small one, and a returned big one is available again.
#[test]
fn big_buffers_are_capped() {
    let _budget = BUDGET.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    while held.len() <= MAX_BIG {
        let c = Chunk::take();
        let big = c.big;
        held.push(c);
        if !big {
            break;
        }
    }
    let last = held.last().unwrap();
    assert!(!last.big, "a small buffer once {MAX_BIG} big are out");
    assert_eq!(last.buf.len(), TLS_CHUNK);
    assert!(held.iter().filter(|c| c.big).count() <= MAX_BIG);
    drop(held);
    assert!(Chunk::take().big, "given back, the budget is free again");
}

/// A tunnel stopped while a write is part done counts what was delivered:
/// the client's receive window is tiny, so the 256 KiB burst cannot land
/// whole (with `write_all`, none of it was counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_of_an_unfinished_write_are_counted() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    // Set before connecting, so the window it advertises is small from the
    // first segment on; the near end's send buffer too.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut far_client = socket.connect(addr).await.unwrap();
    let (near_client, _) = l.accept().await.unwrap();
    rustix::net::sockopt::set_socket_send_buffer_size(&near_client, 4096).unwrap();
    let mut far_server = TcpStream::connect(addr).await.unwrap();
    let (near_server, _) = l.accept().await.unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay(
        near_client.into(),
        near_server,
        Transfer::Buffered,
        Duration::from_secs(60),
        stop.clone(),
    ));
    let writer = tokio::spawn(async move {
        let _ = far_server.write_all(&vec![7u8; 2 << 20]).await;
        far_server
    });
    let mut first = [0u8; 1];
    far_client.read_exact(&mut first).await.unwrap();
    stop.cancel();
    let out = task.await.unwrap();
    let mut rest = Vec::new();
    far_client.read_to_end(&mut rest).await.unwrap();
    writer.abort();
    let delivered = 1 + rest.len() as u64;
    assert_eq!(out.end, End::Shutdown);
    assert_eq!(out.server_to_client, delivered, "counted = delivered");
    assert!(delivered < 2 << 20, "the stop came mid-transfer");
}
