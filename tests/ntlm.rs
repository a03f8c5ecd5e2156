//! NTLM passed through to a real domain controller (the Samba AD DC that
//! integration/test starts; see tests/samba.rs): the proxy never sees a password.

mod common;

use std::process::Command;
use std::time::Duration;

use common::ntlm::{handshake, read_response, NtlmClient};
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// One test at a time: one of them stops the shared DC.
static DC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn proxy(samba: &std::path::Path, dir: &std::path::Path, extra: &str) -> Gatehouse {
    let realm = common::samba::realm_file(samba, dir);
    let cfg = format!(
        "[auth]\nrequired = true\nschemes = [\"ntlm\", \"basic\"]\nrealms = [\"{}\"]\n\
         [auth.ntlm]\nhelper = [\"ntlm_auth\", \"--helper-protocol=squid-2.5-ntlmssp\", \"--configfile={}\"]\n\
         max_helpers = 4\nqueue_timeout = \"30s\"\n{extra}",
        realm.display(),
        samba.join("etc/smb.conf").display()
    );
    Gatehouse::start("", &cfg)
}

fn curl_ntlm(gh: &Gatehouse, user_pass: &str, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--proxy-ntlm",
            "-U",
            user_pass,
            "-x",
            &format!("http://{}", gh.addr()),
            "-w",
            "%{http_code} ",
        ])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// ntlm_auth helpers currently running under the proxy.
