//! Lines written by the access log's own formatter read back to the same facts.

use super::*;
use crate::accesslog::format::write_line;
use crate::accesslog::settings::LogFormat;
use crate::accesslog::{AccessRecord, FilterResult};
use crate::outcome::{ExceptionId, SAction};

fn record() -> AccessRecord {
    let mut r = AccessRecord::new("10.0.0.5".parse().unwrap(), "127.0.0.1".parse().unwrap());
    r.start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_000_000);
    r.method = "GET".into();
    r.scheme = Some("http");
    r.host = "news.test".into();
    r.port = 8080;
    r.path = "/a b".into();
    r.query = Some("q=1".into());
    r.status = 403;
    r.action = SAction::TcpDenied;
    r.filter_result = FilterResult::Denied;
    r.exception_id = Some(ExceptionId::Rule("blocked_news".into()));
    r.username = Some("alice".into());
    r.auth_groups = vec!["Staff".into(), "Domain Users".into()];
    r.auth_scheme = Some("basic".into());
    r.user_agent = Some("curl/8 \"x\"".into());
    r.rule = Some("block-news".into());
    r.remote_ip = Some("192.0.2.7".parse().unwrap());
    r
}

fn read(format: LogFormat, r: &AccessRecord) -> Line {
    let mut out = String::new();
    write_line(&mut out, format, r);
    parse(&out, &ElffFields::default()).unwrap().unwrap()
}

#[test]
fn elff_and_json_keep_every_fact_replay_needs() {
    for format in [LogFormat::Elff, LogFormat::Json] {
        let l = read(format, &record());
        assert_eq!(l.at.as_second(), 1_764_000_000, "{format:?}");
        assert_eq!(l.client.to_string(), "10.0.0.5");
        assert_eq!(l.user.as_deref(), Some("alice"));
        assert_eq!(
            l.groups.as_deref(),
            Some(&["Staff".to_string(), "Domain Users".to_string()][..])
        );
        assert!(l.authenticated && l.denied);
        assert_eq!((l.status, l.action.as_str()), (403, "TCP_DENIED"));
        assert_eq!(l.exception.as_deref(), Some("blocked_news"));
        assert_eq!(
            (l.method.as_str(), l.host.as_str(), l.port),
            ("GET", "news.test", 8080)
        );
        assert_eq!(l.query.as_deref(), Some("q=1"));
        assert_eq!(l.rule, Some(Some("block-news".into())));
        assert_eq!(l.remote_ip, Some("192.0.2.7".parse().unwrap()));
    }
    assert_eq!(read(LogFormat::Json, &record()).path, "/a b");
}

#[test]
fn squid_keeps_what_it_records() {
    let mut r = record();
    r.username = Some("a b%".into());
    let l = read(LogFormat::Squid, &r);
    assert_eq!(l.format, Format::Squid);
    assert_eq!(l.user.as_deref(), Some("a b%"));
    assert_eq!(
        (l.host.as_str(), l.port, l.path.as_str()),
        ("news.test", 8080, "/a b")
    );
    assert_eq!(l.groups, None);
    assert_eq!(l.rule, None);
    let mut c = record();
    c.method = "CONNECT".into();
    c.port = 443;
    let l = read(LogFormat::Squid, &c);
    assert_eq!(
        (l.method.as_str(), l.host.as_str(), l.port),
        ("CONNECT", "news.test", 443)
    );
}

#[test]
fn headers_and_comments_are_no_transaction() {
    let f = ElffFields::default();
    assert_eq!(parse("#Fields: date time", &f), Ok(None));
    assert_eq!(parse("\n", &f), Ok(None));
}

/// Every prefix of a good line, and some junk, is a line or an error.
#[test]
fn truncated_and_garbled_lines_are_errors_not_panics() {
    let f = ElffFields::default();
    for format in [LogFormat::Elff, LogFormat::Squid, LogFormat::Json] {
        let mut out = String::new();
        write_line(&mut out, format, &record());
        for i in 0..out.len() {
            if out.is_char_boundary(i) {
                let _ = parse(&out[..i], &f);
            }
        }
        assert!(parse(&out[..out.len() / 2], &f).is_err(), "{format:?}");
    }
    for junk in ["2026-01-01 x", "{\"start\":1}", "1.x 1 2 3", "\u{feff}é"] {
        assert!(parse(junk, &f).is_err(), "{junk}");
    }
}
