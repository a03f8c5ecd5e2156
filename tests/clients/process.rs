//! How a client runs: its program, an environment cleared of the machine's
//! proxy and CA settings (each case gives its own), its own process group,
//! a hard deadline (a hang fails the case, never the run), its output kept.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `integration/clients/<name>`.
pub fn program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integration/clients")
        .join(name)
}

/// A command for `program` with none of the environment's proxy or CA
/// settings (the case gives its own) and `home` as HOME.
pub fn client(program: impl AsRef<std::ffi::OsStr>, home: &Path) -> Command {
    let mut c = Command::new(program);
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "NODE_EXTRA_CA_CERTS",
        "PIP_CONFIG_FILE",
        "PIP_PROXY",
    ] {
        c.env_remove(var);
    }
    c.env("HOME", home);
    c
}

/// What a client printed, and how long it took.
pub struct Run {
    pub out: String,
    pub took: Duration,
    pub killed: bool,
}

/// Runs `cmd` in its own process group, stdout and stderr together; at
/// `limit` the whole group is killed (a hang fails the case, never the run).
pub fn run(cmd: &mut Command, limit: Duration) -> Run {
    use std::os::unix::process::CommandExt;
    let log = tempfile::NamedTempFile::new().unwrap();
    let start = Instant::now();
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut killed = false;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            killed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    Run {
        out: std::fs::read_to_string(log.path()).unwrap_or_default(),
        took,
        killed,
    }
}
