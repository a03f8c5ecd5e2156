//! apt: `apt-get update` and `apt-get download` from a flat repository on
//! the lab's origins, the proxy as `Acquire::http::Proxy` /
//! `Acquire::https::Proxy "http://user:pass@…"`, the CA as
//! `Acquire::https::CaInfo`. Everything apt reads or writes lives in the
//! case's scratch directory (APT_CONFIG names a file that points every
//! `Dir::` there), so the system's apt state is never touched.

use std::path::Path;
use std::process::Command;

use crate::docroot::DEB;
use crate::lab::{Lab, Mode};
use crate::process::client;

/// Updates, downloads the package, prints its description (the greeting).
const FETCH: &str = r#"apt-get -q update && cd "$HOME" && apt-get -q download "$DEB" && dpkg-deb -f "$HOME"/"$DEB"_*.deb Description"#;

fn apt(lab: &Lab, mode: Mode, user: &str, password: &str, home: &Path) -> Command {
    for d in [
        "state/lists/partial",
        "cache/archives/partial",
        "parts",
        "log",
    ] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    std::fs::write(home.join("status"), "").unwrap();
    std::fs::write(
        home.join("sources.list"),
        format!("deb [trusted=yes] {} ./\n", lab.url(mode, "/apt/")),
    )
    .unwrap();
    let h = home.display();
    let proxy = lab.proxy_url(user, password);
    let conf = format!(
        "Dir::Etc::main \"{h}/none.conf\";\nDir::Etc::parts \"{h}/parts\";\n\
         Dir::State \"{h}/state\";\nDir::State::status \"{h}/status\";\n\
         Dir::Cache \"{h}/cache\";\nDir::Log \"{h}/log\";\n\
         Dir::Etc::sourcelist \"{h}/sources.list\";\nDir::Etc::sourceparts \"{h}/parts\";\n\
         Dir::Etc::preferences \"{h}/none.conf\";\nDir::Etc::preferencesparts \"{h}/parts\";\n\
         Dir::Etc::trustedparts \"{h}/parts\";\n\
         APT::Sandbox::User \"root\";\nAcquire::Languages \"none\";\n\
         Acquire::http::Proxy \"{proxy}\";\nAcquire::https::Proxy \"{proxy}\";\n\
         Acquire::https::CaInfo \"{ca}\";\n",
        ca = lab.ca(mode).display(),
    );
    std::fs::write(home.join("apt.conf"), conf).unwrap();
    let mut c = client("sh", home);
    c.env("APT_CONFIG", home.join("apt.conf"))
        .env("DEB", DEB)
        .args(["-c", FETCH]);
    c
}

crate::lab::matrix!("apt", apt, backoff = 8);
