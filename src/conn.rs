//! Per-connection state, shared by the connection task, its I/O guard and
//! every request served on it. Later layers attach the authenticated
//! identity here (NTLM and Negotiate authenticate a connection, not a request).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Instant;

use crate::auth::identity::Authenticated;
use crate::auth::ntlm_helper::Lease;
use crate::error::ProxyError;

pub mod slots;

/// The proxy's answer to a CONNECT, as the framing guard needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectVerdict {
    /// No answer to the CONNECT yet.
    Pending,
    /// The CONNECT was answered `200`: the rest is tunnel bytes.
    Accepted,
    /// The CONNECT was refused: stop reading.
    Refused,
}

/// One accepted client connection.
#[derive(Debug)]
pub struct ConnState {
    /// The connection's number, for diagnostics.
    pub id: u64,
    /// The client's address.
    pub client: SocketAddr,
    /// The proxy address the client connected to.
    pub local: SocketAddr,
    started: Instant,
    /// Requests whose response has not been fully written yet.
    in_flight: AtomicUsize,
    /// When the last response finished, in ms since `started`.
    last_done_ms: AtomicU64,
    /// Requests served on this connection (keep-alive reuse is visible in logs).
    requests: AtomicU64,
    /// A framing error found by the guard; answered and logged by the listener.
    framing_error: Mutex<Option<ProxyError>>,
    /// The answer to the CONNECT in progress, and the guard waiting for it.
    connect: Mutex<(ConnectVerdict, Option<Waker>)>,
    /// Consecutive failed authentication attempts.
    auth_failures: AtomicU32,
    /// The last identity established on this connection (NTLM and Negotiate
    /// authenticate the connection; Basic re-presents on every request).
    identity: Mutex<Option<Authenticated>>,
    /// An NTLM handshake between its type 1 and type 3: the leased helper.
    ntlm: Mutex<Option<PendingNtlm>>,
    /// The last Basic credentials verified on this connection, as the exact
    /// header bytes: a client re-sending them needs no hash and no cache lookup.
    last_basic: Mutex<Option<(http::HeaderValue, Authenticated, Instant)>>,
    /// The upstream connection pinned to this one (origin NTLM/Negotiate);
    /// it closes when this state is dropped.
    pub pinned: crate::forward::pin::Slot,
    /// The connection's place under `listener.max_connections`, held until the
    /// last user of this state (a tunnel outlives its HTTP connection) is gone.
    _slot: Option<slots::Slot>,
}

/// A helper leased for this connection's NTLM handshake, with the client
/// address's place among pending handshakes. A timer shares it: a handshake
/// whose type 3 has not come within `handshake_timeout` is dropped there —
/// helper and place given back — even if the client never sends another byte.
pub struct PendingNtlm {
    held: Arc<Mutex<Option<(Lease, slots::AddressSlot)>>>,
}

impl std::fmt::Debug for PendingNtlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingNtlm").finish_non_exhaustive()
    }
}

impl ConnState {
    /// A connection's state with no connection slot (tests).
    pub fn new(id: u64, client: SocketAddr, local: SocketAddr) -> Arc<Self> {
        Self::with_slot(id, client, local, None)
    }

    /// A connection holding `slot` for as long as it (or its tunnel) lives.
    pub fn with_slot(
        id: u64,
        client: SocketAddr,
        local: SocketAddr,
        slot: Option<slots::Slot>,
    ) -> Arc<Self> {
        Arc::new(Self {
            id,
            client,
            local,
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            framing_error: Mutex::new(None),
            connect: Mutex::new((ConnectVerdict::Pending, None)),
            auth_failures: AtomicU32::new(0),
            identity: Mutex::new(None),
            ntlm: Mutex::new(None),
            last_basic: Mutex::new(None),
            pinned: Default::default(),
            _slot: slot,
        })
    }

