//! One request's path through the proxy. A [`transaction`] carries the
//! request's snapshot (everything it is decided by), its access record and
//! its in-flight guard through the phases, in order:
//!
//! 1. **destination** — the canonical host and port from the request target
//!    (`destination.rs`, `decide.rs`); malformed → 400.
//! 2. **loop check** — our own `Via` pseudonym in the request → 508.
//! 3. **plan** (`decide.rs`) — [`plan::plan`], pure: the built-in CONNECT port check,
//!    `destinations.refuse` and this-proxy checks on resolved addresses,
//!    whether to authenticate, the access layers. It answers with the next
//!    step, and the proxy loops, carrying it out, until the plan is final:
//! 4. **authenticate** (`authenticate.rs`) when the plan asks — 407/503 on
//!    failure, the identity bound to the connection on success;
//! 5. **resolve** (`destination.rs`) when the plan asks, once: the
//!    addresses the policy judges are the only ones dialled;
//! 6. **forward** (`forward.rs`, HTTP) or **tunnel** (`connect.rs`: dial,
//!    `200`, then a [`crate::tunnel::session`] with detection if planned);
//! 7. **log** — one access record per transaction, through one of the
//!    transaction's three exits: a refusal (logged now), a response (logged
//!    when its body ends), a tunnel (logged when its session ends).
//!
//! `gatehouse explain` calls the same [`plan::plan`], so what it prints is
//! what the proxy does.

mod answer;
mod authenticate;
mod connect;
mod cookie;
mod decide;
mod destination;
pub(crate) mod follow;
mod forward;
mod judged;
pub mod plan;
mod transaction;
mod tunnels;
mod upgrade;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::accesslog::AccessLog;
use crate::auth::{Authenticated, Authenticator};
use crate::body::ResponseBody;
use crate::conn::ConnState;
use crate::error::ProxyError;
use crate::forward::UpstreamClient;
use crate::resolve;
use crate::snapshot::{Live, Snapshot};
use decide::{Asked, Decided, Stop};
use plan::{Plan, Settings};
use transaction::Transaction;

/// Everything a request needs that outlives it.
pub struct Proxy {
    /// The configuration in force and everything built from it; SIGHUP
    /// swaps in a new one whole (each request and tunnel keeps the one it
    /// was decided under).
    pub live: Live,
    /// The upstream HTTP client (pooled connections).
    pub client: UpstreamClient,
    /// Where every transaction's record goes.
    pub log: AccessLog,
    /// Checks credentials against the snapshot's realms.
    pub auth: Authenticator,
    /// Addresses we listen on, for loop detection: the proxy's listeners
    /// and the admin listener.
    pub listening: Vec<SocketAddr>,
    /// Cancelled when the shutdown grace period is over: tunnels close.
    pub hard_stop: CancellationToken,
    /// Tunnels outlive their request; shutdown waits for them here.
    pub tunnels: TaskTracker,
    /// The open tunnels, judged again on each reload ([`tunnels`]).
    pub open: tunnels::Tunnels,
}

impl Proxy {
    /// The snapshot in force now (see [`crate::snapshot`]).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.now()
    }

    /// The request-level settings [`plan::plan`] reads, from `snapshot`.
    pub fn plan_settings<'a>(&'a self, snapshot: &'a Snapshot) -> Settings<'a> {
        Settings {
            connect_ports: &snapshot.config.tunnel.allowed_ports,
            refused: &snapshot.refused,
            listening: &self.listening,
            auth_required: self.auth.required(),
            detection: snapshot.config.detection.enabled,
        }
    }
}

impl crate::listener::Service for Proxy {
    type Settings = Snapshot;

    fn settings(&self) -> Arc<Snapshot> {
        self.live.now()
    }

    fn serve(
        self: Arc<Self>,
        conn: Arc<ConnState>,
        req: Request<Incoming>,
    ) -> impl std::future::Future<Output = Result<Response<ResponseBody>, Infallible>> + Send + 'static
    {
        serve(self, conn, req)
    }
}

/// hyper's service function: never fails, every error is an answer.
pub async fn serve(
    proxy: Arc<Proxy>,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let mut tx = Transaction::begin(&proxy, &conn, &req);
    // 1-2. destination, loop check, the URL rules see
    let asked = match decide::asked(&req, &mut tx) {
        Ok(a) => a,
        Err(e) => return Ok(tx.refuse(&proxy, &conn, e)),
    };
    // A cookie surrogate's own steps: the virtual host, a token.
    match cookie::step(&proxy, &req, &asked) {
        Some(cookie::Step::Virtual) => return Ok(cookie::at_virtual(&proxy, &conn, req, tx).await),
        Some(cookie::Step::Token(to)) => return Ok(tx.redirect(&proxy, &to)),
        None => {}
    }
    // 3-5. plan, authenticate, resolve
    let decided = match decide::decide(&proxy, &conn, &req, &mut tx, &asked).await {
        Ok(d) => d,
        Err(Stop::Refused(e)) => return Ok(tx.refuse(&proxy, &conn, e)),
        Err(Stop::Unauthenticated { error, close }) => {
            // No credentials: a GET or HEAD goes to the cookie surrogates'
            // virtual host rather than to a 407.
            let to = matches!(error, ProxyError::AuthRequired)
                .then(|| cookie::to_virtual(&proxy, &req, &asked))
                .flatten();
            if let Some(to) = to {
                return Ok(tx.redirect(&proxy, &to));
            }
            return Ok(authenticate::refuse(&proxy, &conn, error, req, tx, close).await);
        }
    };
    // 6. forward or tunnel, to exactly the planned addresses
    Ok(carry_out(&proxy, &conn, req, tx, asked, decided).await)
}

