//! curl: the proxy URL with its userinfo (`-x http://user:pass@…`), the CA
//! with `--cacert`.

use std::path::Path;
use std::process::Command;

use crate::lab::{Lab, Mode};
use crate::process::client;

fn curl(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
    let mut c = client("curl", home);
    c.args([
        "-sS",
        "--max-time",
        "60",
        "-x",
        &lab.proxy_url(user, password),
    ])
    .arg("--cacert")
    .arg(lab.ca(mode))
    .arg(lab.url(mode, "/hello.txt"));
    c
}

crate::lab::matrix!("curl", curl);
