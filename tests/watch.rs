//! A directory realm that follows its directory (`watch`): a user taken out
//! of the group that gave them raw tunnels loses the tunnel they hold open,
//! and their next CONNECT is detected, within seconds — while `cache_ttl`
//! is ten minutes. Against OpenLDAP (syncrepl, the lab's syncprov overlay)
//! and Samba AD (uSNChanged polling).

mod common;

use std::time::{Duration, Instant};

use common::lab::Slapd;
use common::tls_lab::connect_through;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEADLINE: Duration = Duration::from_secs(10);

const POLICY: &str = "[[layers]]\nname = \"tunnels\"\n[[layers.rules]]\n\
name = \"skype-tunnel\"\ngroup = [\"Skype Users\"]\nmethod = [\"CONNECT\"]\naction = \"tunnel\"\n";

/// A proxy with detection on, the realm file given, and raw tunnels to an
/// echo server for the Skype Users group.
async fn proxy(realm: &std::path::Path, dir: &std::path::Path, extra: &str) -> (Gatehouse, String) {
    let echo = echo_server().await;
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let cfg = format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\n[tunnel]\nallowed_ports = [{}]\n\
         [detection]\nenabled = true\ntimeout = \"2s\"\n[policy]\nfile = \"{}\"\n{extra}",
        realm.display(),
        echo.port(),
        policy.display()
    );
    (Gatehouse::start("", &cfg), echo.to_string())
}

async fn tunnel(gh: &Gatehouse, dest: &str, who: &str) -> TcpStream {
    let auth = format!("Proxy-Authorization: {}\r\n", basic(who));
    connect_through(gh.addr(), dest, &auth)
        .await
        .expect("the CONNECT is answered 200")
}

/// Bytes through a raw tunnel come back from the echo server; a detected
/// one holds them to classify (not TLS, nothing allows it: refused).
async fn echoes(s: &mut TcpStream) -> bool {
    let m = b"not a known protocol, long enough to classify\r\n";
    if s.write_all(m).await.is_err() {
        return false;
    }
    let mut back = vec![0u8; m.len()];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await,
        Ok(Ok(_)) if back == m
    )
}

/// Waits (at most `DEADLINE` from `since`) for the proxy to close `s`.
async fn closed_within(s: &mut TcpStream, since: Instant) {
    let left = DEADLINE.saturating_sub(since.elapsed());
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(left, s.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the tunnel was closed within 10 s: {read:?}"
    );
}

/// Polls until a new CONNECT by `who` is detected (its bytes not echoed),
/// within `DEADLINE` from `since`.
async fn next_connect_detected(gh: &Gatehouse, dest: &str, who: &str, since: Instant) {
    loop {
        let mut s = tunnel(gh, dest, who).await;
        if !echoes(&mut s).await {
            return;
        }
        assert!(since.elapsed() < DEADLINE, "still a raw tunnel after 10 s");
    }
}

fn revoked_line(gh: &Gatehouse, user: &str) -> std::collections::HashMap<String, String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let lines = parse_elff(&std::fs::read_to_string(&gh.log_path).unwrap_or_default());
        if let Some(l) = lines
            .into_iter()
            .find(|l| l["cs-username"] == user && l["x-exception-id"] == "tunnel_revoked")
        {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no revoked tunnel logged for {user}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn syncrepl_closes_a_raw_tunnel_when_the_user_leaves_the_group() {
    let lab = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let realm = lab.realm_file("memberof", "watch = \"syncrepl\"\ncache_ttl = \"10m\"\n");
    let (gh, echo) = proxy(&realm, dir.path(), "").await;
    gh.wait_stderr("directory watch (syncrepl) following", 1);
    let mut t = tunnel(&gh, &echo, "alice:alice-pw").await;
    assert!(echoes(&mut t).await, "alice's tunnel is raw");

    let since = Instant::now();
    // groupOfNames needs a member: carol takes alice's place.
    lab.modify(
        "dn: cn=telephony,ou=groups,dc=example,dc=test\nchangetype: modify\n\
         add: member\nmember: uid=carol,ou=people,dc=example,dc=test\n-\n\
         delete: member\nmember: uid=alice,ou=people,dc=example,dc=test\n",
    );
    closed_within(&mut t, since).await;
    next_connect_detected(&gh, &echo, "alice:alice-pw", since).await;
    let line = revoked_line(&gh, "alice");
    assert_eq!(line["x-rule"], "builtin:directory");
}

/// The watch breaks with the directory and comes back: counted, and it
/// follows again after the restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_watch_is_counted_and_reconnects() {
    let mut lab = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let realm = lab.realm_file("memberof", "watch = \"syncrepl\"\ncache_ttl = \"10m\"\n");
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (gh, _) = proxy(
        &realm,
        dir.path(),
        &format!("[admin]\naddress = \"{admin}\"\n"),
    )
    .await;
    gh.wait_stderr("directory watch (syncrepl) following", 1);
    let series = "gatehouse_directory_watch_failures_total{realm=\"lab\"} ";
    assert_eq!(failures(admin, series).await, 0);
    lab.stop();
    gh.wait_stderr("directory watch broken", 1);
    assert!(failures(admin, series).await >= 1);
    lab.run();
    gh.wait_stderr("directory watch (syncrepl) following", 2);
}

/// The failure counter's value on `/metrics` (0 before any).
async fn failures(admin: std::net::SocketAddr, series: &str) -> u64 {
    let text = raw_exchange(
        admin,
        b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n",
        DEADLINE,
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn usn_polling_closes_a_raw_tunnel_when_the_user_leaves_the_group_in_ad() {
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let realm = common::samba::realm_file(&samba, dir.path());
    let mut text = std::fs::read_to_string(&realm).unwrap();
    text.push_str("watch = \"usn\"\nwatch_interval = \"1s\"\ncache_ttl = \"10m\"\n");
    std::fs::write(&realm, text).unwrap();
    let (gh, echo) = proxy(&realm, dir.path(), "").await;
    gh.wait_stderr("directory watch (uSNChanged) following", 1);
    let mut t = tunnel(&gh, &echo, "alice:alice-Pw1").await;
    assert!(echoes(&mut t).await, "alice's tunnel is raw");

    let conf = samba.join("etc/smb.conf");
    let tool = |args: &[&str]| {
        let out = std::process::Command::new("samba-tool")
            .args(args)
            .arg("-s")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let since = Instant::now();
    tool(&["group", "removemembers", "telephony", "alice"]);
    // Put the lab back for the other tests, whatever happens here.
    struct Restore<F: Fn()>(F);
    impl<F: Fn()> Drop for Restore<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _restore = Restore(|| tool(&["group", "addmembers", "telephony", "alice"]));
    closed_within(&mut t, since).await;
    next_connect_detected(&gh, &echo, "alice:alice-Pw1", since).await;
    let line = revoked_line(&gh, "alice");
    assert_eq!(line["x-rule"], "builtin:directory");
}
