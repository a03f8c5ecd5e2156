//! Block lists kept in files beside the policy (`host_file`, `dest_file`):
//! they decide requests through the real binary, reload with the policy on
//! SIGHUP (a malformed line refuses the reload and names file and line),
//! and `gatehouse explain` names the entry that matched.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(5);

const POLICY: &str = r#"
[objects]
blocked = { host_file = "lists/blocked-domains.txt" }
bad_nets = { dest_file = "lists/bad-nets.txt" }

[[layers]]
name = "blocklists"
[[layers.rules]]
name = "blocked-domains"
host = ["@blocked"]
action = "deny"
reason = "blocklisted"
[[layers.rules]]
name = "bad-nets"
dest = ["@bad_nets"]
action = "deny"
reason = "bad_net"
"#;

fn get(host: &str, port: u16) -> String {
    format!(
        "GET http://{host}:{port}/bytes/3 HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )
}

async fn status(gh: &Gatehouse, host: &str, port: u16) -> (u16, String) {
    let text = raw_exchange(gh.addr(), get(host, port).as_bytes(), WAIT).await;
    (status_of(&text), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn list_files_decide_reload_and_explain() {
    let origin = Origin::start().await;
    let port = origin.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists");
    std::fs::create_dir(&lists).unwrap();
    let domains = lists.join("blocked-domains.txt");
    std::fs::write(
        &domains,
        "# threat feed\n\nmalware.test\n.Ads.Test.   # and subdomains\n",
    )
    .unwrap();
    std::fs::write(lists.join("bad-nets.txt"), "192.0.2.0/24\n127.0.0.3\n").unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let names = [
        "malware.test",
        "x.ads.test",
        "ads.test",
        "badads.test",
        "fine.test",
        "net.test",
    ];
    let hosts: Vec<String> = names
        .iter()
        .map(|n| {
            let ip = if *n == "net.test" {
                "127.0.0.3"
            } else {
                "127.0.0.1"
            };
            format!("\"{n}\" = [\"{ip}\"]")
        })
        .collect();
    let gh = Gatehouse::start(
        "",
        &format!(
            "[resolver]\nsystem = false\nhosts = {{ {} }}\n[policy]\nfile = \"{}\"\n",
            hosts.join(", "),
            policy.display()
        ),
    );

    for (host, want) in [
        ("malware.test", 403),
        ("x.ads.test", 403),
        ("ads.test", 403),
        ("badads.test", 200),
        ("fine.test", 200),
        ("net.test", 403),
    ] {
        let (got, text) = status(&gh, host, port).await;
        assert_eq!(got, want, "{host}\n{text}");
    }
    let lines = gh.log_lines(6);
    let rule = |host: &str| {
        let l = lines
            .iter()
            .find(|l| l["cs-host"] == host)
            .unwrap_or_else(|| panic!("no log line for {host}: {lines:?}"));
        (l["x-rule"].clone(), l["x-exception-id"].clone())
    };
    assert_eq!(
        rule("x.ads.test"),
        ("blocked-domains".into(), "blocklisted".into())
    );
    assert_eq!(rule("net.test"), ("bad-nets".into(), "bad_net".into()));

    // explain names the list entry, its file (as the policy writes it) and line.
    let explain = |url: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["explain", "--config"])
            .arg(&gh.config_path)
            .args(["--method", "GET", "--url", url])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = explain("http://x.ads.test/");
    assert!(
        said.contains("matched host .ads.test from lists/blocked-domains.txt:4"),
        "{said}"
    );
    let said = explain("http://net.test/");
    assert!(
        said.contains("matched dest 127.0.0.3/32 from lists/bad-nets.txt:2"),
        "{said}"
    );

    // A malformed line refuses the reload, naming file and line; the old lists stay.
    std::fs::write(&domains, "malware.test\nfine.test\nnot a name\n").unwrap();
    gh.signal("HUP");
    gh.wait_stderr("policy reload refused", 1);
    let err = gh.stderr();
    assert!(err.contains("blocked-domains.txt:3"), "{err}");
    assert_eq!(status(&gh, "fine.test", port).await.0, 200);
    assert_eq!(status(&gh, "x.ads.test", port).await.0, 403);

    // A good list is picked up whole.
    std::fs::write(&domains, "malware.test\nfine.test\n").unwrap();
    gh.signal("HUP");
    gh.wait_stderr("policy reloaded", 1);
    assert_eq!(status(&gh, "fine.test", port).await.0, 403);
    assert_eq!(status(&gh, "x.ads.test", port).await.0, 200);
}

/// Load time and memory of a 1,000,000-entry list (run in release, each in
/// its own process so one's freed memory does not hide the other's:
/// `cargo test --release --test policy_lists a_million_domains -- --ignored --nocapture`,
/// and the same for `a_million_cidrs`). The figures in docs/policy.md come from here.
#[test]
#[ignore = "a measurement: run with --release"]
fn a_million_domains_load_fast() {
    measure_list("host", "host_file", |i| {
        if i % 2 == 0 {
            format!(".sub{i:07}.test")
        } else {
            format!("blk{i:07}.example{}.test", i % 997)
        }
    });
}

#[test]
#[ignore = "a measurement: run with --release"]
fn a_million_cidrs_load_fast() {
    measure_list("dest", "dest_file", |i| {
        let a = (11u32 << 24) + i as u32 * 16;
        format!("{}/28", std::net::Ipv4Addr::from(a))
    });
}

fn measure_list(field: &str, key: &str, entry: impl Fn(usize) -> String) {
    const N: usize = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..N {
        text.push_str(&entry(i));
        text.push('\n');
    }
    std::fs::write(dir.path().join("list.txt"), text).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("[objects]\nbig = {{ {key} = \"list.txt\" }}\n[[layers]]\nname = \"l\"\n[[layers.rules]]\nname = \"r\"\n{field} = [\"@big\"]\naction = \"deny\"\n"),
    )
    .unwrap();
    let cfg = gatehouse::policy::settings::PolicyConfig {
        file: Some(policy),
        ..Default::default()
    };
    let before = rss_kib();
    let t0 = std::time::Instant::now();
    let p = gatehouse::policy::Policy::load(&cfg).unwrap();
    let took = t0.elapsed();
    let grew = rss_kib() - before;
    println!(
        "{key}, {N} entries: loaded in {:.2} s, RSS +{:.0} MiB ({:.0} bytes per entry)",
        took.as_secs_f64(),
        grew as f64 / 1024.0,
        grew as f64 * 1024.0 / N as f64
    );
    drop(p);
    assert!(took < std::time::Duration::from_secs(2), "{took:?}");
}

fn rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn url_rules_judge_plain_http_requests() {
    let origin = Origin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[layers]]\nname = \"web\"\n[[layers.rules]]\nname = \"no-admin\"\nurl = [\"/admin\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let gh = Gatehouse::start("", &format!("[policy]\nfile = \"{}\"\n", policy.display()));
    let addr = gh.addr();
    let ask = |path: &str| {
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            origin.url(path)
        );
        async move {
            status_of(&raw_exchange(addr, req.as_bytes(), std::time::Duration::from_secs(5)).await)
        }
    };
    assert_eq!(ask("/admin/x").await, 403);
    assert_eq!(ask("/public").await, 200);
    assert_eq!(
        origin.requests(),
        1,
        "the denied request never reached the origin"
    );
}
