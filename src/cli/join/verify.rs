//! The join's proofs: a ticket meets the keytab, winbind trusts the domain.

use std::path::Path;
use std::process::{Command, Stdio};

use super::samba::{self, Layout};
use super::{fail, Step};

/// A ticket for the SPN, asked for as `user` in a fresh credential cache,
/// decrypts with the keytab: what a client's ticket will meet.
pub fn kerberos(
    l: &Layout,
    user: &str,
    realm: &str,
    password_file: &Path,
    principal: &str,
) -> Step {
    let cache = tempfile::tempdir().map_err(|e| fail(e.to_string(), "check /tmp"))?;
    let ccache = format!("FILE:{}", cache.path().join("cc").display());
    let password = gatehouse::settings::read_secret(password_file).map_err(|e| {
        fail(
            e.to_string(),
            "give a password file only its owner can read",
        )
    })?;
    let mut kinit = Command::new("kinit");
    kinit
        .arg(format!("{user}@{realm}"))
        .env("KRB5_CONFIG", l.krb5_conf())
        .env("KRB5CCNAME", &ccache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let got = kinit.spawn().and_then(|mut child| {
        use std::io::Write;
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{password}");
        }
        child.wait_with_output()
    });
    match got {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Err(fail(
                format!("kinit {user}: {}", samba::said(&o)),
                "check the KDC in krb5.conf (--dc)",
            ))
        }
        Err(e) => return Err(fail(format!("kinit: {e}"), "install krb5-user")),
    }
    let mut kvno = Command::new("kvno");
    kvno.arg("-k")
        .arg(l.keytab())
        .arg(principal)
        .env("KRB5_CONFIG", l.krb5_conf())
        .env("KRB5CCNAME", &ccache);
    let o = samba::run(kvno);
    let said = samba::said(&o);
    if o.status.success() && said.contains("keytab entry valid") {
        Ok(format!("a ticket for {principal} decrypts with the keytab"))
    } else {
        Err(fail(
            said,
            "the keytab is stale (the account's key changed): run gatehouse join again",
        ))
    }
}

/// The winbindd that answers trusts the domain (`wbinfo -t`). (One that
/// does not run is said, not failed: the join is done, NTLM waits for it.)
pub fn winbind() -> Step {
    let mut trust = Command::new("wbinfo");
    trust.arg("-t");
    let o = samba::run(trust);
    let said = samba::said(&o);
    if o.status.success() {
        Ok(said.lines().last().unwrap_or("trust ok").to_string())
    } else {
        Err(fail(
            said,
            "winbindd runs with another smb.conf, or before this join: restart it with this one",
        ))
    }
}
