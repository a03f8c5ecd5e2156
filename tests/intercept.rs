//! TLS interception on real sockets: curl and Python's `http.client` through
//! an intercepting policy to an HTTPS origin (hyper over rustls), with a URL
//! rule inside HTTPS, an origin whose certificate fails, a client that
//! refuses the minted certificate, a certificate-less fake caught, and the
//! seed's allowed group still tunnelling raw.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::tls_lab::*;
use common::*;

const NAME: &str = "origin.example.test";

struct Lab {
    gh: Gatehouse,
    proxy_ca: std::path::PathBuf,
}

/// A proxy with the local realm, `origin_ca` trusted for origins, an
/// interception CA, `policy` and `extra` config.
fn lab(dir: &std::path::Path, ca: &TestCa, ports: &[u16], policy: &str, extra: &str) -> Lab {
    let names = [NAME, "bank.example.test"];
    let (gh, proxy_ca) = intercept_proxy(dir, ca, ports, &names, policy, extra);
    Lab { gh, proxy_ca }
}

const INTERCEPT_BOB: &str = r#"
[[layers]]
name = "https"
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

fn curl(proxy: SocketAddr, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-x", &format!("http://{proxy}")])
        .args(["--proxy-user", "bob:bob-pw"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_inside_https_are_judged_forwarded_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let origin_ca = TestCa::new(dir.path());
    let (origin, seen) = https_origin(origin_ca.leaf(&[NAME])).await;
    let l = lab(dir.path(), &origin_ca, &[origin.port()], INTERCEPT_BOB, "");
    let base = format!("https://{NAME}:{}", origin.port());
    let ca = l.proxy_ca.to_str().unwrap();
    let w = "\n[%{http_code} %{num_connects}]\n";
    let (ok, out) = tokio::task::block_in_place(|| {
        curl(
            l.gh.addr(),
            &[
                "--cacert",
                ca,
                "-w",
                w,
                &format!("{base}/"),
                &format!("{base}/chunked"),
                &format!("{base}/admin"),
                "--next",
                "-x",
                &format!("http://{}", l.gh.addr()),
                "--proxy-user",
                "bob:bob-pw",
                "--cacert",
                ca,
                "-w",
                w,
                "-d",
                "posted-body",
                &format!("{base}/echo"),
            ],
        )
    });
    assert!(ok, "{out}");
    assert!(out.contains("hello from origin\n[200 1]"), "{out}");
    assert!(
        out.contains("one-two-three\n[200 0]"),
        "kept alive, streamed: {out}"
    );
    assert!(
        out.contains("admin_blocked") && out.contains("[403 0]"),
        "{out}"
    );
    assert!(out.contains("posted-body\n[200 0]"), "{out}");
    assert_eq!(
        *seen.lock().unwrap(),
        ["GET /", "GET /chunked", "POST /echo"],
        "the origin never saw /admin"
    );
    let lines = l.gh.log_lines(5);
    let inner: Vec<_> = lines
        .iter()
        .filter(|x| x["x-intercepted"] == "1" && x["cs-method"] != "CONNECT")
        .collect();
    assert_eq!(inner.len(), 4, "{lines:?}");
    for x in &inner {
        assert_eq!(x["cs-uri-scheme"], "https");
        assert_eq!(x["cs-username"], "bob");
        assert_eq!(x["cs-host"], NAME);
    }
    let admin = inner.iter().find(|x| x["cs-uri-path"] == "/admin").unwrap();
    assert_eq!(admin["x-exception-id"], "admin_blocked");
    assert_eq!(admin["x-rule"], "no-admin");
    assert_eq!(admin["sc-status"], "403");
    let echo = inner.iter().find(|x| x["cs-uri-path"] == "/echo").unwrap();
    assert_eq!(
        (echo["cs-method"].as_str(), echo["cs-bytes"].as_str()),
        ("POST", "11")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_whose_certificate_fails_gets_the_proxys_error_page() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (selfsigned, seen_self) = https_origin(self_signed(&[NAME])).await;
    let (wrong_name, seen_wrong) = https_origin(ca.leaf(&["other.example.test"])).await;
    let l = lab(
        dir.path(),
        &ca,
        &[selfsigned.port(), wrong_name.port()],
        INTERCEPT_BOB,
        "",
    );
    let cacert = l.proxy_ca.to_str().unwrap();
    for (origin, reason) in [
        (selfsigned, "ssl_server_cert_invalid"),
        (wrong_name, "ssl_domain_mismatch"),
    ] {
        let url = format!("https://{NAME}:{}/", origin.port());
        let (_, out) = tokio::task::block_in_place(|| {
            curl(
                l.gh.addr(),
                &["--cacert", cacert, "-w", "\n[%{http_code}]", &url],
            )
        });
        assert!(out.contains(reason) && out.contains("[502]"), "{out}");
        assert!(!out.contains("hello from origin"), "{out}");
    }
    assert!(seen_self.lock().unwrap().is_empty() && seen_wrong.lock().unwrap().is_empty());
    let lines = l.gh.log_lines(4);
    let errors: Vec<&str> = lines
        .iter()
        .filter(|x| x["cs-method"] == "GET")
        .map(|x| x["x-exception-id"].as_str())
        .collect();
    assert_eq!(errors, ["ssl_server_cert_invalid", "ssl_domain_mismatch"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_refuses_the_minted_certificate_is_logged_and_nothing_reaches_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, seen) = https_origin(ca.leaf(&[NAME])).await;
    let l = lab(dir.path(), &ca, &[origin.port()], INTERCEPT_BOB, "");
    // curl without the proxy's CA: it refuses the minted leaf.
    let url = format!("https://{NAME}:{}/", origin.port());
    let (ok, out) = tokio::task::block_in_place(|| curl(l.gh.addr(), &[&url]));
    assert!(!ok, "{out}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "no request reached the origin"
    );
    let line = &l.gh.log_lines(1)[0];
    assert_eq!(line["cs-method"], "CONNECT");
    assert_eq!(line["x-exception-id"], "ssl_client_cert_rejected");
    assert_eq!(line["x-intercepted"], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_allowed_group_still_tunnels_raw_and_a_certless_fake_is_caught_when_intercepted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (node, seen) = supernode().await;
    let policy = "[[layers]]\nname = \"https\"\n[[layers.rules]]\nname = \"intercept-all\"\n\
                  method = [\"CONNECT\"]\naction = \"intercept\"\n";
    // `extra` lands in [policy]: the seed's rule, as a last layer.
    let l = lab(
        dir.path(),
        &ca,
        &[node.port()],
        policy,
        "allowed_groups = [\"Skype Users\"]\n",
    );
    // alice (Skype Users, no User-Agent): the raw tunnel of the seed.
    let r = skype(l.gh.addr(), node, &basic("alice:alice-pw")).await;
    assert!(
        r.reply.starts_with(&[0x16, 0x03, 0x03]),
        "alice's Skype tunnels"
    );
    assert!(seen.any_contains(PAYLOAD_MARKER));
    let before = seen.connections();
    // bob is intercepted: the proxy's own handshake with the fake fails (no
    // certificate), and nothing of bob's reaches it.
    let r = skype(l.gh.addr(), node, &basic("bob:bob-pw")).await;
    assert!(
        !r.reply
            .windows(5)
            .any(|w| w == [0x16, 0x03, 0x03, 0x00, 0x2d]),
        "bob never sees the fake's hello"
    );
    assert_eq!(
        seen.connections(),
        before + 1,
        "the proxy's own handshake only"
    );
    let last = seen.0.lock().unwrap().last().cloned().unwrap();
    assert!(!last
        .windows(PAYLOAD_MARKER.len())
        .any(|w| w == PAYLOAD_MARKER));
    let lines = l.gh.log_lines(2);
    let alice = lines.iter().find(|x| x["cs-username"] == "alice").unwrap();
    assert_eq!(alice["s-action"], "TCP_TUNNELED");
    assert_eq!(alice["x-rule"], "allowed-groups-tunnel");
    assert_eq!(alice["x-intercepted"], "-");
    let bob = lines.iter().find(|x| x["cs-username"] == "bob").unwrap();
    assert_eq!(bob["x-intercepted"], "1");
    assert_eq!(bob["s-action"], "TCP_DENIED");
}

/// Python's `http.client` through the proxy's CONNECT, trusting the proxy's CA.
const PY_CLIENT: &str = r#"
import base64, http.client, ssl, sys
proxy_port, origin_port, name, cafile = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=cafile)
c = http.client.HTTPSConnection("127.0.0.1", int(proxy_port), context=ctx, timeout=10)
auth = base64.b64encode(b"bob:bob-pw").decode()
c.set_tunnel(name, int(origin_port), headers={"Proxy-Authorization": "Basic " + auth})
for path in ("/", "/admin", "/echo"):
    body = b"from python" if path == "/echo" else None
    c.request("POST" if body else "GET", path, body=body)
    r = c.getresponse()
    print(r.status, r.read().decode().strip().splitlines()[0])
"#;

#[tokio::test(flavor = "multi_thread")]
async fn python_http_client_through_an_intercepting_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, seen) = https_origin(ca.leaf(&[NAME])).await;
    let l = lab(dir.path(), &ca, &[origin.port()], INTERCEPT_BOB, "");
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("python3")
            .args(["-c", PY_CLIENT])
            .arg(l.gh.addr().port().to_string())
            .arg(origin.port().to_string())
            .arg(NAME)
            .arg(&l.proxy_ca)
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text,
        // Refused inside the tunnel with the proxy's one answer: the rule
        // and the reason, as for any request the proxy refuses.
        "200 hello from origin\n403 Gatehouse: denied by policy rule no-admin (admin_blocked)\n200 from python\n"
    );
    assert_eq!(*seen.lock().unwrap(), ["GET /", "POST /echo"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_for_another_host_inside_the_tunnel_is_refused_as_fronting() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, seen) = https_origin(ca.leaf(&[NAME])).await;
    let l = lab(dir.path(), &ca, &[origin.port()], INTERCEPT_BOB, "");
    let url = format!("https://{NAME}:{}/", origin.port());
    let cacert = l.proxy_ca.to_str().unwrap();
    let (_, out) = tokio::task::block_in_place(|| {
        curl(
            l.gh.addr(),
            &[
                "--cacert",
                cacert,
                "-H",
                "Host: blocked.example.test",
                "-w",
                "\n[%{http_code}]",
                &url,
                // Then a good request on the same decrypted session: one
                // refused request does not cost the client its tunnel.
                "--next",
                "-x",
                &format!("http://{}", l.gh.addr()),
                "--proxy-user",
                "bob:bob-pw",
                "--cacert",
                cacert,
                "-w",
                "\n[%{http_code} %{num_connects}]",
                &url,
            ],
        )
    });
    assert!(
        out.contains("domain_fronting") && out.contains("[421]"),
        "{out}"
    );
    assert!(out.contains("[200 0]"), "the session was kept: {out}");
    assert_eq!(*seen.lock().unwrap(), ["GET /"]);
    // The refusal is the proxy's own check, not the rule that let the
    // tunnel through: no x-rule.
    let lines = l.gh.log_lines(3);
    let fronted = lines
        .iter()
        .find(|x| x["x-exception-id"] == "domain_fronting")
        .expect("the fronted request is logged");
    assert_eq!(fronted["x-rule"], "-", "{lines:?}");
}

#[test]
fn an_intercepting_policy_needs_a_ca_and_the_ca_key_must_be_private() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, INTERCEPT_BOB).unwrap();
    let check = |cfg: &str| {
        let path = dir.path().join("gatehouse.toml");
        std::fs::write(&path, cfg).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let base = format!(
        "{}[policy]\nfile = \"{}\"\n",
        local_realm(dir.path()),
        policy.display()
    );
    let (ok, err) = check(&base);
    assert!(
        !ok && err.contains("intercept-bob") && err.contains("[intercept]"),
        "{err}"
    );
    // `gatehouse ca init` makes the CA; a group-readable key is refused.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["ca", "init", "--out"])
        .arg(dir.path().join("ca"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cert, key) = (dir.path().join("ca/ca.pem"), dir.path().join("ca/ca.key"));
    let with_ca = format!(
        "{base}[intercept]\nca_cert = \"{}\"\nca_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let (ok, err) = check(&with_ca);
    assert!(ok, "{err}");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, err) = check(&with_ca);
    assert!(!ok && err.contains("chmod 600"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bypassed_hosts_are_detected_not_decrypted() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let bank = "bank.example.test";
    let (origin, seen) = https_origin(ca.leaf(&[NAME, bank])).await;
    let policy = format!(
        "[[layers]]\nname = \"https\"\n\
         [[layers.rules]]\nname = \"no-bank-interception\"\nmethod = [\"CONNECT\"]\nhost = [\"{bank}\"]\naction = \"bypass\"\n\
         [[layers.rules]]\nname = \"intercept-all\"\nmethod = [\"CONNECT\"]\naction = \"intercept\"\n"
    );
    let l = lab(dir.path(), &ca, &[origin.port()], &policy, "");
    // The bank's own certificate reaches the client: it trusts the origin's
    // CA, not the proxy's.
    let url = format!("https://{bank}:{}/", origin.port());
    let origin_ca = ca.pem_path.to_str().unwrap();
    let (ok, out) =
        tokio::task::block_in_place(|| curl(l.gh.addr(), &["--cacert", origin_ca, &url]));
    assert!(ok && out.contains("hello from origin"), "{out}");
    assert_eq!(*seen.lock().unwrap(), ["GET /"]);
    let line = &l.gh.log_lines(1)[0];
    assert_eq!(line["s-action"], "TCP_ACCELERATED");
    assert_eq!(line["x-intercepted"], "-");
    assert_eq!(line["x-rule"], "no-bank-interception");
}

/// Completes TLS with the minted leaf, then speaks SSH inside.
const PY_NOT_HTTP: &str = r#"
import base64, socket, ssl, sys
proxy_port, origin_port, name, cafile = sys.argv[1:5]
s = socket.create_connection(("127.0.0.1", int(proxy_port)), timeout=10)
auth = base64.b64encode(b"bob:bob-pw").decode()
s.sendall(f"CONNECT {name}:{origin_port} HTTP/1.1\r\nHost: {name}\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += s.recv(1)
t = ssl.create_default_context(cafile=cafile).wrap_socket(s, server_hostname=name)
t.sendall(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x00\x01\x00garbage\r\n\r\n")
try:
    print(len(t.recv(4096)))
except (ssl.SSLError, OSError):
    print("closed")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn not_http_inside_an_intercepted_tunnel_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, seen) = https_origin(ca.leaf(&[NAME])).await;
    let l = lab(dir.path(), &ca, &[origin.port()], INTERCEPT_BOB, "");
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("python3")
            .args(["-c", PY_NOT_HTTP])
            .arg(l.gh.addr().port().to_string())
            .arg(origin.port().to_string())
            .arg(NAME)
            .arg(&l.proxy_ca)
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the origin"
    );
    let line = &l.gh.log_lines(1)[0];
    assert_eq!(line["x-exception-id"], "protocol_not_http");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_hello_decides_interception_by_sni() {
    // No CONNECT-time rule intercepts: the decision waits for the ClientHello
    // (the detection classifier), where an SNI rule intercepts or bypasses.
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let bank = "bank.example.test";
    let (origin, seen) = https_origin(ca.leaf(&[NAME, bank])).await;
    let policy = format!(
        "[[layers]]\nname = \"https\"\n\
         [[layers.rules]]\nname = \"bypass-bank\"\nsni = [\"{bank}\"]\naction = \"bypass\"\n\
         [[layers.rules]]\nname = \"intercept-by-sni\"\nsni = [\".example.test\"]\naction = \"intercept\"\n"
    );
    let l = lab(dir.path(), &ca, &[origin.port()], &policy, "");
    let proxy_ca = l.proxy_ca.to_str().unwrap();
    let origin_ca = ca.pem_path.to_str().unwrap();
    let (ok, out) = tokio::task::block_in_place(|| {
        curl(
            l.gh.addr(),
            &[
                "--cacert",
                proxy_ca,
                &format!("https://{NAME}:{}/", origin.port()),
            ],
        )
    });
    assert!(
        ok && out.contains("hello from origin"),
        "intercepted: {out}"
    );
    let (ok, out) = tokio::task::block_in_place(|| {
        curl(
            l.gh.addr(),
            &[
                "--cacert",
                origin_ca,
                &format!("https://{bank}:{}/", origin.port()),
            ],
        )
    });
    assert!(
        ok && out.contains("hello from origin"),
        "bypassed, the bank's own certificate: {out}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    let lines = l.gh.log_lines(3);
    let inner = lines.iter().find(|x| x["cs-method"] == "GET").unwrap();
    assert_eq!(
        (inner["cs-host"].as_str(), inner["x-intercepted"].as_str()),
        (NAME, "1")
    );
    let connects: Vec<(&str, &str, &str)> = lines
        .iter()
        .filter(|x| x["cs-method"] == "CONNECT")
        .map(|x| {
            (
                x["x-sni"].as_str(),
                x["x-intercepted"].as_str(),
                x["x-rule"].as_str(),
            )
        })
        .collect();
    assert!(
        connects.contains(&(NAME, "1", "intercept-by-sni")),
        "{connects:?}"
    );
    assert!(
        connects.iter().any(|c| c.0 == bank && c.1 == "-"),
        "{connects:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sni_fronting_tls_facts_inside_two_hosts_and_a_stalled_handshake() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let bank = "bank.example.test";
    let (origin, seen) = https_origin(ca.leaf(&[NAME, bank])).await;
    let policy = format!(
        "{INTERCEPT_BOB}[[layers.rules]]\nname = \"no-bank-posts\"\nsni = [\"{bank}\"]\nmethod = [\"POST\"]\n\
         action = \"deny\"\nreason = \"bank_posts\"\n"
    );
    let l = lab(dir.path(), &ca, &[origin.port()], &policy, "");
    let proxy_ca = l.proxy_ca.to_str().unwrap();
    // An SNI for another name than the CONNECT's: fronting, refused.
    let (ok, out) = tokio::task::block_in_place(|| {
        curl(
            l.gh.addr(),
            &[
                "--cacert",
                proxy_ca,
                "--connect-to",
                &format!("{bank}:{p}:{NAME}:{p}", p = origin.port()),
                &format!("https://{bank}:{}/", origin.port()),
            ],
        )
    });
    assert!(!ok, "{out}");
    // Inner requests see the tunnel's TLS facts: an SNI rule applies inside.
    let (_, out) = tokio::task::block_in_place(|| {
        curl(
            l.gh.addr(),
            &[
                "--cacert",
                proxy_ca,
                "-d",
                "x",
                "-w",
                "\n[%{http_code}]",
                &format!("https://{bank}:{}/echo", origin.port()),
            ],
        )
    });
    assert!(out.contains("bank_posts") && out.contains("[403]"), "{out}");
    // Two Host headers: refused, whatever the first says.
    let two_hosts = format!("GET / HTTP/1.1\r\nHost: {NAME}\r\nHost: other.example.test\r\n\r\n");
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("python3")
            .args(["-c", PY_RAW])
            .arg(l.gh.addr().port().to_string())
            .arg(origin.port().to_string())
            .arg(NAME)
            .arg(&l.proxy_ca)
            .arg(&two_hosts)
            .output()
            .unwrap()
    });
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 400"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "none of it reached the origin: {:?}",
        seen.lock().unwrap()
    );
    // A client that sends its ClientHello and stops: closed after the handshake deadline.
    let mut s = connect_through(
        l.gh.addr(),
        &format!("{NAME}:{}", origin.port()),
        &format!("Proxy-Authorization: {}\r\n", basic("bob:bob-pw")),
    )
    .await
    .unwrap();
    s.write_all(&client_hello(NAME)).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "a stalled client handshake is not held open"
    );
    let lines = l.gh.log_lines(6);
    assert!(
        lines
            .iter()
            .any(|x| x["x-exception-id"] == "domain_fronting"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|x| x["x-exception-id"] == "ssl_client_handshake_failed"),
        "{lines:?}"
    );
}

/// Sends raw bytes inside an intercepted tunnel; prints the first line back.
const PY_RAW: &str = r#"
import base64, socket, ssl, sys
proxy_port, origin_port, name, cafile, raw = sys.argv[1:6]
s = socket.create_connection(("127.0.0.1", int(proxy_port)), timeout=10)
auth = base64.b64encode(b"bob:bob-pw").decode()
s.sendall(f"CONNECT {name}:{origin_port} HTTP/1.1\r\nHost: {name}\r\nProxy-Authorization: Basic {auth}\r\n\r\n".encode())
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += s.recv(1)
t = ssl.create_default_context(cafile=cafile).wrap_socket(s, server_hostname=name)
t.sendall(raw.encode())
print(t.recv(4096).decode(errors="replace").splitlines()[0])
"#;
