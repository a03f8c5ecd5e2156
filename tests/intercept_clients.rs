//! What the access log says of intercepted tunnels, with real clients:
//! wget and git (GnuTLS), Node's undici and Java's HttpClient refusing the
//! minted certificate (no CA deployed) are each a rejection of the
//! certificate, not a normal or broken tunnel; garbage after a ClientHello
//! stays a failed handshake; a decrypted CONNECT is `TCP_INTERCEPTED`; an
//! origin that fails its check denies the CONNECT with its reason; an inner
//! `Host` naming another port is fronting.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::tls_lab::*;
use common::*;
use tokio::io::AsyncWriteExt;

const NAME: &str = "origin.example.test";

const INTERCEPT_BOB: &str = r#"
[[layers]]
name = "https"
[[layers.rules]]
name = "intercept-bob"
method = ["CONNECT"]
user = ["bob"]
action = "intercept"
"#;

struct Lab {
    gh: Gatehouse,
    proxy_ca: std::path::PathBuf,
    origin: SocketAddr,
    seen: common::tls_lab::Seen,
    _dir: tempfile::TempDir,
}

/// A proxy intercepting bob's CONNECTs to an HTTPS origin for [`NAME`]
/// (its certificate from `leaf`: signed by the trusted test CA, or not).
async fn lab(self_signed_origin: bool) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let chain = if self_signed_origin {
        self_signed(&[NAME])
    } else {
        ca.leaf(&[NAME])
    };
    let (origin, seen) = https_origin(chain).await;
    let (proxy_ca, proxy_key) =
        gatehouse::intercept::ca::init(&dir.path().join("proxy-ca")).unwrap();
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, INTERCEPT_BOB).unwrap();
    let cfg = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ \"{NAME}\" = [\"127.0.0.1\"] }}\n\
         [tunnel]\nallowed_ports = [{}]\n\
         [detection]\nenabled = true\ntimeout = \"3s\"\nca_file = \"{}\"\n\
         [intercept]\nca_cert = \"{}\"\nca_key = \"{}\"\n\
         [policy]\nfile = \"{}\"\n",
        local_realm(dir.path()),
        origin.port(),
        ca.pem_path.display(),
        proxy_ca.display(),
        proxy_key.display(),
        policy_path.display(),
    );
    Lab {
        gh: Gatehouse::start("", &cfg),
        proxy_ca,
        origin,
        seen,
        _dir: dir,
    }
}

impl Lab {
    fn url(&self, path: &str) -> String {
        format!("https://{NAME}:{}{path}", self.origin.port())
    }

    fn proxy_url(&self) -> String {
        format!("http://bob:bob-pw@{}", self.gh.addr())
    }

