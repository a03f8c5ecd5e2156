//! `gatehouse join`: joins this host to Active Directory for Negotiate and
//! NTLM, then proves what it set up. One progress line per step; a failed
//! step says what failed and the fix, and stops the join (later steps need
//! it). Idempotent: on a joined host each step checks and repairs (a join
//! that still holds is kept, a present SPN is not added twice, the keytab
//! is rewritten from the current key version every time).

mod samba;
mod verify;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use samba::{Creds, Layout, Target};

/// `gatehouse join`'s arguments.
#[derive(clap::Args)]
pub struct JoinArgs {
    /// The AD domain's DNS name / Kerberos realm (`AD.EXAMPLE.COM`).
    #[arg(long)]
    domain: String,
    /// An account allowed to join computers (`Administrator`).
    #[arg(long)]
    user: String,
    /// Its password, first line of this file (mode 0600).
    #[arg(long)]
    password_file: PathBuf,
    /// The proxy's service principal, as clients name the proxy (`HTTP/proxy.corp.example.com`).
    #[arg(long)]
    spn: String,
    /// Where to write http.keytab, smb.conf, krb5.conf and Samba's state.
    #[arg(long)]
    out: PathBuf,
    /// The OU for a new computer account (`Servers/Proxies` or a DN).
    #[arg(long)]
    ou: Option<String>,
    /// A domain controller's address, when DNS cannot find one.
    #[arg(long)]
    dc: Option<String>,
    /// The computer account's name (at most 15 characters); the host name by default.
    #[arg(long)]
    name: Option<String>,
    /// A domain user to try an NTLM logon as, through winbind (needs winbindd running).
    #[arg(long)]
    ntlm_test_user: Option<String>,
    /// That user's password, first line of this file.
    #[arg(long, requires = "ntlm_test_user")]
    ntlm_test_password_file: Option<PathBuf>,
}

/// A step's outcome: done (what it found or did), or failed with the fix.
type Step = Result<String, (String, String)>;

/// Prints and counts the steps.
struct Progress {
    n: usize,
    total: usize,
}

impl Progress {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Step) -> Result<String, ()> {
        self.n += 1;
        let started = Instant::now();
        let result = f();
        let took = started.elapsed().as_millis();
        match result {
            Ok(what) => {
                println!(
                    "[{}/{}] {name}: ok — {what} ({took} ms)",
                    self.n, self.total
                );
                Ok(what)
            }
            Err((what, fix)) => {
                println!("[{}/{}] {name}: FAILED — {what}", self.n, self.total);
                println!("      fix: {fix}");
                Err(())
            }
        }
    }
}

fn fail(what: impl Into<String>, fix: impl Into<String>) -> (String, String) {
    (what.into(), fix.into())
}

/// Runs the join; exit 0 when every step passed, 1 when one failed.
pub fn join(a: &JoinArgs) -> ExitCode {
    match steps(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(()) => ExitCode::from(1),
    }
}

