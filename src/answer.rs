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
