//! How a transaction ended, in the access log's words: ProxySG's `s-action`
//! and `x-exception-id`, and the reasons protocol detection gives.
//!
//! These are values, produced by the parts that decide (errors, the tunnel
//! session, detection) and spelt once, here, by `as_str` — so the log's
//! vocabulary cannot drift between call sites, and log tooling written for
//! ProxySG keeps working.

use std::fmt;
use std::sync::Arc;

use crate::directory::AccountProblem;

/// ProxySG's `s-action`: what the proxy did with the transaction.
// The variants spell ProxySG's values (TCP_MISS, TCP_DENIED...): the common
// `Tcp` is theirs. (Clippy saw this only once the module stopped being public.)
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SAction {
    /// Forwarded; a cache could have stored the answer.
    TcpMiss,
    /// Forwarded; not cacheable (or not known to be).
    TcpNcMiss,
    /// A CONNECT relayed without looking inside (raw, or not TLS).
    TcpTunneled,
    /// A CONNECT whose TLS passed the certificate check.
    TcpAccelerated,
    /// A CONNECT decrypted by interception (the origin verified, the
    /// client's handshake with the minted leaf done); each request inside
    /// has its own line. Not a ProxySG value: `TCP_TUNNELED` there means
    /// "not inspected", which an intercepted tunnel is not.
    TcpIntercepted,
    /// Refused by the proxy: policy, limits, malformed input.
    TcpDenied,
    /// Refused for credentials.
    TcpAuthMiss,
    /// The origin side failed.
    TcpErrMiss,
}

impl SAction {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SAction::TcpMiss => "TCP_MISS",
            SAction::TcpNcMiss => "TCP_NC_MISS",
            SAction::TcpTunneled => "TCP_TUNNELED",
            SAction::TcpAccelerated => "TCP_ACCELERATED",
            SAction::TcpIntercepted => "TCP_INTERCEPTED",
            SAction::TcpDenied => "TCP_DENIED",
            SAction::TcpAuthMiss => "TCP_AUTH_MISS",
            SAction::TcpErrMiss => "TCP_ERR_MISS",
        }
    }
}

/// Why protocol detection refused a tunnel (after its `200`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectionReason {
    /// The client closed before saying anything we could classify.
    ClientClosed,
    /// Reading from the client failed.
    ClientError,
    /// The client stayed silent past `detection.timeout` (`on_silence = "deny"`).
    Timeout,
    /// Not TLS, and no rule allows the detected protocol.
    ProtocolNotAllowed,
    /// A rule that looks at the detected protocol or SNI denied it, with this reason.
    Denied(Arc<str>),
    /// The server spoke TLS without a certificate.
    CertMissing,
    /// The server's certificate does not chain to a trusted root, or is expired.
    CertInvalid,
    /// A valid certificate, for another name.
    DomainMismatch,
    /// The server did not answer in TLS.
    NotTls,
    /// The certificate check could not complete (unreachable, timed out).
    CheckFailed,
    /// The server did not send its first flight within `detection.check_timeout`.
    ServerTimeout,
    /// The server's first flight is over `detection.max_server_flight`.
    ServerFlightTooLarge,
    /// TLS records, but a handshake the parser cannot follow.
    HandshakeInvalid,
    /// A ServerHello that does not answer the client's offer (version,
    /// cipher, key share).
    HelloInconsistent,
    /// The server answered the ClientHello with an alert.
    HandshakeRefused,
    /// An (EC)DHE suite with no ServerKeyExchange: nothing proves the
    /// server holds its certificate's key.
    KeyExchangeMissing,
    /// The ServerKeyExchange signature does not verify with the leaf's key:
    /// a replayed certificate.
    SignatureInvalid,
    /// A key exchange that proves nothing in the clear (RSA, TLS ≤ 1.1),
    /// refused by `detection.rsa_key_exchange = "refuse"`.
    KeyExchangeUnproven,
    /// The ClientHello names another server than the CONNECT, and no rule
    /// naming that SNI allows it.
    SniMismatch,
    /// A signed key exchange seen before (its client or server random): a
    /// recorded handshake played again by a colluding client and server.
    HandshakeReplayed,
}

impl DetectionReason {
    /// The log's spelling (the `x-exception-id` of the refused tunnel).
    pub fn as_str(&self) -> &str {
        match self {
            DetectionReason::ClientClosed => "client_closed",
            DetectionReason::ClientError => "client_error",
            DetectionReason::Timeout => "detection_timeout",
            DetectionReason::ProtocolNotAllowed => "protocol_not_allowed",
            DetectionReason::Denied(reason) => reason,
            DetectionReason::CertMissing => "ssl_server_cert_missing",
            DetectionReason::CertInvalid => "ssl_server_cert_invalid",
            DetectionReason::DomainMismatch => "ssl_domain_mismatch",
            DetectionReason::NotTls => "protocol_not_tls",
            DetectionReason::CheckFailed => "ssl_check_failed",
            DetectionReason::ServerTimeout => "ssl_server_timeout",
            DetectionReason::ServerFlightTooLarge => "ssl_server_flight_too_large",
            DetectionReason::HandshakeInvalid => "ssl_handshake_invalid",
            DetectionReason::HelloInconsistent => "ssl_server_hello_inconsistent",
            DetectionReason::HandshakeRefused => "ssl_handshake_refused",
            DetectionReason::KeyExchangeMissing => "ssl_server_key_exchange_missing",
            DetectionReason::SignatureInvalid => "ssl_server_signature_invalid",
            DetectionReason::KeyExchangeUnproven => "ssl_key_exchange_unproven",
            DetectionReason::SniMismatch => "ssl_sni_mismatch",
            DetectionReason::HandshakeReplayed => "ssl_handshake_replayed",
        }
    }
}

