//! NTLM helpers cannot be held by strangers: half-open handshakes (a type 1
//! and then silence) are capped per client address and expire on a timer,
//! against the real Samba AD DC that integration/test starts.

mod common;

use std::process::Command;

use common::ntlm::{read_response, NtlmClient};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn proxy(samba: &std::path::Path, dir: &std::path::Path, ntlm_extra: &str) -> Gatehouse {
    proxy_with("", samba, dir, ntlm_extra)
}

fn proxy_with(
    listener: &str,
    samba: &std::path::Path,
    dir: &std::path::Path,
    ntlm_extra: &str,
) -> Gatehouse {
    let realm = common::samba::realm_file(samba, dir);
    let cfg = format!(
        "[auth]\nrequired = true\nschemes = [\"ntlm\", \"basic\"]\nrealms = [\"{}\"]\n\
         [auth.ntlm]\nhelper = [\"ntlm_auth\", \"--helper-protocol=squid-2.5-ntlmssp\", \"--configfile={}\"]\n\
         {ntlm_extra}",
        realm.display(),
        samba.join("etc/smb.conf").display()
    );
    Gatehouse::start(listener, &cfg)
}

/// Opens `n` connections from `source` (another loopback address: another
/// host, as the proxy sees it) that each send a type 1 and then nothing.
/// Returns the connections (kept open) and the status each got.
async fn half_handshakes(
    gh: &Gatehouse,
    source: &str,
    type1: &str,
    n: usize,
) -> (Vec<TcpStream>, Vec<u16>) {
    let mut held = Vec::new();
    let mut codes = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let mut s = socket.connect(gh.addr()).await.unwrap();
        s.write_all(
            format!("GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: NTLM {type1}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        codes.push(status_of(&read_response(&mut s).await));
        held.push(s);
    }
    (held, codes)
}

fn curl_ntlm(gh: &Gatehouse, url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--proxy-ntlm", "-U", "ADTEST\\alice:alice-Pw1", "-x"])
        .arg(format!("http://{}", gh.addr()))
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
            url,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Twice `max_helpers` idle half-handshakes from one host: only
/// `max_pending_per_address` get a helper (the others wait `queue_timeout`
/// for a place, then get 503), and a real curl from another host succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn idle_half_handshakes_cannot_take_every_helper() {
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    // Defaults: 8 helpers, 4 pending handshakes per address.
    let gh = proxy(
        &samba,
        dir.path(),
        "queue_timeout = \"1s\"\nhandshake_timeout = \"60s\"\n",
    );
    let type1 = NtlmClient::new(&samba, "alice", "x").type1();
    let flood = half_handshakes(&gh, "127.0.0.2", &type1, 16);
    let (_held, codes) = tokio::time::timeout(std::time::Duration::from_secs(120), flood)
        .await
        .expect("every type 1 answered");
    assert_eq!(codes.iter().filter(|c| **c == 407).count(), 4, "{codes:?}");
    assert!(codes[4..].iter().all(|c| *c == 503), "{codes:?}");
    let url = origin.url("/hello");
    let code = tokio::task::block_in_place(|| curl_ntlm(&gh, &url));
    assert_eq!(
        code, "200",
        "curl --proxy-ntlm while 16 half-handshakes idle"
    );
    assert!(gh.stderr().contains("NTLM handshakes already pending"));
}

/// A shared address (`[[listener.shared_addresses]]`, a terminal server)
/// has its own cap on pending handshakes; other addresses keep the default.
#[tokio::test(flavor = "multi_thread")]
async fn a_shared_address_has_its_own_pending_handshake_cap() {
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let gh = proxy_with(
        "[[listener.shared_addresses]]\ncidrs = [\"127.0.0.3/32\"]\nmax_pending_ntlm = 1\n",
        &samba,
        dir.path(),
        "max_pending_per_address = 2\nqueue_timeout = \"1s\"\nhandshake_timeout = \"60s\"\n",
    );
    let type1 = NtlmClient::new(&samba, "alice", "x").type1();
    let (_shared, codes) = half_handshakes(&gh, "127.0.0.3", &type1, 3).await;
    assert_eq!(codes, vec![407, 503, 503]);
    let (_other, codes) = half_handshakes(&gh, "127.0.0.4", &type1, 3).await;
    assert_eq!(codes, vec![407, 407, 503]);
    assert!(gh.stderr().contains("1 NTLM handshakes already pending"));
}

/// A half-handshake gives its helper back when `handshake_timeout` passes,
/// though its client never sends another byte.
#[tokio::test(flavor = "multi_thread")]
async fn a_half_handshake_expires_on_a_timer() {
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = proxy(
        &samba,
        dir.path(),
        "max_helpers = 2\nmax_pending_per_address = 2\nhandshake_timeout = \"1s\"\nqueue_timeout = \"10s\"\n",
    );
    let type1 = NtlmClient::new(&samba, "alice", "x").type1();
    let (_held, codes) = half_handshakes(&gh, "127.0.0.2", &type1, 2).await;
    assert_eq!(codes, vec![407, 407]);
    // Both helpers are leased by silent clients; only the timer frees them.
    let url = origin.url("/hello");
    let code = tokio::task::block_in_place(|| curl_ntlm(&gh, &url));
    assert_eq!(code, "200");
    assert!(gh.stderr().contains("NTLM handshake not completed in time"));
}

/// A type 1 counts toward the connection's failure limit: a connection that
/// keeps starting handshakes without finishing one is closed.
#[tokio::test(flavor = "multi_thread")]
async fn endless_type_1s_close_the_connection() {
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let gh = proxy(&samba, dir.path(), "");
    let type1 = NtlmClient::new(&samba, "alice", "x").type1();
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let req = format!(
        "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: x\r\nProxy-Authorization: NTLM {type1}\r\n\r\n"
    );
    // max_failures_per_connection is 5 by default.
    for i in 1..=5 {
        s.write_all(req.as_bytes()).await.unwrap();
        let r = read_response(&mut s).await;
        assert_eq!(status_of(&r), 407, "{r}");
        assert_eq!(r.contains("connection: close"), i == 5, "{i}: {r}");
    }
}
