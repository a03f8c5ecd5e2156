//! `[[listener.shared_addresses]]`: an address known to carry many users (a
//! terminal server, a NAT) gets its own connection cap instead of
//! `listener.max_connections_per_address`, and a reload changes both.
//! Clients bind distinct loopback addresses (127.0.0.x) before connecting.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    s.connect(to).await.unwrap()
}

/// The first answer on a new connection from `from` to a request that
/// keeps the connection open (origin-form: 400, not a closing error).
async fn try_hold(gh: &Gatehouse, from: &str) -> (u16, TcpStream) {
    let mut s = connect_from(from, gh.addr()).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap_or(0);
    (status_of(&String::from_utf8_lossy(&buf[..n])), s)
}

/// Holds `n` connections from `from` (retrying while an earlier connection
/// of the same address is still being closed by the proxy), then checks the
/// next one is refused with 503.
async fn cap_is(gh: &Gatehouse, from: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while held.len() < n {
        match try_hold(gh, from).await {
            (400, s) => held.push(s),
            (503, _) => tokio::task::yield_now().await,
            (other, _) => panic!("{from}: answered {other}"),
        }
        assert!(
            Instant::now() < deadline,
            "{from}: only {} of {n} connections",
            held.len()
        );
    }
    let (code, _) = try_hold(gh, from).await;
    assert_eq!(code, 503, "{from}: connection {} past a cap of {n}", n + 1);
    held
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shared_address_has_its_own_cap_and_a_reload_changes_it() {
    let gh = Gatehouse::start(
        "max_connections_per_address = 2\n\
         [[listener.shared_addresses]]\ncidrs = [\"127.0.0.2/32\"]\nmax_connections = 5\n\
         [[listener.shared_addresses]]\ncidrs = [\"127.0.0.3/32\"]\nmax_connections = 1\n",
        "",
    );
    let raised = cap_is(&gh, "127.0.0.2", 5).await;
    let lowered = cap_is(&gh, "127.0.0.3", 1).await;
    let default = cap_is(&gh, "127.0.0.4", 2).await;
    drop((raised, lowered, default));

    // The sites swap on SIGHUP: 127.0.0.2 is no longer shared, 127.0.0.4 is.
    let cfg = std::fs::read_to_string(&gh.config_path).unwrap();
    std::fs::write(&gh.config_path, cfg.replace("127.0.0.2/32", "127.0.0.4/32")).unwrap();
    gh.signal("HUP");
    gh.wait_stderr("configuration reloaded", 1);
    let _a = cap_is(&gh, "127.0.0.2", 2).await;
    let _b = cap_is(&gh, "127.0.0.4", 5).await;
    let lines = parse_elff(&std::fs::read_to_string(&gh.log_path).unwrap());
    assert!(
        lines.iter().any(|l| l["c-ip"] == "127.0.0.3"
            && l["x-exception-id"] == "too_many_connections_from_client"),
        "the refusal is logged under the client's address"
    );
}
