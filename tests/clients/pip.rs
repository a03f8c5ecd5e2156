//! pip: `pip download` from a PEP 503 index on the lab's origins, the proxy
//! with `--proxy http://user:pass@…`, the CA with `--cert`; plain HTTP needs
//! `--trusted-host`. pip's config files and cache are kept out.

use std::path::Path;
use std::process::Command;

use crate::docroot::WHEEL;
use crate::lab::{Lab, Mode, ORIGIN};
use crate::process::client;

/// Downloads the wheel, then prints its module (which holds the greeting).
const DOWNLOAD: &str = r#"python3 -m pip download "$@" && python3 -c "import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read('demo_pkg/__init__.py').decode())" "$HOME/$WHEEL""#;

fn pip(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
    let mut c = client("sh", home);
    c.env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_INPUT", "1")
        .env("WHEEL", WHEEL)
        .args(["-c", DOWNLOAD, "pip"])
        .args(["--no-cache-dir", "--no-deps", "--timeout", "30", "-d"])
        .arg(home)
        .args(["--proxy", &lab.proxy_url(user, password)])
        .args(["--index-url", &lab.url(mode, "/simple/")])
        .arg("--cert")
        .arg(lab.ca(mode));
    if mode == Mode::Plain {
        c.args(["--trusted-host", ORIGIN]);
    }
    c.arg("demo-pkg");
    c
}

crate::lab::matrix!("pip", pip, backoff = 8);