fn steps(a: &JoinArgs) -> Result<(), ()> {
    let mut p = Progress { n: 0, total: 9 };
    let realm = a.domain.to_ascii_uppercase();
    let l = Layout { out: a.out.clone() };
    let dc = a.dc.as_deref();
    let name = p.step("arguments", || check_arguments(a, &l))?;
    let admin = Creds::Admin(&a.user, &a.password_file);

    let workgroup = p.step("domain controller", || {
        // A provisional config: `net ads lookup` needs one, not the workgroup.
        let t = Target {
            realm: &realm,
            workgroup: "WORKGROUP",
            name: &name,
            dc,
        };
        if !l.smb_conf().exists() {
            write(&l.smb_conf(), &samba::smb_conf(&l, &t), 0o644)?;
        }
        let o = samba::net(&l, dc, Creds::Anonymous, &["ads", "lookup"]);
        let text = samba::said(&o);
        let Some((dc_name, workgroup)) = samba::lookup(&text) else {
            return Err(fail(
                format!("no DC answered for {realm}: {text}"),
                "give a domain controller with --dc ADDRESS (or fix DNS SRV records)",
            ));
        };
        // No DNS needed after this: the DC's name is pinned to the address given.
        if let Some(ip) = dc.filter(|d| d.parse::<std::net::IpAddr>().is_ok()) {
            let key = format!("NBT/{}#20", dc_name.to_ascii_uppercase());
            samba::net(
                &l,
                dc,
                Creds::Anonymous,
                &["cache", "add", &key, ip, "315360000"],
            );
        }
        Ok(format!("{dc_name}, NetBIOS domain {workgroup}"))
    })?;
    let workgroup = workgroup
        .rsplit(' ')
        .next()
        .unwrap_or("WORKGROUP")
        .to_string();
    let target = Target {
        realm: &realm,
        workgroup: &workgroup,
        name: &name,
        dc,
    };

    p.step("configuration", || {
        let a = write(&l.smb_conf(), &samba::smb_conf(&l, &target), 0o644)?;
        let b = write(&l.krb5_conf(), &samba::krb5_conf(&target), 0o644)?;
        Ok(format!(
            "{} {}, {} {}",
            l.smb_conf().display(),
            if a { "written" } else { "unchanged" },
            l.krb5_conf().display(),
            if b { "written" } else { "unchanged" }
        ))
    })?;

    p.step("join", || {
        let joined = l.samba().join("private/secrets.tdb").exists()
            && samba::net(&l, dc, Creds::Machine, &["ads", "testjoin"])
                .status
                .success();
        if joined {
            return Ok(format!("already joined as {name}, its secret still valid"));
        }
        let dns_name = format!(
            "dnshostname={}.{}",
            name.to_ascii_lowercase(),
            realm.to_ascii_lowercase()
        );
        let ou = a.ou.as_ref().map(|ou| format!("createcomputer={ou}"));
        let mut args = vec!["ads", "join", "--no-dns-updates", &dns_name];
        args.extend(ou.as_deref());
        let o = samba::net(&l, dc, admin, &args);
        let said = samba::said(&o);
        if !o.status.success() {
            return Err(fail(said.clone(), samba::fix_for(&said)));
        }
        Ok(format!("joined {realm} as {name}"))
    })?;

    p.step("service principal", || {
        let listed = samba::net(&l, dc, Creds::Machine, &["ads", "setspn", "list", &name]);
        let present = samba::said(&listed)
            .lines()
            .any(|s| s.trim().eq_ignore_ascii_case(&a.spn));
        if present {
            return Ok(format!("{} already on {name}", a.spn));
        }
        let o = samba::net(&l, dc, admin, &["ads", "setspn", "add", &name, &a.spn]);
        let said = samba::said(&o);
        if !o.status.success() {
            return Err(fail(said.clone(), samba::fix_for(&said)));
        }
        Ok(format!("{} added to {name}", a.spn))
    })?;

    p.step("keytab", || write_keytab(&l, dc, &a.spn))?;

    let principal = format!("{}@{realm}", a.spn);
    p.step("kerberos", || {
        verify::kerberos(&l, &a.user, &realm, &a.password_file, &principal)
    })?;

    p.step("trust", || {
        let o = samba::net(&l, dc, Creds::Machine, &["rpc", "testjoin"]);
        if o.status.success() {
            Ok(format!("NETLOGON secure channel to {workgroup} works"))
        } else {
            let said = samba::said(&o);
            Err(fail(said.clone(), samba::fix_for(&said)))
        }
    })?;

    let mut ping = Command::new("wbinfo");
    ping.arg("-p");
    let winbind_up = samba::run(ping).status.success();
    if winbind_up {
        p.step("winbind", verify::winbind)?;
    } else {
        p.n += 1;
        println!(
            "[{}/{}] winbind: NOT RUNNING — the join is done; NTLM needs winbindd with {}: start it, then run this again to verify",
            p.n,
            p.total,
            l.smb_conf().display()
        );
    }
    if let (Some(user), Some(file)) = (&a.ntlm_test_user, &a.ntlm_test_password_file) {
        if !winbind_up {
            println!("      NTLM test logon skipped: winbindd is not running");
        } else {
            let helper = ntlm_helper(&l);
            let logon = crate::ntlm_logon::logon(&helper, &workgroup, user, file);
            match logon {
                Ok(account) => {
                    println!("      NTLM test logon: ok — the domain accepted {account}")
                }
                Err(e) => {
                    println!("      NTLM test logon: FAILED — {e}");
                    return Err(());
                }
            }
        }
    }
    println!(
        "\nFor gatehouse.toml:\n\n[auth.negotiate]\nkeytab = \"{}\"\nprincipal = \"{principal}\"\n\n\
         [auth.ntlm]\nhelper = [{}]",
        l.keytab().display(),
        ntlm_helper(&l)
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// The helper command the proxy runs for NTLM with this join.
fn ntlm_helper(l: &Layout) -> Vec<String> {
    vec![
        "ntlm_auth".into(),
        "--helper-protocol=squid-2.5-ntlmssp".into(),
        format!("--configfile={}", l.smb_conf().display()),
    ]
}

fn write(path: &Path, text: &str, mode: u32) -> Result<bool, (String, String)> {
    samba::write_if_changed(path, text, mode).map_err(|e| {
        fail(
            format!("{}: {e}", path.display()),
            "run as a user who may write --out (root for /etc)",
        )
    })
}

/// The arguments make sense, the secrets are private, `--out` exists:
/// the machine account's name.
fn check_arguments(a: &JoinArgs, l: &Layout) -> Step {
    use std::os::unix::fs::PermissionsExt;
    // Written into smb.conf and krb5.conf: names and addresses only (a
    // newline would be a new directive).
    let plain = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b))
    };
    if !plain(&a.domain) || a.dc.as_deref().is_some_and(|d| !plain(d)) {
        return Err(fail(
            "--domain and --dc take a DNS name (or, --dc, an address)",
            "--domain CORP.EXAMPLE.COM --dc 10.0.0.5",
        ));
    }
    if a.ou.as_deref().is_some_and(|o| o.contains(['\n', '\r'])) {
        return Err(fail("--ou has a line break", "give the OU on one line"));
    }
    let host = a.spn.strip_prefix("HTTP/").unwrap_or_default();
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(fail(
            format!("--spn {:?} is not HTTP/<host name>", a.spn),
            "give the name clients use for the proxy: --spn HTTP/proxy.corp.example.com",
        ));
    }
    for file in std::iter::once(&a.password_file).chain(&a.ntlm_test_password_file) {
        gatehouse::settings::check_private(file)
            .map_err(|e| fail(e.to_string(), format!("chmod 600 {}", file.display())))?;
    }
    let name = match &a.name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string(),
    }
    .to_ascii_uppercase();
    if name.is_empty()
        || name.len() > 15
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(fail(
            format!("computer name {name:?}: at most 15 letters, digits or '-'"),
            "give one with --name GATEHOUSE1",
        ));
    }
    for d in ["private", "state", "lock", "cache", "run", "ncalrpc", "log"] {
        let dir = l.samba().join(d);
        std::fs::create_dir_all(&dir).map_err(|e| {
            fail(
                format!("{}: {e}", dir.display()),
                "run as a user who may write --out",
            )
        })?;
    }
    // Samba's secrets: the owner's only.
    let private = l.samba().join("private");
    let _ = std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700));
    Ok(name)
}

