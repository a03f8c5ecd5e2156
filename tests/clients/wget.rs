//! wget: the proxy from `http_proxy` / `https_proxy` with the credentials
//! as userinfo, as a shell profile sets them; the CA with
//! `--ca-certificate`. Its default `--tries` (20) is kept: a wrong password
//! must not become twenty attempts.

use std::path::Path;
use std::process::Command;

use crate::lab::{Lab, Mode};
use crate::process::client;

fn wget(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
    let mut c = client("wget", home);
    let proxy = lab.proxy_url(user, password);
    c.env("http_proxy", &proxy)
        .env("https_proxy", &proxy)
        .args(["-O", "-", "--no-hsts", "--timeout=60"])
        .arg(format!("--ca-certificate={}", lab.ca(mode).display()))
        .arg(lab.url(mode, "/hello.txt"));
    c
}

crate::lab::matrix!("wget", wget);
