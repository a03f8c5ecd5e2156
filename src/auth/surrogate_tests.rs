use super::*;
use crate::auth::revoked::Revoked;
use crate::directory::config::LocalRealmConfig;
use crate::directory::local::{set_password, LocalRealm};
use crate::directory::Realm;
use crate::limit::BlockingSlots;

#[test]
fn config_defaults_and_checks() {
    let c: SurrogateConfig = toml_edit::de::from_str("kind = \"ip\"").unwrap();
    assert_eq!(c.kind, SurrogateKind::Ip);
    assert_eq!(c.ttl, Duration::from_secs(900));
    assert!(c.validate().is_ok());
    let c: SurrogateConfig =
        toml_edit::de::from_str("kind = \"ip\"\nttl = \"0s\"\nexclude = [\"10.0.0.0/8\"]").unwrap();
    assert!(c.validate().is_err());
    assert!(toml_edit::de::from_str::<SurrogateConfig>("kind = \"sometimes\"").is_err());
    assert!(toml_edit::de::from_str::<SurrogateConfig>("kind = \"ip\"\nttl = 5").is_err());
    assert!(Surrogates::new(&SurrogateConfig::default()).is_none());
}

#[test]
fn cookie_kinds_need_a_key_file_and_a_real_virtual_host() {
    let ok = |t: &str| {
        toml_edit::de::from_str::<SurrogateConfig>(t)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate().map(|_| c).map_err(|e| e.to_string()))
    };
    let c = ok("kinds = [\"ip\", \"cookie\"]\nkey_file = \"/k\"").unwrap();
    assert!(c.has(SurrogateKind::Ip) && c.has(SurrogateKind::Cookie));
    assert_eq!(c.cookie_ttl, Duration::from_secs(900));
    assert_eq!(c.virtual_host, "gatehouse.auth");
    let c = ok("kind = \"cookie\"\nkey_file = \"/k\"").unwrap();
    assert!(!c.has(SurrogateKind::Ip));
    for bad in [
        "kind = \"cookie\"",
        "kind = \"ip\"\nkinds = [\"cookie\"]\nkey_file = \"/k\"",
        "kinds = [\"cookie\", \"ip\", \"cookie\"]\nkey_file = \"/k\"",
        "kinds = [\"off\"]",
        "kind = \"cookie\"\nkey_file = \"/k\"\ncookie_ttl = \"0s\"",
        "kind = \"cookie\"\nkey_file = \"/k\"\nvirtual_host = \"localhost\"",
        "kind = \"cookie\"\nkey_file = \"/k\"\nvirtual_host = \"a b.c\"",
        "kind = \"cookie\"\nkey_file = \"/k\"\nvirtual_host = \"10.0.0.1\"",
    ] {
        assert!(ok(bad).is_err(), "{bad}");
    }
}

fn at(ip: &str, shared: bool) -> ClientPlace {
    let ip: IpAddr = ip.parse().unwrap();
    ClientPlace { ip, shared }
}

fn table(ttl: Duration) -> Surrogates {
    let c = SurrogateConfig {
        kind: SurrogateKind::Ip,
        ttl,
        exclude: vec!["10.0.0.0/8".parse().unwrap()],
        ..SurrogateConfig::default()
    };
    Surrogates::new(&c).unwrap()
}

#[test]
fn excluded_and_shared_addresses_are_never_eligible() {
    let s = table(Duration::from_secs(60));
    assert!(s.eligible(&at("192.0.2.1", false)));
    assert!(!s.eligible(&at("192.0.2.1", true)));
    assert!(!s.eligible(&at("10.1.2.3", false)));
    assert!(!s.eligible(&at("::ffff:10.1.2.3", false)));
}

/// A chain of one local realm with alice and bob.
fn chain(dir: &std::path::Path) -> RealmChain {
    let file = dir.join("users.toml");
    for user in ["alice", "bob"] {
        set_password(&file, user, "pw", None).unwrap();
    }
    let cfg = LocalRealmConfig {
        name: "local".into(),
        users_file: file,
        case_insensitive: true,
        strip_domain: true,
        domains: vec![],
    };
    let slots = Arc::new(BlockingSlots::new(1, Duration::from_secs(5)));
    RealmChain::new(vec![Realm::Local(LocalRealm::load(&cfg, &slots).unwrap())])
}

