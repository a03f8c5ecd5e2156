//! The one place a refusal becomes an answer and a log line — for the
//! requests the proxy serves and for the requests inside a tunnel
//! (decrypted, or plain HTTP found in a CONNECT) alike: the status, the
//! `x-exception-id`, the body and the record's status, exception,
//! s-action and filter result all come from the one [`ProxyError`].

use http::Response;

use crate::accesslog::{AccessLog, AccessRecord};
use crate::body::{Finish, ResponseBody};
use crate::error::ProxyError;

/// The proxy's answer to `e`, carrying `record` (marked with `e`) to be
/// logged when the answer has been written.
pub fn refusal(
    e: &ProxyError,
    mut record: AccessRecord,
    log: &AccessLog,
) -> Response<ResponseBody> {
    tracing::debug!(error = %e, client = %record.client_ip, "request refused");
    record.set_error(e);
    let finish = Finish {
        record,
        log: log.clone(),
        cs_bytes: None,
    };
    e.to_response::<ResponseBody>().map(|b| b.logged(finish))
}

/// The proxy's own redirect — a cookie surrogate's step — carrying
/// `record` (its status and `x-exception-id` the step's) to be logged.
pub fn redirect(
    to: &crate::auth::surrogate_cookie::Redirect,
    mut record: AccessRecord,
    log: &AccessLog,
) -> Response<ResponseBody> {
    use http::{header, HeaderValue, StatusCode};
    record.status = StatusCode::FOUND.as_u16();
    record.exception_id = Some(crate::outcome::ExceptionId::Rule(to.step.into()));
    record.action = crate::outcome::SAction::TcpAuthMiss;
    let finish = Finish {
        record,
        log: log.clone(),
        cs_bytes: None,
    };
    let mut resp = Response::new(ResponseBody::from(bytes::Bytes::new()).logged(finish));
    *resp.status_mut() = StatusCode::FOUND;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&to.location) {
        h.insert(header::LOCATION, v);
    }
    if let Some(v) = to
        .set_cookie
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert(header::SET_COOKIE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}
