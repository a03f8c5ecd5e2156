//! The one place where failures become HTTP answers and access-log fields.
//!
//! Every variant knows its status code, its `x-exception-id` (ProxySG-style
//! names, so existing log tooling keeps working) and its `s-action`.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::auth::AuthFailure;
use crate::outcome::{ExceptionId, InterceptProblem, SAction};

/// What went wrong with one transaction, and which side caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    // --- the client sent something we refuse to parse or forward ---
    /// A request the framer or the URI parser refuses.
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// The request head is too large.
    #[error("request header block larger than {0} bytes")]
    HeaderTooLarge(usize),
    /// The request URI is too long.
    #[error("request URI longer than {0} bytes")]
    UriTooLong(usize),
    /// The request head did not arrive in time.
    #[error("the request head did not arrive within the header timeout")]
    HeaderTimeout,
    /// An origin-form request to a proxy.
    #[error("this is a proxy: send absolute-form requests (GET http://host/path)")]
    OriginForm,
    /// A scheme other than `http`.
    #[error("scheme {0:?} is not supported in absolute-form requests")]
    UnsupportedScheme(String),
    /// The request would loop back to this proxy.
    #[error("the request loops back to this proxy")]
    Loop,
    /// A connection from `listener.proxy_protocol_from` without a valid
    /// PROXY protocol header.
    #[error("PROXY protocol: {0}")]
    ProxyProtocol(String),
    // --- policy ---
    /// CONNECT to a port not in `tunnel.allowed_ports`.
    #[error("CONNECT to port {0} is not allowed")]
    PortNotAllowed(u16),
    /// A destination address in `destinations.refuse`.
    #[error("destination {0} is in a refused range (destinations.refuse)")]
    DestinationRefused(std::net::IpAddr),
    /// A request inside a tunnel for another server than the tunnel's
    /// (its `Host`, or an SNI other than the CONNECT's host): domain fronting.
    #[error("a request inside the tunnel names {0:?}, not the tunnel's server")]
    DomainFronting(String),
    /// A protocol upgrade not relayed: `h2c` always, another protocol
    /// than `websocket` unless the allowing rule names it.
    #[error("upgrade to {0} is not relayed by this proxy")]
    UpgradeRefused(String),
    /// Denied by a policy rule.
    #[error("denied by policy rule {rule}")]
    PolicyDenied {
        /// The answer's status and the rule's reason (the exception id).
        denial: crate::policy::Denial,
        /// The rule's name.
        rule: std::sync::Arc<str>,
    },
    /// The listener is full.
    #[error("too many connections")]
    TooManyConnections,
    /// This client address has too many connections.
    #[error("too many connections from this client address")]
    TooManyFromClient,
    // --- authentication ---
    /// No credentials yet.
    #[error("proxy authentication required")]
    AuthRequired,
    /// Credentials refused.
    #[error("proxy authentication failed")]
    AuthFailed,
    /// A handshake step: the challenge to send.
    #[error("proxy authentication in progress")]
    AuthContinue(String),
    /// The directory cannot be asked.
    #[error("directory unavailable: cannot verify credentials now, try again later")]
    DirectoryUnavailable,
    /// The directory refuses the account.
    #[error("proxy authentication failed: the account may not sign in ({})", .0.as_str())]
    AccountRefused(crate::directory::AccountProblem),
    /// Too many failed attempts.
    #[error("proxy authentication failed (too many failed attempts: try again later)")]
    AuthThrottled,
    /// Password checks are all busy.
    #[error("too many authentications in progress: try again shortly")]
    AuthBusy,
    // --- the upstream side failed ---
    /// The destination's name does not resolve.
    #[error("cannot resolve host {0}")]
    DnsFailure(String),
    /// The origin cannot be reached.
    #[error("cannot connect to {host}")]
    ConnectFailed {
        /// `host:port` (or the URL's authority) that was dialled.
        host: String,
        /// Why the last attempt failed.
        source: Cause,
    },
    /// The origin did not answer in time.
    #[error("upstream {0} timed out")]
    UpstreamTimeout(String),
    /// The origin's answer is broken.
    #[error("upstream {0} sent an invalid response or closed the connection")]
    UpstreamBroken(String),
    /// The origin of a tunnel cannot be reached again, or not verified
    /// again, for a request inside it.
    #[error("the tunnel's origin cannot be used: {}", .0.as_str())]
    OriginUnusable(crate::outcome::DetectionReason),
}

