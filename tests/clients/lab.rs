//! The clients lab: one proxy, one plain HTTP origin and one HTTPS origin,
//! shared by every case of the test binary while any case runs (each holds
//! an `Arc`; the last one out stops them), and the cases every client runs:
//! three modes and a wrong password.
//!
//! Each client signs in as its own user (`curl`, `wget`, … with password
//! `<name>-pw`), so the access log tells the clients apart: a wrong
//! password's attempts are the 407 lines with that user's name.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::common::tls_lab::TestCa;
use crate::common::Gatehouse;

use super::process::run;

/// The name the plain origin and the detected HTTPS origin answer to.
pub const ORIGIN: &str = "origin.example.test";
/// The HTTPS origin's other name: CONNECTs to it are intercepted.
pub const INTERCEPTED: &str = "intercept.example.test";
/// What `/hello.txt` holds: a client that prints it got through.
pub const HELLO: &str = "hello from the clients lab";
/// The wrong password every client tries: one distinct wrong password per
/// user, so the smart lockout counts one failure and refuses the repeats
/// from memory — never a budget spent, whatever the order of the cases.
pub const WRONG: &str = "wrong-pw";
/// A failure must come within this: a client that retries for longer (a
/// retry storm against the proxy) fails its case.
pub const FAIL_FAST: Duration = Duration::from_secs(20);
/// How long a client may take to succeed on a busy two-core machine.
pub const SUCCEED_WITHIN: Duration = Duration::from_secs(90);

/// Every client's user: one each, password `<name>-pw`.
pub const USERS: &[&str] = &[
    "curl", "wget", "requests", "urllib", "undici", "hpagent", "go", "git", "pip", "java", "apt",
];

/// How a request reaches its origin through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `http://` in absolute form to the proxy.
    Plain,
    /// `https://` through a CONNECT that protocol detection judges; the
    /// client trusts the origin's CA only.
    Detect,
    /// `https://` through a CONNECT the proxy intercepts; the client trusts
    /// the proxy's interception CA only.
    Intercept,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Detect => "detect",
            Mode::Intercept => "intercept",
        }
    }
}

pub struct Lab {
    pub gh: Gatehouse,
    pub plain_port: u16,
    pub tls_port: u16,
    /// The CA that signed the HTTPS origin's certificate (PEM).
    pub origin_ca: PathBuf,
    /// The proxy's interception CA (PEM).
    pub proxy_ca: PathBuf,
    /// Built programs (the Go client), made once per lab.
    pub built: Mutex<HashMap<&'static str, PathBuf>>,
    pub dir: tempfile::TempDir,
    // Last: the origins' runtime, stopped after the proxy.
    _rt: tokio::runtime::Runtime,
}

/// The shared lab: started by the first case, stopped when the last case
/// holding it is done.
pub fn lab() -> Arc<Lab> {
    static SHARED: Mutex<Weak<Lab>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(l) = shared.upgrade() {
        return l;
    }
    let l = Arc::new(start(""));
    *shared = Arc::downgrade(&l);
    l
}

const POLICY: &str = r#"
[[layers]]
name = "clients"
[[layers.rules]]
name = "intercept-lab"
method = ["CONNECT"]
host = ["intercept.example.test"]
action = "intercept"
"#;

