//! Java's default HttpClient through an IP surrogate (`[auth.surrogate]
//! kind = "ip"`). The JDK never answers a 407 to a CONNECT with Basic, so
//! a Java app's HTTPS fails against a Basic proxy — until its user has
//! signed in from the same address with another client (curl here): then
//! the address is that user for `ttl`, and the log says `surrogate-ip`.
//! Never before a sign-in, never after a sign-in from another address,
//! never from an excluded address.
//!
//! Each test has a proxy of its own (with `[auth.surrogate]`), the matrix's
//! origins and clients; one JVM per proxy answers cases read from its
//! stdin, so the test signs in between two of them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::lab::{self, Lab, Mode, HELLO, SUCCEED_WITHIN};
use crate::process::{client, program, run};

/// An IP surrogate for 15 minutes, except from `exclude`.
fn surrogate(exclude: &str) -> String {
    format!("[auth.surrogate]\nkind = \"ip\"\nttl = \"15m\"\nexclude = [\"{exclude}\"]\n")
}

/// A JVM running integration/clients/Clients.java with the JDK's defaults
/// (no tunnelling property): one case per line in, one answer per line out.
struct Jvm {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

impl Jvm {
    fn start(lab: &Lab) -> Jvm {
        let dir = lab.scratch();
        let mut child = client("java", dir.path())
            .args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg(program("Clients.java"))
            .arg(lab.gh.port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("java runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Jvm {
            child,
            stdin,
            lines,
            dir,
        }
    }

    /// `/hello.txt` in `mode` as `java` (the Authenticator holds the right
    /// password: the JDK will not use it on a CONNECT); the answer line.
    fn get(&mut self, lab: &Lab, name: &str, mode: Mode) -> String {
        let case = format!(
            "{name}|{}|java|java-pw|{}\n",
            lab.url(mode, "/hello.txt"),
            lab.ca(mode).display()
        );
        self.stdin.write_all(case.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("java answered no {name} case"));
        println!("java {line}");
        line
    }
}

impl Drop for Jvm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

/// `java` signs in with curl from `source` (a loopback address standing
/// for a machine): a plain GET with the password.
fn sign_in(lab: &Lab, source: &str) {
    let scratch = lab.scratch();
    let r = run(
        client("curl", scratch.path())
            .args(["-sS", "--max-time", "60", "--interface", source])
            .args(["-x", &lab.proxy_url("java", "java-pw")])
            .arg(lab.url(Mode::Plain, "/hello.txt")),
        SUCCEED_WITHIN,
    );
    assert!(
        r.out.contains(HELLO),
        "curl sign-in from {source}: {}",
        r.out
    );
}

/// The proxy's 407 to Java's CONNECT, answered as the response.
fn assert_refused(case: &str, line: &str) {
    let answer = line.split_once(' ').map_or("", |(_, a)| a);
    assert!(answer.starts_with("407"), "{case}: {line}");
}

/// Waits for a CONNECT to `host` by `java` through the surrogate.
fn assert_surrogate_line(lab: &Lab, host: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lines = lab.lines_of("java");
        if lines.iter().any(|l| {
            l["cs-method"] == "CONNECT"
                && l["cs-host"] == host
                && l["sc-status"] == "200"
                && l["x-auth-scheme"] == "surrogate-ip"
        }) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no surrogate-ip CONNECT to {host} for java: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn java_default_https_works_only_after_its_user_signed_in_from_that_address() {
    let lab = lab::start(&surrogate("192.0.2.0/24"));
    let mut jvm = Jvm::start(&lab);
    // No sign-in yet: the JDK's default refuses Basic on the CONNECT.
    assert_refused("before any sign-in", &jvm.get(&lab, "before", Mode::Detect));
    // A sign-in from another address is no surrogate for this one.
    sign_in(&lab, "127.0.0.5");
    assert_refused(
        "after a sign-in from 127.0.0.5",
        &jvm.get(&lab, "elsewhere", Mode::Detect),
    );
    // Signed in from 127.0.0.1: Java's requests from there are java's.
    sign_in(&lab, "127.0.0.1");
    let line = jvm.get(&lab, "detect", Mode::Detect);
    assert!(line.contains(HELLO), "after the sign-in, detect: {line}");
    let line = jvm.get(&lab, "intercept", Mode::Intercept);
    assert!(line.contains(HELLO), "after the sign-in, intercept: {line}");
    // A CONNECT is logged when its tunnel closes: the JDK keeps its
    // connections open until the JVM ends.
    drop(jvm);
    assert_surrogate_line(&lab, lab::ORIGIN);
    assert_surrogate_line(&lab, lab::INTERCEPTED);
}

#[test]
fn never_from_an_excluded_address() {
    let lab = lab::start(&surrogate("127.0.0.1/32"));
    let mut jvm = Jvm::start(&lab);
    sign_in(&lab, "127.0.0.1");
    assert_refused(
        "signed in from an excluded address",
        &jvm.get(&lab, "excluded", Mode::Detect),
    );
}
