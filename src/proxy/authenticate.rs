//! Phase 4: authentication. The authenticator's failures become the
//! answers (407, 503) and log fields here; a refusal drains the request
//! body (bounded) so the connection survives its 407.

use http::{header, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use super::answer::answer_error;
use super::Proxy;
use crate::accesslog::AccessRecord;
use crate::auth::throttle::Place;
use crate::auth::{AuthFailure, Authenticated};
use crate::body::ResponseBody;
use crate::conn::{ConnState, InFlight};
use crate::error::ProxyError;

/// Checks the request's credentials; on success the identity goes to the
/// record and to the connection.
pub(super) async fn authenticate(
    proxy: &Proxy,
    conn: &ConnState,
    req: &Request<Incoming>,
    config: &crate::config::Config,
    r: &mut AccessRecord,
) -> Result<Authenticated, ProxyError> {
    let presented = req.headers().get_all(header::PROXY_AUTHORIZATION).iter();
    let ip = conn.client.ip();
    let place = {
        let shared = crate::limit::shared(&config.listener.shared_addresses, ip);
        Place {
            key: crate::limit::place(ip, config.listener.ipv6_prefix),
            failures: shared
                .and_then(|s| s.address_failures)
                .unwrap_or(config.auth.throttle.address_failures),
        }
    };
    let failure = match proxy
        .auth
        .authenticate(presented, &conn.auth, ip, &place)
        .await
    {
        Ok(who) => {
            r.username = Some(who.identity.user.clone());
            r.auth_groups = who.identity.group_names();
            r.auth_scheme = Some(who.log_scheme());
            return Ok(who);
        }
        Err(failure) => failure,
    };
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
/// first (bounded in size and time) so the connection survives the 407.
pub(super) async fn refuse(
    proxy: &Proxy,
    conn: &ConnState,
    e: ProxyError,
    req: Request<Incoming>,
    record: AccessRecord,
    in_flight: InFlight,
    mut close: bool,
) -> Response<ResponseBody> {
    let is_connect = req.method() == Method::CONNECT;
    if is_connect {
        conn.answer_connect(false);
    }
    let (limit, wait) = {
        let config = proxy.config.load();
        (
            config.auth.max_drain_bytes,
            config.listener.header_read_timeout,
        )
    };
    if !drain(req.into_body(), limit, wait).await {
        close = true;
    }
    let mut resp = answer_error(proxy, e, record, in_flight, false);
    if close {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
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
