//! One access log line read back into the facts it records, in any of the
//! three formats Gatehouse writes (`accesslog/format.rs`). Pure: a line in,
//! a [`Line`] or the reason it cannot be read out — never a panic.

use std::net::IpAddr;

use serde::Deserialize;

use crate::accesslog::format::ELFF_FIELDS;

/// Which format a line was written in; it says which facts it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ProxySG ELFF, with its `#Fields` header (or Gatehouse's own order).
    Elff,
    /// Squid native: no groups, User-Agent, rule or TLS facts but JA4.
    Squid,
    /// JSON lines: every field of the record.
    Json,
}

/// The facts a log line records about one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The format it was read from.
    pub format: Format,
    /// When the transaction started (time windows judge this).
    pub at: jiff::Timestamp,
    /// The client's address.
    pub client: IpAddr,
    /// The authenticated (or attempted) user.
    pub user: Option<String>,
    /// The user's groups as logged (`None`: the format does not record them).
    pub groups: Option<Vec<String>>,
    /// The user proved who they are (ELFF/JSON: an `x-auth-scheme` is
    /// logged only then; Squid: a user on a line that is not a 407).
    pub authenticated: bool,
    /// `x-exception-id`.
    pub exception: Option<String>,
    /// `sc-filter-result` is `DENIED`.
    pub denied: bool,
    /// The status sent to the client.
    pub status: u16,
    /// `s-action`.
    pub action: String,
    /// The request method (a line with none that HTTP allows is malformed).
    pub method: http::Method,
    /// The destination host.
    pub host: String,
    /// The destination port.
    pub port: u16,
    /// The path (not for CONNECT).
    pub path: String,
    /// The query string.
    pub query: Option<String>,
    /// The User-Agent (`None` with Squid: not recorded).
    pub user_agent: Option<Option<String>>,
    /// `x-rule` (`None` with Squid: not recorded).
    pub rule: Option<Option<String>>,
    /// `x-protocol`: what detection found.
    pub protocol: Option<String>,
    /// `x-sni`.
    pub sni: Option<String>,
    /// `x-ja3n`.
    pub ja3n: Option<String>,
    /// `x-ja4`.
    pub ja4: Option<String>,
    /// `r-ip`: the address dialled.
    pub remote_ip: Option<IpAddr>,
    /// A request decrypted from an intercepted tunnel.
    pub intercepted: bool,
}

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// The ELFF field order a `#Fields:` header gives (Gatehouse's own by default).
#[derive(Debug, Clone)]
pub struct ElffFields(Vec<String>);

impl Default for ElffFields {
    fn default() -> Self {
        Self::from_header(ELFF_FIELDS)
    }
}

impl ElffFields {
    /// The names after `#Fields:`.
    pub fn from_header(names: &str) -> Self {
        Self(names.split_whitespace().map(str::to_string).collect())
    }

