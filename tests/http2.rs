//! HTTP/2 inside interception, with real parts: curl speaking `h2` to the
//! proxy's minted leaf, a real nginx HTTP/2 origin behind it. Each stream
//! is a request judged and logged as an HTTP/1.1 inner request is; `h2`
//! is asked of the origin only for a client that offered it.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::tls_lab::*;
use common::*;

const NAME: &str = "origin.example.test";

const POLICY: &str = r#"
[[layers]]
name = "web"
[[layers.rules]]
name = "intercept-bob"
method = ["CONNECT"]
user = ["bob"]
action = "intercept"
[[layers.rules]]
name = "no-admin"
url = ["^https://[^/]+/admin"]
action = "deny"
reason = "admin_blocked"
"#;

struct Lab {
    gh: Gatehouse,
    proxy_ca: std::path::PathBuf,
    nginx: Nginx,
    _dir: tempfile::TempDir,
}

fn lab(extra: &str) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (cert, key) = ca.leaf_pem(dir.path(), &[NAME]);
    let nginx = Nginx::h2_tls(dir.path(), &cert, &key);
    let port = nginx.addr.port();
    let (gh, proxy_ca) = intercept_proxy(dir.path(), &ca, &[port], &[NAME], POLICY, extra);
    Lab {
        gh,
        proxy_ca,
        nginx,
        _dir: dir,
    }
}

impl Lab {
    /// curl through the proxy with `args`, printing `<version> <status>` per URL.
    fn curl(&self, args: &[&str], paths: &[&str]) -> String {
        let port = self.nginx.addr.port();
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "30"])
            .args(["-w", "%{http_version} %{http_code}\\n", "--cacert"])
            .arg(&self.proxy_ca)
            .arg("--proxy")
            .arg(format!("http://bob:bob-pw@{}", self.gh.addr()))
            .args(args)
            .args(paths.iter().flat_map(|p| {
                let url = format!("https://{NAME}:{port}{p}");
                ["-o".to_string(), "/dev/null".to_string(), url]
            }))
            .output()
            .expect("curl runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// The inner lines (decrypted requests), once `n` of them are written.
    fn inner_lines(&self, n: usize) -> Vec<HashMap<String, String>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines: Vec<_> = self
                .gh
                .log_lines(0)
                .into_iter()
                .filter(|l| l["cs-method"] == "GET" && l["x-intercepted"] == "1")
                .collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn curl_http2_through_interception_reaches_an_nginx_http2_origin_each_stream_logged() {
    let l = lab("");
    let out = l.curl(&["--http2"], &["/", "/1k.bin", "/"]);
    assert_eq!(out, "2 200\n2 200\n2 200\n", "{out}");
    // nginx saw HTTP/2 from the proxy: h2 end to end.
    let seen = l.nginx.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|r| r.ends_with("HTTP/2.0 200")), "{seen:?}");
    let lines = l.inner_lines(3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines {
        assert_eq!(line["sc-status"], "200", "{line:?}");
        assert_eq!(line["cs-username"], "bob", "{line:?}");
    }
    // One tunnel carried them all.
    let connects = l.gh.log_lines(0);
    let tunnels: Vec<_> = connects
        .iter()
        .filter(|l| l["cs-method"] == "CONNECT")
        .collect();
    assert!(tunnels.len() <= 1, "{tunnels:?}");
}

#[test]
fn a_denied_stream_is_answered_on_its_stream_and_the_connection_goes_on() {
    let l = lab("");
    let out = l.curl(&["--http2"], &["/admin/x", "/"]);
    assert_eq!(out, "2 403\n2 200\n", "{out}");
    let seen = l.nginx.requests();
    assert_eq!(
        seen.len(),
        1,
        "the denied request never reached nginx: {seen:?}"
    );
    let lines = l.inner_lines(2);
    let denied = lines
        .iter()
        .find(|l| l["sc-status"] == "403")
        .expect("a 403 line");
    assert_eq!(denied["x-rule"], "no-admin", "{denied:?}");
    assert_eq!(denied["sc-filter-result"], "DENIED", "{denied:?}");
}

#[test]
fn a_client_that_offers_only_http1_gets_http1_on_both_sides() {
    let l = lab("");
    let out = l.curl(&["--http1.1"], &["/"]);
    assert_eq!(out, "1.1 200\n", "{out}");
    let seen = l.nginx.requests();
    assert_eq!(seen, vec!["GET / HTTP/1.1 HTTP/1.1 200".to_string()]);
    assert_eq!(l.inner_lines(1).len(), 1);
}

#[test]
fn http2_inside_interception_can_be_turned_off() {
    let l = lab("[http2]\nintercept = false\n");
    let out = l.curl(&["--http2"], &["/"]);
    assert_eq!(out, "1.1 200\n", "{out}");
    assert!(l.nginx.requests()[0].ends_with("HTTP/1.1 200"));
}
