use super::*;
use argon2::password_hash::PasswordVerifier;

fn slots() -> Arc<BlockingSlots> {
    Arc::new(BlockingSlots::new(2, std::time::Duration::from_secs(5)))
}

fn realm(dir: &Path) -> LocalRealm {
    let cfg = LocalRealmConfig {
        name: "local".into(),
        users_file: dir.join("users.toml"),
        case_insensitive: true,
        strip_domain: true,
        domains: vec!["CORP".into()],
    };
    LocalRealm::load(&cfg, &slots()).unwrap()
}

#[tokio::test]
async fn passwd_then_verify_with_nested_groups() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    std::fs::write(&file, "# demo users\n[groups.telephony]\nmember_of = [\"Skype Users\"]\n[groups.\"Skype Users\"]\nmember_of = [\"telephony\"]\n").unwrap();
    set_password(
        &file,
        "Alice",
        "s3cret pw",
        Some(&["telephony".into(), "staff".into()]),
    )
    .unwrap();
    set_password(&file, "bob", "bobpw", None).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("# demo users"), "comments kept: {text}");
    assert!(!text.contains("s3cret"));
    let r = realm(dir.path());
    let RealmVerdict::Verified(id) = r.verify("CORP\\alice", "s3cret pw").await else {
        panic!("alice")
    };
    assert_eq!(id.user, "alice");
    assert!(id.in_group("staff") && id.in_group("telephony") && id.in_group("skype users"));
    assert!(id
        .groups
        .iter()
        .any(|g| g.name == "Skype Users" && g.nested));
    assert_eq!(r.verify("alice", "wrong").await, RealmVerdict::BadPassword);
    assert_eq!(r.verify("nobody", "x").await, RealmVerdict::UnknownUser);
    // Updating a password replaces it.
    set_password(&file, "bob", "newpw", None).unwrap();
    let r = realm(dir.path());
    assert!(matches!(
        r.verify("bob", "newpw").await,
        RealmVerdict::Verified(_)
    ));
    assert_eq!(r.verify("bob", "bobpw").await, RealmVerdict::BadPassword);
}

#[test]
fn refuses_plaintext_passwords_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.toml"),
        "[users.eve]\npassword = \"plain\"\n",
    )
    .unwrap();
    let cfg = LocalRealmConfig {
        name: "local".into(),
        users_file: dir.path().join("users.toml"),
        case_insensitive: true,
        strip_domain: true,
        domains: vec![],
    };
    let e = LocalRealm::load(&cfg, &slots()).err().unwrap().to_string();
    assert!(e.contains("eve") && e.contains("argon2"), "{e}");
}

#[test]
fn one_name_in_two_spellings_is_refused_with_both_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    set_password(&file, "Ärztin", "pw", None).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text.lines().find(|l| l.starts_with("password")).unwrap();
    let hash = line.split('"').nth(1).unwrap();
    let cfg = |case_insensitive| LocalRealmConfig {
        name: "local".into(),
        users_file: file.clone(),
        case_insensitive,
        strip_domain: true,
        domains: vec![],
    };
    let text = format!(
        "# users\n[users.\"Ärztin\"]\npassword = \"{hash}\"\n\n[users.\"ÄRZTIN\"]\npassword = \"{hash}\"\n"
    );
    std::fs::write(&file, text).unwrap();
    let e = LocalRealm::load(&cfg(true), &slots())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("line 5") && e.contains("line 2"), "{e}");
    assert!(
        e.contains("ÄRZTIN") && e.contains(&file.display().to_string()),
        "{e}"
    );
    // A case-sensitive realm takes them for two users.
    assert_eq!(
        LocalRealm::load(&cfg(false), &slots())
            .unwrap()
            .user_count(),
        2
    );
    // Group names are always one name whatever their case.
    std::fs::write(&file, "[groups.Telephony]\n[groups.telephony]\n").unwrap();
    let e = LocalRealm::load(&cfg(false), &slots())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("group \"telephony\"") && e.contains("line 2"),
        "{e}"
    );
}

#[tokio::test]
async fn passwd_updates_the_entry_of_the_same_name_in_another_case() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    std::fs::write(&file, "[groups.\"Ärzte\"]\nmember_of = [\"Staff\"]\n").unwrap();
    set_password(&file, "Alice", "one", Some(&["ÄRZTE".into()])).unwrap();
    set_password(&file, "alice", "two", None).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.matches("password").count(), 1, "{text}");
    let r = realm(dir.path());
    assert!(
        matches!(r.verify("ALICE", "two").await, RealmVerdict::Verified(id)
        if id.in_group("ärzte") && id.in_group("staff"))
    );
    assert_eq!(r.verify("alice", "one").await, RealmVerdict::BadPassword);
}

#[test]
fn passwd_writes_the_file_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    let mode = |f: &Path| std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
    set_password(&file, "a", "pw", None).unwrap();
    assert_eq!(mode(&file), 0o600);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    set_password(&file, "a", "pw2", None).unwrap();
    assert_eq!(mode(&file), 0o600, "a readable file is made private");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    set_password(&file, "b", "pw", None).unwrap();
    assert_eq!(mode(&file), 0o400, "a stricter mode is kept");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[tokio::test]
async fn demo_accounts_are_found_by_hash_or_by_their_published_password() {
    // The list matches what is shipped, and the README's passwords open it.
    let shipped = include_str!("../../config/users.toml");
    for (name, password, hash) in DEMO {
        assert!(shipped.contains(hash), "{name}: shipped hash");
        let h = PasswordHash::new(hash).unwrap();
        assert!(Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok());
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.toml");
    // A shipped hash copied under another name; alice re-hashed with her
    // demo password; demo with a password of its own.
    std::fs::write(
        &file,
        format!("[users.Copy]\npassword = \"{}\"\n", DEMO[0].2),
    )
    .unwrap();
    set_password(&file, "ALICE", "alice-demo-password", None).unwrap();
    set_password(&file, "demo", "a real secret", None).unwrap();
    assert_eq!(realm(dir.path()).demo_accounts(), vec!["alice", "copy"]);
    set_password(&file, "alice", "another secret", None).unwrap();
    assert_eq!(realm(dir.path()).demo_accounts(), vec!["copy"]);
}

#[test]
fn passwd_refuses_empty_password() {
    let dir = tempfile::tempdir().unwrap();
    assert!(set_password(&dir.path().join("u.toml"), "x", "", None).is_err());
    assert!(set_password(&dir.path().join("u.toml"), "a:b", "pw", None).is_err());
}