    fn get<'a>(&self, values: &'a [&'a str], name: &str) -> Option<&'a str> {
        let i = self.0.iter().position(|n| n == name)?;
        let v = *values.get(i)?;
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (v != "-" && !v.is_empty()).then_some(v)
    }
}

/// Reads one line, whatever its format: `{` opens JSON, a date ELFF,
/// epoch seconds Squid. `Ok(None)`: a comment or empty line.
pub fn parse(line: &str, fields: &ElffFields) -> Result<Option<Line>, Malformed> {
    let line = line.trim_end_matches(['\n', '\r']);
    if line.trim().is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let first = line.split(' ').next().unwrap_or("");
    if line.starts_with('{') {
        parse_json(line).map(Some)
    } else if first.len() == 10 && first.as_bytes().get(4) == Some(&b'-') {
        parse_elff(line, fields).map(Some)
    } else {
        parse_squid(line).map(Some)
    }
}

/// Splits on spaces outside double quotes (values with a space are quoted;
/// a `"` inside is written `%22`).
fn split_elff(line: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(32);
    let (mut start, mut quoted) = (0, false);
    for (i, b) in line.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b' ' if !quoted => {
                out.push(&line[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&line[start..]);
    out
}

fn ip(v: Option<&str>) -> Result<IpAddr, Malformed> {
    v.and_then(|v| v.parse().ok())
        .ok_or(Malformed("client address"))
}

fn list(v: Option<&str>, sep: char) -> Vec<String> {
    v.map(|v| v.split(sep).map(str::to_string).collect())
        .unwrap_or_default()
}

fn parse_elff(line: &str, fields: &ElffFields) -> Result<Line, Malformed> {
    let values = split_elff(line);
    if values.len() != fields.0.len() {
        return Err(Malformed("ELFF field count differs from #Fields"));
    }
    let get = |n: &str| fields.get(&values, n);
    let s = |n: &str| get(n).map(str::to_string);
    let at = format!(
        "{}T{}Z",
        get("date").unwrap_or(""),
        get("time").unwrap_or("")
    )
    .parse::<jiff::Timestamp>()
    .map_err(|_| Malformed("date and time"))?;
    let status = get("sc-status")
        .and_then(|v| v.parse().ok())
        .ok_or(Malformed("sc-status"))?;
    let port = match get("cs-uri-port") {
        None => 0,
        Some(p) => p.parse().map_err(|_| Malformed("cs-uri-port"))?,
    };
    let remote_ip = match get("r-ip") {
        None => None,
        Some(v) => Some(v.parse().map_err(|_| Malformed("r-ip"))?),
    };
    Ok(Line {
        format: Format::Elff,
        at,
        client: ip(get("c-ip"))?,
        user: s("cs-username"),
        groups: Some(list(get("cs-auth-group"), ',')),
        authenticated: get("x-auth-scheme").is_some() && get("cs-username").is_some(),
        exception: s("x-exception-id"),
        denied: get("sc-filter-result") == Some("DENIED"),
        status,
        action: s("s-action").ok_or(Malformed("s-action"))?,
        method: method(&s("cs-method").ok_or(Malformed("cs-method"))?)?,
        host: s("cs-host").unwrap_or_default(),
        port,
        path: s("cs-uri-path").unwrap_or_default(),
        query: s("cs-uri-query"),
        user_agent: Some(s("cs(User-Agent)")),
        rule: Some(s("x-rule")),
        protocol: s("x-protocol"),
        sni: s("x-sni"),
        ja3n: s("x-ja3n"),
        ja4: s("x-ja4"),
        remote_ip,
        intercepted: get("x-intercepted") == Some("1"),
    })
}

/// The JSON record's fields replay reads (`AccessRecord`'s names).
#[derive(Deserialize)]
struct JsonRecord {
    start: String,
    client_ip: IpAddr,
    username: Option<String>,
    #[serde(default)]
    auth_groups: Vec<String>,
    exception_id: Option<String>,
    filter_result: String,
    status: u16,
    action: String,
    method: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    path: String,
    query: Option<String>,
    user_agent: Option<String>,
    rule: Option<String>,
    auth_scheme: Option<String>,
    protocol: Option<String>,
    sni: Option<String>,
    ja3n: Option<String>,
    ja4: Option<String>,
    remote_ip: Option<IpAddr>,
    #[serde(default)]
    intercepted: bool,
}

fn parse_json(line: &str) -> Result<Line, Malformed> {
    let r: JsonRecord = serde_json::from_str(line).map_err(|_| Malformed("JSON record"))?;
    let at = r
        .start
        .parse::<jiff::Timestamp>()
        .map_err(|_| Malformed("start"))?;
    Ok(Line {
        format: Format::Json,
        at,
        client: r.client_ip,
        authenticated: r.auth_scheme.is_some() && r.username.is_some(),
        user: r.username,
        groups: Some(r.auth_groups),
        exception: r.exception_id,
        denied: r.filter_result == "DENIED",
        status: r.status,
        action: r.action,
        method: method(&r.method)?,
        host: r.host,
        port: r.port,
        path: r.path,
        query: r.query,
        user_agent: Some(r.user_agent),
        rule: Some(r.rule),
        protocol: r.protocol,
        sni: r.sni,
        ja3n: r.ja3n,
        ja4: r.ja4,
        remote_ip: r.remote_ip,
        intercepted: r.intercepted,
    })
}

/// Squid percent-encodes a space, `"`, `%` and line breaks in its columns:
/// decoding is exact.
fn squid_value(v: &str) -> Option<String> {
    (v != "-").then(|| {
        percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .into_owned()
    })
}

/// `time elapsed client action/status bytes method url user hier type ja4`.
fn parse_squid(line: &str) -> Result<Line, Malformed> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let [time, _, client, action_status, _, method, url, user, hier, _, ja4] = cols[..] else {
        return Err(Malformed("Squid line without its 11 columns"));
    };
    let (secs, ms) = time.split_once('.').unwrap_or((time, "0"));
    let ms: i64 = ms.parse().map_err(|_| Malformed("Squid time"))?;
    let at = secs
        .parse::<i64>()
        .ok()
        .and_then(|s| jiff::Timestamp::from_millisecond(s * 1000 + ms).ok())
        .ok_or(Malformed("Squid time"))?;
    let (action, status) = action_status
        .split_once('/')
        .ok_or(Malformed("Squid action/status"))?;
    let status: u16 = status.parse().map_err(|_| Malformed("Squid status"))?;
    let method = squid_value(method).ok_or(Malformed("Squid method"))?;
    let url = squid_value(url).ok_or(Malformed("Squid URL"))?;
    let (host, port, path, query) = squid_url(&method, &url)?;
    let method = self::method(&method)?;
    let user = squid_value(user);
    let remote_ip = hier
        .strip_prefix("HIER_DIRECT/")
        .and_then(|h| h.parse().ok());
    Ok(Line {
        format: Format::Squid,
        at,
        client: ip(Some(client))?,
        authenticated: user.is_some() && status != 407,
        user,
        groups: None,
        exception: None,
        denied: action == "TCP_DENIED" || action == "TCP_AUTH_MISS",
        status,
        action: action.to_string(),
        method,
        host,
        port,
        path,
        query,
        user_agent: None,
        rule: None,
        protocol: None,
        sni: None,
        ja3n: None,
        ja4: squid_value(ja4),
        remote_ip,
        intercepted: false,
    })
}

type Target = (String, u16, String, Option<String>);

fn squid_url(method: &str, url: &str) -> Result<Target, Malformed> {
    let bad = Malformed("Squid URL");
    let (rest, is_connect) = match url.split_once("://") {
        Some((_, rest)) if method != "CONNECT" => (rest, false),
        _ => (url, true),
    };
    let (authority, pq) = match rest.find('/') {
        Some(i) if !is_connect => rest.split_at(i),
        _ => (rest, ""),
    };
    let (host, port) = authority.rsplit_once(':').ok_or(bad.clone())?;
    let port = port.parse().map_err(|_| bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let (path, query) = match pq.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (pq.to_string(), None),
    };
    Ok((host.to_string(), port, path, query))
}

#[cfg(test)]
#[path = "line_tests.rs"]
mod tests;

/// A method as HTTP spells one; anything else is a malformed line.
fn method(m: &str) -> Result<http::Method, Malformed> {
    http::Method::from_bytes(m.as_bytes()).map_err(|_| Malformed("not an HTTP method"))
}