async fn proven_as(chain: &RealmChain, user: &str) -> Authenticated {
    Authenticated {
        identity: chain.lookup(user).await.unwrap().unwrap(),
        scheme: "basic",
        cached: false,
        connection_bound: false,
        mutual: None,
    }
}

fn user_of(a: Option<Authenticated>) -> Option<String> {
    a.map(|a| {
        assert_eq!(a.scheme, SURROGATE_IP);
        a.identity.user.clone()
    })
}

#[tokio::test(start_paused = true)]
async fn proof_lends_the_place_until_ttl_after_the_last_proof_and_use_does_not_extend_it() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(dir.path());
    let revoked = Revoked::default();
    let ttl = Duration::from_secs(60);
    let s = table(ttl);
    let here = at("2001:db8:1:2::10", false);
    assert_eq!(user_of(s.recall(&here, &chain, &revoked)), None);
    s.proven(&here, &proven_as(&chain, "alice").await);
    assert_eq!(
        user_of(s.recall(&here, &chain, &revoked)).as_deref(),
        Some("alice")
    );
    // Another host on the same /64 is not alice: a surrogate is never
    // lent to a prefix (the throttle counts one; this must not).
    let same_lan = at("2001:db8:1:2::99", false);
    assert_eq!(user_of(s.recall(&same_lan, &chain, &revoked)), None);
    assert_eq!(
        user_of(s.recall(&at("2001:db8:1:3::10", false), &chain, &revoked)),
        None
    );

    // Used all along, it still ends ttl after the proof.
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(s.recall(&here, &chain, &revoked).is_some());
    }
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(user_of(s.recall(&here, &chain, &revoked)), None);

    // A proof extends it (a proof within a second of the last is not written).
    s.proven(&here, &proven_as(&chain, "alice").await);
    tokio::time::advance(Duration::from_secs(40)).await;
    s.proven(&here, &proven_as(&chain, "alice").await);
    tokio::time::advance(Duration::from_secs(40)).await;
    assert!(
        s.recall(&here, &chain, &revoked).is_some(),
        "slid on the second proof"
    );
}

#[tokio::test]
async fn an_ipv4_mapped_address_is_its_ipv4_address() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(dir.path());
    let revoked = Revoked::default();
    let s = table(Duration::from_secs(60));
    s.proven(&at("192.0.2.9", false), &proven_as(&chain, "alice").await);
    let mapped = s.recall(&at("::ffff:192.0.2.9", false), &chain, &revoked);
    assert_eq!(user_of(mapped).as_deref(), Some("alice"));
}

#[tokio::test(start_paused = true)]
async fn another_user_replaces_and_a_revocation_or_another_chain_ends_it() {
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(dir.path());
    let revoked = Revoked::default();
    let s = table(Duration::from_secs(60));
    let here = at("192.0.2.7", false);
    s.proven(&here, &proven_as(&chain, "alice").await);
    tokio::time::advance(Duration::from_millis(10)).await;
    s.proven(&here, &proven_as(&chain, "bob").await);
    assert_eq!(
        user_of(s.recall(&here, &chain, &revoked)).as_deref(),
        Some("bob")
    );

    // Revoking alice leaves bob's; revoking bob ends it.
    revoked.revoke("alice");
    assert!(s.recall(&here, &chain, &revoked).is_some());
    tokio::time::advance(Duration::from_millis(10)).await;
    revoked.revoke("bob");
    assert_eq!(user_of(s.recall(&here, &chain, &revoked)), None);
    // A new proof after the revocation counts.
    tokio::time::advance(Duration::from_millis(10)).await;
    s.proven(&here, &proven_as(&chain, "bob").await);
    assert!(s.recall(&here, &chain, &revoked).is_some());

    // Realms rebuilt by a reload: no longer vouched for.
    let other = self::chain(tempfile::tempdir().unwrap().path());
    assert_eq!(user_of(s.recall(&here, &other, &revoked)), None);

    // Nothing is kept for excluded or shared places, even after a proof.
    for p in [at("10.0.0.1", false), at("192.0.2.8", true)] {
        s.proven(&p, &proven_as(&chain, "alice").await);
        assert!(s.recall(&p, &chain, &revoked).is_none());
    }
    // The reloaded chain's refusal dropped the one entry; none was added.
    assert_eq!(s.addresses(), 0);
}
