//! The pipeline counts the same whatever the workers and queue, and
//! unknown facts are reported only for rules that could have decided.

use std::io::Write;

use super::run::{run, Options};
use super::tally::Tally;
use super::Replayer;
use crate::accesslog::format::{elff_header, write_line};
use crate::accesslog::settings::LogFormat;
use crate::accesslog::{AccessRecord, FilterResult};
use crate::outcome::{ExceptionId, SAction};
use crate::policy::Policy;
use crate::tunnel::settings::Ports;

const NEW: &str = r#"
default = "allow"
[[layers]]
name = "sites"
[[layers.rules]]
name = "api-key"
host = ["api.test"]
header = { "X-Api-Key" = "^k$" }
action = "allow"
[[layers.rules]]
name = "block-news"
host = ["news.test"]
action = "deny"
[[layers.rules]]
name = "late-header"
host = ["news.test"]
header = { "X-Other" = "^x$" }
action = "allow"
"#;

/// Line `i`: news.test allowed (changes to denied), every 7th api.test
/// (unknown: the header), every 11th a 400 (not replayed).
fn record(i: usize) -> AccessRecord {
    let mut r = AccessRecord::new("10.0.0.1".parse().unwrap(), "127.0.0.1".parse().unwrap());
    r.method = "GET".into();
    r.scheme = Some("http");
    r.port = 80;
    r.path = format!("/{i}");
    r.status = 200;
    r.action = SAction::TcpNcMiss;
    r.host = if i % 7 == 0 { "api.test" } else { "news.test" }.into();
    if i % 11 == 0 {
        r.status = 400;
        r.action = SAction::TcpDenied;
        r.filter_result = FilterResult::Denied;
        r.exception_id = Some(ExceptionId::InvalidRequest);
    }
    r
}

fn replay(path: &std::path::Path, workers: usize, queue: usize) -> Tally {
    let policy = Policy::from_toml(NEW).unwrap();
    let r = Replayer::from_parts(policy, Ports(vec![(443, 443)]), false, true);
    let opts = Options {
        workers,
        queue,
        progress: None,
    };
    run(&r, &[path.to_path_buf()], &opts).unwrap()
}

#[test]
fn counts_do_not_depend_on_workers_or_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(elff_header(std::time::SystemTime::now()).as_bytes())
        .unwrap();
    let n = 5000;
    let mut line = String::new();
    for i in 0..n {
        line.clear();
        write_line(&mut line, LogFormat::Elff, &record(i));
        f.write_all(line.as_bytes()).unwrap();
    }
    f.write_all(b"garbage\n").unwrap();
    drop(f);
    let bad = (0..n).filter(|i| i % 11 == 0).count() as u64;
    let api = (0..n).filter(|i| i % 7 == 0 && i % 11 != 0).count() as u64;
    for (workers, queue) in [(1, 1), (4, 1), (3, 8)] {
        let t = replay(&path, workers, queue);
        assert_eq!(t.lines, n as u64 + 1, "{workers} {queue}");
        assert_eq!(t.malformed.count, 1);
        assert_eq!(t.not_policy, bad);
        assert_eq!(t.replayed, n as u64 - bad);
        assert_eq!(t.unknown.count, api);
        assert_eq!(t.unknown_rules.get("api-key"), Some(&api));
        // The header rule after the deciding one is no unknown.
        assert_eq!(t.unknown_rules.get("late-header"), None);
        assert_eq!(t.changed(), n as u64 - bad - api);
        assert!(t.text().ends_with(&format!(
            "{} of {} transactions would change\n",
            n as u64 - bad - api,
            n as u64 - bad
        )));
    }
}
