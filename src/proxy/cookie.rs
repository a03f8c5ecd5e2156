//! Cookie surrogates on the proxy's own path (plain HTTP in absolute form;
//! the requests inside interception take the same steps in
//! [`super::judged`]): the virtual host, the token traded for the cookie,
//! and the redirect of a GET or HEAD without credentials to the virtual
//! host. The steps themselves are [`crate::auth::surrogate_cookie`]'s.

use http::{header, Method, Request, Response};
use hyper::body::Incoming;

use super::authenticate;
use super::decide::Asked;
use super::transaction::Transaction;
use super::Proxy;
use crate::auth::surrogate_cookie::Redirect;
use crate::body::ResponseBody;
use crate::conn::ConnState;
use crate::error::ProxyError;

/// A step of the flow the request is, before any policy.
pub(super) enum Step {
    /// A request to the virtual host.
    Virtual,
    /// A request carrying a token: answered with this redirect.
    Token(Redirect),
}

/// The request's URL as the steps see it: absolute, normalised (the same
/// string when the browser comes back to it).
pub(super) fn url_of(req: &Request<Incoming>, asked: &Asked) -> Option<String> {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    crate::policy::url::absolute("http", &asked.host, asked.dest.port, pq).ok()
}

/// Which step `req` is, when cookie surrogates are on.
pub(super) fn step(proxy: &Proxy, req: &Request<Incoming>, asked: &Asked) -> Option<Step> {
    let cookies = proxy.auth.cookies()?;
    if cookies.is_virtual(&asked.host) {
        return Some(Step::Virtual);
    }
    if req.method() == Method::CONNECT {
        return None;
    }
    let url = url_of(req, asked)?;
    cookies.redeem(&url, &asked.host).map(Step::Token)
}

/// The redirect to the virtual host for a request that presented no
/// credentials and needs them: only GET and HEAD (a POST gets the 407),
/// never a CONNECT (no cookie rides on one).
pub(super) fn to_virtual(
    proxy: &Proxy,
    req: &Request<Incoming>,
    asked: &Asked,
) -> Option<Redirect> {
    let cookies = proxy.auth.cookies()?;
    let method = req.method();
    if !(method == Method::GET || method == Method::HEAD)
        || req.headers().contains_key(header::PROXY_AUTHORIZATION)
    {
        return None;
    }
    cookies.to_virtual(&url_of(req, asked)?, &asked.host)
}

/// A request to the virtual host: challenged as any request (only proof
/// counts here: no surrogate, no guest), then sent back to the URL its
/// signed `back` names, with a token. Never resolved nor dialled.
pub(super) async fn at_virtual(
    proxy: &Proxy,
    conn: &ConnState,
    req: Request<Incoming>,
    mut tx: Transaction,
) -> Response<ResponseBody> {
    let Some(cookies) = proxy.auth.cookies() else {
        return tx.refuse(proxy, conn, ProxyError::BadRequest("no virtual host"));
    };
    if !(req.method() == Method::GET || req.method() == Method::HEAD) {
        let e = ProxyError::BadRequest("the authentication virtual host takes GET only");
        return tx.refuse(proxy, conn, e);
    }
    match authenticate::authenticate(proxy, conn, &req, &mut tx, authenticate::Ask::Proof).await {
        Err(error) => {
            let close =
                error.is_auth_failure() && conn.auth.failures() >= proxy.auth.max_failures();
            authenticate::refuse(proxy, conn, error, req, tx, close).await
        }
        Ok(who) => match cookies.from_virtual(req.uri().query().unwrap_or(""), &who) {
            Ok(back) => tx.redirect(proxy, &back),
            Err(why) => {
                tracing::debug!(client = %conn.client.ip(), reason = why.as_str(), "virtual URL refused");
                let e = ProxyError::BadRequest("not a virtual URL this proxy made");
                tx.refuse(proxy, conn, e)
            }
        },
    }
}
