//! A refusal of a request the proxy serves: [`crate::answer::refusal`],
//! with the authentication challenges and the connection's fate.

use http::{header, HeaderValue, Response, StatusCode};

use super::Proxy;
use crate::accesslog::AccessRecord;
use crate::body::ResponseBody;
use crate::conn::InFlight;
use crate::error::ProxyError;

/// The answer to `e`, logged when written; `close` ends the connection.
pub(super) fn answer_error(
    proxy: &Proxy,
    e: ProxyError,
    record: AccessRecord,
    in_flight: InFlight,
    close: bool,
) -> Response<ResponseBody> {
    let mut resp = crate::answer::refusal(&e, record, &proxy.log);
    if let ProxyError::AuthContinue(challenge) = &e {
        if let Ok(v) = HeaderValue::from_str(challenge) {
            resp.headers_mut().insert(header::PROXY_AUTHENTICATE, v);
        }
    } else if e.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        for c in proxy.auth.challenges() {
            resp.headers_mut()
                .append(header::PROXY_AUTHENTICATE, c.clone());
        }
    }
    if close {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp.map(|b| b.in_flight(in_flight))
}
