//! TLS to the proxy itself (`listener.tls_addresses`): curl with
//! `--proxy https://…` for GET and CONNECT (TLS inside TLS, through
//! detection), Basic and Negotiate, the certificate renewed by SIGHUP, and a
//! key others can read refused.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::kdc::Kdc;
use common::tls_lab::{tls_origin, TestCa};
use common::*;

/// The proxy's name in its certificate; clients reach it through --resolve.
const PROXY: &str = "proxy.example.test";

struct Tls {
    port: u16,
    cert: PathBuf,
    key: PathBuf,
}

/// A leaf for the proxy from `ca`, the key private, in `dir`.
fn proxy_cert(ca: &TestCa, dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = ca.leaf_pem(dir, &[PROXY]);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

fn listener(tls: &Tls) -> String {
    format!(
        "tls_addresses = [\"127.0.0.1:{}\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        tls.port,
        tls.cert.display(),
        tls.key.display()
    )
}

/// curl through `https://proxy.example.test:PORT`, trusting `proxy_ca` for
/// the proxy: `-w` codes, one per URL.
fn curl(
    tls: &Tls,
    proxy_ca: &Path,
    auth: &[&str],
    extra: &[&str],
    env: &[(&str, String)],
) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "%{http_code} "])
        .args(["-x", &format!("https://{PROXY}:{}", tls.port)])
        .args(["--resolve", &format!("{PROXY}:{}:127.0.0.1", tls.port)])
        .arg("--proxy-cacert")
        .arg(proxy_ca)
        .args(auth)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_get_and_connect_through_an_https_proxy_and_the_certificate_renewed_by_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (cert, key) = proxy_cert(&ca, dir.path());
    let tls = Tls {
        port: free_port(),
        cert,
        key,
    };
    let origin = Origin::start().await;
    // A TLS origin the tunnel's detection verifies against the same CA.
    let tls_origin = tls_origin(ca.leaf(&["127.0.0.1"])).await;
    let cfg = format!(
        "{}[tunnel]\nallowed_ports = [{}]\n[detection]\nenabled = true\nca_file = \"{}\"\n",
        local_realm(dir.path()),
        tls_origin.port(),
        ca.pem_path.display()
    );
    let gh = Gatehouse::start(&listener(&tls), &cfg);
    let url = origin.url("/over-tls");
    let (out, err) = tokio::task::block_in_place(|| {
        curl(
            &tls,
            &ca.pem_path,
            &["-U", "alice:alice-pw"],
            &["-o", "/dev/null", &url, "-o", "/dev/null", &url],
            &[],
        )
    });
    assert_eq!(out, "200 200 ", "{err}");
    assert_eq!(origin.requests(), 2);

    // CONNECT inside the proxy TLS, then the origin's TLS inside the tunnel;
    // detection verified the origin's certificate on the way.
    let (out, err) = tokio::task::block_in_place(|| {
        curl(
            &tls,
            &ca.pem_path,
            &["-U", "bob:bob-pw"],
            &[
                "--cacert",
                ca.pem_path.to_str().unwrap(),
                "-p",
                "--http0.9",
                "--max-time",
                "3",
                "-o",
                "-",
                &format!("https://127.0.0.1:{}/", tls_origin.port()),
            ],
            &[],
        )
    });
    // The origin greets and echoes (not HTTP): curl reads the greeting, then
    // times out or fails on the reply; what matters is the greeting came
    // through both TLS layers.
    assert!(out.contains("hello over tls"), "{out} {err}");

    // A wrong password over TLS: 407, as over plain HTTP.
    let (out, _) = tokio::task::block_in_place(|| {
        curl(
            &tls,
            &ca.pem_path,
            &["-U", "alice:wrong"],
            &["-o", "/dev/null", &url],
            &[],
        )
    });
    assert_eq!(out, "407 ");

    // Plain HTTP to the TLS port gets no HTTP answer: the handshake fails.
    let plain = raw_exchange(
        SocketAddr::from(([127, 0, 0, 1], tls.port)),
        format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(!plain.contains("200"), "{plain}");

    let lines = gh.log_lines(4);
    assert!(
        lines
            .iter()
            .any(|l| l["cs-username"] == "bob" && l["s-action"] == "TCP_ACCELERATED"),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["cs-username"] == "alice" && l["sc-status"] == "200")
            .count(),
        2
    );

    // Renewal: a leaf from another CA written over the same files, SIGHUP;
    // new handshakes get the new certificate.
    let other = tempfile::tempdir().unwrap();
    let ca2 = TestCa::new(other.path());
    let (cert2, key2) = proxy_cert(&ca2, other.path());
    std::fs::copy(&cert2, &tls.cert).unwrap();
    std::fs::copy(&key2, &tls.key).unwrap();
    gh.signal("HUP");
    gh.wait_stderr("policy reloaded", 1);
    let (old, _) = tokio::task::block_in_place(|| {
        curl(
            &tls,
            &ca.pem_path,
            &["-U", "alice:alice-pw"],
            &["-o", "/dev/null", &url],
            &[],
        )
    });
    assert_eq!(old, "000 ", "the old CA no longer vouches for the proxy");
    let (new, err) = tokio::task::block_in_place(|| {
        curl(
            &tls,
            &ca2.pem_path,
            &["-U", "alice:alice-pw"],
            &["-o", "/dev/null", &url],
            &[],
        )
    });
    assert_eq!(new, "200 ", "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn negotiate_through_an_https_proxy() {
    let kdc = Kdc::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (cert, key) = proxy_cert(&ca, dir.path());
    let tls = Tls {
        port: free_port(),
        cert,
        key,
    };
    let origin = Origin::start().await;
    let cfg = format!(
        "{}schemes = [\"negotiate\", \"basic\"]\n[auth.negotiate]\nkeytab = \"{}\"\nprincipal = \"HTTP/{PROXY}@EXAMPLE.TEST\"\n",
        local_realm(dir.path()),
        kdc.keytab().display()
    );
    let conf = kdc.krb5_conf();
    let gh = Gatehouse::start_with_env(
        &listener(&tls),
        &cfg,
        &[("KRB5_CONFIG", conf.to_str().unwrap())],
    );
    let cc = kdc.kinit("alice");
    let url = origin.url("/sso-over-tls");
    let env = [
        ("KRB5_CONFIG", conf.display().to_string()),
        ("KRB5CCNAME", format!("FILE:{}", cc.display())),
    ];
    let (out, err) = tokio::task::block_in_place(|| {
        curl(
            &tls,
            &ca.pem_path,
            &["--proxy-negotiate", "-U", ":"],
            &["-o", "/dev/null", &url],
            &env,
        )
    });
    assert_eq!(out, "200 ", "{err}");
    let line = gh
        .log_lines(1)
        .into_iter()
        .find(|l| l["sc-status"] == "200")
        .unwrap();
    assert_eq!(line["cs-username"], "alice");
    assert_eq!(line["x-auth-scheme"], "negotiate-kerberos");
}

