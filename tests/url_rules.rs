//! `url` rules judge the normalised URL (src/policy/url.rs), on plain HTTP
//! and inside interception alike: every spelling an attacker tried against
//! docs/policy.md's own rule — `/%61dmin`, `//admin`, `/./admin`, `/x/../admin`
//! — is `/admin` to the rule, and a target that cannot be normalised is
//! `400`. Raw sockets for plain HTTP and `curl --path-as-is` through an
//! intercepting policy, so no client tidies the path first. And a request
//! inside interception is judged on its own headers, not the CONNECT's.

mod common;

use std::time::Duration;

use common::tls_lab::*;
use common::*;

const SPELLINGS: [&str; 9] = [
    "/admin",
    "/%61dmin",
    "//admin",
    "/./admin",
    "/x/../admin",
    "/x/%2E%2e/admin",
    // What Tomcat, IIS and nginx read into a path (an attacker's review).
    "/pub/..;/admin",
    "/pub/..%5Cadmin",
    "/pub/..%2Fadmin",
];
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
url = ["^https?://[^/]+/admin"]
action = "deny"
reason = "admin_blocked"
[[layers.rules]]
name = "no-uploader"
header = { "User-Agent" = "^evil-uploader" }
action = "deny"
"#;

fn proxy(dir: &std::path::Path, ca: &TestCa, port: u16) -> (Gatehouse, std::path::PathBuf) {
    intercept_proxy(dir, ca, &[port], &[NAME], POLICY, "")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_spelling_of_a_denied_path_is_denied_on_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let origin = Origin::start().await;
    let (gh, _) = proxy(dir.path(), &ca, 443);
    let get = |path: &str| {
        format!(
            "GET http://{}{path} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
            origin.addr,
            basic("bob:bob-pw")
        )
    };
    for path in SPELLINGS {
        let text = raw_exchange(gh.addr(), get(path).as_bytes(), Duration::from_secs(10)).await;
        assert_eq!(status_of(&text), 403, "{path}: {text}");
    }
    for path in ["/../admin", "/%zz", "/x/../../admin"] {
        let text = raw_exchange(gh.addr(), get(path).as_bytes(), Duration::from_secs(10)).await;
        assert_eq!(status_of(&text), 400, "{path}: {text}");
    }
    let text = raw_exchange(
        gh.addr(),
        get("/bytes/4").as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status_of(&text), 200, "{text}");
    assert_eq!(
        origin.requests(),
        1,
        "no spelling of /admin reached the origin"
    );
    let lines = gh.log_lines(10);
    assert!(
        lines[..6].iter().all(|l| l["x-rule"] == "no-admin"),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_spelling_of_a_denied_path_is_denied_inside_interception() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, seen) = https_origin(ca.leaf(&[NAME])).await;
    let (gh, proxy_ca) = proxy(dir.path(), &ca, origin.port());
    let base = format!("https://{NAME}:{}", origin.port());
    let mut args: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "10".into(),
        "--path-as-is".into(),
        "-x".into(),
        format!("http://{}", gh.addr()),
        "--proxy-user".into(),
        "bob:bob-pw".into(),
        "--cacert".into(),
        proxy_ca.display().to_string(),
        "-w".into(),
        "[%{http_code}]\\n".into(),
    ];
    for path in SPELLINGS.iter().chain(&["/../admin", "/%zz", "/"]) {
        args.extend(["-o".into(), "/dev/null".into(), format!("{base}{path}")]);
    }
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("curl")
            .args(&args)
            .output()
            .expect("curl runs")
    });
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        codes,
        "[403]\n[403]\n[403]\n[403]\n[403]\n[403]\n[403]\n[403]\n[403]\n[400]\n[400]\n[200]\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, vec!["GET /".to_string()], "only / reached the origin");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_judges_the_same_normal_url_for_http_and_intercepted_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (gh, _) = proxy(dir.path(), &ca, 443);
    let explain = |url: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["explain", "--config"])
            .arg(&gh.config_path)
            .args(["--user", "bob", "--url", url])
            .output()
            .expect("gatehouse explain runs");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let said = explain(&format!("https://{NAME}/x/../%61dmin"));
    assert!(
        said.contains(&format!("url (judged):   https://{NAME}/admin")),
        "{said}"
    );
    assert!(said.contains("no-admin"), "{said}");
    let said = explain(&format!("http://{NAME}:8080//admin"));
    assert!(
        said.contains(&format!("http://{NAME}:8080/admin")),
        "{said}"
    );
    assert!(said.contains("no-admin"), "{said}");
    let said = explain(&format!("http://{NAME}/%zz"));
    assert!(said.contains("400"), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_rule_reads_the_request_inside_https_not_the_connect() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let (origin, seen) = https_origin(ca.leaf(&[NAME])).await;
    let (gh, proxy_ca) = proxy(dir.path(), &ca, origin.port());
    let curl = |agent: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args([
                "-x",
                &format!("http://{}", gh.addr()),
                "--proxy-user",
                "bob:bob-pw",
            ])
            .arg("--cacert")
            .arg(&proxy_ca)
            // The request's own header; the CONNECT carries curl's.
            .args(["-H", &format!("User-Agent: {agent}")])
            .arg(format!("https://{NAME}:{}/echo", origin.port()))
            .args(["--data", "payload"])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (evil, fine) =
        tokio::task::block_in_place(|| (curl("evil-uploader/1.0"), curl("Mozilla/5.0")));
    assert_eq!((evil.as_str(), fine.as_str()), ("403", "200"));
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "only the harmless upload arrived"
    );
    let inner: Vec<_> = gh
        .log_lines(4)
        .into_iter()
        .filter(|l| l["cs-method"] == "POST")
        .collect();
    assert_eq!(inner[0]["x-rule"], "no-uploader");
}