/// ProxySG's `x-exception-id`: why a transaction was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionId {
    /// Malformed request, or origin-form to a proxy.
    InvalidRequest,
    /// The request head is over `listener.max_header_bytes`.
    RequestHeaderTooLarge,
    /// The request URI is over `listener.max_uri_bytes`.
    RequestUriTooLong,
    /// The request head did not arrive in time.
    RequestTimeout,
    /// A scheme other than `http` in an absolute-form request.
    UnsupportedProtocol,
    /// The request loops back to this proxy.
    LoopDetected,
    /// Refused by a built-in rule (CONNECT ports) or a rule's default reason.
    PolicyDenied,
    /// A rule's own `reason`.
    Rule(Arc<str>),
    /// A destination address is in `destinations.refuse`.
    DestinationRefused,
    /// A protocol upgrade the proxy does not relay (`h2c`, or a protocol
    /// other than WebSocket no rule's `upgrade` condition allows).
    UpgradeRefused,
    /// The listener is at `listener.max_connections`.
    TooManyConnections,
    /// This client address is at `listener.max_connections_per_address`.
    TooManyConnectionsFromClient,
    /// A balancer's connection without a valid PROXY protocol header.
    ProxyProtocolInvalid,
    /// No usable credentials yet (a challenge follows).
    AuthenticationRequired,
    /// Credentials refused.
    AuthenticationFailed,
    /// The directory cannot be asked and nothing cached answers.
    DirectoryUnavailable,
    /// Too many failed attempts for the user or the address.
    AuthenticationThrottled,
    /// Password checks are all busy.
    AuthenticationBusy,
    /// The directory says the account may not sign in.
    Account(AccountProblem),
    /// The destination's name does not resolve.
    DnsUnresolvedHostname,
    /// Connecting to, or talking to, the origin failed.
    TcpError,
    /// The origin did not answer in time.
    GatewayTimeout,
    /// A tunnel closed after `tunnel.idle_timeout` without traffic.
    TunnelIdleTimeout,
    /// An open tunnel closed because a reload's policy, or `gatehouse
    /// revoke`, now refuses it (`x-rule` names what decided).
    TunnelRevoked,
    /// Protocol detection refused the tunnel.
    Detection(DetectionReason),
    /// An intercepted tunnel failed on the client's side, or inside.
    Intercept(InterceptProblem),
}

/// What went wrong in an intercepted tunnel, apart from the upstream's
/// certificate (a [`DetectionReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterceptProblem {
    /// The client refused the minted certificate (pinning, or the CA not
    /// trusted): an alert naming the certificate, an EOF or `close_notify`
    /// once the proxy's flight (its certificate) was sent, or a finished
    /// handshake closed before any request.
    ClientRejectedCertificate,
    /// The client's TLS handshake failed otherwise (versions, ciphers, ALPN).
    ClientHandshake,
    /// What the client sent inside the decrypted stream is not HTTP/1.1.
    NotHttp,
    /// An inner request's Host names another server than the tunnel's.
    DomainFronting,
    /// The policy intercepts, but no CA is configured.
    Unavailable,
}

impl InterceptProblem {
    /// The log's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InterceptProblem::ClientRejectedCertificate => "ssl_client_cert_rejected",
            InterceptProblem::ClientHandshake => "ssl_client_handshake_failed",
            InterceptProblem::NotHttp => "protocol_not_http",
            InterceptProblem::DomainFronting => "domain_fronting",
            InterceptProblem::Unavailable => "intercept_unavailable",
        }
    }
}

impl ExceptionId {
    /// The log's (and the `x-exception-id` header's) spelling.
    pub fn as_str(&self) -> &str {
        use ExceptionId::*;
        match self {
            InvalidRequest => "invalid_request",
            RequestHeaderTooLarge => "request_header_too_large",
            RequestUriTooLong => "request_uri_too_long",
            RequestTimeout => "request_timeout",
            UnsupportedProtocol => "unsupported_protocol",
            LoopDetected => "loop_detected",
            PolicyDenied => "policy_denied",
            Rule(reason) => reason,
            DestinationRefused => "destination_refused",
            UpgradeRefused => "upgrade_refused",
            TooManyConnections => "too_many_connections",
            TooManyConnectionsFromClient => "too_many_connections_from_client",
            ProxyProtocolInvalid => "proxy_protocol_invalid",
            AuthenticationRequired => "authentication_required",
            AuthenticationFailed => "authentication_failed",
            DirectoryUnavailable => "directory_unavailable",
            AuthenticationThrottled => "authentication_throttled",
            AuthenticationBusy => "authentication_busy",
            Account(problem) => problem.as_str(),
            DnsUnresolvedHostname => "dns_unresolved_hostname",
            TcpError => "tcp_error",
            GatewayTimeout => "gateway_timeout",
            TunnelIdleTimeout => "tunnel_idle_timeout",
            TunnelRevoked => "tunnel_revoked",
            Detection(reason) => reason.as_str(),
            Intercept(problem) => problem.as_str(),
        }
    }
}

impl fmt::Display for ExceptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for SAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl serde::Serialize for ExceptionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_reasons_and_detection_reasons_read_as_given() {
        assert_eq!(
            ExceptionId::Rule("no_streaming".into()).as_str(),
            "no_streaming"
        );
        let d = ExceptionId::Detection(DetectionReason::Denied("skype_blocked".into()));
        assert_eq!(d.as_str(), "skype_blocked");
        assert_eq!(
            ExceptionId::Detection(DetectionReason::CertMissing).to_string(),
            "ssl_server_cert_missing"
        );
        assert_eq!(
            serde_json::to_string(&SAction::TcpAccelerated).unwrap(),
            "\"TCP_ACCELERATED\""
        );
    }
}
