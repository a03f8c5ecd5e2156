//! The smart lockout's decision, and the memory store under it.

use super::*;
use std::net::IpAddr;

const BUDGETS: Budgets = Budgets {
    unfamiliar: 2,
    familiar: 2,
};

fn place(ip: &str, failures: u32) -> Place {
    Place {
        key: ip.parse().unwrap(),
        failures,
    }
}

/// An attempt whose login is the user's own spelling.
fn at<'a>(user: &'a str, password: &'a str) -> Attempt<'a> {
    Attempt {
        user,
        login: user,
        password,
    }
}

fn cfg(window: Duration) -> ThrottleConfig {
    ThrottleConfig {
        user_failures: 2,
        familiar_failures: 2,
        address_failures: 3,
        window,
        ..ThrottleConfig::default()
    }
}

#[test]
fn the_decision_table() {
    let at = place("10.0.0.1", 3);
    let s = |familiar, f, u, p| Standing {
        familiar,
        repeated: false,
        familiar_failures: f,
        unfamiliar_failures: u,
        place_failures: p,
    };
    assert_eq!(judge(&s(false, 0, 1, 0), BUDGETS, &at), Ok(Gate::Ask));
    assert_eq!(
        judge(&s(false, 0, 2, 0), BUDGETS, &at),
        Err(Throttled::User)
    );
    // A stranger's spent budget does not touch a familiar place…
    assert_eq!(judge(&s(true, 0, 50, 99), BUDGETS, &at), Ok(Gate::Ask));
    // …which has its own.
    assert_eq!(
        judge(&s(true, 2, 0, 0), BUDGETS, &at),
        Err(Throttled::Familiar)
    );
    // The place's budget refuses only users not known there.
    assert_eq!(
        judge(&s(false, 0, 0, 3), BUDGETS, &at),
        Err(Throttled::Address)
    );
    assert_eq!(
        judge(&s(false, 0, 0, 3), BUDGETS, &place("10.0.0.1", 0)),
        Ok(Gate::Ask)
    );
    // A repeated password is known bad, whatever the counts.
    let repeated = Standing {
        repeated: true,
        ..s(false, 9, 9, 9)
    };
    assert_eq!(judge(&repeated, BUDGETS, &at), Ok(Gate::KnownBad));
}

#[tokio::test]
async fn a_stranger_spends_only_the_unfamiliar_budget() {
    let t = Throttle::new(&cfg(Duration::from_secs(60))).unwrap();
    let (home, away) = (place("10.0.0.1", 30), place("192.0.2.9", 30));
    t.succeeded("alice", &home).await;
    for i in 0..10 {
        let pw = format!("guess-{i}");
        match t.check(&at("alice", &pw), &away).await {
            Ok(Gate::Ask) => t.failed(&at("alice", &pw), &away).await,
            Ok(Gate::KnownBad) => panic!("a new guess is not known"),
            Err(why) => assert_eq!((i, why), (i.max(2), Throttled::User)),
        }
    }
    assert_eq!(
        t.check(&at("alice", "x"), &away).await,
        Err(Throttled::User)
    );
    assert_eq!(t.check(&at("alice", "right"), &home).await, Ok(Gate::Ask));
    // Typos at home have their own budget.
    t.failed(&at("alice", "typo-1"), &home).await;
    t.failed(&at("alice", "typo-2"), &home).await;
    assert_eq!(
        t.check(&at("alice", "right"), &home).await,
        Err(Throttled::Familiar)
    );
}

#[tokio::test]
async fn one_stale_password_counts_once_however_often_it_returns() {
    let t = Throttle::new(&cfg(Duration::from_secs(60))).unwrap();
    let phone = place("10.0.0.7", 30);
    for _ in 0..20 {
        match t.check(&at("bob", "old-password"), &phone).await {
            Ok(Gate::Ask) => t.failed(&at("bob", "old-password"), &phone).await,
            Ok(Gate::KnownBad) => {}
            Err(why) => panic!("locked out by one stale password: {why:?}"),
        }
    }
    assert_eq!(
        t.check(&at("bob", "old-password"), &phone).await,
        Ok(Gate::KnownBad)
    );
    assert_eq!(
        t.check(&at("bob", "new-password"), &phone).await,
        Ok(Gate::Ask)
    );
    // Marked per user: the same string for another user is a new password.
    assert_eq!(
        t.check(&at("carol", "old-password"), &phone).await,
        Ok(Gate::Ask)
    );
}

#[tokio::test]
async fn a_busy_place_refuses_only_users_not_known_there() {
    let t = Throttle::new(&cfg(Duration::from_secs(60))).unwrap();
    let citrix = place("10.9.9.9", 3);
    t.succeeded("dave", &citrix).await;
    for u in ["u1", "u2", "u3"] {
        t.failed(&at(u, "typo"), &citrix).await;
    }
    assert_eq!(
        t.check(&at("eve", "spray"), &citrix).await,
        Err(Throttled::Address)
    );
    assert_eq!(t.check(&at("dave", "right"), &citrix).await, Ok(Gate::Ask));
}

#[tokio::test]
async fn failures_age_out_of_the_window() {
    let t = Throttle::new(&cfg(Duration::from_millis(50))).unwrap();
    let here = place("10.0.0.1", 0);
    t.failed(&at("alice", "a"), &here).await;
    t.failed(&at("alice", "b"), &here).await;
    assert_eq!(
        t.check(&at("alice", "c"), &here).await,
        Err(Throttled::User)
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(t.check(&at("alice", "c"), &here).await, Ok(Gate::Ask));
    assert_eq!(
        t.check(&at("alice", "a"), &here).await,
        Ok(Gate::Ask),
        "forgotten with the window"
    );
}

#[tokio::test]
async fn familiar_places_are_bounded_per_user() {
    let t = Throttle::new(&ThrottleConfig {
        familiar_places: 2,
        ..cfg(Duration::from_secs(60))
    })
    .unwrap();
    for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        t.succeeded("alice", &place(ip, 0)).await;
    }
    let standing = |ip: &str| match &t.store {
        Store::Local(l) => l.standing("alice", &[0; 16], ip.parse::<IpAddr>().unwrap()),
        Store::Redis(_) => unreachable!(),
    };
    assert!(!standing("10.0.0.1").familiar, "the oldest gave way");
    assert!(standing("10.0.0.2").familiar && standing("10.0.0.3").familiar);
}

#[tokio::test]
async fn a_password_refused_for_one_spelling_is_not_known_bad_for_another() {
    let t = Throttle::new(&cfg(Duration::from_secs(60))).unwrap();
    let desk = place("10.0.0.1", 30);
    let partner = Attempt {
        user: "alice",
        login: "PARTNER\\alice",
        password: "alice-pw",
    };
    t.failed(&partner, &desk).await;
    assert_eq!(t.check(&partner, &desk).await, Ok(Gate::KnownBad));
    let own = Attempt {
        login: "EXAMPLE\\alice",
        ..partner
    };
    assert_eq!(t.check(&own, &desk).await, Ok(Gate::Ask));
}