/// Negotiate's mutual authentication token rides on the success.
fn with_mutual(
    mut resp: Response<ResponseBody>,
    who: &Option<Authenticated>,
) -> Response<ResponseBody> {
    if let Some(tok) = who.as_ref().and_then(|w| w.mutual.as_deref()) {
        if let Ok(v) = HeaderValue::from_str(&format!("Negotiate {tok}")) {
            resp.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
        }
    }
    resp
}

/// Phase 6: the final plan carried out — a tunnel, or the request
/// forwarded — and the transaction's exit.
async fn carry_out(
    proxy: &Arc<Proxy>,
    conn: &Arc<ConnState>,
    mut req: Request<Incoming>,
    mut tx: Transaction,
    asked: Asked,
    decided: Decided,
) -> Response<ResponseBody> {
    let Decided {
        next,
        who,
        addrs,
        categories,
    } = decided;
    tx.categorised(&categories);
    let dial = resolve::with_port(&addrs, asked.dest.port);
    match (next, asked.dest.target) {
        (Plan::Tunnel { decision, detect }, _) => {
            tx.decided_by(decision.rule_names(), &decision.tags);
            let intercept = decision.connect == crate::policy::ConnectMode::Intercept;
            let mode = match (intercept, detect) {
                (true, _) => connect::Mode::Intercept,
                (false, true) => connect::Mode::Detect,
                (false, false) => connect::Mode::Raw,
            };
            let judged = judged::Judged {
                snapshot: tx.snapshot.clone(),
                identity: who.as_ref().map(|w| w.identity.clone()),
                scheme: who.as_ref().map(|w| w.scheme),
                headers: judged::kept_headers(req.headers()),
                categories,
                addrs,
                host: asked.host,
                port: asked.dest.port,
                client: conn.client.ip(),
            };
            let tunnel = connect::Tunnel { dial, mode, judged };
            match connect::dial(&tunnel, &tx.snapshot.config).await {
                Ok(server) => {
                    let resp = connect::open(proxy, conn, req, tunnel, server, tx.into_tunnel());
                    with_mutual(resp, &who)
                }
                Err(e) => tx.refuse(proxy, conn, e),
            }
        }
        (Plan::Forward(decision), Some(target)) => {
            tx.decided_by(decision.rule_names(), &decision.tags);
            // An upgrade is judged as the request was, then admitted or not
            // by what it offers: refused, not a byte reaches the origin.
            let by_rule = decision.verdict_by_upgrade;
            let client_upgrade = match crate::forward::upgrade::judge(req.headers(), by_rule) {
                Ok(None) => None,
                Ok(Some(_)) => Some(hyper::upgrade::on(&mut req)),
                Err(e) => {
                    if matches!(e, ProxyError::UpgradeRefused(_)) {
                        tx.record.rule = Some(upgrade::UPGRADE_RULE.into());
                    }
                    return tx.refuse(proxy, conn, e);
                }
            };
            // Plain HTTP goes to the first address only (see `forward`).
            let Some(addr) = dial.first().copied() else {
                return tx.refuse(proxy, conn, ProxyError::nothing_to_dial(asked.host));
            };
            // Realm and user: the same login in two realms is two people.
            let user = who
                .as_ref()
                .map(|w| format!("{}\\{}", w.identity.realm, w.identity.user));
            let up = crate::forward::Upstream {
                client: &proxy.client,
                pins: &conn.pinned,
                user: user.as_deref(),
            };
            // A cookie surrogate's cookie is the proxy's, never the origin's.
            if proxy.auth.cookies().is_some() {
                crate::auth::cookie::strip_cookie(req.headers_mut());
            }
            // s-ip is the address tried, on a 502/504 too.
            tx.record.remote_ip = Some(addr.ip());
            let config = tx.snapshot.config.clone();
            match forward::forward(&config, up, req, target, addr).await {
                Ok(f) => match client_upgrade {
                    Some(client) => with_mutual(upgrade::carry(proxy, client, f, tx), &who),
                    None => with_mutual(tx.respond(proxy, f), &who),
                },
                Err(e) => tx.refuse(proxy, conn, e),
            }
        }
        // A CONNECT is never planned to forward, nor HTTP to tunnel.
        (_, _) => tx.refuse(
            proxy,
            conn,
            ProxyError::BadRequest("request and plan disagree"),
        ),
    }
}
