//! Names beyond ASCII: a deny rule for the group `Ärzte` must deny a member
//! of `Ärzte`, whichever directory says so (OpenLDAP, Samba AD). Rules were
//! lowercased with Unicode rules but compared ASCII-insensitively, so such a
//! rule never matched and failed open.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use common::lab::Slapd;
use common::*;

/// A policy that denies the group `Ärzte` by that spelling, and allows the rest.
fn deny_doctors(dir: &Path) -> String {
    let path = dir.join("policy.toml");
    std::fs::write(
        &path,
        "[[layers]]\nname = \"access\"\n[[layers.rules]]\nname = \"no-doctors\"\n\
         group = [\"Ärzte\"]\naction = \"deny\"\n",
    )
    .unwrap();
    format!("[policy]\nfile = \"{}\"\n", path.display())
}

async fn get_as(gh: &Gatehouse, url: &str, user_pass: &str) -> u16 {
    let raw = format!(
        "GET {url} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: {}\r\nConnection: close\r\n\r\n",
        basic(user_pass)
    );
    status_of(&raw_exchange(gh.addr(), raw.as_bytes(), Duration::from_secs(10)).await)
}

/// An LDIF line `attr:: base64` (LDIF wants non-ASCII values base64-encoded).
fn b64(attr: &str, value: &str) -> String {
    format!(
        "{attr}:: {}\n",
        base64::engine::general_purpose::STANDARD.encode(value)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn slapd_member_of_a_non_ascii_group_is_denied_by_its_rule() {
    let lab = Slapd::start();
    let user_dn = "uid=jürgen,ou=people,dc=example,dc=test";
    let ldif = [
        b64("dn", user_dn),
        "changetype: add\nobjectClass: inetOrgPerson\n".into(),
        b64("uid", "jürgen"),
        b64("cn", "Jürgen Müller"),
        b64("sn", "Müller"),
        "userPassword: juergen-pw\n\n".into(),
        b64("dn", "cn=Ärzte,ou=groups,dc=example,dc=test"),
        "changetype: add\nobjectClass: groupOfNames\n".into(),
        b64("cn", "Ärzte"),
        b64("member", user_dn),
        "\n".into(),
        b64("dn", "uid=strauß,ou=people,dc=example,dc=test"),
        "changetype: add\nobjectClass: inetOrgPerson\n".into(),
        b64("uid", "strauß"),
        "cn: Kim Strauss\nsn: Strauss\nuserPassword: strauss-pw\n".into(),
    ]
    .concat();
    lab.modify(&ldif);
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let cfg = format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\n{}",
        lab.realm_file("memberof", "").display(),
        deny_doctors(dir.path())
    );
    let gh = Gatehouse::start("", &cfg);
    let url = origin.url("/");
    assert_eq!(get_as(&gh, &url, "jürgen:juergen-pw").await, 403);
    assert_eq!(get_as(&gh, &url, "JÜRGEN:juergen-pw").await, 403);
    assert_eq!(get_as(&gh, &url, "alice:alice-pw").await, 200);
    // The directory is asked for the login as typed (lowercased), not its
    // full folding: slapd does not find `strauss` for `strauß`.
    assert_eq!(get_as(&gh, &url, "Strauß:strauss-pw").await, 200);
    let lines = gh.log_lines(4);
    assert_eq!(lines[0]["cs-username"], "jürgen");
    assert_eq!(lines[0]["cs-auth-group"], "Ärzte");
    assert_eq!(lines[0]["x-rule"], "no-doctors");
    assert_eq!(lines[1]["cs-username"], "jürgen", "one user, folded");
    assert_eq!(
        origin.requests(),
        2,
        "only alice and strauß reached the origin"
    );
}

/// Runs `samba-tool ARGS -s <lab smb.conf>`; its status and stderr.
fn samba_tool(samba: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("samba-tool")
        .args(args)
        .arg("-s")
        .arg(samba.join("etc/smb.conf"))
        .output()
        .expect("samba-tool");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The user `jürgen` in the group `Ärzte` on the shared lab DC. Idempotent:
/// the DC outlives a test run, and other runs may have made them already.
fn samba_doctor(samba: &Path) {
    if !samba_tool(samba, &["user", "show", "jürgen"]).0 {
        let (ok, err) = samba_tool(
            samba,
            &[
                "user",
                "create",
                "jürgen",
                "Juergen-Pw1",
                "--use-username-as-cn",
            ],
        );
        assert!(ok || err.contains("already exists"), "user create: {err}");
    }
    // Known state whatever an earlier run left.
    let (ok, err) = samba_tool(
        samba,
        &["user", "setpassword", "jürgen", "--newpassword=Juergen-Pw1"],
    );
    assert!(ok, "setpassword: {err}");
    let (ok, err) = samba_tool(samba, &["user", "setexpiry", "jürgen", "--noexpiry"]);
    assert!(ok, "setexpiry: {err}");
    if !samba_tool(samba, &["group", "show", "Ärzte"]).0 {
        let (ok, err) = samba_tool(samba, &["group", "add", "Ärzte"]);
        assert!(ok || err.contains("already exists"), "group add: {err}");
    }
    let (ok, err) = samba_tool(samba, &["group", "addmembers", "Ärzte", "jürgen"]);
    assert!(
        ok || err.contains("already") || err.contains("member"),
        "addmembers: {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn samba_ad_member_of_a_non_ascii_group_is_denied_by_its_rule() {
    let samba = common::samba::dir();
    tokio::task::block_in_place(|| samba_doctor(&samba));
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let cfg = format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\n{}",
        common::samba::realm_file(&samba, dir.path()).display(),
        deny_doctors(dir.path())
    );
    let gh = Gatehouse::start("", &cfg);
    let url = origin.url("/");
    assert_eq!(get_as(&gh, &url, "jürgen:Juergen-Pw1").await, 403);
    assert_eq!(get_as(&gh, &url, "bob:bob-Pw1").await, 200);
    let lines = gh.log_lines(2);
    assert_eq!(lines[0]["cs-username"], "jürgen");
    assert_eq!(lines[0]["x-rule"], "no-doctors");
    assert!(
        lines[0]["cs-auth-group"].split(',').any(|g| g == "Ärzte"),
        "{:?}",
        lines[0]
    );
    assert_eq!(origin.requests(), 1, "only bob reached the origin");
}
