//! Cookie surrogates (`[auth.surrogate] kind = "cookie"`): a GET without
//! credentials goes through the virtual host, is challenged there, comes
//! back with a one-time token traded for a cookie; later requests with the
//! cookie are that user (`surrogate-cookie`) and the origin never sees the
//! cookie nor the token. Played by a real client (Python's urllib: follows
//! redirects, keeps cookies, answers a 407 only when asked) and step by
//! step on raw connections for the hostile cases.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef";
const COOKIE: &str = "__gatehouse_surrogate";
const TOKEN: &str = "__gatehouse_token";

/// A browser-like client: follows redirects, keeps cookies in a jar file,
/// answers a 407 with `creds` only when asked (none: never); prints the
/// final status and URL.
const CLIENT: &str = r#"
import sys, urllib.request, urllib.error, http.cookiejar
proxy, url, jar, creds, ca = sys.argv[1:6]
import ssl
ctx = ssl.create_default_context(cafile=ca) if ca else None
cj = http.cookiejar.MozillaCookieJar(jar)
try: cj.load(ignore_discard=True)
except FileNotFoundError: pass
handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy}), urllib.request.HTTPCookieProcessor(cj), urllib.request.HTTPSHandler(context=ctx)]
if creds:
    pm = urllib.request.HTTPPasswordMgrWithDefaultRealm()
    user, pw = creds.split(":")
    pm.add_password(None, proxy, user, pw)
    handlers.append(urllib.request.ProxyBasicAuthHandler(pm))
opener = urllib.request.build_opener(*handlers)
try:
    r = opener.open(url, timeout=60); print(r.status, r.geturl())
except urllib.error.HTTPError as e:
    print(e.code, e.geturl())
cj.save(ignore_discard=True)
"#;

