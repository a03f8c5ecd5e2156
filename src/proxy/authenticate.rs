//! Phase 4: authentication. The authenticator's failures become the
//! answers (407, 503) and log fields here; a refusal drains the request
//! body (bounded) so the connection survives its 407.

use http::{header, Request, Response};
use hyper::body::Incoming;

use super::transaction::Transaction;
use super::Proxy;
use crate::auth::surrogate::ClientPlace;
use crate::auth::throttle::Place;
use crate::auth::{AuthFailure, Authenticated};
use crate::body::ResponseBody;
use crate::conn::ConnState;
use crate::error::ProxyError;

/// What may answer for a request that presents no credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ask {
    /// Only proof (the cookie surrogates' virtual host).
    Proof,
    /// A surrogate (cookie, then IP), else the guest when `guest`.
    StandIn { guest: bool },
}

/// Checks the request's credentials against the transaction's realms; on
/// success the identity goes to the record and to the connection, and the
/// client's address becomes the user's IP surrogate (when those are on).
///
/// A request that presents no credentials at all (and whose connection
/// proved nobody) is its cookie's or its address's surrogate user if it has one, else the
/// guest when a `guest` rule let it through (`guest`), else challenged.
/// Credentials presented are always checked: a surrogate or a guest rule
/// never answers for wrong ones.
pub(super) async fn authenticate(
    proxy: &Proxy,
    conn: &ConnState,
    req: &Request<Incoming>,
    tx: &mut Transaction,
    ask: Ask,
) -> Result<Authenticated, ProxyError> {
    let presented = req.headers().get_all(header::PROXY_AUTHORIZATION).iter();
    let ip = conn.client.ip();
    let (config, chain) = (&tx.snapshot.config, &tx.snapshot.realms);
    let shared = crate::limit::shared(&config.listener.shared_addresses, ip);
    let from = ClientPlace {
        ip,
        shared: shared.is_some(),
    };
    let place = Place {
        key: crate::limit::place(ip, config.listener.ipv6_prefix),
        failures: shared
            .and_then(|s| s.address_failures)
            .unwrap_or(config.auth.throttle.address_failures),
    };
    let failure = match proxy
        .auth
        .authenticate(chain, presented, &conn.auth, ip, &place)
        .await
    {
        Ok(who) => {
            proxy.auth.proven(&from, &who);
            tx.authenticated(&who);
            return Ok(who);
        }
        Err(AuthFailure::Missing) if ask != Ask::Proof => {
            let cookie = if tx.is_connect {
                None
            } else {
                let host = tx.record.host.clone();
                proxy
                    .auth
                    .cookie_surrogate(req.headers(), &host, chain)
                    .await
            };
            let stand_in = cookie
                .or_else(|| proxy.auth.surrogate(&from, chain))
                .or_else(|| (ask == Ask::StandIn { guest: true }).then(|| proxy.auth.guest()));
            if let Some(who) = stand_in {
                tx.authenticated(&who);
                return Ok(who);
            }
            AuthFailure::Missing
        }
        Err(failure) => failure,
    };
    let r = &mut tx.record;
    // The answer is the failure's (`From<AuthFailure>`); the log and the
    // record's user are said here.
    match &failure {
        AuthFailure::Missing | AuthFailure::Continue { .. } => {}
        AuthFailure::Malformed(why) => {
            tracing::debug!(client = %r.client_ip, reason = %why, "unreadable credentials");
        }
        AuthFailure::UnsupportedScheme(scheme) => {
            tracing::debug!(client = %r.client_ip, %scheme, "credentials in a scheme that is not enabled");
        }
        AuthFailure::Rejected { user } => {
            tracing::info!(client = %r.client_ip, %user, "authentication failed");
            r.username = Some(user.clone());
        }
        AuthFailure::AccountRefused { user, problem } => {
            tracing::info!(client = %r.client_ip, %user, reason = problem.as_str(), "authentication refused: account may not sign in");
            r.username = Some(user.clone());
        }
        AuthFailure::Throttled { user, why } => {
            tracing::warn!(client = %r.client_ip, %user, reason = why.as_str(), "authentication throttled: the realm was not asked");
            r.username = Some(user.clone());
        }
        AuthFailure::Busy { user, reason } => {
            tracing::warn!(client = %r.client_ip, %user, %reason, "cannot authenticate now: password checks busy");
            r.username = Some(user.clone());
        }
        AuthFailure::Unavailable { user, reason } => {
            tracing::warn!(client = %r.client_ip, %user, %reason, "cannot authenticate: directory unavailable");
            r.username = Some(user.clone());
        }
    }
    Err(failure.into())
}

/// Answers an authentication refusal. The unread request body is drained
/// first (bounded in size and time) so the connection survives the 407
/// (NTLM's handshake goes on on the same connection, CONNECT too).
pub(super) async fn refuse(
    proxy: &Proxy,
    conn: &ConnState,
    e: ProxyError,
    req: Request<Incoming>,
    tx: Transaction,
    close: bool,
) -> Response<ResponseBody> {
    // The framing guard stops reading until the CONNECT is answered.
    if tx.is_connect {
        conn.answer_connect(false);
    }
    let (limit, wait) = {
        let config = &tx.snapshot.config;
        (
            config.auth.max_drain_bytes,
            config.listener.header_read_timeout,
        )
    };
    let drained = drain(req.into_body(), limit, wait).await;
    tx.refuse_keeping(proxy, conn, e, !drained || close)
}

/// Reads and discards a body; false when it is larger than `limit` or slower than `wait`.
async fn drain(mut body: Incoming, limit: u64, wait: std::time::Duration) -> bool {
    use http_body_util::BodyExt;
    if hyper::body::Body::is_end_stream(&body) {
        return true;
    }
    let mut seen = 0u64;
    let read = async {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > limit {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(wait, read).await.unwrap_or(false)
}