    /// The line of the answered CONNECT, written when its tunnel closes.
    fn connect_line(&self) -> HashMap<String, String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let lines = self.gh.log_lines(0);
            let found = lines
                .iter()
                .find(|l| l["cs-method"] == "CONNECT" && l["sc-status"] == "200");
            if let Some(l) = found {
                return l.clone();
            }
            assert!(Instant::now() < deadline, "no CONNECT line: {lines:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client refused the minted leaf: one DENIED CONNECT line saying
    /// so, and the origin saw no request.
    fn assert_rejected(&self, client: &str, out: &str) {
        let line = self.connect_line();
        assert_eq!(
            line["x-exception-id"], "ssl_client_cert_rejected",
            "{client}: {line:?}\n{out}"
        );
        assert_eq!(line["s-action"], "TCP_DENIED", "{client}: {line:?}");
        assert_eq!(line["sc-filter-result"], "DENIED", "{client}: {line:?}");
        assert_eq!(line["x-intercepted"], "1", "{client}: {line:?}");
        assert!(self.seen.lock().unwrap().is_empty(), "{client}: {out}");
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the client runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn wget_refusing_the_minted_certificate_is_a_rejection() {
    let l = lab(false).await;
    let out = tokio::task::block_in_place(|| {
        run(Command::new("wget")
            .args(["-O", "-", "--tries=1", "--timeout=10", "--no-hsts"])
            .args(["-e", "use_proxy=on", "-e"])
            .arg(format!("https_proxy={}/", l.proxy_url()))
            .arg(l.url("/")))
    });
    assert!(!out.contains("hello from origin"), "{out}");
    tokio::task::block_in_place(|| l.assert_rejected("wget", &out));
}

#[tokio::test(flavor = "multi_thread")]
async fn git_over_gnutls_refusing_the_minted_certificate_is_a_rejection() {
    let l = lab(false).await;
    let home = tempfile::tempdir().unwrap();
    // Debian's git: its https helper is libcurl-gnutls.
    let out = tokio::task::block_in_place(|| {
        run(Command::new("/usr/bin/git")
            .env("HOME", home.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env_remove("GIT_SSL_CAINFO")
            .args(["-c", &format!("http.proxy={}", l.proxy_url())])
            .args(["ls-remote", &l.url("/repo.git")]))
    });
    assert!(
        out.contains("certificate") || out.contains("SSL"),
        "git refused the certificate: {out}"
    );
    tokio::task::block_in_place(|| l.assert_rejected("git", &out));
}

#[tokio::test(flavor = "multi_thread")]
async fn node_undici_refusing_the_minted_certificate_is_a_rejection() {
    let l = lab(false).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/browser/undici_get.mjs");
    let out = tokio::task::block_in_place(|| {
        run(Command::new("node")
            .env_remove("NODE_EXTRA_CA_CERTS")
            .arg(script)
            .arg(format!("http://{}", l.gh.addr()))
            .arg(basic("bob:bob-pw"))
            .arg(l.url("/")))
    });
    assert!(out.starts_with("ERROR"), "undici refused: {out}");
    tokio::task::block_in_place(|| l.assert_rejected("undici", &out));
}

/// java.net.http.HttpClient through the proxy, Basic allowed for CONNECT.
const JAVA_GET: &str = r#"
import java.net.*;
import java.net.http.*;

public class Get {
    public static void main(String[] a) throws Exception {
        var client = HttpClient.newBuilder()
            .proxy(ProxySelector.of(new InetSocketAddress("127.0.0.1", Integer.parseInt(a[0]))))
            .authenticator(new Authenticator() {
                protected PasswordAuthentication getPasswordAuthentication() {
                    return new PasswordAuthentication("bob", "bob-pw".toCharArray());
                }
            })
            .build();
        try {
            var r = client.send(HttpRequest.newBuilder(URI.create(a[1])).build(),
                HttpResponse.BodyHandlers.ofString());
            System.out.println(r.statusCode() + " " + r.body());
        } catch (Exception e) {
            System.out.println("ERROR " + e);
        }
    }
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn java_httpclient_refusing_the_minted_certificate_is_a_rejection() {
    let l = lab(false).await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("Get.java");
    std::fs::write(&source, JAVA_GET).unwrap();
    let out = tokio::task::block_in_place(|| {
        run(Command::new("java")
            .arg("-Djdk.http.auth.tunneling.disabledSchemes=")
            .arg(&source)
            .arg(l.gh.addr().port().to_string())
            .arg(l.url("/")))
    });
    assert!(out.contains("ERROR"), "java refused: {out}");
    tokio::task::block_in_place(|| l.assert_rejected("java", &out));
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_after_the_client_hello_stays_a_failed_handshake() {
    let l = lab(false).await;
    let dest = format!("{NAME}:{}", l.origin.port());
    let auth = format!("Proxy-Authorization: {}\r\n", basic("bob:bob-pw"));
    let mut s = connect_through(l.gh.addr(), &dest, &auth).await.unwrap();
    let mut bytes = client_hello(NAME);
    bytes.extend_from_slice(b"\x17\x03\x03\x00\x08GARBAGE!");
    s.write_all(&bytes).await.unwrap();
    let _ = read_until_close(&mut s, Duration::from_secs(10)).await;
    let line = tokio::task::block_in_place(|| l.connect_line());
    assert_eq!(line["x-exception-id"], "ssl_client_handshake_failed");
}

fn curl(l: &Lab, args: &[&str]) -> String {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-x", &l.proxy_url()])
        .args(["--cacert", l.proxy_ca.to_str().unwrap()])
        .args(["-w", "\n[%{http_code}]"])
        .args(args))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decrypted_connect_is_logged_as_intercepted() {
    let l = lab(false).await;
    let out = tokio::task::block_in_place(|| curl(&l, &[&l.url("/")]));
    assert!(out.contains("hello from origin\n[200]"), "{out}");
    let line = tokio::task::block_in_place(|| l.connect_line());
    assert_eq!(line["s-action"], "TCP_INTERCEPTED", "{line:?}");
    assert_eq!(line["x-exception-id"], "-");
    assert_eq!(line["sc-filter-result"], "OBSERVED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_whose_origin_failed_its_check_is_denied_with_the_reason() {
    let l = lab(true).await;
    let out = tokio::task::block_in_place(|| curl(&l, &[&l.url("/")]));
    assert!(out.contains("[502]"), "{out}");
    let line = tokio::task::block_in_place(|| l.connect_line());
    assert_eq!(
        line["x-exception-id"], "ssl_server_cert_invalid",
        "{line:?}"
    );
    assert_eq!(line["sc-filter-result"], "DENIED");
    assert_eq!(line["s-action"], "TCP_DENIED");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inner_host_naming_another_port_is_fronting() {
    let l = lab(false).await;
    let other = l.origin.port().wrapping_add(1);
    let host = format!("Host: {NAME}:{other}");
    let out = tokio::task::block_in_place(|| curl(&l, &["-H", &host, &l.url("/")]));
    assert!(
        out.contains("domain_fronting") && out.contains("[421]"),
        "{out}"
    );
    // Without a port the Host means 443, not the tunnel's port.
    let out =
        tokio::task::block_in_place(|| curl(&l, &["-H", &format!("Host: {NAME}"), &l.url("/")]));
    assert!(out.contains("[421]"), "{out}");
    assert!(l.seen.lock().unwrap().is_empty());
}
