//! One transaction: what it is decided by, the access record its phases
//! fill, and the in-flight guard — carried from the request's first byte to
//! its one log line. (pingora carries one per-request context the same way.)
//!
//! A transaction ends through exactly one of three exits, each of which
//! logs it once: [`Transaction::refuse`] (the proxy's own answer, logged
//! now), [`Transaction::respond`] (the origin's response, logged when its
//! body is done) or [`Transaction::into_tunnel`] (a tunnel, logged when its
//! session ends). Phases in between return values; none writes a line.

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use super::forward::Forwarded;
use super::Proxy;
use crate::accesslog::AccessRecord;
use crate::auth::Authenticated;
use crate::body::{Finish, ResponseBody};
use crate::conn::{ConnState, InFlight};
use crate::error::ProxyError;
use crate::snapshot::Snapshot;

/// One request, from its head to its log line.
pub(super) struct Transaction {
    /// What it is decided by, start to end, whatever a reload swaps in.
    pub snapshot: Arc<Snapshot>,
    /// The log line, filled as the phases learn things.
    pub record: AccessRecord,
    /// The connection is busy until the answer is written.
    in_flight: InFlight,
    /// A CONNECT: a refusal also ends the connection (tunnel bytes may follow).
    pub is_connect: bool,
}

/// What a tunnel takes over from its CONNECT's transaction: the record it
/// logs at its end, the in-flight guard and the snapshot it keeps.
pub(super) struct TunnelTx {
    pub snapshot: Arc<Snapshot>,
    pub record: AccessRecord,
    pub in_flight: InFlight,
}

impl Transaction {
    /// A transaction for `req` on `conn`, under the snapshot in force now:
    /// the request's own fields are in the record before anything can fail.
    pub fn begin(proxy: &Proxy, conn: &Arc<ConnState>, req: &Request<Incoming>) -> Self {
        let mut record = AccessRecord::new(conn.client.ip(), conn.local.ip());
        super::destination::describe(&mut record, req);
        Self {
            snapshot: proxy.snapshot(),
            record,
            in_flight: conn.begin_request(),
            is_connect: req.method() == http::Method::CONNECT,
        }
    }

    /// The rules that decided and their tags, for `x-rule` and `x-tags`.
    pub fn decided_by(&mut self, rule: Option<String>, tags: &[Arc<str>]) {
        self.record.rule = rule;
        self.record.tags = tags.iter().map(|t| t.to_string()).collect();
    }

    /// The destination's categories, for the log.
    pub fn categorised(&mut self, categories: &[Arc<str>]) {
        self.record.categories = categories.iter().map(|c| c.to_string()).collect();
    }

    /// Who the request authenticated as, for the log.
    pub fn authenticated(&mut self, who: &Authenticated) {
        self.record.username = Some(who.identity.user.clone());
        self.record.auth_groups = who.identity.group_names();
        self.record.auth_scheme = Some(who.log_scheme());
    }

    /// Exit 1: the proxy's own answer to `e`, logged now. After a refused
    /// CONNECT the connection closes: the client may already be sending
    /// tunnel bytes, which must never be read as a request.
    pub fn refuse(self, proxy: &Proxy, conn: &ConnState, e: ProxyError) -> Response<ResponseBody> {
        let close = self.is_connect;
        self.refuse_keeping(proxy, conn, e, close)
    }

    /// Exit 1 for an authentication refusal, whose connection stays open
    /// unless `close` (NTLM's handshake goes on on it, after a CONNECT too:
    /// the framing guard stops reading until the CONNECT is answered).
    pub fn refuse_keeping(
        self,
        proxy: &Proxy,
        conn: &ConnState,
        e: ProxyError,
        close: bool,
    ) -> Response<ResponseBody> {
        if self.is_connect {
            conn.answer_connect(false);
        }
        super::answer::answer_error(proxy, e, self.record, self.in_flight, close)
    }

    /// Exit 1 for the proxy's own redirect, a cookie surrogate's step
    /// (see [`crate::auth::surrogate_cookie`]).
    pub fn redirect(
        self,
        proxy: &Proxy,
        to: &crate::auth::surrogate_cookie::Redirect,
    ) -> Response<ResponseBody> {
        crate::answer::redirect(to, self.record, &proxy.log).map(|b| b.in_flight(self.in_flight))
    }

    /// Exit 2: the origin's response, streamed and logged when its body is
    /// done (with the request bytes counted on the way up).
    pub fn respond(mut self, proxy: &Proxy, f: Forwarded) -> Response<ResponseBody> {
        self.record.status = f.resp.status().as_u16();
        self.record.action = f.action;
        let finish = Finish {
            record: self.record,
            log: proxy.log.clone(),
            cs_bytes: Some(f.cs_bytes),
        };
        let in_flight = self.in_flight;
        f.resp.map(|b| b.logged(finish).in_flight(in_flight))
    }

    /// Exit 3: a tunnel takes the record, logged when its session ends.
    pub fn into_tunnel(self) -> TunnelTx {
        TunnelTx {
            snapshot: self.snapshot,
            record: self.record,
            in_flight: self.in_flight,
        }
    }
}
