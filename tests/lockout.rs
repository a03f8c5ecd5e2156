//! The smart lockout on real sockets, as real networks use the proxy:
//! clients on distinct loopback addresses (127.0.0.x) stand for a user's
//! desk, a stranger, a terminal server; a real OpenLDAP counts the binds.
//! Each test fails against the throttle that counted failures per name from
//! anywhere (and emptied the credential cache on every SIGHUP).

mod common;

use common::lab::Slapd;
use common::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=test";

fn status(text: &str) -> u16 {
    status_of(text)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strangers_guesses_do_not_lock_the_user_out_of_where_they_work() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &local_realm(dir.path()));
    let (url, p) = (origin.url("/bytes/3"), gh.addr());
    let (desk, stranger) = ("127.0.0.2", "127.0.0.3");
    assert_eq!(
        status(&get_from(p, desk, &url, "alice:alice-pw").await),
        200
    );
    for i in 0..10 {
        let text = get_from(p, stranger, &url, &format!("alice:guess-{i}")).await;
        assert_eq!(status(&text), 407, "{text}");
    }
    // The stranger spent the unfamiliar budget: even the right password
    // from there is refused without asking the realm…
    let text = get_from(p, stranger, &url, "Alice:alice-pw").await;
    assert!(text.contains("authentication_throttled"), "{text}");
    // …while alice signs in anew (another spelling: not the cached entry)
    // from her desk.
    assert_eq!(
        status(&get_from(p, desk, &url, "ALICE:alice-pw").await),
        200
    );
    let lines = gh.log_lines(13);
    assert_eq!(lines[11]["c-ip"], stranger);
    assert_eq!(lines[12]["c-ip"], desk);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_terminal_servers_typos_stop_strangers_there_not_its_known_users() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start().await;
    let gh = Gatehouse::start("", &local_realm(dir.path()));
    let (url, p, citrix) = (origin.url("/bytes/3"), gh.addr(), "127.0.0.4");
    assert_eq!(
        status(&get_from(p, citrix, &url, "alice:alice-pw").await),
        200
    );
    // Forty mistyped logins from the shared server (address budget: 30).
    for i in 0..40 {
        let text = get_from(p, citrix, &url, &format!("user{i}:typo")).await;
        assert_eq!(status(&text), 407, "{text}");
    }
    // bob never signed in there: a spray from that address stops him too…
    let text = get_from(p, citrix, &url, "bob:bob-pw").await;
    assert!(text.contains("authentication_throttled"), "{text}");
    // …alice, known there, signs in anew; bob from his own desk does too.
    assert_eq!(
        status(&get_from(p, citrix, &url, "ALICE:alice-pw").await),
        200
    );
    assert_eq!(
        status(&get_from(p, "127.0.0.5", &url, "bob:bob-pw").await),
        200
    );
    assert!(gh
        .stderr()
        .contains("too many failed passwords from this client address"));
}

fn ldap_proxy(lab: &Slapd, extra: &str) -> Gatehouse {
    Gatehouse::start(
        "",
        &format!(
            "[auth]\nrequired = true\nrealms = [\"{}\"]\n{extra}\n",
            lab.realm_file("memberof", "").display()
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_saved_password_costs_one_bind_however_often_it_returns() {
    let lab = Slapd::start();
    let origin = Origin::start().await;
    // Refusals are cached for a millisecond: every retry misses the cache,
    // as a phone retrying every `failure_ttl` would.
    let gh = ldap_proxy(&lab, "failure_ttl = \"1ms\"");
    let (url, p) = (origin.url("/bytes/3"), gh.addr());
    let before = lab.binds_for(ALICE_DN);
    for _ in 0..20 {
        let text = get_from(p, "127.0.0.6", &url, "alice:last-years-pw").await;
        assert_eq!(status(&text), 407, "{text}");
        assert!(!text.contains("authentication_throttled"), "{text}");
    }
    assert_eq!(lab.binds_for(ALICE_DN) - before, 1, "asked once");
    assert_eq!(
        status(&get_from(p, "127.0.0.6", &url, "alice:alice-pw").await),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_signed_in_users_signed_in() {
    let lab = Slapd::start();
    let origin = Origin::start().await;
    let gh = ldap_proxy(&lab, "");
    let (url, p) = (origin.url("/bytes/3"), gh.addr());
    let (desk, stranger) = ("127.0.0.7", "127.0.0.8");
    assert_eq!(
        status(&get_from(p, desk, &url, "alice:alice-pw").await),
        200
    );
    for i in 0..4 {
        get_from(p, stranger, &url, &format!("alice:guess-{i}")).await;
    }
    let binds = lab.binds_for(ALICE_DN);
    gh.signal("HUP");
    gh.wait_stderr("configuration reloaded", 1);
    // The measured outage: after 4 wrong passwords and one SIGHUP the real
    // user was refused. Now her cached sign-in survives, with no new bind.
    for _ in 0..3 {
        assert_eq!(
            status(&get_from(p, desk, &url, "alice:alice-pw").await),
            200
        );
    }
    assert_eq!(lab.binds_for(ALICE_DN), binds, "answered from the cache");
}

/// From an attacker's review: guesses sent all at once each read the same
/// standing before any failure was counted, and all reached the directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_parallel_guesses_spends_the_budget_and_no_more() {
    let lab = Slapd::start();
    let origin = Origin::start().await;
    let gh = ldap_proxy(&lab, "");
    let (url, p) = (origin.url("/bytes/3"), gh.addr());
    let before = lab.binds_for(ALICE_DN);
    let guesses: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                get_from(p, "127.0.0.20", &url, &format!("alice:burst-{i}")).await
            })
        })
        .collect();
    for g in guesses {
        assert_eq!(status(&g.await.unwrap()), 407);
    }
    assert_eq!(
        lab.binds_for(ALICE_DN) - before,
        2,
        "the unfamiliar budget, however parallel the guesses"
    );
}

/// From an attacker's review: with alice's unfamiliar budget spent, the
/// refresh of her cached (old) password was refused by the throttle, and a
/// refused refresh served the stale "verified" for the whole grace period.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_password_is_not_kept_alive_by_a_spent_budget() {
    let lab = Slapd::start();
    let origin = Origin::start().await;
    let gh = ldap_proxy(&lab, "credential_ttl = \"1s\"\nstale_grace = \"1h\"");
    let (url, p) = (origin.url("/bytes/3"), gh.addr());
    assert_eq!(
        status(&get_from(p, "127.0.0.21", &url, "alice:alice-pw").await),
        200
    );
    lab.modify(&format!(
        "dn: {ALICE_DN}\nchangetype: modify\nreplace: userPassword\nuserPassword: alice-new-pw\n"
    ));
    for i in 0..2 {
        get_from(p, "127.0.0.22", &url, &format!("alice:guess-{i}")).await;
    }
    // Let the verified credential pass its TTL (waiting for time itself).
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let text = get_from(p, "127.0.0.22", &url, "alice:alice-pw").await;
    assert_eq!(
        status(&text),
        407,
        "the old password stopped working: {text}"
    );
}
