//! Java's `java.net.http.HttpClient` (integration/clients/Clients.java, one
//! JVM per batch of cases): an explicit `ProxySelector`, the credentials
//! from an `Authenticator`, the CA in an `SSLContext`. By default the JDK
//! never answers a 407 to a CONNECT with Basic
//! (`jdk.http.auth.tunneling.disabledSchemes=Basic`): with the property
//! emptied every mode works; without it only plain HTTP does.

use std::collections::HashMap;
use std::time::Duration;

use crate::lab::{lab, refusals, Lab, Mode, FAIL_FAST, HELLO, WRONG};
use crate::process::{client, program, run};

/// One case for Clients.java: `NAME|URL|USER|PASSWORD|CA`.
fn case(lab: &Lab, name: &str, mode: Mode, user: &str, password: &str) -> String {
    format!(
        "{name}|{}|{user}|{password}|{}",
        lab.url(mode, "/hello.txt"),
        lab.ca(mode).display()
    )
}

/// Runs the cases in one JVM (`props` before the source file); each case's
/// printed line (after its name) and the time it took.
fn jvm(lab: &Lab, props: &[&str], cases: &[String]) -> HashMap<String, (String, Duration)> {
    let scratch = lab.scratch();
    let mut c = client("java", scratch.path());
    c.args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .args(props)
        .arg(program("Clients.java"))
        .arg(lab.gh.port.to_string())
        .args(cases);
    let r = run(&mut c, Duration::from_secs(180));
    assert!(!r.killed, "java: killed after {:?}:\n{}", r.took, r.out);
    let mut out = HashMap::new();
    for line in r.out.lines() {
        let Some((name, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((result, ms)) = rest.rsplit_once(" ms=") else {
            continue;
        };
        let ms = ms.trim().parse().unwrap_or(u64::MAX);
        out.insert(
            name.to_string(),
            (result.to_string(), Duration::from_millis(ms)),
        );
    }
    for c in cases {
        let name = c.split('|').next().unwrap();
        assert!(
            out.contains_key(name),
            "java: no line for {name}:\n{}",
            r.out
        );
    }
    out
}

/// With `-Djdk.http.auth.tunneling.disabledSchemes=` (Basic allowed on
/// CONNECT): every mode gets through, a wrong password fails fast.
#[test]
fn with_basic_allowed_for_tunnels() {
    let lab = lab();
    let cases = [
        case(&lab, "plain", Mode::Plain, "java", "java-pw"),
        case(&lab, "detect", Mode::Detect, "java", "java-pw"),
        case(&lab, "intercept", Mode::Intercept, "java", "java-pw"),
        case(&lab, "wrong-plain", Mode::Plain, "java", WRONG),
        case(&lab, "wrong-connect", Mode::Detect, "java", WRONG),
    ];
    let out = jvm(
        &lab,
        &["-Djdk.http.auth.tunneling.disabledSchemes="],
        &cases,
    );
    for mode in [Mode::Plain, Mode::Detect, Mode::Intercept] {
        let (result, took) = &out[mode.as_str()];
        let case = format!("java/{}", mode.as_str());
        assert!(result.contains(HELLO), "{case}: {result}");
        lab.assert_logged(&case, "java", mode);
        println!("{case}: ok in {:.1} s", took.as_secs_f64());
    }
    for (name, mode) in [
        ("wrong-plain", Mode::Plain),
        ("wrong-connect", Mode::Detect),
    ] {
        let (result, took) = &out[name];
        let n = refusals(&lab, "java", mode);
        println!(
            "java/{name}: failed in {:.1} s; the proxy refused {n} attempt(s) with 407: {result}",
            took.as_secs_f64()
        );
        assert!(
            !result.contains(HELLO),
            "java/{name}: got through: {result}"
        );
        assert!(*took < FAIL_FAST, "java/{name}: took {took:?}: {result}");
        assert!(n >= 1, "java/{name}: the proxy saw no attempt");
    }
}

/// The JDK's default: Basic answers a 407 for plain HTTP, never for a
/// CONNECT — every HTTPS request fails, at once, with the 407.
#[test]
fn default_never_answers_basic_on_connect() {
    let lab = lab();
    let cases = [
        case(&lab, "plain", Mode::Plain, "java", "java-pw"),
        case(&lab, "detect", Mode::Detect, "java", "java-pw"),
    ];
    let out = jvm(&lab, &[], &cases);
    let (plain, _) = &out["plain"];
    assert!(plain.contains(HELLO), "java-default/plain: {plain}");
    let (detect, took) = &out["detect"];
    // The proxy's 407 to the CONNECT comes back as the answer, though the
    // Authenticator holds the right password: Basic was never tried.
    assert!(detect.starts_with("407"), "java-default/detect: {detect}");
    assert!(*took < FAIL_FAST, "java-default/detect took {took:?}");
    println!(
        "java-default/detect: failed in {:.1} s: {detect}",
        took.as_secs_f64()
    );
}