/// The keytab for the SPN, rewritten from the account's current keys into a
/// new file (0600) and renamed into place: a reader never sees half of it.
fn write_keytab(l: &Layout, dc: Option<&str>, spn: &str) -> Step {
    use std::os::unix::fs::PermissionsExt;
    let new = l.out.join("http.keytab.new");
    let _ = std::fs::remove_file(&new);
    let option = format!("--option=dedicated keytab file=FILE:{}", new.display());
    let o = samba::net(
        l,
        dc,
        Creds::Machine,
        &["ads", "keytab", "add", spn, &option],
    );
    if !o.status.success() || !new.exists() {
        let said = samba::said(&o);
        return Err(fail(said.clone(), samba::fix_for(&said)));
    }
    let private = std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&new, l.keytab()));
    if let Err(e) = private {
        return Err(fail(
            format!("{}: {e}", l.keytab().display()),
            "check --out's permissions",
        ));
    }
    let mut cmd = Command::new("klist");
    cmd.args(["-k", "-e"]).arg(l.keytab());
    let listed = samba::run(cmd);
    let keys: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|s| s.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    if keys.is_empty() {
        return Err(fail(
            "the keytab holds no key",
            "re-run; if it persists, `net ads keytab list`",
        ));
    }
    Ok(format!(
        "{} (0600): {}",
        l.keytab().display(),
        keys.join("; ")
    ))
}