/// The I/O failure behind an upstream error, shared (an error is cloned
/// into the plan and the record); two are equal when their kinds are.
#[derive(Debug, Clone)]
pub struct Cause(Arc<std::io::Error>);

impl From<std::io::Error> for Cause {
    fn from(e: std::io::Error) -> Self {
        Cause(Arc::new(e))
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind()
    }
}

impl Eq for Cause {}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The answer to each authentication failure; what the failure says
/// besides (the user, the reason) is for the log, written by the caller.
impl From<AuthFailure> for ProxyError {
    fn from(f: AuthFailure) -> Self {
        match f {
            AuthFailure::Missing | AuthFailure::UnsupportedScheme(_) => ProxyError::AuthRequired,
            AuthFailure::Continue { challenge } => ProxyError::AuthContinue(challenge),
            AuthFailure::Malformed(_) | AuthFailure::Rejected { .. } => ProxyError::AuthFailed,
            AuthFailure::AccountRefused { problem, .. } => ProxyError::AccountRefused(problem),
            AuthFailure::Throttled { .. } => ProxyError::AuthThrottled,
            AuthFailure::Busy { .. } => ProxyError::AuthBusy,
            AuthFailure::Unavailable { .. } => ProxyError::DirectoryUnavailable,
        }
    }
}

