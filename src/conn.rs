//! Per-connection state, shared by the connection task, its I/O guard and
//! every request served on it. Its authentication state is one value owned
//! by `auth` (NTLM and Negotiate authenticate a connection, not a request).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Instant;

use crate::auth::AuthState;
use crate::error::ProxyError;

pub(crate) mod slots;

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
    /// Who the connection authenticated as, a handshake in progress, the
    /// Basic memo and the failure count (see `auth::state`).
    pub auth: AuthState,
    /// The upstream connection pinned to this one (origin NTLM/Negotiate);
    /// it closes when this state is dropped.
    pub pinned: crate::forward::pin::Slot,
    /// The connection's place under `listener.max_connections`, held until the
    /// last user of this state (a tunnel outlives its HTTP connection) is gone.
    _slot: Option<slots::Slot>,
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
            auth: AuthState::new(),
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
