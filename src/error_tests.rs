//! The answers and log words of [`ProxyError`], checked.

use super::*;

#[test]
fn wire_answer_is_a_complete_response() {
    let wire = ProxyError::HeaderTooLarge(65536).to_wire();
    let text = String::from_utf8(wire).unwrap();
    assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(&format!("content-length: {}", body.len())));
    assert!(body.contains("request_header_too_large"));
}

#[test]
fn upstream_errors_are_err_miss() {
    assert_eq!(
        ProxyError::DnsFailure("x".into()).s_action(),
        SAction::TcpErrMiss
    );
    assert_eq!(
        ProxyError::PortNotAllowed(25).s_action(),
        SAction::TcpDenied
    );
    assert_eq!(ProxyError::UpstreamTimeout("x".into()).status(), 504);
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let e = ProxyError::ConnectFailed {
        host: "db.example:5432".into(),
        source: refused.into(),
    };
    assert_eq!(e.to_string(), "cannot connect to db.example:5432");
    assert_eq!(e.status(), 502);
    assert_eq!(e.s_action(), SAction::TcpErrMiss);
    let source = std::error::Error::source(&e).map(|s| s.to_string());
    assert_eq!(source.as_deref(), Some("connection refused"));
}

#[test]
fn each_auth_failure_has_its_answer() {
    use crate::auth::header::BadCredentials;
    use crate::directory::AccountProblem;
    let user = || "alice".to_string();
    let cases = [
        (AuthFailure::Missing, ProxyError::AuthRequired),
        (
            AuthFailure::UnsupportedScheme("Bearer".into()),
            ProxyError::AuthRequired,
        ),
        (
            AuthFailure::Continue {
                challenge: "NTLM TlRM".into(),
            },
            ProxyError::AuthContinue("NTLM TlRM".into()),
        ),
        (
            AuthFailure::Malformed(BadCredentials::NotNtlm),
            ProxyError::AuthFailed,
        ),
        (
            AuthFailure::Rejected { user: user() },
            ProxyError::AuthFailed,
        ),
        (
            AuthFailure::AccountRefused {
                user: user(),
                problem: AccountProblem::Disabled,
            },
            ProxyError::AccountRefused(AccountProblem::Disabled),
        ),
        (
            AuthFailure::Busy {
                user: user(),
                reason: "x".into(),
            },
            ProxyError::AuthBusy,
        ),
        (
            AuthFailure::Unavailable {
                user: user(),
                reason: "x".into(),
            },
            ProxyError::DirectoryUnavailable,
        ),
    ];
    for (failure, answer) in cases {
        assert_eq!(ProxyError::from(failure), answer);
    }
    assert_eq!(ProxyError::AuthFailed.status(), 407);
    assert_eq!(ProxyError::DirectoryUnavailable.status(), 503);
}

#[test]
fn refused_upgrades_are_forbidden() {
    let e = ProxyError::UpgradeRefused("h2c".into());
    assert_eq!(e.status(), 403);
    assert_eq!(e.exception_id().as_str(), "upgrade_refused");
    assert_eq!(e.s_action(), SAction::TcpDenied);
}
