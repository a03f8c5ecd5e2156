//! Two Gatehouse instances behind HAProxy in TCP mode (integration/haproxy):
//! Basic, NTLM (which needs the connection affinity TCP mode gives) and
//! Negotiate clients (both instances accept with one shared SPN keytab),
//! one instance killed mid-run — the surviving connections lose
//! nothing, the killed instance's clients reconnect and succeed on the
//! other, and the two access logs together account for every success.
//! HAProxy sends each instance a PROXY v2 header: every client binds its own
//! loopback address (127.0.0.x), and the logs name it, never the balancer.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::ntlm::read_response;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

struct Haproxy {
    child: Child,
    front: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn haproxy(a: (u16, u16), b: (u16, u16)) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let front = free_port();
    let cfg = include_str!("../integration/haproxy/gatehouse.cfg")
        .replace("{FRONT}", &front.to_string())
        .replace("{A_ADMIN}", &a.1.to_string())
        .replace("{B_ADMIN}", &b.1.to_string())
        .replace("{A}", &a.0.to_string())
        .replace("{B}", &b.0.to_string());
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy (integration/install-deps installs it)");
    Haproxy {
        child,
        front,
        _dir: dir,
    }
}

/// The name clients reach the pair by: the SPN both instances share.
const NAME: &str = "proxy.ad.example.test";

/// An instance named `name` (its `Via` pseudonym), Basic (local realm), NTLM
/// and Negotiate (the lab DC; the one keytab for HTTP/proxy.ad.example.test),
/// with an admin listener for HAProxy's health checks.
fn instance(name: &str, samba: &std::path::Path, dir: &std::path::Path) -> (Gatehouse, u16) {
    let _ = local_realm(dir);
    let ad = common::samba::realm_file(samba, dir);
    let admin = free_port();
    let cfg = format!(
        "[auth]\nrequired = true\nschemes = [\"negotiate\", \"ntlm\", \"basic\"]\nrealms = [\"{}\", \"{}\"]\n\
         [auth.negotiate]\nkeytab = \"{}\"\nprincipal = \"HTTP/{NAME}@AD.EXAMPLE.TEST\"\n\
         [auth.ntlm]\nhelper = [\"ntlm_auth\", \"--helper-protocol=squid-2.5-ntlmssp\", \"--configfile={}\"]\n\
         max_helpers = 2\nqueue_timeout = \"30s\"\n\
         [forward]\nvia_pseudonym = \"{name}\"\n[admin]\naddress = \"127.0.0.1:{admin}\"\n",
        dir.join("local.toml").display(),
        ad.display(),
        samba.join("http.keytab").display(),
        samba.join("etc/smb.conf").display()
    );
    let krb5 = samba.join("krb5.conf");
    let env = [("KRB5_CONFIG", krb5.to_str().unwrap())];
    // HAProxy connects from 127.0.0.1; its PROXY header names the client.
    let listener = "proxy_protocol_from = [\"127.0.0.1/32\"]\n";
    (Gatehouse::start_with_env(listener, &cfg, &env), admin)
}

/// A connection to `front` from the client address `from` (127.0.0.x).
async fn connect_from(from: &str, front: &str) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(std::net::SocketAddr::new(from.parse().unwrap(), 0))?;
    s.connect(front.parse().unwrap()).await
}

