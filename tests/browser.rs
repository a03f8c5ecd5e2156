//! Headless Chromium (Debian's) through the proxy, driven by
//! `integration/browser/drive.mjs` (Playwright over the DevTools protocol):
//! Basic answered through DevTools, Negotiate single sign-on with a ticket
//! from the lab KDC, an HTTPS page through CONNECT with detection on, and the
//! browser pointed at the proxy by the PAC file. Each case has its failing
//! twin (a wrong password, no ticket, a refused tunnel, a name the PAC sends
//! direct), so a proxy that lets the wrong thing through fails a test.
//!
//! Chromium reaches lab names only through `--host-resolver-rules` (no DNS),
//! and the proxy resolves origin names through `[resolver] hosts`.

mod common;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use common::kdc::Kdc;
use common::tls_lab::{https_origin, TestCa};
use common::*;
use serde_json::{json, Value};
use sha2::Digest as _;

const PROXY: &str = "proxy.example.test";
const ORIGIN: &str = "origin.example.test";

/// What the driver saw: `ok` (a 2xx), `status`, `body`, `error` (`net::ERR_…`).
fn chromium(input: Value) -> Value {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/browser/drive.mjs");
    let out = Command::new("node")
        .arg(&driver)
        .arg(input.to_string())
        .output()
        .expect("node (integration/install-deps installs it)");
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "driver failed: {line}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(line.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("driver said {line:?}: {e}"))
}

/// The proxy, for Chromium: by name (the SPN's), mapped to loopback.
fn via(gh: &Gatehouse) -> Value {
    json!({
        "proxy": format!("http://{PROXY}:{}", gh.port),
        "resolve": { PROXY: "127.0.0.1" },
    })
}

fn with(mut base: Value, more: Value) -> Value {
    base.as_object_mut()
        .unwrap()
        .extend(more.as_object().unwrap().clone());
    base
}

/// Origin names resolve through the proxy's config, never DNS.
fn resolver() -> String {
    format!("[resolver]\nsystem = false\nhosts = {{ \"{ORIGIN}\" = [\"127.0.0.1\"] }}\n")
}

/// The log line for `path` with status `status`, once it is written.
fn line_for(gh: &Gatehouse, path: &str, status: &str) -> std::collections::HashMap<String, String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&gh.log_path).unwrap_or_default();
        if let Some(l) = parse_elff(&text)
            .into_iter()
            .find(|l| l["cs-uri-path"] == path && l["sc-status"] == status)
        {
            return l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {status} line for {path} in:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_credentials_through_devtools_and_a_wrong_password_refused() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &format!("{}{}", local_realm(dir.path()), resolver()));
    let url = format!("http://{ORIGIN}:{}/browser-basic", origin.addr.port());
    let good = json!({ "url": url, "username": "alice", "password": "alice-pw" });
    let seen = tokio::task::block_in_place(|| chromium(with(via(&gh), good)));
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["body"], "hello from origin");
    let line = line_for(&gh, "/browser-basic", "200");
    assert_eq!(line["cs-username"], "alice");
    assert_eq!(line["x-auth-scheme"], "basic");
    assert!(line["cs(User-Agent)"].contains("Chrome"), "{line:?}");

    let wrong = json!({ "url": url.replace("basic", "wrong"), "username": "alice", "password": "not-hers" });
    let seen = tokio::task::block_in_place(|| chromium(with(via(&gh), wrong)));
    assert_eq!(seen["ok"], false, "{seen}");
    assert_eq!(seen["status"], 407, "{seen}");
    assert!(seen["body"]
        .as_str()
        .unwrap()
        .contains("authentication_failed"));
    assert!(
        !reached(&origin, "/browser-wrong"),
        "the wrong password reached nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn negotiate_single_sign_on_with_a_lab_ticket_and_none_without() {
    let kdc = Kdc::start();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let cfg = format!(
        "{}schemes = [\"negotiate\"]\n[auth.negotiate]\nkeytab = \"{}\"\n\
         principal = \"HTTP/{PROXY}@EXAMPLE.TEST\"\n{}",
        local_realm(dir.path()),
        kdc.keytab().display(),
        resolver()
    );
    let conf = kdc.krb5_conf();
    let gh = Gatehouse::start_with_env("", &cfg, &[("KRB5_CONFIG", conf.to_str().unwrap())]);
    let cc = kdc.kinit("alice");
    let url = format!("http://{ORIGIN}:{}/browser-sso", origin.addr.port());
    // No credentials given to the browser: the ticket is all it has.
    let sso = |cache: &Path, url: &str| {
        json!({
            "url": url,
            "authAllowlist": PROXY,
            "env": {
                "KRB5_CONFIG": conf.display().to_string(),
                "KRB5CCNAME": format!("FILE:{}", cache.display()),
            },
        })
    };
    let seen = tokio::task::block_in_place(|| chromium(with(via(&gh), sso(&cc, &url))));
    assert_eq!(seen["ok"], true, "{seen}\n{}", gh.stderr());
    let line = line_for(&gh, "/browser-sso", "200");
    assert_eq!(line["cs-username"], "alice");
    assert_eq!(line["x-auth-scheme"], "negotiate-kerberos");
    assert!(line["cs-auth-group"].contains("Skype Users"), "{line:?}");

    // An empty credential cache: nothing to offer, no page.
    let none = dir.path().join("no-ticket");
    let url = url.replace("sso", "no-ticket");
    let seen = tokio::task::block_in_place(|| chromium(with(via(&gh), sso(&none, &url))));
    assert_eq!(seen["ok"], false, "{seen}");
    assert!(
        !reached(&origin, "/browser-no-ticket"),
        "only the ticket holder reached the origin"
    );
}

