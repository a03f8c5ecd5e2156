//! `gatehouse join` end to end against the lab Samba AD DC, from a clean
//! output directory: a bad password file and a wrong password each stop it
//! at their step with the fix; a join whose keytab then serves Negotiate
//! through the proxy; a re-run that checks instead of redoing, and whose
//! NTLM test logon goes through this member's own winbindd; `gatehouse
//! check --ntlm-test-user` accepting the right password and refusing a
//! wrong one.
//!
//! The DC's own winbindd answers at /run/samba/winbindd, where wbinfo and
//! ntlm_auth always look. So the member's commands run in a private mount
//! namespace whose /run/samba/winbindd is this test's directory: there only
//! the member's winbindd can answer (and before it starts, none does).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

const SPN: &str = "HTTP/proxy-join.ad.example.test";
const NAME: &str = "GHJOINTEST";

/// The member's output directory, left and cleaned up however the test ends.
struct Member {
    dir: tempfile::TempDir,
    samba: PathBuf,
}

impl Member {
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn secret(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, format!("{text}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// `gatehouse ARGS` inside the namespace where only this member's
    /// winbindd can answer.
    fn gatehouse(&self, args: &[&str]) -> Output {
        self.in_namespace(env!("CARGO_BIN_EXE_gatehouse"), args)
    }

    fn in_namespace(&self, program: &str, args: &[&str]) -> Output {
        let sock = self.dir.path().join("winbindd-socket");
        std::fs::create_dir_all(&sock).unwrap();
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /run/samba/winbindd && exec \"$@\"")
            .arg(&sock)
            .arg(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    fn join(&self, password_file: &Path, extra: &[&str]) -> (bool, String) {
        let out = self.out();
        let mut args = vec![
            "join",
            "--domain",
            "ad.example.test",
            "--user",
            "Administrator",
            "--password-file",
            password_file.to_str().unwrap(),
            "--spn",
            SPN,
            "--out",
            out.to_str().unwrap(),
            "--dc",
            "127.0.0.1",
            "--name",
            NAME,
        ];
        args.extend(extra);
        let o = self.gatehouse(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let conf = self.out().join("smb.conf");
        if conf.exists() {
            // Leave: the computer account (and its SPN) deleted.
            let _ = Command::new("net")
                .arg("-s")
                .arg(&conf)
                .args(["-S", "127.0.0.1", "ads", "leave", "-U", "Administrator"])
                .env("PASSWD_FILE", self.samba.join("admin.pw"))
                .env("_NO_WINBINDD", "1")
                .env("KRB5CCNAME", "MEMORY:leave")
                .output();
        }
        let pid = self.out().join("samba/run/winbindd.pid");
        if let Ok(pid) = std::fs::read_to_string(pid) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn join_from_clean_then_negotiate_then_rerun_verifies_ntlm_through_its_own_winbind() {
    let samba = common::samba::dir();
    let m = Member {
        dir: tempfile::tempdir().unwrap(),
        samba: samba.clone(),
    };
    let admin_pw = std::fs::read_to_string(samba.join("admin.pw")).unwrap();
    let admin = m.secret("admin.pw", admin_pw.trim(), 0o600);

    // A password file others can read: refused before anything is touched.
    let loose = m.secret("loose.pw", admin_pw.trim(), 0o644);
    let (ok, text) = tokio::task::block_in_place(|| m.join(&loose, &[]));
    assert!(!ok, "{text}");
    assert!(
        text.contains("arguments: FAILED") && text.contains("chmod 600"),
        "{text}"
    );
    // A wrong password: the join step fails, with the fix.
    let wrong = m.secret("wrong.pw", "not-the-password", 0o600);
    let (ok, text) = tokio::task::block_in_place(|| m.join(&wrong, &[]));
    assert!(!ok, "{text}");
    assert!(text.contains("join: FAILED"), "{text}");
    assert!(
        text.contains("fix: check --user and --password-file"),
        "{text}"
    );

    // The join, no winbindd yet: done, and says NTLM waits for it.
    let (ok, text) = tokio::task::block_in_place(|| m.join(&admin, &[]));
    assert!(ok, "{text}");
    for step in [
        "joined AD.EXAMPLE.TEST as GHJOINTEST",
        "added to GHJOINTEST",
        "decrypts with the keytab",
        "NETLOGON secure channel",
        "winbind: NOT RUNNING",
    ] {
        assert!(text.contains(step), "{step:?} in:\n{text}");
    }
    let keytab = m.out().join("http.keytab");
    let mode = std::fs::metadata(&keytab).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The keytab (and krb5.conf) it wrote serve Negotiate through the proxy.
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let realm = common::samba::realm_file(&samba, dir.path());
    let krb5 = m.out().join("krb5.conf");
    let cfg = format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\nschemes = [\"negotiate\"]\n\
         [auth.negotiate]\nkeytab = \"{}\"\nprincipal = \"{SPN}@AD.EXAMPLE.TEST\"\n",
        realm.display(),
        keytab.display()
    );
    let gh = Gatehouse::start_with_env("", &cfg, &[("KRB5_CONFIG", krb5.to_str().unwrap())]);
    let cc = kinit(&krb5, "alice", "alice-Pw1", dir.path());
    let host = SPN.trim_start_matches("HTTP/");
    let port = gh.port;
    let (code, _) = tokio::task::block_in_place(|| {
        curl_negotiate(&krb5, &cc, host, port, &origin.url("/joined"))
    });
    assert_eq!(code, "200", "{}", gh.stderr());
    let line = gh
        .log_lines(1)
        .into_iter()
        .find(|l| l["sc-status"] == "200")
        .unwrap();
    assert_eq!(line["cs-username"], "alice");

    // The member's winbindd, then the re-run: nothing redone, everything verified.
    let conf = m.out().join("smb.conf");
    let started = tokio::task::block_in_place(|| {
        m.in_namespace(
            "sh",
            &["-c", "winbindd -s \"$0\" -D && for i in $(seq 100); do wbinfo -p >/dev/null 2>&1 && exit 0; sleep 0.05; done; exit 1", conf.to_str().unwrap()],
        )
    });
    assert!(
        started.status.success(),
        "winbindd: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let alice = m.secret("alice.pw", "alice-Pw1", 0o600);
    let alice_arg = alice.to_str().unwrap().to_string();
    let test_user = [
        "--ntlm-test-user",
        "ADTEST\\alice",
        "--ntlm-test-password-file",
        &alice_arg,
    ];
    let (ok, text) = tokio::task::block_in_place(|| m.join(&admin, &test_user));
    assert!(ok, "{text}");
    for step in [
        "already joined as GHJOINTEST",
        "already on GHJOINTEST",
        "decrypts with the keytab",
        "winbind: ok",
        "NTLM test logon: ok — the domain accepted ADTEST\\alice",
    ] {
        assert!(text.contains(step), "{step:?} in:\n{text}");
    }

    // gatehouse check --ntlm-test-user, through the helper the config names.
    let cfg = dir.path().join("check.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\nrequired = false\nrealms = []\n[auth.ntlm]\n\
             helper = [\"ntlm_auth\", \"--helper-protocol=squid-2.5-ntlmssp\", \"--configfile={}\"]\n",
            conf.display()
        ),
    )
    .unwrap();
    let check = |pw: &Path| {
        m.gatehouse(&[
            "check",
            "--config",
            cfg.to_str().unwrap(),
            "--ntlm-test-user",
            "ADTEST\\alice",
            "--ntlm-test-password-file",
            pw.to_str().unwrap(),
        ])
    };
    let good = tokio::task::block_in_place(|| check(&alice));
    let said = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{said}");
    assert!(
        said.contains("test logon accepted by the domain as ADTEST\\alice"),
        "{said}"
    );
    let bad = tokio::task::block_in_place(|| check(&wrong));
    let said = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(4), "{said}");
    assert!(said.contains("test logon FAILED"), "{said}");
}
