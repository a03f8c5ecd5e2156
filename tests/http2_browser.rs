//! Headless Chromium with an HTTPS proxy (`--proxy-server=https://…`) on a
//! TLS listener that offers `h2`: whether Chromium speaks HTTP/2 to the
//! proxy, and that its request is served and logged with its user.

mod common;

use std::path::Path;
use std::process::Command;

use common::tls_lab::TestCa;
use common::*;
use serde_json::{json, Value};
use sha2::Digest as _;

const ORIGIN: &str = "origin.example.test";
const TLS_PROXY: &str = "tls-proxy.example.test";

fn chromium(input: Value) -> Value {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/browser/drive.mjs");
    let out = Command::new("node")
        .arg(&driver)
        .arg(input.to_string())
        .output()
        .expect("node (integration/install-deps installs it)");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "driver failed: {line}");
    serde_json::from_str(line.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("driver said {line:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_speaks_http2_to_an_https_proxy_that_offers_it() {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let ca = TestCa::new(dir.path());
    let (cert, key) = ca.leaf_pem(dir.path(), &[TLS_PROXY]);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pin = {
        let pem = std::fs::read_to_string(&cert).unwrap();
        let der: rustls::pki_types::CertificateDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(parsed.tbs_certificate.subject_pki.raw))
    };
    let tls_port = free_port();
    let listener = format!(
        "tls_addresses = [\"127.0.0.1:{tls_port}\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let cfg = format!(
        "{}[resolver]\nsystem = false\nhosts = {{ \"{ORIGIN}\" = [\"127.0.0.1\"] }}\n[http2]\nlistener = true\n",
        local_realm(dir.path()),
    );
    let gh = Gatehouse::start(&listener, &cfg);
    let input = json!({
        "proxy": format!("https://{TLS_PROXY}:{tls_port}"),
        "url": format!("http://{ORIGIN}:{}/over-h2-proxy", origin.addr.port()),
        "username": "alice",
        "password": "alice-pw",
        "resolve": { TLS_PROXY: "127.0.0.1" },
        "ignoreCertSpki": [pin],
    });
    let seen = tokio::task::block_in_place(|| chromium(input));
    assert_eq!(seen["ok"], true, "{seen}\n{}", gh.stderr());
    let lines = tokio::task::block_in_place(|| gh.log_lines(1));
    assert!(
        lines
            .iter()
            .any(|l| l["cs-uri-path"] == "/over-h2-proxy" && l["cs-username"] == "alice"),
        "{lines:?}"
    );
    assert!(
        gh.stderr().contains("HTTP/2 connection to the proxy"),
        "Chromium did not choose h2:\n{}",
        gh.stderr()
    );
}
