use super::*;
use crate::directory::config::LocalRealmConfig;
use crate::directory::local::{set_password, LocalRealm};
use crate::limit::BlockingSlots;

/// A local realm `name` whose users file holds `users` (login, password).
fn local(dir: &std::path::Path, name: &str, users: &[(&str, &str)]) -> Realm {
    let file = dir.join(format!("{name}.toml"));
    for (user, password) in users {
        set_password(&file, user, password, None).unwrap();
    }
    let cfg = LocalRealmConfig {
        name: name.into(),
        users_file: file,
        case_insensitive: true,
        strip_domain: true,
        domains: vec![],
    };
    let slots = Arc::new(BlockingSlots::new(2, Duration::from_secs(5)));
    Realm::Local(LocalRealm::load(&cfg, &slots).unwrap())
}

/// A directory realm on a loopback port nobody listens on: every question
/// is "unavailable".
fn down(dir: &std::path::Path) -> Realm {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = dir.join("bind.pw");
    std::fs::write(&secret, "x").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let file = dir.join("down.toml");
    std::fs::write(
        &file,
        format!(
            "kind = \"ldap\"\nname = \"down\"\nurls = [\"ldap://127.0.0.1:{port}\"]\n\
             tls = \"none\"\nbind_dn = \"cn=svc\"\nbind_password_file = \"{}\"\n\
             user_base = \"dc=t\"\nuser_filter = \"(uid={{user}})\"\nlogin_attribute = \"uid\"\n\
             group_base = \"dc=t\"\ngroup_strategy = \"memberof\"\nconnect_timeout = \"1s\"\n",
            secret.display()
        ),
    )
    .unwrap();
    let slots = Arc::new(BlockingSlots::new(1, Duration::from_secs(1)));
    Realm::build(&RealmConfig::load(&file).unwrap(), &slots).unwrap()
}

fn realm_of(v: &RealmVerdict) -> Option<&str> {
    match v {
        RealmVerdict::Verified(id) => Some(&id.realm),
        _ => None,
    }
}

#[tokio::test]
async fn the_first_realm_that_knows_the_user_decides() {
    let dir = tempfile::tempdir().unwrap();
    let chain = RealmChain::new(vec![
        local(dir.path(), "first", &[("alice", "first-pw")]),
        local(
            dir.path(),
            "second",
            &[("alice", "second-pw"), ("bob", "bob-pw")],
        ),
    ]);
    let v = chain.verify("alice", "first-pw").await;
    assert_eq!(realm_of(&v), Some("first"));
    // The first realm knows alice: its "wrong password" is final, the
    // second realm's password for the same login is never tried.
    let mut asked = Vec::new();
    let v = chain
        .verify_observed("alice", "second-pw", |r, _, _| {
            asked.push(r.name().to_string())
        })
        .await;
    assert_eq!(v, RealmVerdict::BadPassword);
    assert_eq!(asked, ["first"]);
    // Unknown to the first, known to the second.
    let v = chain.verify("bob", "bob-pw").await;
    assert_eq!(realm_of(&v), Some("second"));
    assert_eq!(chain.verify("carol", "pw").await, RealmVerdict::UnknownUser);
    // Look-ups follow the same order.
    let alice = chain.lookup("alice").await.unwrap().unwrap();
    assert_eq!(&*alice.realm, "first");
    assert!(chain.vouched_for(&alice));
    let bob = chain.lookup_principal("bob", true).await.unwrap().unwrap();
    assert_eq!(&*bob.realm, "second");
    assert_eq!(chain.lookup("carol").await, Ok(None));
    // A chain built by hand again from the same files vouches for none of these.
    let again = RealmChain::new(vec![local(dir.path(), "first", &[])]);
    assert!(!again.vouched_for(&alice));
}

fn local_config(dir: &std::path::Path, name: &str, users: &[(&str, &str)]) -> RealmConfig {
    let file = dir.join(format!("{name}.toml"));
    for (user, password) in users {
        set_password(&file, user, password, None).unwrap();
    }
    RealmConfig::Local(LocalRealmConfig {
        name: name.into(),
        users_file: file,
        case_insensitive: true,
        strip_domain: true,
        domains: vec![],
    })
}

#[tokio::test]
async fn a_rebuild_keeps_the_realms_whose_definition_did_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let configs = vec![
        local_config(dir.path(), "first", &[("alice", "alice-pw")]),
        local_config(dir.path(), "second", &[("bob", "bob-pw")]),
    ];
    let checks = crate::directory::config::PasswordCheckConfig::default();
    let chain = RealmChain::build(&configs, &checks).unwrap();
    let alice = chain.lookup("alice").await.unwrap().unwrap();
    let bob = chain.lookup("bob").await.unwrap().unwrap();
    // Nothing changed: the same realms, caches and all.
    let same = chain.rebuild(&configs).unwrap();
    assert!(same.vouched_for(&alice) && same.vouched_for(&bob));
    assert_eq!(same.digest(), chain.digest());
    // bob's password changed in his realm's file: that realm alone is new.
    local_config(dir.path(), "second", &[("bob", "new-pw")]);
    let changed = same.rebuild(&configs).unwrap();
    assert!(changed.vouched_for(&alice), "the first realm was kept");
    assert!(!changed.vouched_for(&bob), "the second was built anew");
    assert_ne!(changed.digest(), same.digest());
    assert_eq!(
        realm_of(&changed.verify("bob", "new-pw").await),
        Some("second")
    );
    // Another setting of a realm is a change too; a removed realm is gone.
    let mut fewer = vec![configs[0].clone()];
    if let RealmConfig::Local(c) = &mut fewer[0] {
        c.case_insensitive = false;
    }
    let rebuilt = changed.rebuild(&fewer).unwrap();
    assert!(!rebuilt.vouched_for(&alice) && rebuilt.len() == 1);
}

#[tokio::test]
async fn an_unavailable_realm_passes_but_is_reported_when_nobody_decides() {
    let dir = tempfile::tempdir().unwrap();
    let chain = RealmChain::new(vec![
        down(dir.path()),
        local(dir.path(), "files", &[("bob", "bob-pw")]),
    ]);
    // A later realm that knows the user still decides.
    let v = chain.verify("bob", "bob-pw").await;
    assert_eq!(realm_of(&v), Some("files"));
    assert_eq!(
        chain.verify("bob", "wrong").await,
        RealmVerdict::BadPassword
    );
    assert_eq!(&*chain.lookup("bob").await.unwrap().unwrap().realm, "files");
    // Nobody knows carol and one realm could not say: unavailable, not unknown.
    assert!(matches!(
        chain.verify("carol", "pw").await,
        RealmVerdict::Unavailable(_)
    ));
    assert!(chain.lookup("carol").await.is_err());
}
