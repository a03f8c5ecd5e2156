//! Node: undici's `ProxyAgent` and `https-proxy-agent` (pinned in
//! integration/clients/package.json), the proxy URL with its userinfo, the
//! CA from `NODE_EXTRA_CA_CERTS`. undici tunnels every request through a
//! CONNECT unless `proxyTunnel: false`: its plain case sets it, and
//! `undici::plain_default_tunnels` checks the default (a CONNECT to the
//! plain origin's port, which the tunnel's allowed ports must include).
//! https-proxy-agent always tunnels: its plain case is a CONNECT too.

use std::path::Path;
use std::process::Command;

use crate::lab::{Lab, Mode};
use crate::process::{client, program};

fn node(lib: &str, lab: &Lab, mode: Mode, proxy: String, home: &Path) -> Command {
    let mut c = client("node", home);
    c.env("NODE_EXTRA_CA_CERTS", lab.ca(mode))
        .arg(program("node_get.mjs"))
        .args([lib, &proxy, &lab.url(mode, "/hello.txt")]);
    c
}

mod undici {
    use super::*;

    fn undici(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
        let mut c = node("undici", lab, mode, lab.proxy_url(user, password), home);
        c.arg("no-tunnel");
        c
    }

    crate::lab::matrix!("undici", undici);

    /// Without `proxyTunnel: false`, an `http://` URL goes through a
    /// CONNECT to the origin's port: it works where that port is allowed.
    #[test]
    fn plain_default_tunnels() {
        let lab = crate::lab::lab();
        let scratch = lab.scratch();
        let proxy = lab.proxy_url("undici", "undici-pw");
        let r = crate::process::run(
            &mut node("undici", &lab, Mode::Plain, proxy, scratch.path()),
            crate::lab::SUCCEED_WITHIN,
        );
        assert!(
            r.out.contains(crate::lab::HELLO),
            "undici/plain tunnelled: {}",
            r.out
        );
        let port = lab.plain_port.to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !lab.lines_of("undici").iter().any(|l| {
            l["cs-method"] == "CONNECT" && l["cs-uri-port"] == port && l["sc-status"] == "200"
        }) {
            assert!(
                std::time::Instant::now() < deadline,
                "undici/plain tunnelled: no CONNECT to {port}: {:#?}",
                lab.lines_of("undici")
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

mod hpagent {
    use super::*;

    fn hpagent(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
        node(
            "https-proxy-agent",
            lab,
            mode,
            lab.proxy_url(user, password),
            home,
        )
    }

    crate::lab::matrix!("hpagent", hpagent);
}
