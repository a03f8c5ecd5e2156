//! Single sign-on: curl --proxy-negotiate after kinit, against a real MIT KDC,
//! the proxy accepting with its keytab through libgssapi.

mod common;

use std::process::Command;

use common::kdc::Kdc;
use common::lab::Slapd;
use common::*;

struct Sso {
    kdc: Kdc,
    gh: Gatehouse,
    _dir: tempfile::TempDir,
}

/// A proxy offering Negotiate then Basic, users from `realm_section`.
fn start(realm_section: String, extra: &str) -> Sso {
    let kdc = Kdc::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{realm_section}schemes = [\"negotiate\", \"basic\"]\n[auth.negotiate]\nkeytab = \"{}\"\nprincipal = \"HTTP/proxy.example.test@EXAMPLE.TEST\"\n{extra}",
        kdc.keytab().display()
    );
    let conf = kdc.krb5_conf();
    let gh = Gatehouse::start_with_env("", &cfg, &[("KRB5_CONFIG", conf.to_str().unwrap())]);
    Sso { kdc, gh, _dir: dir }
}

impl Sso {
    /// curl --proxy-negotiate through the proxy named `proxy_host`, as the
    /// holder of credential cache `cc`. Returns (status codes, stderr).
    fn curl(&self, proxy_host: &str, cc: &std::path::Path, args: &[&str]) -> (String, String) {
        let port = self.gh.port;
        let out = Command::new("curl")
            .args([
                "-sS",
                "--proxy-negotiate",
                "-U",
                ":",
                "-x",
                &format!("http://{proxy_host}:{port}"),
            ])
            .args(["--resolve", &format!("{proxy_host}:{port}:127.0.0.1")])
            .args(["-w", "%{http_code} "])
            .args(args.iter().flat_map(|url| ["-o", "/dev/null", url]))
            .env("KRB5_CONFIG", self.kdc.krb5_conf())
            .env("KRB5CCNAME", format!("FILE:{}", cc.display()))
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kinit_then_curl_without_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let sso = start(local_realm(dir.path()), "");
    let cc = sso.kdc.kinit("alice");
    let url = origin.url("/hello");
    // Three requests on one connection: one Kerberos validation.
    let (codes, err) =
        tokio::task::block_in_place(|| sso.curl("proxy.example.test", &cc, &[&url, &url, &url]));
    assert_eq!(codes, "200 200 200", "{err}");
    let lines = sso.gh.log_lines(3);
    let ok: Vec<_> = lines.iter().filter(|l| l["sc-status"] == "200").collect();
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|l| l["cs-username"] == "alice"));
    assert!(
        ok[0]["cs-auth-group"].contains("Skype Users"),
        "{:?}",
        ok[0]
    );
    let schemes: Vec<&str> = ok.iter().map(|l| l["x-auth-scheme"].as_str()).collect();
    assert_eq!(
        schemes,
        vec![
            "negotiate-kerberos",
            "negotiate-kerberos-cached",
            "negotiate-kerberos-cached"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_with_negotiate() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let sso = start(
        local_realm(dir.path()),
        &format!("[tunnel]\nallowed_ports = [{}]\n", echo.port()),
    );
    let cc = sso.kdc.kinit("bob");
    let target = format!("http://{echo}/through-tunnel");
    let port = sso.gh.port;
    let out = tokio::task::block_in_place(|| {
        Command::new("curl")
            .args([
                "-sS",
                "-p",
                "--proxy-negotiate",
                "-U",
                ":",
                "-x",
                &format!("http://proxy.example.test:{port}"),
            ])
            .args([
                "--resolve",
                &format!("proxy.example.test:{port}:127.0.0.1"),
                "--max-time",
                "3",
                "--http0.9",
                &target,
            ])
            .env("KRB5_CONFIG", sso.kdc.krb5_conf())
            .env("KRB5CCNAME", format!("FILE:{}", cc.display()))
            .output()
            .unwrap()
    });
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.starts_with("GET /through-tunnel HTTP/1.1"),
        "{body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = sso.gh.log_lines(1);
    let tunnel = lines
        .iter()
        .find(|l| l["s-action"] == "TCP_TUNNELED")
        .unwrap();
    assert_eq!(tunnel["cs-username"], "bob");
    assert_eq!(tunnel["x-auth-scheme"], "negotiate-kerberos");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_ticket_wrong_spn_and_garbage_get_407() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let sso = start(local_realm(dir.path()), "");
    let url = origin.url("/hello");
    // No ticket at all: an empty credential cache.
    let empty = sso.kdc.dir.path().join("cc-empty");
    let (codes, _) =
        tokio::task::block_in_place(|| sso.curl("proxy.example.test", &empty, &[&url]));
    assert_eq!(codes, "407");
    // A ticket for another service (HTTP/other.example.test is not in our keytab).
    let cc = sso.kdc.kinit("alice");
    let (codes, _) = tokio::task::block_in_place(|| sso.curl("other.example.test", &cc, &[&url]));
    assert_eq!(codes, "407");
    sso.gh.wait_stderr("Negotiate token rejected", 1);
    // Garbage and truncated tokens.
    for tok in [
        "!!!",
        "YIIB",
        "TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAO5CAAAADw==",
        "",
    ] {
        let raw = format!("GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Negotiate {tok}\r\nConnection: close\r\n\r\n");
        let text = raw_exchange(
            sso.gh.addr(),
            raw.as_bytes(),
            std::time::Duration::from_secs(5),
        )
        .await;
        assert_eq!(status_of(&text), 407, "{tok:?}: {text}");
        assert!(text.contains("proxy-authenticate: Negotiate"), "{text}");
    }
    assert_eq!(origin.requests(), 0);
}

/// Windows' MaxTokenSize is 65,535 bytes: a token that large (87,380 base64
/// characters, more than the default 64 KiB head) reaches the acceptor and
/// gets its 407, while a larger one, or another header as large, is 431.
#[tokio::test(flavor = "multi_thread")]
async fn a_maximal_token_is_judged_and_only_that_field_gets_the_room() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let sso = start(local_realm(dir.path()), "");
    let url = origin.url("/hello");
    let send = |header: String| {
        let raw = format!("GET {url} HTTP/1.1\r\nHost: x\r\n{header}\r\nConnection: close\r\n\r\n");
        let addr = sso.gh.addr();
        async move { raw_exchange(addr, raw.as_bytes(), std::time::Duration::from_secs(10)).await }
    };
    let token = |n: usize| {
        let bytes: Vec<u8> = (0..n).map(|i| (i * 7 + 0x60) as u8).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let max = send(format!("Proxy-Authorization: Negotiate {}", token(65_535))).await;
    assert_eq!(status_of(&max), 407, "{max}");
    assert!(max.contains("proxy-authenticate: Negotiate"), "{max}");
    sso.gh.wait_stderr("Negotiate token rejected", 1);
    let over = send(format!("Proxy-Authorization: Negotiate {}", token(100_000))).await;
    assert_eq!(status_of(&over), 431, "{over}");
    let other = send(format!("X-Large: {}", "x".repeat(70_000))).await;
    assert_eq!(status_of(&other), 431, "{other}");
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn mit_principal_maps_to_an_ldap_user() {
    let lab = Slapd::start();
    let origin = Origin::start().await;
    let realm = lab.realm_file("memberof", "");
    let sso = start(
        format!(
            "[auth]\nrequired = true\nrealms = [\"{}\"]\n",
            realm.display()
        ),
        "",
    );
    let cc = sso.kdc.kinit("alice");
    let (codes, err) =
        tokio::task::block_in_place(|| sso.curl("proxy.example.test", &cc, &[&origin.url("/")]));
    assert_eq!(codes, "200", "{err}");
    let line = sso
        .gh
        .log_lines(1)
        .into_iter()
        .find(|l| l["sc-status"] == "200")
        .unwrap();
    assert_eq!(line["cs-username"], "alice");
    let mut groups: Vec<&str> = line["cs-auth-group"].split(',').collect();
    groups.sort();
    assert_eq!(
        groups,
        vec!["Skype Users", "staff", "telephony"],
        "groups from slapd, nested"
    );
    // A principal with no directory user is refused like a wrong password.
    let cc = sso.kdc.kinit("carol");
    lab.modify("dn: uid=carol,ou=people,dc=example,dc=test\nchangetype: delete\n");
    let (codes, _) =
        tokio::task::block_in_place(|| sso.curl("proxy.example.test", &cc, &[&origin.url("/")]));
    assert_eq!(codes, "407");
}

#[tokio::test(flavor = "multi_thread")]
async fn per_request_validates_every_token() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let sso = start(local_realm(dir.path()), "per_request = true\n");
    let cc = sso.kdc.kinit("alice");
    let url = origin.url("/hello");
    let (codes, err) =
        tokio::task::block_in_place(|| sso.curl("proxy.example.test", &cc, &[&url, &url]));
    assert_eq!(codes, "200 200", "{err}");
    let lines = sso.gh.log_lines(2);
    assert!(
        lines
            .iter()
            .all(|l| l["x-auth-scheme"] == "negotiate-kerberos"),
        "{lines:?}"
    );
}

#[test]
fn check_reports_the_keytab() {
    let kdc = Kdc::start();
    let dir = tempfile::tempdir().unwrap();
    let realm_section = local_realm(dir.path());
    let write = |keytab: &std::path::Path, principal: &str| {
        let cfg = dir.path().join("g.toml");
        std::fs::write(
            &cfg,
            format!("{realm_section}schemes = [\"negotiate\"]\n[auth.negotiate]\nkeytab = \"{}\"\nprincipal = \"{principal}\"\n", keytab.display()),
        )
        .unwrap();
        Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let out = write(&kdc.keytab(), "HTTP/proxy.example.test@EXAMPLE.TEST");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("aes256-cts-hmac-sha1-96") && text.contains("2 key(s)"),
        "{text}"
    );
    let out = write(&kdc.keytab(), "HTTP/other.example.test@EXAMPLE.TEST");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("holds no key for HTTP/other.example.test")
    );
    let out = write(
        &dir.path().join("missing.keytab"),
        "HTTP/proxy.example.test@EXAMPLE.TEST",
    );
    assert_eq!(out.status.code(), Some(3));
}
