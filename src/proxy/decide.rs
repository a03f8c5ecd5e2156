//! Phases 1-5: what the request asks for, then the plan carried out step by
//! step — authenticate, resolve — until it is final. Each returns a value;
//! the transaction's exits answer and log.

use std::net::IpAddr;
use std::sync::Arc;

use http::Request;
use hyper::body::Incoming;

use super::destination::{self, Destination};
use super::plan::{self, Plan, Progress};
use super::transaction::Transaction;
use super::{authenticate, Proxy};
use crate::auth::Authenticated;
use crate::conn::ConnState;
use crate::error::ProxyError;
use crate::forward::headers;
use crate::policy::Facts;

/// What the request asks for.
pub(super) struct Asked {
    pub dest: Destination,
    /// The canonical host, as the policy and the log see it.
    pub host: String,
    /// The normalised absolute URL `url` rules judge (plain HTTP, and only
    /// for a policy that has such rules).
    pub url: Option<String>,
}

/// The final plan and what was learnt on the way to it.
pub(super) struct Decided {
    /// [`Plan::Tunnel`] or [`Plan::Forward`].
    pub next: Plan,
    pub who: Option<Authenticated>,
    /// The resolved addresses the policy judged: the only ones dialled.
    pub addrs: Vec<IpAddr>,
    pub categories: Vec<Arc<str>>,
}

/// Why the plan stopped short.
pub(super) enum Stop {
    /// Refused: answered by the transaction.
    Refused(ProxyError),
    /// Authentication failed or goes on: answered after the request body
    /// is drained; `close` when the connection has failed too often.
    Unauthenticated { error: ProxyError, close: bool },
}

/// Phases 1-2: the destination (malformed → 400), the loop check (→ 508),
/// and the normalised URL (a target that cannot be normalised is refused
/// whatever the policy).
pub(super) fn asked(req: &Request<Incoming>, tx: &mut Transaction) -> Result<Asked, ProxyError> {
    let dest = destination::destination(req)?;
    let host = dest.host.to_string();
    tx.record.host.clone_from(&host);
    tx.record.port = dest.port;
    let config = &tx.snapshot.config;
    if headers::via_names(req.headers(), &config.forward.via_pseudonym) {
        return Err(ProxyError::Loop);
    }
    let url = if tx.is_connect {
        None
    } else {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let pq = crate::policy::url::path_and_query_normalised(pq)
            .map_err(|e| ProxyError::BadRequest(e.reason()))?;
        tx.snapshot
            .policy
            .has_url_rules()
            .then(|| crate::policy::url::absolute("http", &host, dest.port, &pq))
            .and_then(Result::ok)
    };
    Ok(Asked { dest, host, url })
}

/// Phases 3-5: [`plan::plan`] until it is final, carrying out what it asks.
pub(super) async fn decide(
    proxy: &Proxy,
    conn: &ConnState,
    req: &Request<Incoming>,
    tx: &mut Transaction,
    asked: &Asked,
) -> Result<Decided, Stop> {
    let snapshot = tx.snapshot.clone();
    let policy = &snapshot.policy;
    let settings = proxy.plan_settings(&snapshot);
    let now = jiff::Timestamp::now();
    let mut at = Progress::default();
    let mut addrs = Vec::new();
    let mut who: Option<Authenticated> = None;
    loop {
        let categories = policy.categories.lookup(&asked.host, &addrs);
        let facts = Facts {
            identity: who.as_ref().map(|w| &*w.identity),
            auth_scheme: who.as_ref().map(|w| w.scheme),
            client: conn.client.ip(),
            method: req.method(),
            host: &asked.host,
            addrs: &addrs,
            port: asked.dest.port,
            headers: req.headers(),
            categories: &categories,
            now,
            detected: None,
            url: asked.url.as_deref(),
        };
        match plan::plan(policy, &settings, &facts, at) {
            Plan::Resolve => {
                addrs = destination::resolve(&snapshot, &asked.dest)
                    .await
                    .map_err(Stop::Refused)?;
                at.resolved = true;
            }
            Plan::Authenticate { guest, .. } => {
                let ask = authenticate::Ask::StandIn { guest };
                match authenticate::authenticate(proxy, conn, req, tx, ask).await {
                    Ok(w) => {
                        who = Some(w);
                        at.authenticated = true;
                    }
                    Err(error) => {
                        // A type 1 counts too: a connection that starts handshake
                        // after handshake without finishing one is closed.
                        let counts =
                            error.is_auth_failure() || matches!(error, ProxyError::AuthContinue(_));
                        let close = counts && conn.auth.failures() >= proxy.auth.max_failures();
                        return Err(Stop::Unauthenticated { error, close });
                    }
                }
            }
            Plan::Refuse(r) => {
                tx.decided_by(r.rule, &r.tags);
                if matches!(r.error, ProxyError::PolicyDenied { .. }) {
                    tx.categorised(&categories);
                }
                if let ProxyError::DestinationRefused(ip) = &r.error {
                    tracing::info!(host = %asked.host, %ip, "destination in destinations.refuse");
                }
                return Err(Stop::Refused(r.error));
            }
            next => {
                return Ok(Decided {
                    next,
                    who,
                    addrs,
                    categories,
                })
            }
        }
    }
}
