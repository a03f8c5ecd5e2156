//! Go's net/http (integration/clients/get.go, built once per lab with the
//! standard library only, offline): the proxy from `HTTP_PROXY` /
//! `HTTPS_PROXY` with userinfo, the CA from `SSL_CERT_FILE`. Go never
//! proxies a request for localhost or a loopback address, so the origins are
//! named (`origin.example.test`) and the proxy resolves the names.

use std::path::Path;
use std::process::Command;

use crate::lab::{Lab, Mode};
use crate::process::{client, program};

fn build(out: &Path) {
    let cache = tempfile::tempdir().unwrap();
    let o = Command::new("go")
        .args(["build", "-o"])
        .arg(out)
        .arg(program("get.go"))
        .env("GOCACHE", cache.path().join("cache"))
        .env("GOPATH", cache.path().join("path"))
        .env("GOPROXY", "off")
        .env("GO111MODULE", "off")
        .output()
        .expect("go is installed (integration/install-deps: golang-go)");
    assert!(
        o.status.success(),
        "go build get.go: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn go(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
    let proxy = lab.proxy_url(user, password);
    let mut c = client(lab.built("go-get", build), home);
    c.env("HTTP_PROXY", &proxy)
        .env("HTTPS_PROXY", &proxy)
        .env("SSL_CERT_FILE", lab.ca(mode))
        .arg(lab.url(mode, "/hello.txt"));
    c
}

crate::lab::matrix!("go", go);

/// The trap: an origin spelt as a loopback address is fetched directly,
/// never through the proxy — here with a password the proxy would refuse,
/// and the file still arrives.
#[test]
fn loopback_bypasses_the_proxy() {
    let lab = crate::lab::lab();
    let scratch = lab.scratch();
    let mut direct = client(lab.built("go-get", build), scratch.path());
    direct
        .env("HTTP_PROXY", lab.proxy_url("go", crate::lab::WRONG))
        .arg(format!("http://127.0.0.1:{}/hello.txt", lab.plain_port));
    let r = crate::process::run(&mut direct, crate::lab::SUCCEED_WITHIN);
    assert!(r.out.contains(crate::lab::HELLO), "go/loopback: {}", r.out);
}