#[test]
fn a_listener_key_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (cert, key) = proxy_cert(&ca, dir.path());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listener]\naddresses = [\"127.0.0.1:3128\"]\ntls_addresses = [\"127.0.0.1:3129\"]\n\
             tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n[auth]\nrequired = false\nrealms = []\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
    // Certificate without a key file: refused by name.
    std::fs::write(
        &cfg,
        "[listener]\ntls_addresses = [\"127.0.0.1:3129\"]\n[auth]\nrequired = false\nrealms = []\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listener.tls_addresses"), "{err}");
}

/// What an unauthenticated client can make a TLS listener spend: a
/// connection that opens TLS and stalls holds its slot no longer than
/// `header_read_timeout`, and the per-address cap counts it before any
/// handshake work (the next connection over the cap is refused at once).
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_tls_handshake_is_bounded_by_the_header_timeout_and_the_address_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (cert, key) = proxy_cert(&ca, dir.path());
    let tls = Tls {
        port: free_port(),
        cert,
        key,
    };
    // The cap is checked while both stalled handshakes still hold their
    // places: the header timeout must outlast the test's three connects and
    // the proxy's three accepts, however long a busy machine makes those.
    let gh = Gatehouse::start(
        &format!(
            "{}header_read_timeout = \"3s\"\nmax_connections_per_address = 2\n",
            listener(&tls)
        ),
        "",
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], tls.port));
    // A TLS record header promising a ClientHello that never comes.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        stalled.push(s);
    }
    // Over the cap: refused before any handshake (a plain 503, not TLS).
    let over = raw_exchange(addr, b"", std::time::Duration::from_secs(30)).await;
    assert!(over.starts_with("HTTP/1.1 503"), "{over:?}");
    // Each stalled one is closed by the proxy at the header timeout, not left
    // open (the 60 s only keeps a broken proxy from hanging the test).
    for mut s in stalled {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a stalled TLS client was kept open");
    }
    gh.wait_stderr("no TLS handshake within", 2);
    // With their places given back, a real client gets through.
    let (out, err) = tokio::task::block_in_place(|| {
        curl(
            &tls,
            &ca.pem_path,
            &[],
            &["-o", "/dev/null", "http://127.0.0.1:9/"],
            &[],
        )
    });
    assert_ne!(out, "000 ", "{err}");
    assert!(gh.stderr().contains("TLS handshake with the client failed"));
}