fn helpers(gh: &Gatehouse) -> usize {
    let pid = gh.pid().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            stat.contains("(ntlm_auth)")
                && stat.split(") ").nth(1).and_then(|r| r.split(' ').nth(1)) == Some(pid.as_str())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_proxy_ntlm_get_connect_and_wrong_password() {
    let _dc = DC.lock().await;
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let echo = echo_server().await;
    let gh = proxy(
        &samba,
        dir.path(),
        &format!("[tunnel]\nallowed_ports = [{}]\n", echo.port()),
    );
    let url = origin.url("/hello");
    // Three requests on one connection: one handshake.
    let codes = tokio::task::block_in_place(|| {
        curl_ntlm(
            &gh,
            "ADTEST\\alice:alice-Pw1",
            &[
                "-o",
                "/dev/null",
                &url,
                "-o",
                "/dev/null",
                &url,
                "-o",
                "/dev/null",
                &url,
            ],
        )
    });
    assert_eq!(codes, "200 200 200");
    let tunnel = tokio::task::block_in_place(|| {
        curl_ntlm(
            &gh,
            "ADTEST\\bob:bob-Pw1",
            &[
                "-p",
                "--max-time",
                "3",
                "--http0.9",
                &format!("http://{echo}/ntlm-tunnel"),
            ],
        )
    });
    assert!(tunnel.starts_with("GET /ntlm-tunnel HTTP/1.1"), "{tunnel}");
    let wrong = tokio::task::block_in_place(|| {
        curl_ntlm(
            &gh,
            "ADTEST\\alice:not-her-password",
            &["-o", "/dev/null", &url],
        )
    });
    assert_eq!(wrong, "407");
    let lines = gh.log_lines(6);
    let ok: Vec<_> = lines
        .iter()
        .filter(|l| l["cs-username"] == "alice" && l["sc-status"] == "200")
        .collect();
    let schemes: Vec<&str> = ok.iter().map(|l| l["x-auth-scheme"].as_str()).collect();
    assert_eq!(schemes, vec!["ntlm", "ntlm-cached", "ntlm-cached"]);
    let mut groups: Vec<&str> = ok[0]["cs-auth-group"].split(',').collect();
    groups.sort();
    assert_eq!(
        groups,
        vec!["Skype Users", "staff", "telephony"],
        "nested groups from AD"
    );
    assert!(lines
        .iter()
        .any(|l| l["s-action"] == "TCP_TUNNELED" && l["cs-username"] == "bob"));
    let miss = lines
        .iter()
        .find(|l| l["s-action"] == "TCP_AUTH_MISS")
        .unwrap();
    assert_eq!(miss["cs-username"], "ADTEST\\alice");
    let log = std::fs::read_to_string(&gh.log_path).unwrap() + &gh.stderr();
    assert!(
        !log.contains("alice-Pw1") && !log.contains("not-her-password"),
        "no password anywhere"
    );
}

/// curl's `--proxy-negotiate` through MIT GSS-API with the gss-ntlmssp
/// mechanism and no Kerberos ticket: it sends NTLM *inside* SPNEGO, as a
/// Windows client without a ticket does. Its credentials come from the
/// NTLM_USER_FILE the mechanism reads.
fn curl_spnego_ntlm(gh: &Gatehouse, dir: &std::path::Path, user_pw: &str, urls: &[&str]) -> String {
    let creds = dir.join(format!("ntlm-user-{}", user_pw.len()));
    std::fs::write(&creds, format!("ADTEST:{user_pw}\n")).unwrap();
    let mut args = vec![
        "-sS".to_string(),
        "--proxy-negotiate".into(),
        "-U".into(),
        ":".into(),
        "-x".into(),
        format!("http://{}", gh.addr()),
        "-w".into(),
        "%{http_code} ".into(),
    ];
    for url in urls {
        args.extend(["-o".into(), "/dev/null".into(), url.to_string()]);
    }
    let out = Command::new("curl")
        .args(&args)
        .env("NTLM_USER_FILE", &creds)
        // No ticket anywhere: Kerberos has nothing to offer.
        .env(
            "KRB5CCNAME",
            format!("FILE:{}", dir.join("no-ccache").display()),
        )
        .env("KRB5_CONFIG", dir.join("no-krb5.conf"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn ntlm_inside_spnego_completes_and_a_wrong_password_is_refused() {
    let _dc = DC.lock().await;
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let realm = common::samba::realm_file(&samba, dir.path());
    // Negotiate first, as Windows-facing proxies offer it; NTLM behind it.
    let cfg = format!(
        "[auth]\nrequired = true\nschemes = [\"negotiate\", \"ntlm\"]\nrealms = [\"{}\"]\n\
         [auth.negotiate]\nkeytab = \"{}\"\n\
         [auth.ntlm]\nhelper = [\"ntlm_auth\", \"--helper-protocol=squid-2.5-ntlmssp\", \"--configfile={}\"]\n",
        realm.display(),
        samba.join("http.keytab").display(),
        samba.join("etc/smb.conf").display()
    );
    let gh = Gatehouse::start("", &cfg);
    let url = origin.url("/spnego-ntlm");
    let codes = tokio::task::block_in_place(|| {
        curl_spnego_ntlm(&gh, dir.path(), "alice:alice-Pw1", &[&url, &url])
    });
    assert_eq!(codes, "200 200", "{}", gh.stderr());
    let wrong = tokio::task::block_in_place(|| {
        curl_spnego_ntlm(&gh, dir.path(), "alice:not-her-password", &[&url])
    });
    assert_eq!(wrong, "407");
    // Each connection's first request is answered 407 without credentials.
    let lines = gh.log_lines(5);
    let ok: Vec<_> = lines.iter().filter(|l| l["sc-status"] == "200").collect();
    assert_eq!(ok.len(), 2);
    assert!(ok.iter().all(|l| l["cs-username"] == "alice"));
    assert_eq!(ok[0]["x-auth-scheme"], "negotiate-ntlm");
    assert_eq!(ok[1]["x-auth-scheme"], "negotiate-ntlm-cached");
    let miss = lines
        .iter()
        .find(|l| l["x-exception-id"] == "authentication_failed")
        .unwrap();
    assert_eq!(miss["s-action"], "TCP_AUTH_MISS");
    assert_eq!(miss["cs-username"], "ADTEST\\alice");
}

/// An NTLM type 3 wrapped in SPNEGO (a NegTokenResp) on a connection that
/// never got a challenge: refused with 407, and no helper is leased for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_spnego_type3_without_a_challenge_is_refused_without_a_helper() {
    use base64::Engine as _;
    let _dc = DC.lock().await;
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let realm = common::samba::realm_file(&samba, dir.path());
    let cfg = format!(
        "[auth]\nrequired = true\nschemes = [\"negotiate\", \"ntlm\"]\nrealms = [\"{}\"]\n\
         [auth.negotiate]\nkeytab = \"{}\"\n\
         [auth.ntlm]\nhelper = [\"ntlm_auth\", \"--helper-protocol=squid-2.5-ntlmssp\", \"--configfile={}\"]\n",
        realm.display(),
        samba.join("http.keytab").display(),
        samba.join("etc/smb.conf").display()
    );
    let gh = Gatehouse::start("", &cfg);
    // NTLMSSP type 3 with every field empty, in [1] SEQUENCE { [2] OCTET STRING }.
    let mut type3 = b"NTLMSSP\0\x03\0\0\0".to_vec();
    type3.resize(88, 0);
    let mut tok = vec![0x04, type3.len() as u8];
    tok.extend(&type3);
    let tok = [vec![0xa2, tok.len() as u8], tok].concat();
    let tok = [vec![0x30, tok.len() as u8], tok].concat();
    let tok = [vec![0xa1, tok.len() as u8], tok].concat();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&tok);
    let r = raw_exchange(
        gh.addr(),
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Negotiate {b64}\r\nConnection: close\r\n\r\n",
            origin.url("/")
        )
        .as_bytes(),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&r), 407, "{r}");
    assert_eq!(
        helpers(&gh),
        0,
        "no helper for a handshake that never started"
    );
    assert_eq!(origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_new_connections_share_four_helpers_and_a_killed_helper_is_replaced() {
    let _dc = DC.lock().await;
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = proxy(&samba, dir.path(), "");
    let url = origin.url("/hello");
    let mut runs = Vec::new();
    for _ in 0..50 {
        let (addr, url) = (gh.addr(), url.clone());
        runs.push(std::thread::spawn(move || {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "--proxy-ntlm",
                    "-U",
                    "ADTEST\\bob:bob-Pw1",
                    "-x",
                    &format!("http://{addr}"),
                    "--max-time",
                    "60",
                ])
                .args(["-o", "/dev/null", "-w", "%{http_code}", &url])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        }));
    }
    let codes: Vec<String> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(codes.iter().all(|c| c == "200"), "{codes:?}");
    assert!(
        helpers(&gh) <= 4,
        "at most max_helpers helpers: {}",
        helpers(&gh)
    );
    // Kill every helper: the next handshakes start fresh ones.
    let pid = gh.pid().to_string();
    assert!(Command::new("pkill")
        .args(["-KILL", "-P", &pid, "ntlm_auth"])
        .status()
        .unwrap()
        .success());
    let codes = tokio::task::block_in_place(|| {
        curl_ntlm(&gh, "ADTEST\\alice:alice-Pw1", &["-o", "/dev/null", &url])
    });
    assert_eq!(codes, "200", "a new helper took over");
    assert_eq!(
        gh.log_lines(51)
            .iter()
            .filter(|l| l["sc-status"] == "200")
            .count(),
        51
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dc_down_new_handshakes_refused_authenticated_connections_keep_working() {
    let _dc = DC.lock().await;
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = proxy(&samba, dir.path(), "");
    let url = origin.url("/hello");
    let mut s = TcpStream::connect(gh.addr()).await.unwrap();
    let mut client = NtlmClient::new(&samba, "alice", "alice-Pw1");
    let r = handshake(&mut s, &mut client, "GET", &url, "").await;
    assert_eq!(status_of(&r), 200, "{r}");
    let stop = Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/lab/samba"),
    )
    .arg("stop")
    .arg(&samba)
    .status()
    .unwrap();
    assert!(stop.success());
    // The authenticated connection goes on without asking the domain.
    s.write_all(format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s).await;
    let restart = || {
        let ok = Command::new(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/lab/samba"),
        )
        .arg("start")
        .arg(&samba)
        .status()
        .unwrap();
        assert!(ok.success(), "the DC came back");
    };
    if status_of(&r) != 200 {
        restart();
        panic!("authenticated connection refused while the DC is down: {r}");
    }
    // A new handshake gets a clear refusal, quickly.
    let started = std::time::Instant::now();
    let code = tokio::task::block_in_place(|| {
        curl_ntlm(
            &gh,
            "ADTEST\\bob:bob-Pw1",
            &["--max-time", "30", "-o", "/dev/null", &url],
        )
    });
    let took = started.elapsed();
    restart();
    assert!(code == "407" || code == "503", "refused, got {code}");
    assert!(took < Duration::from_secs(25), "no hang: {took:?}");
    // Recovery without restarting the proxy (polled: the DC's services come up one by one).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let codes = tokio::task::block_in_place(|| {
            curl_ntlm(&gh, "ADTEST\\bob:bob-Pw1", &["-o", "/dev/null", &url])
        });
        if codes == "200" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never worked again after the DC came back: {codes}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn skype_with_ntlm_allowed_group_tunnels() {
    let _dc = DC.lock().await;
    let samba = common::samba::dir();
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_server().await;
    let gh = proxy(
        &samba,
        dir.path(),
        &format!("[tunnel]\nallowed_ports = [{}]\n[detection]\nenabled = true\ntimeout = \"2s\"\n[policy]\nallowed_groups = [\"Skype Users\"]\n", echo.port()),
    );
    for (user, pw, tunnels) in [("alice", "alice-Pw1", true), ("bob", "bob-Pw1", false)] {
        let mut s = TcpStream::connect(gh.addr()).await.unwrap();
        let mut client = NtlmClient::new(&samba, user, pw);
        let r = handshake(&mut s, &mut client, "CONNECT", &echo.to_string(), "").await;
        assert_eq!(status_of(&r), 200, "{r}");
        let mut hello = common::tls_lab::client_hello("127.0.0.1");
        hello.extend_from_slice(common::tls_lab::PAYLOAD_MARKER);
        s.write_all(&hello).await.unwrap();
        let mut back = vec![0u8; hello.len()];
        use tokio::io::AsyncReadExt;
        let got = tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back)).await;
        assert_eq!(got.is_ok_and(|r| r.is_ok()), tunnels, "{user}");
    }
    let lines = gh.log_lines(4);
    let action = |u: &str| {
        lines
            .iter()
            .find(|l| l["cs-username"] == u && l["sc-status"] == "200")
            .unwrap()["s-action"]
            .clone()
    };
    assert_eq!(action("alice"), "TCP_TUNNELED");
    assert_eq!(action("bob"), "TCP_DENIED");
}