    /// Records the proxy's answer to the CONNECT and wakes the guard.
    pub fn answer_connect(&self, accepted: bool) {
        let mut c = self.connect.lock().unwrap_or_else(|p| p.into_inner());
        c.0 = if accepted {
            ConnectVerdict::Accepted
        } else {
            ConnectVerdict::Refused
        };
        if let Some(w) = c.1.take() {
            w.wake();
        }
    }

    /// Takes the answer to the pending CONNECT, or registers `waker` for it.
    pub fn take_connect_verdict(&self, waker: &Waker) -> ConnectVerdict {
        let mut c = self.connect.lock().unwrap_or_else(|p| p.into_inner());
        match c.0 {
            ConnectVerdict::Pending => {
                c.1 = Some(waker.clone());
                ConnectVerdict::Pending
            }
            v => {
                c.0 = ConnectVerdict::Pending;
                v
            }
        }
    }

    /// Counts a failed attempt; returns how many in a row.
    pub fn auth_failed(&self) -> u32 {
        self.auth_failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Binds an identity to the connection and resets the failure count.
    pub fn auth_succeeded(&self, who: &Authenticated) {
        self.auth_failures.store(0, Ordering::Relaxed);
        *self.identity.lock().unwrap_or_else(|p| p.into_inner()) = Some(who.clone());
    }

    /// Keeps an NTLM handshake's helper until the type 3 arrives, or until
    /// `expires_in` has passed, whichever is first. A handshake already
    /// pending on this connection is dropped.
    pub fn ntlm_started(
        &self,
        lease: Lease,
        place: slots::AddressSlot,
        expires_in: std::time::Duration,
    ) {
        let held = Arc::new(Mutex::new(Some((lease, place))));
        let timer = Arc::downgrade(&held);
        tokio::spawn(async move {
            tokio::time::sleep(expires_in).await;
            // Gone already when the type 3 took it or the connection closed.
            if let Some(held) = timer.upgrade() {
                if held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .is_some()
                {
                    tracing::info!("NTLM handshake not completed in time: helper returned");
                }
            }
        });
        *self.ntlm.lock().unwrap_or_else(|p| p.into_inner()) = Some(PendingNtlm { held });
    }

    /// The helper of the handshake in progress, unless it expired.
    pub fn ntlm_take(&self) -> Option<Lease> {
        let p = self.ntlm.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let taken = p.held.lock().unwrap_or_else(|p| p.into_inner()).take();
        taken.map(|(lease, _place)| lease)
    }

    /// Remembers verified Basic credentials for this connection.
    pub fn remember_basic(&self, value: &http::HeaderValue, who: &Authenticated) {
        *self.last_basic.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((value.clone(), who.clone(), Instant::now()));
    }

    /// The identity of these exact Basic credentials, if this connection
    /// verified them less than `ttl` ago.
    pub fn recall_basic(
        &self,
        value: &http::HeaderValue,
        ttl: std::time::Duration,
    ) -> Option<Authenticated> {
        let last = self.last_basic.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((v, who, at)) if v == value && at.elapsed() < ttl => Some(who.clone()),
            _ => None,
        }
    }

    /// The identity bound to this connection, if any.
    pub fn identity(&self) -> Option<Authenticated> {
        self.identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks a request as started; the returned guard marks it finished when dropped
    /// (after hyper has written the last byte of the response body, or given up).
    pub fn begin_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight::new(self.clone())
    }

    /// Is a request in flight?
    pub fn is_busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    /// How many requests this connection has carried.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// When the connection last finished a response (or was accepted).
    pub fn last_done(&self) -> Instant {
        self.started + std::time::Duration::from_millis(self.last_done_ms.load(Ordering::Relaxed))
    }

    /// Records the framing guard's refusal, for the log.
    pub fn set_framing_error(&self, e: ProxyError) {
        *self.framing_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// Takes the framing guard's refusal, if there was one.
    pub fn take_framing_error(&self) -> Option<ProxyError> {
        self.framing_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// A request in flight on a connection; see [`ConnState::begin_request`].
pub use crate::body::InFlight;

impl crate::body::Busy for ConnState {
    fn finished(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_done_ms.store(ms, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
