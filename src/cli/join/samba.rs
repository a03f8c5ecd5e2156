//! The Samba and MIT Kerberos commands `gatehouse join` runs, and the files
//! it writes. Samba's `net ads` does the join (it also writes the secrets
//! winbind needs, which `adcli` leaves to a second tool); MIT's `kinit` and
//! `kvno -k` check the keytab the way a client's ticket will meet it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Where everything lives under `--out`.
pub struct Layout {
    /// `--out`.
    pub out: PathBuf,
}

impl Layout {
    pub fn smb_conf(&self) -> PathBuf {
        self.out.join("smb.conf")
    }
    pub fn krb5_conf(&self) -> PathBuf {
        self.out.join("krb5.conf")
    }
    pub fn keytab(&self) -> PathBuf {
        self.out.join("http.keytab")
    }
    /// Samba's own state (secrets, caches, logs) for this member.
    pub fn samba(&self) -> PathBuf {
        self.out.join("samba")
    }
}

/// What the join is for.
pub struct Target<'a> {
    /// Kerberos realm, upper case (`AD.EXAMPLE.COM`).
    pub realm: &'a str,
    /// NetBIOS domain, as the DC names it (`ADTEST`).
    pub workgroup: &'a str,
    /// The machine account (`GATEHOUSE1`).
    pub name: &'a str,
    /// A DC's address, when DNS cannot find one.
    pub dc: Option<&'a str>,
}

/// The member's smb.conf: its own state directories (nothing of another
/// Samba on the host is touched), winbind for NTLM pass-through, and the
/// machine password kept still — winbind's rotation would not update the
/// HTTP keytab, and Negotiate would break silently.
pub fn smb_conf(l: &Layout, t: &Target<'_>) -> String {
    let s = l.samba();
    let dir = |d: &str| s.join(d).display().to_string();
    let server =
        t.dc.map(|dc| format!("    password server = {dc}\n"))
            .unwrap_or_default();
    format!(
        "# Written by `gatehouse join`; re-running it rewrites this file.\n\
         # winbindd must run with it (winbindd -s {conf}, or include it from\n\
         # /etc/samba/smb.conf for the packaged service) for NTLM to work.\n\
         [global]\n\
         \x20   workgroup = {wg}\n\
         \x20   realm = {realm}\n\
         \x20   security = ads\n\
         \x20   netbios name = {name}\n\
         {server}\
         \x20   disable netbios = yes\n\
         \x20   interfaces = lo\n\
         \x20   bind interfaces only = yes\n\
         \x20   kerberos method = dedicated keytab\n\
         \x20   dedicated keytab file = FILE:{machine_keytab}\n\
         \x20   private dir = {private}\n\
         \x20   state directory = {state}\n\
         \x20   lock directory = {lock}\n\
         \x20   cache directory = {cache}\n\
         \x20   pid directory = {run}\n\
         \x20   ncalrpc dir = {ncalrpc}\n\
         \x20   log file = {log}/log.%m\n\
         \x20   idmap config * : backend = tdb\n\
         \x20   idmap config * : range = 3000000-3999999\n\
         \x20   winbind use default domain = no\n\
         \x20   # Rotate by hand (net ads changetrustpw, then gatehouse join): the\n\
         \x20   # HTTP keytab is made from this password.\n\
         \x20   machine password timeout = 0\n\
         \x20   rpc start on demand helpers = no\n",
        conf = l.smb_conf().display(),
        wg = t.workgroup,
        realm = t.realm,
        name = t.name,
        machine_keytab = dir("private/machine.keytab"),
        private = dir("private"),
        state = dir("state"),
        lock = dir("lock"),
        cache = dir("cache"),
        run = dir("run"),
        ncalrpc = dir("ncalrpc"),
        log = dir("log"),
    )
}

/// A krb5.conf for the checks (and for the proxy, if it has none): the KDC
/// from `--dc`, or from DNS when none is given.
pub fn krb5_conf(t: &Target<'_>) -> String {
    let lower = t.realm.to_ascii_lowercase();
    let (dns, realms) = match t.dc {
        Some(dc) => (
            "false",
            format!(
                "[realms]\n    {r} = {{\n        kdc = {dc}\n        admin_server = {dc}\n    }}\n",
                r = t.realm
            ),
        ),
        None => ("true", String::new()),
    };
    format!(
        "[libdefaults]\n    default_realm = {r}\n    dns_lookup_kdc = {dns}\n    dns_lookup_realm = false\n    \
         rdns = false\n    dns_canonicalize_hostname = false\n{realms}\
         [domain_realm]\n    .{lower} = {r}\n    {lower} = {r}\n",
        r = t.realm
    )
}

/// Writes `text` to `path` (mode `mode`) unless it already says that;
/// `true` when written.
pub fn write_if_changed(path: &Path, text: &str, mode: u32) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(false);
    }
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(true)
}

/// Whose credentials a `net` command runs with.
#[derive(Clone, Copy)]
pub enum Creds<'a> {
    /// None needed (`ads lookup`, `cache`).
    Anonymous,
    /// The machine account's own (`-P`), once joined.
    Machine,
    /// `-U user`, the password read by `net` itself from this file
    /// (PASSWD_FILE): never in argv.
    Admin(&'a str, &'a Path),
}