impl ProxyError {
    /// `ConnectFailed` for a destination with no address left to dial.
    pub fn nothing_to_dial(host: String) -> Self {
        let why = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address to dial");
        ProxyError::ConnectFailed {
            host,
            source: why.into(),
        }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            BadRequest(_) | OriginForm | UnsupportedScheme(_) | ProxyProtocol(_) => {
                StatusCode::BAD_REQUEST
            }
            HeaderTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            UriTooLong(_) => StatusCode::URI_TOO_LONG,
            HeaderTimeout => StatusCode::REQUEST_TIMEOUT,
            Loop => StatusCode::LOOP_DETECTED,
            PortNotAllowed(_) | DestinationRefused(_) | UpgradeRefused(_) => StatusCode::FORBIDDEN,
            DomainFronting(_) => StatusCode::MISDIRECTED_REQUEST,
            PolicyDenied { denial, .. } => denial.status,
            AuthRequired | AuthFailed | AuthContinue(_) | AuthThrottled | AccountRefused(_) => {
                StatusCode::PROXY_AUTHENTICATION_REQUIRED
            }
            DirectoryUnavailable | AuthBusy => StatusCode::SERVICE_UNAVAILABLE,
            TooManyConnections | TooManyFromClient => StatusCode::SERVICE_UNAVAILABLE,
            DnsFailure(_) | ConnectFailed { .. } | UpstreamBroken(_) | OriginUnusable(_) => {
                StatusCode::BAD_GATEWAY
            }
            UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `x-exception-id` written to the answer and to the access log.
    pub fn exception_id(&self) -> ExceptionId {
        use ProxyError::*;
        match self {
            PolicyDenied { denial, .. } => ExceptionId::Rule(denial.reason.clone()),
            BadRequest(_) | OriginForm => ExceptionId::InvalidRequest,
            HeaderTooLarge(_) => ExceptionId::RequestHeaderTooLarge,
            UriTooLong(_) => ExceptionId::RequestUriTooLong,
            HeaderTimeout => ExceptionId::RequestTimeout,
            UnsupportedScheme(_) => ExceptionId::UnsupportedProtocol,
            Loop => ExceptionId::LoopDetected,
            ProxyProtocol(_) => ExceptionId::ProxyProtocolInvalid,
            PortNotAllowed(_) => ExceptionId::PolicyDenied,
            DestinationRefused(_) => ExceptionId::DestinationRefused,
            UpgradeRefused(_) => ExceptionId::UpgradeRefused,
            DomainFronting(_) => ExceptionId::Intercept(InterceptProblem::DomainFronting),
            OriginUnusable(reason) => ExceptionId::Detection(reason.clone()),
            TooManyConnections => ExceptionId::TooManyConnections,
            TooManyFromClient => ExceptionId::TooManyConnectionsFromClient,
            AuthRequired | AuthContinue(_) => ExceptionId::AuthenticationRequired,
            AuthFailed => ExceptionId::AuthenticationFailed,
            DirectoryUnavailable => ExceptionId::DirectoryUnavailable,
            AuthThrottled => ExceptionId::AuthenticationThrottled,
            AccountRefused(p) => ExceptionId::Account(*p),
            AuthBusy => ExceptionId::AuthenticationBusy,
            DnsFailure(_) => ExceptionId::DnsUnresolvedHostname,
            ConnectFailed { .. } | UpstreamBroken(_) => ExceptionId::TcpError,
            UpstreamTimeout(_) => ExceptionId::GatewayTimeout,
        }
    }

    /// The access log's `s-action`: refused by us, or failed upstream.
    pub fn s_action(&self) -> SAction {
        if self.is_auth_failure() {
            SAction::TcpAuthMiss
        } else if self.is_upstream() {
            SAction::TcpErrMiss
        } else {
            SAction::TcpDenied
        }
    }

    /// Credentials were presented and refused: counts toward the connection's
    /// failure limit, logged as `TCP_AUTH_MISS`.
    pub fn is_auth_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::AuthFailed | ProxyError::AuthThrottled | ProxyError::AccountRefused(_)
        )
    }

    /// True when the origin side failed, false when the client or policy did.
    pub fn is_upstream(&self) -> bool {
        use ProxyError::*;
        matches!(
            self,
            DnsFailure(_)
                | ConnectFailed { .. }
                | UpstreamTimeout(_)
                | UpstreamBroken(_)
                | OriginUnusable(_)
        )
    }

    /// Errors about the byte stream itself leave the connection unusable.
    pub fn closes_connection(&self) -> bool {
        use ProxyError::*;
        matches!(
            self,
            BadRequest(_)
                | ProxyProtocol(_)
                | HeaderTooLarge(_)
                | UriTooLong(_)
                | HeaderTimeout
                | TooManyConnections
                | TooManyFromClient
        )
    }

    /// Seconds a client should wait before trying again, for load we shed.
    pub fn retry_after(&self) -> Option<u32> {
        matches!(
            self,
            ProxyError::AuthBusy | ProxyError::TooManyConnections | ProxyError::TooManyFromClient
        )
        .then_some(1)
    }

    /// The short plain-text answer, as a hyper response.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let body = Bytes::from(self.body_text());
        let mut resp = Response::new(B::from(body));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Ok(id) = HeaderValue::from_str(self.exception_id().as_str()) {
            h.insert("x-exception-id", id);
        }
        if self.closes_connection() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(secs) = self.retry_after() {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }

    fn body_text(&self) -> String {
        format!("Gatehouse: {} ({})\n", self, self.exception_id())
    }

    /// The same answer as raw HTTP/1.1 bytes, for the places that answer
    /// before or after hyper owns the connection.
    pub fn to_wire(&self) -> Vec<u8> {
        let body = self.body_text();
        let status = self.status();
        let retry = self
            .retry_after()
            .map_or(String::new(), |s| format!("retry-after: {s}\r\n"));
        format!(
            "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\nx-exception-id: {}\r\n{retry}content-length: {}\r\nconnection: close\r\n\r\n{}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.exception_id(),
            body.len(),
            body
        )
        .into_bytes()
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
