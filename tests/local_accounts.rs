//! The local users file as an administrator keeps it: `gatehouse passwd`
//! writes it private and treats `Alice` and `alice` as one user, start-up
//! refuses two spellings of one name, and SIGHUP reloads it whole or not at all.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn gatehouse() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
}

/// `gatehouse passwd --users FILE USER`, the password on stdin.
fn passwd(users: &Path, user: &str, password: &str) {
    let out = run_with_input(
        gatehouse().args(["passwd", "--users"]).arg(users).arg(user),
        &format!("{password}\n"),
    );
    assert!(
        out.status.success(),
        "passwd {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn passwd_keeps_the_file_private_and_one_entry_per_name() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    passwd(&users, "Alice", "first-pw");
    assert_eq!(mode(&users), 0o600, "created private");
    passwd(&users, "bob", "bob-pw");
    assert_eq!(mode(&users), 0o600, "kept private on update");
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    passwd(&users, "alice", "second-pw");
    assert_eq!(mode(&users), 0o600, "a world-readable file is made private");
    let text = std::fs::read_to_string(&users).unwrap();
    assert_eq!(
        text.matches("password = ").count(),
        2,
        "Alice and alice are one entry: {text}"
    );
    assert!(
        text.contains("[users.Alice]"),
        "the first spelling stays: {text}"
    );
}

/// A local realm file for `users`, and the `[auth]` section naming it.
fn auth_for(dir: &Path, users: &Path) -> String {
    let realm = dir.join("local.toml");
    std::fs::write(
        &realm,
        format!(
            "name = \"local\"\nkind = \"local\"\nusers_file = \"{}\"\ncase_insensitive = true\n",
            users.display()
        ),
    )
    .unwrap();
    format!(
        "[auth]\nrequired = true\nrealms = [\"{}\"]\n",
        realm.display()
    )
}

/// Runs `gatehouse run` listening on `ip`, with `auth`; it must exit by itself
/// (a start-up refusal) within 10 s. Its output.
fn refused_start(dir: &Path, ip: &str, auth: &str) -> std::process::Output {
    let cfg = dir.join("gatehouse.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listener]\naddresses = [\"{ip}:{}\"]\n[accesslog]\npath = \"{}\"\n{auth}",
            free_port(),
            dir.join("access.log").display(),
        ),
    )
    .unwrap();
    let mut child = gatehouse()
        .args(["run", "--config"])
        .arg(&cfg)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // If it were serving, waiting would hang: bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("gatehouse started and served");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    out
}

#[test]
fn start_up_refuses_two_spellings_of_one_user_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    passwd(&users, "alice", "pw-one");
    let hash_line = std::fs::read_to_string(&users)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("password"))
        .unwrap()
        .to_string();
    std::fs::write(
        &users,
        format!("# two spellings\n[users.Alice]\n{hash_line}\n\n[users.alice]\n{hash_line}\n"),
    )
    .unwrap();
    let out = refused_start(dir.path(), "127.0.0.1", &auth_for(dir.path(), &users));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&users.display().to_string())
            && err.contains("line 5")
            && err.contains("line 2"),
        "{err}"
    );
}

async fn status_on(
    c: &mut hyper::client::conn::http1::SendRequest<OriginBody>,
    url: &str,
    user_pass: &str,
) -> u16 {
    let req = http::Request::builder()
        .uri(url)
        .header("proxy-authorization", basic(user_pass))
        .body(empty())
        .unwrap();
    let resp = ready(c).await.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    read_all(resp).await;
    status
}

async fn fresh_status(gh: &Gatehouse, url: &str, user_pass: &str) -> u16 {
    status_on(&mut proxy_conn(gh.addr()).await, url, user_pass).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_users_file_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &local_realm(dir.path()));
    let users = dir.path().join("users.toml");
    let url = origin.url("/");
    // One connection stays open throughout: its remembered Basic credentials
    // must not outlive a reload either.
    let mut open = proxy_conn(gh.addr()).await;
    assert_eq!(status_on(&mut open, &url, "alice:alice-pw").await, 200);
    assert_eq!(fresh_status(&gh, &url, "alice:alice-pw").await, 200);

    // A broken users file: refused, the running accounts keep working.
    let good = std::fs::read_to_string(&users).unwrap();
    std::fs::write(&users, format!("{good}\n[users.ALICE]\npassword = \"x\"\n")).unwrap();
    gh.signal("HUP");
    gh.wait_stderr("realm reload refused", 1);
    assert!(gh.stderr().contains("ALICE"), "the reason names the entry");
    assert_eq!(status_on(&mut open, &url, "alice:alice-pw").await, 200);
    assert_eq!(fresh_status(&gh, &url, "bob:bob-pw").await, 200);

    // A changed password: the new one works, the old one no longer does,
    // neither from the credential cache nor from the open connection.
    std::fs::write(&users, &good).unwrap();
    gatehouse::directory::local::set_password(&users, "alice", "changed-pw", None).unwrap();
    gh.signal("HUP");
    gh.wait_stderr("realms reloaded", 1);
    assert_eq!(status_on(&mut open, &url, "alice:alice-pw").await, 407);
    assert_eq!(fresh_status(&gh, &url, "alice:alice-pw").await, 407);
    assert_eq!(fresh_status(&gh, &url, "alice:changed-pw").await, 200);
    assert_eq!(fresh_status(&gh, &url, "bob:bob-pw").await, 200);
}

/// The shipped users file, with its demo accounts.
fn shipped_users() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/users.toml")
}

#[test]
fn demo_accounts_refuse_a_listener_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = refused_start(
        dir.path(),
        "0.0.0.0",
        &auth_for(dir.path(), &shipped_users()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("demo account(s) alice, demo")
            && err.contains("0.0.0.0")
            && err.contains("gatehouse passwd"),
        "{err}"
    );
    // Their passwords changed, the same accounts may listen anywhere.
    let users = dir.path().join("users.toml");
    std::fs::copy(shipped_users(), &users).unwrap();
    passwd(&users, "demo", "not in any readme");
    let out = refused_start(dir.path(), "0.0.0.0", &auth_for(dir.path(), &users));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("demo account(s) alice whose"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_accounts_serve_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &auth_for(dir.path(), &shipped_users()));
    assert_eq!(
        fresh_status(&gh, &origin.url("/"), "demo:demo-password").await,
        200
    );
}