/// Runs Samba's `net` with the member's config.
pub fn net(l: &Layout, dc: Option<&str>, creds: Creds<'_>, args: &[&str]) -> Output {
    let mut cmd = Command::new("net");
    cmd.arg("-s").arg(l.smb_conf());
    if let Some(dc) = dc {
        cmd.args(["-S", dc]);
    }
    cmd.args(args);
    match creds {
        Creds::Admin(user, file) => {
            cmd.args(["-U", user]).env("PASSWD_FILE", file);
        }
        Creds::Machine => {
            cmd.arg("-P");
        }
        Creds::Anonymous => {}
    }
    // net must not ask a winbindd (another Samba's may answer on this host),
    // and its Kerberos tickets stay in memory.
    cmd.env("_NO_WINBINDD", "1")
        .env("KRB5CCNAME", "MEMORY:gatehouse-join")
        .stdin(Stdio::null());
    run(cmd)
}

/// Runs `cmd`, its failure to start as a failed output.
pub fn run(mut cmd: Command) -> Output {
    let name = format!("{:?}", cmd.get_program());
    cmd.output().unwrap_or_else(|e| Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(127 << 8),
        stdout: Vec::new(),
        stderr: format!("cannot run {name}: {e}").into_bytes(),
    })
}

/// stdout and stderr, for a step's message; Samba's harmless SPNEGO noise
/// (it falls back to NTLM for LDAP when the DC lacks an ldap/ SPN) dropped.
pub fn said(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    text.lines()
        .filter(|l| !l.contains("ads_sasl_spnego_bind") && !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `net ads lookup` (CLDAP): the DC's DNS name and the NetBIOS domain.
pub fn lookup(text: &str) -> Option<(String, String)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    Some((field("Domain Controller:")?, field("Pre-Win2k Domain:")?))
}

/// A hint for a failed `net ads join` / `setspn`, from what Samba said.
pub fn fix_for(said: &str) -> &'static str {
    let s = said.to_ascii_lowercase();
    let bad_login = [
        "logon failure",
        "wrong_password",
        "preauth",
        "logon is invalid",
        "bad username",
    ];
    if bad_login.iter().any(|p| s.contains(p)) {
        "check --user and --password-file (an account allowed to join computers)"
    } else if s.contains("find dc") || s.contains("no logon servers") || s.contains("lookup dc") {
        "no domain controller found: give one with --dc ADDRESS (or fix DNS SRV records)"
    } else if s.contains("conflict") || (s.contains("already") && s.contains("spn")) {
        "the SPN is held by another account: remove it there (setspn -D on a DC) or pick another"
    } else if s.contains("insufficient") || s.contains("access_denied") || s.contains("denied") {
        "the account may not create or change computer objects (in that --ou)"
    } else if s.contains("clock skew") {
        "this host's clock differs from the DC's by more than 5 minutes: sync it (NTP)"
    } else {
        "see Samba's message above; the machine account can be reset by `net ads leave` and a new join"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_reads_the_dc_and_the_netbios_domain() {
        let text = "Forest: ad.example.test\nDomain Controller: vm.ad.example.test\n\
                    Pre-Win2k Domain: ADTEST\nPre-Win2k Hostname: VM\n";
        assert_eq!(
            lookup(text),
            Some(("vm.ad.example.test".into(), "ADTEST".into()))
        );
        assert_eq!(lookup("Forest: x\n"), None);
    }

    #[test]
    fn configs_name_their_own_directories_and_the_dc() {
        let l = Layout {
            out: "/etc/gh".into(),
        };
        let t = Target {
            realm: "AD.EXAMPLE.TEST",
            workgroup: "ADTEST",
            name: "GATEHOUSE1",
            dc: Some("10.0.0.5"),
        };
        let smb = smb_conf(&l, &t);
        assert!(smb.contains("    netbios name = GATEHOUSE1\n"));
        assert!(smb.contains("    password server = 10.0.0.5\n"));
        assert!(smb.contains("    private dir = /etc/gh/samba/private\n"));
        assert!(smb.contains("machine password timeout = 0"));
        let krb = krb5_conf(&t);
        assert!(krb.contains("kdc = 10.0.0.5") && krb.contains("dns_lookup_kdc = false"));
        let dns = krb5_conf(&Target { dc: None, ..t });
        assert!(dns.contains("dns_lookup_kdc = true") && !dns.contains("[realms]"));
    }

    #[test]
    fn failures_come_with_a_fix() {
        assert!(fix_for("Failed to join domain: Logon failure").contains("--password-file"));
        assert!(fix_for("failed to find DC for domain").contains("--dc"));
        // Samba's words for a wrong password at join, which also name the DC lookup.
        let wrong = "Failed to join domain: failed to lookup DC info for domain 'AD.EXAMPLE.TEST' \
                     over rpc: The attempted logon is invalid. This is either due to a bad \
                     username or authentication information.";
        assert!(fix_for(wrong).contains("--password-file"));
        assert!(fix_for("samldb: spn[HTTP/x] would cause a conflict").contains("SPN"));
    }
}