/// One Basic GET on `s`; the status and which instance answered (its Via).
async fn get(s: &mut TcpStream, url: &str) -> Option<(u16, String)> {
    let req = format!(
        "GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\n\r\n",
        basic("bob:bob-pw")
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let r = read_response(s).await;
    let via = r
        .lines()
        .find_map(|l| l.strip_prefix("via: ").or_else(|| l.strip_prefix("Via: ")))?
        .rsplit(' ')
        .next()?
        .to_string();
    Some((status_of(&r), via))
}

/// Where each kind of client connects from.
const READY: &str = "127.0.0.10";
const KEPT: &str = "127.0.0.11";
const NTLM: &str = "127.0.0.12";
const NEGOTIATE: &str = "127.0.0.13";
const RECONNECT: &str = "127.0.0.14";

fn curl_ntlm(front: u16, url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--interface", NTLM])
        .args(["--proxy-ntlm", "-U", "ADTEST\\alice:alice-Pw1"])
        .args([
            "-x",
            &format!("http://127.0.0.1:{front}"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            url,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `curl --proxy-negotiate` from the NEGOTIATE address, as the holder of `cc`.
fn curl_negotiate_from(
    krb5: &std::path::Path,
    cc: &std::path::Path,
    front: u16,
    url: &str,
) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--interface",
            NEGOTIATE,
            "--proxy-negotiate",
            "-U",
            ":",
        ])
        .args(["-x", &format!("http://{NAME}:{front}")])
        .args(["--resolve", &format!("{NAME}:{front}:127.0.0.1")])
        .args(["-o", "/dev/null", "-w", "%{http_code}", url])
        .env("KRB5_CONFIG", krb5)
        .env("KRB5CCNAME", format!("FILE:{}", cc.display()))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn successes(gh: &Gatehouse) -> usize {
    parse_elff(&std::fs::read_to_string(&gh.log_path).unwrap_or_default())
        .iter()
        .filter(|l| l["sc-status"] == "200")
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_killed_mid_run_loses_no_surviving_request() {
    let samba = common::samba::dir();
    let origin = Origin::start().await;
    let url = origin.url("/");
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, a_admin) = instance("gh-a", &samba, da.path());
    let (b, b_admin) = instance("gh-b", &samba, db.path());
    let lb = haproxy((a.addr().port(), a_admin), (b.addr().port(), b_admin));
    let krb5 = samba.join("krb5.conf");
    let cc = kinit(&krb5, "alice", "alice-Pw1", da.path());
    let front = format!("127.0.0.1:{}", lb.front);
    let mut ok = 0usize;
    // Ready when HAProxy has sent a connection to each instance.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100 {
        if let Ok(mut s) = connect_from(READY, &front).await {
            if let Some((200, via)) = get(&mut s, &url).await {
                ok += 1;
                seen.insert(via);
            }
        }
        if seen.len() == 2 {
            break;
        }
        // Poll (HAProxy binds and checks in its own time); readiness is the
        // two instances seen answering, not this pause.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 2, "both instances serve through HAProxy");
    // Two kept-alive connections, one on each instance.
    let mut on: std::collections::HashMap<String, TcpStream> = Default::default();
    while on.len() < 2 {
        let mut s = connect_from(KEPT, &front).await.unwrap();
        let (status, via) = get(&mut s, &url).await.unwrap();
        assert_eq!(status, 200);
        ok += 1;
        on.entry(via).or_insert(s);
    }
    assert_eq!(
        tokio::task::block_in_place(|| curl_ntlm(lb.front, &url)),
        "200"
    );
    ok += 1;
    assert_eq!(
        tokio::task::block_in_place(|| curl_negotiate_from(&krb5, &cc, lb.front, &url)),
        "200"
    );
    ok += 1;
    // Kill gh-a once everything it served is in its log.
    a.log_lines(successes(&a).max(1));
    let served_by_a = successes(&a);
    a.signal("KILL");
    let mut survivor = on.remove("gh-b").unwrap();
    let mut victim = on.remove("gh-a").unwrap();
    for _ in 0..5 {
        let (status, via) = get(&mut survivor, &url)
            .await
            .expect("the surviving connection holds");
        assert_eq!((status, via.as_str()), (200, "gh-b"));
        ok += 1;
    }
    // The killed instance's client sees its connection end, reconnects, succeeds.
    assert!(get(&mut victim, &url).await.is_none_or(|(s, _)| s != 200));
    for _ in 0..10 {
        let mut s = connect_from(RECONNECT, &front).await.unwrap();
        let (status, via) = get(&mut s, &url).await.expect("a new connection is served");
        assert_eq!((status, via.as_str()), (200, "gh-b"));
        ok += 1;
    }
    assert_eq!(
        tokio::task::block_in_place(|| curl_ntlm(lb.front, &url)),
        "200"
    );
    ok += 1;
    assert_eq!(
        tokio::task::block_in_place(|| curl_negotiate_from(&krb5, &cc, lb.front, &url)),
        "200"
    );
    ok += 1;
    // Every success is in one of the two logs (gh-b's lines are written
    // when each response ends: poll its file until they are all there).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while served_by_a + successes(&b) < ok && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(served_by_a + successes(&b), ok);
    // The ticket made for the shared name was accepted by the survivor.
    let b_lines = parse_elff(&std::fs::read_to_string(&b.log_path).unwrap());
    assert!(b_lines
        .iter()
        .any(|l| l["x-auth-scheme"] == "negotiate-kerberos" && l["cs-username"] == "alice"));
    // Each client's own address is logged, never the balancer's.
    let a_lines = parse_elff(&std::fs::read_to_string(&a.log_path).unwrap());
    let served: Vec<_> = a_lines
        .iter()
        .chain(&b_lines)
        .filter(|l| l["sc-status"] == "200")
        .collect();
    assert!(
        served.iter().all(|l| l["c-ip"] != "127.0.0.1"),
        "{served:?}"
    );
    let from = |ip: &str, scheme: &str| {
        served
            .iter()
            .any(|l| l["c-ip"] == ip && l["x-auth-scheme"].starts_with(scheme))
    };
    assert!(from(KEPT, "basic") && from(RECONNECT, "basic") && from(READY, "basic"));
    assert!(from(NTLM, "ntlm") && from(NEGOTIATE, "negotiate"));
}
