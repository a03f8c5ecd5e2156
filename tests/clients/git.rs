//! git (Debian's, whose https helper is libcurl-gnutls): `git clone` of a
//! repository served over dumb HTTP, the proxy from `http.proxy` with
//! userinfo, the CA from `http.sslCAInfo` — which `GIT_SSL_CAINFO`
//! overrides when set (`git::ssl_cainfo_env_wins` shows the trap).

use std::path::Path;
use std::process::Command;

use crate::lab::{Lab, Mode};
use crate::process::client;

/// Clones, then prints the one file (the lab's greeting).
const CLONE: &str =
    r#"/usr/bin/git "$@" clone -q "$URL" "$HOME/clone" && cat "$HOME/clone/README""#;

fn git_with(lab: &Lab, mode: Mode, proxy: String, ca: &Path, home: &Path) -> Command {
    let mut c = client("sh", home);
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "/bin/false")
        .env("URL", lab.url(mode, "/repo.git"))
        .args(["-c", CLONE, "git"])
        .args(["-c", &format!("http.proxy={proxy}")])
        .args(["-c", &format!("http.sslCAInfo={}", ca.display())]);
    c
}

fn git(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
    git_with(lab, mode, lab.proxy_url(user, password), lab.ca(mode), home)
}

crate::lab::matrix!("git", git);

/// `GIT_SSL_CAINFO` wins over `http.sslCAInfo`: with the proxy's CA in the
/// config and another in the environment, the intercepted clone fails.
#[test]
fn ssl_cainfo_env_wins() {
    let lab = crate::lab::lab();
    let scratch = lab.scratch();
    let mut c = git_with(
        &lab,
        Mode::Intercept,
        lab.proxy_url("git", "git-pw"),
        &lab.proxy_ca,
        scratch.path(),
    );
    c.env("GIT_SSL_CAINFO", &lab.origin_ca);
    let r = crate::process::run(&mut c, crate::lab::SUCCEED_WITHIN);
    assert!(
        !r.out.contains(crate::lab::HELLO) && !r.killed,
        "git/intercept with GIT_SSL_CAINFO set elsewhere: {}",
        r.out
    );
}
