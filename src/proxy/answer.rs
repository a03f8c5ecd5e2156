//! The single place an error becomes an answer and an access record.

use http::{header, HeaderValue, Response, StatusCode};

use super::Proxy;
use crate::accesslog::AccessRecord;
use crate::body::{Finish, ResponseBody};
use crate::conn::InFlight;
use crate::error::ProxyError;

/// The single place an error becomes an answer and an access record.
pub(super) fn answer_error(
    proxy: &Proxy,
    e: ProxyError,
    mut record: AccessRecord,
    in_flight: InFlight,
    close: bool,
) -> Response<ResponseBody> {
    tracing::debug!(error = %e, client = %record.client_ip, "request refused");
    record.set_error(&e);
    let mut resp: Response<ResponseBody> = e.to_response();
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
    let finish = Finish {
        record,
        log: proxy.log.clone(),
        cs_bytes: None,
    };
    resp.map(|b| b.logged(finish).in_flight(in_flight))
}
