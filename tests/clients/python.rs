//! Python: `requests` and `urllib`, each taking the proxy from the
//! environment (`HTTP_PROXY` / `HTTPS_PROXY` with userinfo), the CA from
//! `REQUESTS_CA_BUNDLE` (requests) or `SSL_CERT_FILE` (urllib, through
//! OpenSSL's default paths).

use std::path::Path;
use std::process::Command;

use crate::lab::{Lab, Mode};
use crate::process::client;

const REQUESTS: &str = r#"
import sys, requests
try:
    r = requests.get(sys.argv[1], timeout=60)
    print(r.status_code, r.text)
except Exception as e:
    print("ERROR", repr(e))
"#;

const URLLIB: &str = r#"
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=60) as r:
        print(r.status, r.read().decode())
except Exception as e:
    print("ERROR", repr(e))
"#;

fn python(script: &str, lab: &Lab, mode: Mode, proxy: String, home: &Path) -> Command {
    let mut c = client("python3", home);
    c.env("HTTP_PROXY", &proxy)
        .env("HTTPS_PROXY", &proxy)
        .args(["-c", script, &lab.url(mode, "/hello.txt")]);
    c
}

mod requests {
    use super::*;

    fn requests(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
        let mut c = python(REQUESTS, lab, mode, lab.proxy_url(user, password), home);
        c.env("REQUESTS_CA_BUNDLE", lab.ca(mode));
        c
    }

    crate::lab::matrix!("requests", requests);
}

mod urllib {
    use super::*;

    fn urllib(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
        let mut c = python(URLLIB, lab, mode, lab.proxy_url(user, password), home);
        c.env("SSL_CERT_FILE", lab.ca(mode));
        c
    }

    crate::lab::matrix!("urllib", urllib);
}
