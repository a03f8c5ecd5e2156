//! Two instances and one Redis (Debian's redis-server, on loopback): the
//! smart lockout's counts are the fleet's, so a stranger alternating between
//! instances gets one budget, not one per instance; a place familiar on one
//! instance is familiar on the other; and when the store dies mid-test the
//! instances fall back to their own counts — answering, never refusing
//! everyone — with a warning in the log.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::Slapd;
use common::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=test";

/// A redis-server on a free loopback port, answering PING.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    fn start() -> Redis {
        let port = free_port();
        // Owned at once: dropped (killed and waited for) whatever happens next.
        let redis = Redis {
            port,
            child: Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (integration/install-deps installs it)"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return redis;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_budget_and_survive_the_store_dying() {
    let lab = Slapd::start();
    let mut redis = Redis::start();
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("throttle.key");
    std::fs::write(&key, "a fleet secret of enough length").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\n\
         [auth.throttle]\nstore = \"redis://127.0.0.1:{}/0\"\nkey_file = \"{}\"\n",
        lab.realm_file("memberof", "").display(),
        redis.port,
        key.display()
    );
    let (gh1, gh2) = (Gatehouse::start("", &cfg), Gatehouse::start("", &cfg));
    let url = origin.url("/bytes/3");
    let (desk, stranger) = ("127.0.0.11", "127.0.0.12");
    // alice signs in on the first instance: her desk is familiar to both.
    assert_eq!(
        status_of(&get_from(gh1.addr(), desk, &url, "alice:alice-pw").await),
        200
    );
    let before = lab.binds_for(ALICE_DN);
    for i in 0..10 {
        let gh = if i % 2 == 0 { &gh1 } else { &gh2 };
        let text = get_from(gh.addr(), stranger, &url, &format!("alice:guess-{i}")).await;
        assert_eq!(status_of(&text), 407, "{text}");
    }
    assert_eq!(
        lab.binds_for(ALICE_DN) - before,
        2,
        "the fleet's budget (user_failures = 2), not one per instance"
    );
    // A guess already made on one instance is known on the other.
    let text = get_from(gh2.addr(), stranger, &url, "alice:guess-0").await;
    assert!(!text.contains("authentication_throttled"), "{text}");
    // Familiar on the second instance too: a new sign-in from her desk.
    assert_eq!(
        status_of(&get_from(gh2.addr(), desk, &url, "ALICE:alice-pw").await),
        200
    );
    // The store dies: each instance counts alone, answering every request.
    redis.kill();
    assert!(std::net::TcpStream::connect(("127.0.0.1", redis.port)).is_err());
    let before = lab.binds_for(ALICE_DN);
    for i in 10..20 {
        let gh = if i % 2 == 0 { &gh1 } else { &gh2 };
        let text = get_from(gh.addr(), stranger, &url, &format!("alice:guess-{i}")).await;
        assert_eq!(status_of(&text), 407, "{text}");
    }
    let spent = lab.binds_for(ALICE_DN) - before;
    assert!(spent <= 4, "at most each instance's own budget: {spent}");
    assert_eq!(
        status_of(&get_from(gh1.addr(), desk, &url, "aLICE:alice-pw").await),
        200
    );
    gh1.wait_stderr("throttle store unreachable", 1);
}
