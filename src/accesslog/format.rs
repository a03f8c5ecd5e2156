//! The three access log formats: ProxySG ELFF, Squid native, JSON lines.

use std::fmt::Write;
use std::time::UNIX_EPOCH;

use super::record::AccessRecord;
use super::settings::LogFormat;
use crate::outcome::SAction;
use crate::resolve::host::push_ip;

/// The ELFF fields, in the order every line writes them.
pub const ELFF_FIELDS: &str = "date time time-taken c-ip cs-username cs-auth-group x-exception-id sc-filter-result cs-categories sc-status s-action cs-method cs-uri-scheme cs-host cs-uri-port cs-uri-path cs-uri-query cs(User-Agent) s-ip sc-bytes cs-bytes x-rule x-auth-scheme x-tags x-protocol x-sni x-ja3n r-ip x-ja4 x-intercepted";

/// The lines that open an ELFF file (or a new stdout stream).
pub fn elff_header(now: std::time::SystemTime) -> String {
    let (date, time) = date_time(now);
    format!(
        "#Software: Gatehouse {}\n#Version: 1.0\n#Date: {date} {time}\n#Fields: {ELFF_FIELDS}\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Appends one record as a line (with its newline) to `out`.
pub fn write_line(out: &mut String, format: LogFormat, r: &AccessRecord) {
    match format {
        LogFormat::Elff => elff(out, r),
        LogFormat::Squid => squid(out, r),
        LogFormat::Json => {
            // Serialising plain data to a String cannot fail.
            json_escaped(out, &serde_json::to_string(r).unwrap_or_default());
        }
    }
    out.push('\n');
}

/// A character a log reader could take for the end of a line: control
/// characters (C0, DEL, C1 with U+0085) and the Unicode line and paragraph
/// separators U+2028 and U+2029 (JavaScript and some editors break there).
fn breaks_lines(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// serde_json's line with the characters it leaves raw (C1 controls,
/// U+2028, U+2029) written as `\uXXXX`: in its output they can only be
/// inside strings, so the escape is the same value.
fn json_escaped(out: &mut String, line: &str) {
    for c in line.chars() {
        if breaks_lines(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
}

/// Squid's columns are split on spaces, quotes or not: a space, `"`, `%`
/// or line-breaking character inside a value is percent-encoded (as Squid
/// does user names and URLs), `-` when empty.
fn squid_field(out: &mut String, v: &str) {
    if v.is_empty() {
        out.push('-');
        return;
    }
    for c in v.chars() {
        if c == ' ' || c == '"' || c == '%' || breaks_lines(c) {
            percent(out, c);
        } else {
            out.push(c);
        }
    }
}

fn percent(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        let _ = write!(out, "%{b:02X}");
    }
}

fn date_time(t: std::time::SystemTime) -> (String, String) {
    let s = humantime::format_rfc3339_seconds(t).to_string(); // 2026-11-27T11:22:33Z
    (s[..10].to_string(), s[11..19].to_string())
}

/// `date time` (UTC) of `t`, two ELFF fields: the writer's lines mostly
/// share a second, so the text is made once per second (per thread) and
/// copied after.
fn push_date_time(out: &mut String, t: std::time::SystemTime) {
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    LAST.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let (date, time) = date_time(t);
            text.clear();
            text.push_str(&date);
            text.push(' ');
            text.push_str(&time);
            *at = secs;
        }
        out.push_str(text);
    });
}

/// An integer in decimal, without `fmt`'s machinery (a line has six).
fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Joins `items` with `sep` as one ELFF field.
fn elff_joined(out: &mut String, items: &[String], sep: char) {
    match items {
        [] => out.push('-'),
        [one] => elff_field(out, one),
        _ => elff_field(out, &items.join(&sep.to_string())),
    }
}

/// Writes the 30 fields of [`ELFF_FIELDS`] straight into `out`: numbers and
/// addresses unformatted by `fmt`, text through [`elff_field`].
fn elff(out: &mut String, r: &AccessRecord) {
    let text = |out: &mut String, v: &str| {
        out.push(' ');
        elff_field(out, v);
    };
    push_date_time(out, r.start);
    out.push(' ');
    push_int(out, r.time_taken_ms);
    out.push(' ');
    push_ip(out, r.client_ip);
    text(out, r.username.as_deref().unwrap_or(""));
    out.push(' ');
    elff_joined(out, &r.auth_groups, ',');
    text(out, r.exception_id.as_ref().map_or("", |e| e.as_str()));
    text(out, r.filter_result.as_str());
    out.push(' ');
    elff_joined(out, &r.categories, ';');
    out.push(' ');
    push_int(out, r.status);
    text(out, r.action.as_str());
    text(out, &r.method);
    text(out, r.scheme.unwrap_or(""));
    text(out, &r.host);
    out.push(' ');
    if r.port == 0 {
        out.push('-');
    } else {
        push_int(out, r.port);
    }
    text(out, &r.path);
    text(out, r.query.as_deref().unwrap_or(""));
    text(out, r.user_agent.as_deref().unwrap_or(""));
    out.push(' ');
    push_ip(out, r.server_ip);
    out.push(' ');
    push_int(out, r.sc_bytes);
    out.push(' ');
    push_int(out, r.cs_bytes);
    text(out, r.rule.as_deref().unwrap_or(""));
    text(out, r.auth_scheme.as_deref().unwrap_or(""));
    out.push(' ');
    elff_joined(out, &r.tags, ',');
    text(out, r.protocol.unwrap_or(""));
    text(out, r.sni.as_deref().unwrap_or(""));
    text(out, r.ja3n.as_deref().unwrap_or(""));
    out.push(' ');
    match r.remote_ip {
        Some(ip) => push_ip(out, ip),
        None => out.push('-'),
    }
    text(out, r.ja4.as_deref().unwrap_or(""));
    text(out, if r.intercepted { "1" } else { "" });
}

/// A character an ELFF field writes as it is: printable ASCII but `"`.
fn elff_plain(b: u8) -> bool {
    b.is_ascii_graphic() && b != b'"'
}

/// ELFF field: `-` when empty, double-quoted when it holds a space; a `"` or a
/// control character inside is percent-encoded so a line always splits cleanly.
pub fn elff_field(out: &mut String, v: &str) {
    if v.is_empty() {
        out.push('-');
        return;
    }
    // Most fields (names, paths, numbers) need neither quotes nor escapes.
    if v.bytes().all(elff_plain) {
        out.push_str(v);
        return;
    }
    let quote = v.contains([' ', '\t']);
    if quote {
        out.push('"');
    }
    for c in v.chars() {
        if c == '"' || breaks_lines(c) {
            percent(out, c);
        } else {
            out.push(c);
        }
    }
    if quote {
        out.push('"');
    }
}

fn squid(out: &mut String, r: &AccessRecord) {
    let t = r.start.duration_since(UNIX_EPOCH).unwrap_or_default();
    let url = if r.is_connect() {
        format!("{}:{}", r.host, r.port)
    } else {
        let q = r
            .query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        format!(
            "{}://{}:{}{}{}",
            r.scheme.unwrap_or("http"),
            r.host,
            r.port,
            r.path,
            q
        )
    };
    let _ = write!(
        out,
        "{}.{:03} {:>6} {} {}/{:03} {} ",
        t.as_secs(),
        t.subsec_millis(),
        r.time_taken_ms,
        r.client_ip,
        r.action.as_str(),
        r.status,
        r.sc_bytes,
    );
    squid_field(out, &r.method);
    out.push(' ');
    squid_field(out, &url);
    out.push(' ');
    squid_field(out, r.username.as_deref().unwrap_or(""));
    let hier = if r.host.is_empty() || r.action == SAction::TcpDenied {
        "HIER_NONE/-".to_string()
    } else {
        // Squid names the address it connected to.
        match r.remote_ip {
            Some(ip) => format!("HIER_DIRECT/{ip}"),
            None => format!("HIER_DIRECT/{}", r.host),
        }
    };
    let _ = write!(out, " {hier} -");
    // An 11th column (a custom Squid logformat field): the JA4 of a
    // CONNECT's ClientHello, `-` otherwise.
    out.push(' ');
    squid_field(out, r.ja4.as_deref().unwrap_or(""));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accesslog::record::FilterResult;

    fn record() -> AccessRecord {
        let mut r = AccessRecord::new("10.0.0.5".parse().unwrap(), "127.0.0.1".parse().unwrap());
        r.method = "GET".into();
        r.scheme = Some("http");
        r.host = "example.test".into();
        r.port = 80;
        r.path = "/a b".into();
        r.status = 200;
        r.action = SAction::TcpNcMiss;
        r.user_agent = Some("Mozilla/5.0 (X11) \"quoted\"".into());
        r.sc_bytes = 1234;
        r
    }

    #[test]
    fn elff_line_has_every_field_in_order() {
        let mut out = String::new();
        write_line(&mut out, LogFormat::Elff, &record());
        let fields = split_elff(out.trim_end());
        let names: Vec<&str> = ELFF_FIELDS.split(' ').collect();
        assert_eq!(fields.len(), names.len(), "{out}");
        let get = |n: &str| fields[names.iter().position(|x| *x == n).unwrap()].clone();
        assert_eq!(get("c-ip"), "10.0.0.5");
        assert_eq!(get("cs-username"), "-");
        assert_eq!(get("sc-status"), "200");
        assert_eq!(get("cs-uri-path"), "\"/a b\"");
        assert_eq!(get("cs(User-Agent)"), "\"Mozilla/5.0 (X11) %22quoted%22\"");
        assert_eq!(get("sc-filter-result"), FilterResult::Observed.as_str());
    }

    #[test]
    fn control_characters_cannot_forge_lines() {
        let mut r = record();
        r.user_agent = Some("x\nfake line".into());
        let mut out = String::new();
        write_line(&mut out, LogFormat::Elff, &r);
        assert_eq!(out.matches('\n').count(), 1);
        assert!(out.contains("x%0Afake"));
    }

    #[test]
    fn squid_and_json_formats() {
        let mut out = String::new();
        write_line(&mut out, LogFormat::Squid, &record());
        assert!(out.contains(" 10.0.0.5 TCP_NC_MISS/200 1234 GET http://example.test:80/a%20b - HIER_DIRECT/example.test -"), "{out}");
        out.clear();
        write_line(&mut out, LogFormat::Json, &record());
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(v["filter_result"], "OBSERVED");
    }

    #[test]
    fn squid_columns_hold_whatever_the_user_name_says() {
        let mut r = record();
        r.username = Some("x TCP_MISS/200 HIER_DIRECT/6.6.6.6 text/html\u{2028}%".into());
        let mut out = String::new();
        write_line(&mut out, LogFormat::Squid, &r);
        let cols: Vec<&str> = out
            .trim_end()
            .split(' ')
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(cols.len(), 11, "{out}");
        assert_eq!(
            cols[7],
            "x%20TCP_MISS/200%20HIER_DIRECT/6.6.6.6%20text/html%E2%80%A8%25"
        );
        assert_eq!(cols[8], "HIER_DIRECT/example.test");
    }

    #[test]
    fn line_separators_are_escaped_in_every_format() {
        let mut r = record();
        r.user_agent = Some("a\u{2028}b\u{2029}c\u{85}d".into());
        r.username = Some("u\u{2028}v".into());
        for format in [LogFormat::Elff, LogFormat::Squid, LogFormat::Json] {
            let mut out = String::new();
            write_line(&mut out, format, &r);
            assert!(
                !out.contains(['\u{2028}', '\u{2029}', '\u{85}']),
                "{format:?}: {out}"
            );
            assert_eq!(out.matches('\n').count(), 1);
        }
        let mut out = String::new();
        write_line(&mut out, LogFormat::Elff, &r);
        assert!(out.contains("a%E2%80%A8b%E2%80%A9c%C2%85d"), "{out}");
        out.clear();
        write_line(&mut out, LogFormat::Json, &r);
        assert!(out.contains(r"a\u2028b\u2029c\u0085d"), "{out}");
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(v["user_agent"], "a\u{2028}b\u{2029}c\u{85}d");
    }

    /// Splits an ELFF line the way log tools do: on spaces outside quotes.
    pub fn split_elff(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                ' ' if !quoted => out.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        out.push(cur);
        out
    }
}