/// Whether a request for `path` reached the origin (Chromium also asks for
/// `/favicon.ico` after a page, so counting requests says little).
fn reached(origin: &Origin, path: &str) -> bool {
    origin
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.uri.ends_with(path))
}

/// base64(SHA-256(SubjectPublicKeyInfo)): how Chromium is told to accept a
/// lab certificate (`--ignore-certificate-errors-spki-list`).
fn spki_pin(cert: &rustls::pki_types::CertificateDer<'_>) -> String {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
    let digest = sha2::Sha256::digest(parsed.public_key().raw);
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_page_through_connect_with_detection_and_refused_tunnels() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let leaf = ca.leaf(&[ORIGIN]);
    let pin = spki_pin(&leaf.0[0]);
    let (good, _) = https_origin(leaf).await;
    // A server the proxy does not trust (self-signed), though the browser would.
    let fake = common::tls_lab::self_signed(&[ORIGIN]);
    let fake_pin = spki_pin(&fake.0[0]);
    let (fake, fake_seen) = https_origin(fake).await;
    let closed = common::closed_port();
    let closed_port = closed.port;
    let cfg = format!(
        "{}{}[tunnel]\nallowed_ports = [{}, {}]\n[detection]\nenabled = true\nca_file = \"{}\"\n",
        local_realm(dir.path()),
        resolver(),
        good.port(),
        fake.port(),
        ca.pem_path.display()
    );
    let gh = Gatehouse::start("", &cfg);
    let page = |port: u16, pin: &str| {
        json!({
            "url": format!("https://{ORIGIN}:{port}/"),
            "username": "alice",
            "password": "alice-pw",
            "ignoreCertSpki": [pin],
        })
    };
    let seen = tokio::task::block_in_place(|| chromium(with(via(&gh), page(good.port(), &pin))));
    assert_eq!(seen["ok"], true, "{seen}\n{}", gh.stderr());
    assert_eq!(seen["body"], "hello from origin");
    let tunnels = gh.log_lines(1);
    assert!(
        tunnels.iter().any(|l| l["cs-method"] == "CONNECT"
            && l["cs-username"] == "alice"
            && l["s-action"] == "TCP_ACCELERATED"
            && l["x-protocol"] == "tls"),
        "{tunnels:?}"
    );

    // Detection refuses the server the proxy cannot verify: no page, and
    // the fake server saw no request.
    let seen =
        tokio::task::block_in_place(|| chromium(with(via(&gh), page(fake.port(), &fake_pin))));
    assert_eq!(seen["ok"], false, "{seen}");
    assert!(fake_seen.lock().unwrap().is_empty());
    let text = std::fs::read_to_string(&gh.log_path).unwrap();
    assert!(
        parse_elff(&text).iter().any(
            |l| l["cs-method"] == "CONNECT" && l["x-exception-id"] == "ssl_server_cert_invalid"
        ),
        "{text}"
    );

    // A port the tunnel settings do not allow: refused before any dial.
    let seen = tokio::task::block_in_place(|| chromium(with(via(&gh), page(closed_port, &pin))));
    assert_eq!(seen["error"], "net::ERR_TUNNEL_CONNECTION_FAILED", "{seen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pac_file_points_chromium_at_the_proxy_and_direct_names_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    // Chromium's own background hosts go direct too (and die on NOTFOUND),
    // instead of knocking on the proxy.
    let cfg = format!(
        "{}{}[admin]\naddress = \"{admin}\"\n[pac]\nproxy = \"{PROXY}:{{proxy_port}}\"\n\
         direct_domains = [\"intranet.example.test\", \"google.com\", \"googleapis.com\", \"gstatic.com\"]\n",
        local_realm(dir.path()),
        resolver()
    );
    let gh = Gatehouse::start("", &cfg);
    gh.wait_stderr("admin endpoints", 1);
    let pac = |url: String| {
        json!({
            "pac": format!("http://{admin}/proxy.pac"),
            "url": url,
            "username": "alice",
            "password": "alice-pw",
            // The proxy's name and the internal one, for the browser alone.
            "resolve": { PROXY: "127.0.0.1", "intranet.example.test": "127.0.0.1" },
        })
    };
    // An internal name: the PAC file says DIRECT, the proxy never sees it.
    let direct = format!(
        "http://intranet.example.test:{}/pac-direct",
        origin.addr.port()
    );
    let seen = tokio::task::block_in_place(|| chromium(pac(direct)));
    assert_eq!(seen["ok"], true, "{seen}");
    // Anything else: through the proxy, authenticated.
    let proxied = format!("http://{ORIGIN}:{}/pac-proxied", origin.addr.port());
    let seen = tokio::task::block_in_place(|| chromium(pac(proxied)));
    assert_eq!(seen["ok"], true, "{seen}\n{}", gh.stderr());
    assert_eq!(line_for(&gh, "/pac-proxied", "200")["cs-username"], "alice");
    let text = std::fs::read_to_string(&gh.log_path).unwrap();
    assert!(!text.contains("/pac-direct"), "{text}");
    assert!(reached(&origin, "/pac-direct") && reached(&origin, "/pac-proxied"));
}

/// The PAC file offers the TLS listener first (`HTTPS host:port; PROXY …`):
/// Chromium speaks TLS to the proxy (on 127.0.0.2 here, so the log's s-ip
/// tells which listener served it), Basic credentials inside that TLS.
#[tokio::test(flavor = "multi_thread")]
async fn the_pac_file_sends_chromium_over_tls_to_the_proxy() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let ca = TestCa::new(dir.path());
    let (cert, key) = ca.leaf_pem(dir.path(), &["tls-proxy.example.test"]);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let proxy_pin = {
        let pem = std::fs::read_to_string(&cert).unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
        spki_pin(&der)
    };
    let tls_port = free_port();
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let listener = format!(
        "tls_addresses = [\"127.0.0.2:{tls_port}\"]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let cfg = format!(
        "{}{}[admin]\naddress = \"{admin}\"\n[pac]\nproxy = \"{PROXY}:{{proxy_port}}\"\n\
         https_proxy = \"tls-proxy.example.test:{tls_port}\"\n\
         direct_domains = [\"google.com\", \"googleapis.com\", \"gstatic.com\"]\n",
        local_realm(dir.path()),
        resolver()
    );
    let gh = Gatehouse::start(&listener, &cfg);
    gh.wait_stderr("admin endpoints", 1);
    let input = json!({
        "pac": format!("http://{admin}/proxy.pac"),
        "url": format!("http://{ORIGIN}:{}/over-tls-proxy", origin.addr.port()),
        "username": "alice",
        "password": "alice-pw",
        "resolve": { PROXY: "127.0.0.1", "tls-proxy.example.test": "127.0.0.2" },
        "ignoreCertSpki": [proxy_pin],
    });
    let seen = tokio::task::block_in_place(|| chromium(input));
    assert_eq!(seen["ok"], true, "{seen}\n{}", gh.stderr());
    let line = line_for(&gh, "/over-tls-proxy", "200");
    assert_eq!(line["cs-username"], "alice");
    assert_eq!(
        line["s-ip"], "127.0.0.2",
        "served by the TLS listener: {line:?}"
    );
}
