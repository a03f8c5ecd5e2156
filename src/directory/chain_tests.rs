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
    ])
    .unwrap();
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
    // A chain built again from the same files vouches for none of these.
    let again = RealmChain::new(vec![local(dir.path(), "first", &[])]).unwrap();
    assert!(!again.vouched_for(&alice));
    assert_ne!(
        again.cache_key("alice", "first-pw"),
        chain.cache_key("alice", "first-pw")
    );
}

#[tokio::test]
async fn an_unavailable_realm_passes_but_is_reported_when_nobody_decides() {
    let dir = tempfile::tempdir().unwrap();
    let chain = RealmChain::new(vec![
        down(dir.path()),
        local(dir.path(), "files", &[("bob", "bob-pw")]),
    ])
    .unwrap();
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