fn browse(
    proxy: SocketAddr,
    url: &str,
    jar: &std::path::Path,
    creds: &str,
    ca: Option<&std::path::Path>,
) -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", CLIENT, &format!("http://{proxy}"), url])
        .arg(jar)
        .arg(creds)
        .arg(ca.map_or(std::ffi::OsStr::new(""), |c| c.as_os_str()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn start(dir: &std::path::Path, admin: SocketAddr) -> Gatehouse {
    start_with(dir, admin, "")
}

fn start_with(dir: &std::path::Path, admin: SocketAddr, extra: &str) -> Gatehouse {
    use std::os::unix::fs::PermissionsExt;
    let key = dir.join("cookie.key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = format!(
        "{}[auth.surrogate]\nkind = \"cookie\"\nkey_file = \"{}\"\n{extra}[admin]\naddress = \"{admin}\"\n",
        local_realm(dir),
        key.display()
    );
    let gh = Gatehouse::start("", &cfg);
    gh.wait_stderr("admin endpoints", 1);
    gh
}

/// One request on its own connection: the whole answer.
async fn send(gh: &Gatehouse, head: &str) -> String {
    let raw = format!("{head}Connection: close\r\n\r\n");
    raw_exchange(gh.addr(), raw.as_bytes(), Duration::from_secs(5)).await
}

fn get(url: &str, extra: &str) -> String {
    format!("GET {url} HTTP/1.1\r\nHost: x\r\n{extra}")
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    let head = resp.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The cookie's value in a `Set-Cookie`.
fn cookie_of(resp: &str) -> Option<String> {
    let v = header(resp, "set-cookie")?;
    let v = v.strip_prefix(&format!("{COOKIE}="))?;
    Some(v.split(';').next().unwrap().to_string())
}

/// The flow step by step for `url`: the redirect to the virtual host, its
/// 407, the token, the cookie. Returns (the token URL, the cookie).
async fn sign_in(gh: &Gatehouse, url: &str) -> (String, String) {
    let r = send(gh, &get(url, "")).await;
    assert_eq!(status_of(&r), 302, "{r}");
    let virt = header(&r, "location").unwrap().to_string();
    assert!(virt.starts_with("http://gatehouse.auth/?back="), "{virt}");
    assert_eq!(status_of(&send(gh, &get(&virt, "")).await), 407);
    let auth = format!("Proxy-Authorization: {}\r\n", basic("alice:alice-pw"));
    let r = send(gh, &get(&virt, &auth)).await;
    assert_eq!(status_of(&r), 302, "{r}");
    let back = header(&r, "location").unwrap().to_string();
    assert!(back.starts_with(&format!("{url}&{TOKEN}=")), "{back}");
    let r = send(gh, &get(&back, "")).await;
    assert_eq!(status_of(&r), 302, "{r}");
    assert_eq!(header(&r, "location"), Some(url));
    let set = header(&r, "set-cookie").unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: not Secure");
    (back, cookie_of(&r).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_client_follows_the_flow_and_the_origin_never_sees_cookie_or_token() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = start(dir.path(), admin);
    let jar = dir.path().join("jar.txt");
    let url = origin.url("/page?q=1");
    let run = |creds: &str| browse(gh.addr(), &url, &jar, creds, None);
    // The client answers the 407 at the virtual host, and comes back.
    let first = run("alice:alice-pw");
    assert_eq!(first.trim(), format!("200 {url}"));
    let seen = origin.last_seen();
    assert_eq!(seen.uri, "/page?q=1", "the token never reaches the origin");
    assert!(seen.header("cookie").is_none_or(|c| !c.contains(COOKIE)));
    assert!(seen.header("proxy-authorization").is_none());
    let n = origin.requests();
    // Later, without credentials: the cookie is alice.
    let again = run("");
    assert_eq!(again.trim(), format!("200 {url}"));
    assert_eq!(origin.requests(), n + 1);
    let seen = origin.last_seen();
    assert!(
        seen.header("cookie").is_none_or(|c| !c.contains(COOKIE)),
        "{seen:?}"
    );
    // Five lines for the sign-in (302, 407, 302, 302, 200), one since.
    let last = gh.log_lines(6).pop().unwrap();
    assert_eq!(
        (last["cs-username"].as_str(), last["x-auth-scheme"].as_str()),
        ("alice", "surrogate-cookie")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_other_host_replayed_revoked_and_wrong_credentials_do_not_count() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = start(dir.path(), admin);
    let url = origin.url("/a?x=1");
    let (token_url, cookie) = sign_in(&gh, &url).await;
    let with = |c: &str| format!("Cookie: other=1; {COOKIE}={c}\r\n");
    let r = send(&gh, &get(&url, &with(&cookie))).await;
    assert_eq!(status_of(&r), 200, "{r}");
    assert_eq!(
        origin.last_seen().header("cookie"),
        Some("other=1"),
        "ours stripped, theirs kept"
    );

    // A token once only, and only at its own URL.
    let r = send(&gh, &get(&token_url, "")).await;
    assert_eq!(status_of(&r), 302);
    assert!(header(&r, "set-cookie").is_none(), "replayed: {r}");
    let token = token_url.split(&format!("{TOKEN}=")).nth(1).unwrap();
    let elsewhere = format!("{}&{TOKEN}={token}", origin.url("/b?x=1"));
    assert!(header(&send(&gh, &get(&elsewhere, "")).await, "set-cookie").is_none());

    // Tampered: one character of the claims changed.
    let mut bad = cookie.clone().into_bytes();
    let i = bad.iter().position(|b| *b == b'.').unwrap() + 3;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let r = send(&gh, &get(&url, &with(&String::from_utf8(bad).unwrap()))).await;
    assert_eq!(status_of(&r), 302, "tampered: sent to sign in again");
    // Another host (the same origin by another name).
    let other = url.replace("127.0.0.1", "localhost");
    let r = send(&gh, &get(&other, &with(&cookie))).await;
    assert_eq!(status_of(&r), 302, "other host: {r}");
    // Oversized.
    let r = send(&gh, &get(&url, &with(&"A".repeat(5000)))).await;
    assert_eq!(status_of(&r), 302);

    // Credentials presented win: wrong ones get 407 whatever the cookie.
    let wrong = format!(
        "{}Proxy-Authorization: {}\r\n",
        with(&cookie),
        basic("alice:nope")
    );
    assert_eq!(status_of(&send(&gh, &get(&url, &wrong)).await), 407);
    // A POST without credentials gets the 407; a CONNECT too.
    let post = format!("POST {url} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n");
    assert_eq!(status_of(&send(&gh, &post).await), 407);
    let connect = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n";
    assert_eq!(status_of(&send(&gh, connect).await), 407);
    // The virtual host is never dialled: a CONNECT to it is refused.
    let connect = "CONNECT gatehouse.auth:443 HTTP/1.1\r\nHost: gatehouse.auth:443\r\n";
    assert_eq!(status_of(&send(&gh, connect).await), 400);

    // No open redirect: the virtual host sends back only where it was signed for.
    let evil = "http://gatehouse.auth/?back=http%3A%2F%2Fevil.example%2F&sig=x.y.z";
    let auth = format!("Proxy-Authorization: {}\r\n", basic("alice:alice-pw"));
    let r = send(&gh, &get(evil, &auth)).await;
    assert_eq!(status_of(&r), 400, "{r}");
    assert!(header(&r, "location").is_none());
    let r = send(&gh, &get(&url, "")).await;
    let virt = header(&r, "location")
        .unwrap()
        .replace("%2Fa%3Fx%3D1", "%2Fz");
    assert_eq!(
        status_of(&send(&gh, &get(&virt, &auth)).await),
        400,
        "back changed"
    );

    // A revoke ends it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["revoke", "--user", "alice", "--config"])
        .arg(&gh.config_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(status_of(&send(&gh, &get(&url, &with(&cookie))).await), 302);
    // ... until alice signs in again.
    let (_, fresh) = sign_in(&gh, &url).await;
    assert_eq!(status_of(&send(&gh, &get(&url, &with(&fresh))).await), 200);
}

const INTERCEPT: &str = r#"
[[layers]]
name = "who"
kind = "authentication"
[[layers.rules]]
name = "tunnels-without-credentials"
method = ["CONNECT"]
action = "no-authenticate"
[[layers]]
name = "https"
[[layers.rules]]
name = "intercept-all"
method = ["CONNECT"]
action = "intercept"
[[layers.rules]]
name = "cookie-users"
auth_scheme = ["surrogate-cookie"]
action = "allow"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn inside_interception_the_cookie_is_set_secure_and_makes_the_request_its_user() {
    use common::tls_lab::*;
    use std::os::unix::fs::PermissionsExt;
    const NAME: &str = "origin.example.test";
    let dir = tempfile::tempdir().unwrap();
    let origin_ca = TestCa::new(dir.path());
    let (origin, seen) = https_origin(origin_ca.leaf(&[NAME])).await;
    let key = dir.path().join("cookie.key");
    std::fs::write(&key, format!("{KEY}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let extra = format!(
        "[auth.surrogate]\nkinds = [\"ip\", \"cookie\"]\nkey_file = \"{}\"\nexclude = [\"127.0.0.0/8\"]\n",
        key.display()
    );
    let (gh, proxy_ca) = intercept_proxy(
        dir.path(),
        &origin_ca,
        &[origin.port()],
        &[NAME],
        INTERCEPT,
        &extra,
    );
    gh.wait_stderr("cookie surrogates on", 1);
    let jar = dir.path().join("jar.txt");
    let url = format!("https://{NAME}:{}/page?q=1", origin.port());
    let go = |creds: &str| browse(gh.addr(), &url, &jar, creds, Some(&proxy_ca));
    let first = tokio::task::block_in_place(|| go("alice:alice-pw"));
    assert_eq!(first.trim(), format!("200 {url}"));
    let jar_text = std::fs::read_to_string(&jar).unwrap();
    let line = jar_text
        .lines()
        .find(|l| l.contains(COOKIE))
        .expect("the cookie kept");
    assert!(line.contains("\tTRUE\t"), "Secure over https: {line}");
    let again = tokio::task::block_in_place(|| go(""));
    assert_eq!(again.trim(), format!("200 {url}"));
    // The origin saw the page twice and never the token's step.
    let paths = seen.lock().unwrap().clone();
    assert_eq!(paths, ["GET /page", "GET /page"], "{paths:?}");
    let lines = gh.log_lines(8);
    let inner: Vec<_> = lines
        .iter()
        .filter(|l| l["cs-uri-path"] == "/page" && l["sc-status"] == "200")
        .map(|l| (l["cs-username"].as_str(), l["x-auth-scheme"].as_str()))
        .collect();
    assert_eq!(inner, [("alice", "surrogate-cookie"); 2], "{lines:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_cookie_sends_the_browser_to_sign_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let gh = start_with(dir.path(), admin, "cookie_ttl = \"2s\"\n");
    let url = origin.url("/e?x=1");
    let signed_at = std::time::Instant::now();
    let (_, cookie) = sign_in(&gh, &url).await;
    let with = format!("Cookie: {COOKIE}={cookie}\r\n");
    // Accepted, until its signed expiry: then sent to sign in again.
    let mut status = status_of(&send(&gh, &get(&url, &with)).await);
    let refused_after = loop {
        if status == 302 {
            break signed_at.elapsed();
        }
        assert_eq!(status, 200);
        assert!(
            signed_at.elapsed() < Duration::from_secs(30),
            "never expired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = status_of(&send(&gh, &get(&url, &with)).await);
    };
    assert!(refused_after >= Duration::from_secs(2), "{refused_after:?}");
}
