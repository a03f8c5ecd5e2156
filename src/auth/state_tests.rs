use std::net::IpAddr;

use super::*;
use crate::auth::ntlm_helper::HelperPool;
use crate::auth::settings::NtlmConfig;
use crate::directory::Identity;
use crate::limit::PerAddress;

fn who(user: &str, bound: bool) -> Authenticated {
    Authenticated {
        identity: Arc::new(Identity {
            user: user.into(),
            realm: "corp".into(),
            dn: None,
            groups: vec![],
        }),
        scheme: if bound { "ntlm" } else { "basic" },
        cached: false,
        connection_bound: bound,
        mutual: None,
    }
}

struct Handshakes {
    pool: Arc<HelperPool>,
    pending: Arc<PerAddress>,
    ip: IpAddr,
}

impl Handshakes {
    fn new() -> Self {
        let cfg = NtlmConfig {
            max_helpers: 2,
            ..NtlmConfig::default()
        };
        Self {
            pool: HelperPool::new(&cfg),
            pending: PerAddress::new(4),
            ip: "10.0.0.7".parse().unwrap(),
        }
    }

    /// Sends a challenge on `state`, holding a helper and a place.
    async fn challenge(&self, state: &AuthState, expires_in: Duration) {
        let lease = self.pool.lease_without_helper().await;
        let place = self.pending.try_take(self.ip).unwrap();
        state.challenge_sent(lease, place, expires_in);
    }

    /// (helpers leased, places held)
    fn held(&self) -> (usize, usize) {
        (2 - self.pool.available(), self.pending.open(self.ip))
    }
}

#[tokio::test(start_paused = true)]
async fn anonymous_then_challenged_then_bound() {
    let h = Handshakes::new();
    let state = AuthState::new();
    assert!(state.bound().is_none() && !state.challenged());
    assert_eq!((state.failed(), state.failed()), (1, 2));

    h.challenge(&state, Duration::from_secs(10)).await;
    assert!(state.challenged());
    assert_eq!(h.held(), (1, 1));
    // The type 3 takes the helper; the place is given back at once.
    let lease = state.take_challenge().expect("the handshake's helper");
    assert!(!state.challenged());
    assert_eq!(h.held(), (1, 0));
    drop(lease);
    assert_eq!(h.held(), (0, 0));
    // A second type 3 finds no handshake.
    assert!(state.take_challenge().is_none());

    state.succeeded(&who("alice", true));
    assert_eq!(state.failures(), 0);
    assert_eq!(state.bound().unwrap().identity.user, "alice");
    // A type 3 without a handshake leaves the binding alone.
    assert!(state.take_challenge().is_none());
    assert!(state.bound().is_some());
    // A new handshake replaces the binding (fails closed while it runs).
    h.challenge(&state, Duration::from_secs(10)).await;
    assert!(state.bound().is_none() && state.challenged());
    // Basic succeeding mid-handshake leaves the handshake alone...
    state.succeeded(&who("bob", false));
    assert!(state.challenged());
    drop(state.take_challenge());
    state.succeeded(&who("alice", true));
    // ...and ends a binding.
    state.succeeded(&who("bob", false));
    assert!(state.bound().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_handshake_not_finished_in_time_gives_its_helper_back() {
    let h = Handshakes::new();
    let state = AuthState::new();
    h.challenge(&state, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(h.held(), (1, 1), "still within handshake_timeout");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(h.held(), (0, 0), "helper and place returned at expiry");
    assert!(!state.challenged());
    assert!(
        state.take_challenge().is_none(),
        "a late type 3 finds nothing"
    );

    // A newer handshake is not ended by the timer of the one it replaced.
    h.challenge(&state, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    h.challenge(&state, Duration::from_secs(10)).await;
    assert_eq!(h.held(), (1, 1), "the replaced handshake let go");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        state.challenged(),
        "the first timer would have fired by now"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!state.challenged());
    assert_eq!(h.held(), (0, 0));

    // Closing the connection gives everything back, timer or not.
    h.challenge(&state, Duration::from_secs(3600)).await;
    drop(state);
    assert_eq!(h.held(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_basic_memo_holds_exact_credentials_for_its_ttl() {
    let state = AuthState::new();
    let value = HeaderValue::from_static("Basic YWxpY2U6cHc=");
    let other = HeaderValue::from_static("Basic YWxpY2U6cHg=");
    let ttl = Duration::from_secs(60);
    state.remember_basic(&value, &who("alice", false));
    assert_eq!(
        state.recall_basic(&value, ttl).unwrap().identity.user,
        "alice"
    );
    assert!(state.recall_basic(&other, ttl).is_none());
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(state.recall_basic(&value, ttl).is_none(), "past its ttl");
}

#[test]
fn the_basic_memo_keeps_no_part_of_the_read_buffer() {
    // hyper's header values are slices of the connection's read buffer: a
    // memo that shared it kept 8 KiB alive per idle authenticated tunnel.
    let buffer = bytes::Bytes::from(b"CONNECT h:443 ...Basic YWxpY2U6cHc= ...".repeat(200));
    let at = buffer.len() / 2;
    let value = HeaderValue::from_maybe_shared(buffer.slice(at..at + 18)).unwrap();
    let state = AuthState::new();
    state.remember_basic(&value, &who("alice", false));
    let inner = state.lock();
    let kept = inner
        .basic
        .as_ref()
        .unwrap()
        .value
        .as_bytes()
        .as_ptr_range();
    let buf = buffer.as_ptr_range();
    assert!(
        kept.end <= buf.start || kept.start >= buf.end,
        "the memo shares the read buffer"
    );
    assert_eq!(inner.basic.as_ref().unwrap().value, value);
    assert!(inner.basic.as_ref().unwrap().value.is_sensitive());
}
