//! The SNI and the CONNECT's host, on real sockets: the certificate check
//! proves the ClientHello's name, so that is the name judged. A named
//! CONNECT whose SNI names another host is refused (`ssl_sni_mismatch`)
//! unless a rule naming that SNI allows it — the escape it closes: a user
//! the policy intercepts reaching a raw, bypassed tunnel by sending the
//! bypassed bank's name as SNI inside a CONNECT for any other host. An
//! address CONNECT is judged by its SNI's name (host rules), and the log's
//! `x-rule` names the rule that decided.

mod common;

use common::tls_lab::*;
use common::*;

const NAME: &str = "origin.example.test";
const BANK: &str = "bank.example.test";

/// A proxy with the local realm, detection trusting `ca`, an interception
/// CA, and `policy`.
fn proxy(dir: &std::path::Path, ca: &TestCa, port: u16, policy: &str) -> Gatehouse {
    intercept_proxy(dir, ca, &[port], &[NAME, BANK], policy, "").0
}

fn auth() -> String {
    format!(
        "User-Agent: Mozilla/5.0\r\nProxy-Authorization: {}\r\n",
        basic("bob:bob-pw")
    )
}

/// The bank is exempt from interception by SNI; everything else is decrypted.
const BYPASS_BANK: &str = r#"
[[layers]]
name = "https"
[[layers.rules]]
name = "bypass-bank"
sni = ["bank.example.test"]
action = "bypass"
[[layers.rules]]
name = "intercept-everyone"
method = ["CONNECT"]
action = "intercept"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_bypassed_sni_inside_a_connect_for_another_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    // One server holds a valid certificate for both names: the check on the
    // wire would pass for the bank's name.
    let origin = tls_origin(ca.leaf(&[NAME, BANK])).await;
    let gh = proxy(dir.path(), &ca, origin.port(), BYPASS_BANK);
    let t = connect_through(gh.addr(), &format!("{NAME}:{}", origin.port()), &auth())
        .await
        .unwrap();
    let r = tls_through(t, BANK, &ca.cert).await;
    assert!(r.is_err(), "a raw tunnel by another name's SNI: {r:?}");
    // The bank by its own name is still bypassed: its own certificate.
    let t = connect_through(gh.addr(), &format!("{BANK}:{}", origin.port()), &auth())
        .await
        .unwrap();
    let greeting = tls_through(t, BANK, &ca.cert).await.unwrap();
    assert_eq!(greeting, "hello over tls\n");
    let lines = gh.log_lines(2);
    let l = &lines[0];
    assert_eq!(
        (
            l["s-action"].as_str(),
            l["x-exception-id"].as_str(),
            l["x-rule"].as_str(),
            l["x-sni"].as_str()
        ),
        ("TCP_DENIED", "ssl_sni_mismatch", "builtin:sni-match", BANK)
    );
    assert_eq!(lines[1]["s-action"], "TCP_ACCELERATED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_naming_the_sni_may_allow_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let origin = tls_origin(ca.leaf(&[NAME, BANK])).await;
    let policy = r#"
[[layers]]
name = "https"
[[layers.rules]]
name = "bank-behind-its-cdn"
sni = ["bank.example.test"]
action = "allow"
"#;
    let gh = proxy(dir.path(), &ca, origin.port(), policy);
    let t = connect_through(gh.addr(), &format!("{NAME}:{}", origin.port()), &auth())
        .await
        .unwrap();
    tls_through(t, BANK, &ca.cert).await.unwrap();
    let l = &gh.log_lines(1)[0];
    assert_eq!(
        (l["s-action"].as_str(), l["x-rule"].as_str()),
        ("TCP_ACCELERATED", "bank-behind-its-cdn")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_connect_is_judged_by_its_sni() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path());
    let origin = tls_origin(ca.leaf(&[NAME, BANK, "127.0.0.1"])).await;
    let policy = r#"
[[layers]]
name = "https"
[[layers.rules]]
name = "no-bank"
host = ["bank.example.test"]
action = "deny"
reason = "bank_blocked"
"#;
    let gh = proxy(dir.path(), &ca, origin.port(), policy);
    let dest = format!("127.0.0.1:{}", origin.port());
    // By address with the bank's SNI: the host rule sees the bank.
    let t = connect_through(gh.addr(), &dest, &auth()).await.unwrap();
    assert!(tls_through(t, BANK, &ca.cert).await.is_err());
    // By address with another SNI: allowed, verified for that name.
    let t = connect_through(gh.addr(), &dest, &auth()).await.unwrap();
    tls_through(t, NAME, &ca.cert).await.unwrap();
    let lines = gh.log_lines(2);
    assert_eq!(
        (
            lines[0]["x-exception-id"].as_str(),
            lines[0]["x-rule"].as_str()
        ),
        ("bank_blocked", "no-bank")
    );
    assert_eq!(lines[1]["s-action"], "TCP_ACCELERATED");
}