/// A lab of its own, with `extra` config after the `[auth]` section (for a
/// test that needs another proxy, e.g. `[auth.surrogate]`).
pub fn start(extra: &str) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let root = super::docroot::build(&dir.path().join("www"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ca = TestCa::new(dir.path());
    let chain = ca.leaf(&[ORIGIN, INTERCEPTED]);
    let (plain_port, tls_port) = rt.block_on(async {
        let plain = super::files::serve(root.clone(), None).await;
        let tls = super::files::serve(root.clone(), Some(chain)).await;
        (plain, tls)
    });
    let (proxy_ca, proxy_key) =
        gatehouse::intercept::ca::init(&dir.path().join("proxy-ca")).unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let cfg = format!(
        "{auth}[auth.throttle]\nuser_failures = 2\nfamiliar_failures = 2\naddress_failures = 100\n{extra}\n\
         [resolver]\nsystem = false\n\
         hosts = {{ \"{ORIGIN}\" = [\"127.0.0.1\"], \"{INTERCEPTED}\" = [\"127.0.0.1\"] }}\n\
         [tunnel]\nallowed_ports = [{tls_port}, {plain_port}]\n\
         [detection]\nenabled = true\ntimeout = \"5s\"\nca_file = \"{ca}\"\n\
         [intercept]\nca_cert = \"{cert}\"\nca_key = \"{key}\"\n\
         [policy]\nfile = \"{policy}\"\n",
        auth = users(dir.path()),
        ca = ca.pem_path.display(),
        cert = proxy_ca.display(),
        key = proxy_key.display(),
        policy = policy.display(),
    );
    Lab {
        gh: Gatehouse::start("", &cfg),
        plain_port,
        tls_port,
        origin_ca: ca.pem_path.clone(),
        proxy_ca,
        built: Mutex::new(HashMap::new()),
        dir,
        _rt: rt,
    }
}

/// A local realm with one user per client; the `[auth]` section naming it.
fn users(dir: &Path) -> String {
    let users = dir.join("users.toml");
    std::fs::write(&users, "").unwrap();
    for u in USERS {
        gatehouse::directory::local::set_password(&users, u, &format!("{u}-pw"), None).unwrap();
    }
    let realm = dir.join("local.toml");
    std::fs::write(
        &realm,
        format!(
            "name = \"local\"\nkind = \"local\"\nusers_file = \"{}\"\n",
            users.display()
        ),
    )
    .unwrap();
    format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\nbasic_realm = \"Clients Lab\"\n",
        realm.display()
    )
}

impl Lab {
    /// `/path` on the origin `mode` reaches.
    pub fn url(&self, mode: Mode, path: &str) -> String {
        match mode {
            Mode::Plain => format!("http://{ORIGIN}:{}{path}", self.plain_port),
            Mode::Detect => format!("https://{ORIGIN}:{}{path}", self.tls_port),
            Mode::Intercept => format!("https://{INTERCEPTED}:{}{path}", self.tls_port),
        }
    }

    /// The CA a client trusts in `mode`: the origin's, or under
    /// interception the proxy's (and only it).
    pub fn ca(&self, mode: Mode) -> &Path {
        match mode {
            Mode::Intercept => &self.proxy_ca,
            _ => &self.origin_ca,
        }
    }

    /// `http://user:password@127.0.0.1:port`.
    pub fn proxy_url(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}", self.gh.port)
    }

    /// Access log lines of `user`.
    pub fn lines_of(&self, user: &str) -> Vec<HashMap<String, String>> {
        self.gh
            .log_lines(0)
            .into_iter()
            .filter(|l| l["cs-username"] == user)
            .collect()
    }

    /// Waits for `user`'s successful line for `mode`: a `GET` to the plain
    /// origin, or the CONNECT (written when its tunnel closes), detected as
    /// TLS or intercepted. Fails naming `case`.
    pub fn assert_logged(&self, case: &str, user: &str, mode: Mode) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.lines_of(user);
            let found = lines.iter().any(|l| match mode {
                Mode::Plain => {
                    l["cs-method"] == "GET" && l["cs-host"] == ORIGIN && l["sc-status"] == "200"
                }
                Mode::Detect => {
                    l["cs-method"] == "CONNECT"
                        && l["cs-host"] == ORIGIN
                        && l["sc-status"] == "200"
                        && l["x-protocol"] == "tls"
                        && l["x-intercepted"] != "1"
                }
                Mode::Intercept => {
                    l["cs-method"] == "CONNECT"
                        && l["cs-host"] == INTERCEPTED
                        && l["x-intercepted"] == "1"
                        && l["s-action"] == "TCP_INTERCEPTED"
                }
            });
            if found {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{case}: no {} line for {user} in the access log: {lines:#?}",
                mode.as_str()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A fresh scratch directory (a client's HOME, its downloads).
    pub fn scratch(&self) -> tempfile::TempDir {
        tempfile::tempdir_in(self.dir.path()).unwrap()
    }

    /// A program built once per lab by `build` (given the output path).
    pub fn built(&self, name: &'static str, build: impl FnOnce(&Path)) -> PathBuf {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = built.get(name) {
            return p.clone();
        }
        let out = self.dir.path().join(name);
        build(&out);
        built.insert(name, out.clone());
        out
    }
}

/// The command a client runs for `mode` as `user` with `password`, HOME
/// and downloads in `scratch`.
pub type Client = fn(&Lab, Mode, &str, &str, &Path) -> Command;

/// One case: the client gets `/hello.txt` through the proxy in `mode`,
/// and the proxy logged it as that mode.
pub fn succeeds(user: &str, mode: Mode, client: Client) {
    let lab = lab();
    let case = format!("{user}/{}", mode.as_str());
    let scratch = lab.scratch();
    let pw = format!("{user}-pw");
    let r = run(
        &mut client(&lab, mode, user, &pw, scratch.path()),
        SUCCEED_WITHIN,
    );
    assert!(
        !r.killed && r.out.contains(HELLO),
        "{case}: no {HELLO:?} after {:?}{}:\n{}",
        r.took,
        if r.killed { " (killed)" } else { "" },
        r.out
    );
    lab.assert_logged(&case, user, mode);
    println!("{case}: ok in {:.1} s", r.took.as_secs_f64());
}

/// How many times the proxy refused `user` with a 407 for the origin
/// `mode` reaches (by port: a plain request or a CONNECT, whichever the
/// client sends), once the log has the first refusal and has settled.
pub fn refusals(lab: &Lab, user: &str, mode: Mode) -> usize {
    let port = match mode {
        Mode::Plain => lab.plain_port,
        _ => lab.tls_port,
    }
    .to_string();
    let count = || {
        lab.lines_of(user)
            .iter()
            .filter(|l| l["sc-status"] == "407" && l["cs-uri-port"] == port)
            .count()
    };
    // The log is written by its own thread: wait for the first refusal,
    // then for the count to settle.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    count()
}

/// One case: with a wrong password the client fails within [`FAIL_FAST`]
/// plus `backoff` (the sleeps its documented retries add: pip's and apt's);
/// prints how long it took and how many 407s the proxy gave that user.
pub fn fails_fast(user: &str, mode: Mode, client: Client, backoff: Duration) {
    let lab = lab();
    let case = format!("{user}/{}/wrong-password", mode.as_str());
    let scratch = lab.scratch();
    let bound = FAIL_FAST + backoff;
    let r = run(
        &mut client(&lab, mode, user, WRONG, scratch.path()),
        bound * 3,
    );
    assert!(!r.out.contains(HELLO), "{case}: got through:\n{}", r.out);
    let refused = refusals(&lab, user, mode);
    println!(
        "{case}: failed in {:.1} s; the proxy refused {refused} attempt(s) with 407",
        r.took.as_secs_f64()
    );
    assert!(
        !r.killed && r.took < bound,
        "{case}: took {:?}{} (a retry storm?); the proxy refused {refused} attempt(s):\n{}",
        r.took,
        if r.killed { ", killed" } else { "" },
        r.out
    );
    assert!(refused >= 1, "{case}: the proxy saw no attempt:\n{}", r.out);
}

/// The five cases of a client: three modes, a wrong password on plain
/// HTTP and on a CONNECT. `$user` names the client in every failure.
macro_rules! matrix {
    ($user:literal, $client:path) => {
        $crate::lab::matrix!($user, $client, backoff = 0);
    };
    ($user:literal, $client:path, backoff = $secs:literal) => {
        #[test]
        fn plain() {
            $crate::lab::succeeds($user, $crate::lab::Mode::Plain, $client);
        }
        #[test]
        fn detect() {
            $crate::lab::succeeds($user, $crate::lab::Mode::Detect, $client);
        }
        #[test]
        fn intercept() {
            $crate::lab::succeeds($user, $crate::lab::Mode::Intercept, $client);
        }
        #[test]
        fn wrong_password_plain() {
            let backoff = std::time::Duration::from_secs($secs);
            $crate::lab::fails_fast($user, $crate::lab::Mode::Plain, $client, backoff);
        }
        #[test]
        fn wrong_password_connect() {
            let backoff = std::time::Duration::from_secs($secs);
            $crate::lab::fails_fast($user, $crate::lab::Mode::Detect, $client, backoff);
        }
    };
}
pub(crate) use matrix;
