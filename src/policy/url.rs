//! The one URL normalisation every `url` rule is judged against — plain
//! HTTP, requests decrypted from an intercepted tunnel, HTTP found inside a
//! CONNECT, and `gatehouse explain` — so that `/%61dmin`, `//admin`,
//! `/./admin` and `/x/../admin` are all `/admin` to a rule, as they are to
//! the origin.
//!
//! RFC 3986 §6.2.2: percent-encoded unreserved characters decoded, other
//! escapes upper-cased, dot segments removed (§5.2.4); plus what real
//! servers read into a path: empty segments merged (`//` is `/` to most),
//! `\`, `%5C` and `%2F` taken as `/` (IIS, nginx), `;parameters` dropped
//! from a segment (Tomcat's `/..;/admin`); scheme and host lower-case. A
//! path that cannot be normalised — an invalid escape, a dot segment above
//! the root — is refused: the origin's reading of it is anybody's guess. In
//! the query, a `%` that starts no escape is taken as a literal `%25`
//! (browsers send `?q=50%off`). The request is forwarded as the client wrote
//! it: this form only ever makes more spellings match a rule, never fewer.

use std::borrow::Cow;

/// Why a request target cannot be normalised (answered `400`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// A `%` not followed by two hex digits.
    #[error("an invalid percent-escape in the request target")]
    BadEscape,
    /// More `..` segments than there are segments above them.
    #[error("a dot segment above the root of the path")]
    AboveRoot,
}

impl UrlError {
    /// The reason, for a `400`'s log line.
    pub fn reason(self) -> &'static str {
        match self {
            UrlError::BadEscape => "an invalid percent-escape in the request target",
            UrlError::AboveRoot => "a dot segment above the root of the path",
        }
    }
}

/// `scheme://host[:port]path?query`, normalised; `port` is left out when it
/// is the scheme's own. `host` is taken as canonical (lower-case, as
/// [`crate::resolve::host`] gives it).
pub fn absolute(
    scheme: &str,
    host: &str,
    port: u16,
    path_and_query: &str,
) -> Result<String, UrlError> {
    let scheme = scheme.to_ascii_lowercase();
    let default = matches!((scheme.as_str(), port), ("http", 80) | ("https", 443));
    let pq = path_and_query_normalised(path_and_query)?;
    let host = host.to_ascii_lowercase();
    // An IPv6 literal keeps its brackets in a URL.
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok(if default {
        format!("{scheme}://{host}{pq}")
    } else {
        format!("{scheme}://{host}:{port}{pq}")
    })
}

/// The path and query, normalised; borrowed when already normal (the
/// common case costs one scan and no allocation).
pub fn path_and_query_normalised(pq: &str) -> Result<Cow<'_, str>, UrlError> {
    if pq.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    let (path, query) = match pq.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (pq, None),
    };
    if already_normal(path) && query.is_none_or(|q| !q.contains('%')) {
        return Ok(Cow::Borrowed(pq));
    }
    let mut out = path_normalised(&escapes_normalised(path, Part::Path)?)?;
    if let Some(q) = query {
        out.push('?');
        out.push_str(&escapes_normalised(q, Part::Query)?);
    }
    Ok(Cow::Owned(out))
}

/// No escape, backslash or parameter, no empty or dot segment: nothing to do.
fn already_normal(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains(['%', '\\', ';'])
        && !path.contains("//")
        && !path.split('/').any(|s| s == "." || s == "..")
}

/// Which part of the target an escape is in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Path,
    Query,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Escapes of unreserved characters decoded, the others upper-cased; in
/// the path, `\\` and escaped slashes and backslashes are `/`; in the query,
/// a `%` starting no escape is a literal `%25`.
fn escapes_normalised(s: &str, part: Part) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            // A multi-byte character is copied whole; '%' is ASCII.
            let next = s[i..].chars().next().map_or(1, char::len_utf8);
            match &s[i..i + next] {
                "\\" if part == Part::Path => out.push('/'),
                c => out.push_str(c),
            }
            i += next;
            continue;
        }
        let byte = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (byte, part) {
            (None, Part::Path) => return Err(UrlError::BadEscape),
            (None, Part::Query) => {
                out.push_str("%25");
                i += 1;
                continue;
            }
            (Some(b'/' | b'\\'), Part::Path) => out.push('/'),
            (Some(b), _) if unreserved(b) => out.push(b as char),
            (Some(b), _) => out.push_str(&format!("%{b:02X}")),
        }
        i += 3;
    }
    Ok(out)
}

/// Dot segments removed (RFC 3986 §5.2.4) and empty segments merged; a
/// path ending in `/`, `.` or `..` keeps its trailing slash.
fn path_normalised(path: &str) -> Result<String, UrlError> {
    let mut kept: Vec<&str> = Vec::new();
    let mut trailing = path.ends_with('/');
    for segment in path.split('/') {
        // `;parameters` are no part of the name (Tomcat reads `..;x` as `..`).
        let segment = segment.split(';').next().unwrap_or_default();
        match segment {
            "" => {}
            "." => trailing = true,
            ".." => {
                kept.pop().ok_or(UrlError::AboveRoot)?;
                trailing = true;
            }
            s => {
                kept.push(s);
                trailing = false;
            }
        }
    }
    trailing |= path.ends_with('/');
    let mut out = String::with_capacity(path.len());
    for s in &kept {
        out.push('/');
        out.push_str(s);
    }
    if trailing || kept.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(pq: &str) -> Result<String, UrlError> {
        path_and_query_normalised(pq).map(Cow::into_owned)
    }

    #[test]
    fn every_spelling_of_admin_is_admin() {
        for spelling in [
            "/admin",
            "/%61dmin",
            "/%61%64%6D%69%6e",
            "//admin",
            "/./admin",
            "/x/../admin",
            "/x/%2e%2e/admin",
            "/x/%2E%2E/admin",
            "///x//..//admin",
        ] {
            assert_eq!(n(spelling).as_deref(), Ok("/admin"), "{spelling}");
        }
        assert_eq!(n("/admin/").as_deref(), Ok("/admin/"));
        assert_eq!(n("/admin/.").as_deref(), Ok("/admin/"));
        assert_eq!(n("/admin/x/..").as_deref(), Ok("/admin/"));
        assert_eq!(n("").as_deref(), Ok("/"));
        assert_eq!(n("/").as_deref(), Ok("/"));
    }

    #[test]
    fn what_servers_read_as_a_slash_or_no_part_of_the_name_is_judged_so() {
        for spelling in [
            "/pub/..;/admin",
            "/pub\\..\\admin",
            "/pub/..%5Cadmin",
            "/pub/..%2Fadmin",
            "/pub/..%2fadmin",
            "/admin;jsessionid=1",
            "/;x/admin",
        ] {
            assert_eq!(n(spelling).as_deref(), Ok("/admin"), "{spelling}");
        }
    }

    #[test]
    fn reserved_escapes_stay_escaped_and_upper_case() {
        // In the judged form an escaped slash is a slash.
        assert_eq!(n("/a%2fb/../c").as_deref(), Ok("/a/c"));
        assert_eq!(n("/a%3fb").as_deref(), Ok("/a%3Fb"));
        assert_eq!(n("/q?x=%7e%2f&y=%41").as_deref(), Ok("/q?x=~%2F&y=A"));
        // A lone '%' in the query is a literal one.
        assert_eq!(n("/s?q=50%off").as_deref(), Ok("/s?q=50%25off"));
        assert_eq!(n("/caf%C3%A9").as_deref(), Ok("/caf%C3%A9"));
        // The query has no dot segments.
        assert_eq!(n("/p?../x").as_deref(), Ok("/p?../x"));
    }

    #[test]
    fn what_cannot_be_normalised_is_refused() {
        assert_eq!(n("/%zz"), Err(UrlError::BadEscape));
        assert_eq!(n("/%4"), Err(UrlError::BadEscape));
        assert_eq!(n("/a%"), Err(UrlError::BadEscape));
        assert_eq!(n("/../admin"), Err(UrlError::AboveRoot));
        assert_eq!(n("/x/../../admin"), Err(UrlError::AboveRoot));
        assert_eq!(n("/%2e%2e/admin"), Err(UrlError::AboveRoot));
    }

    #[test]
    fn absolute_urls_are_lower_case_without_their_default_port() {
        assert_eq!(
            absolute("HTTP", "Example.Test", 80, "/%61").as_deref(),
            Ok("http://example.test/a")
        );
        assert_eq!(
            absolute("https", "example.test", 8443, "/").as_deref(),
            Ok("https://example.test:8443/")
        );
        assert_eq!(
            absolute("http", "::1", 8080, "/").as_deref(),
            Ok("http://[::1]:8080/")
        );
    }

    proptest::proptest! {
        /// Normalising twice is normalising once, and a normal form passes
        /// through borrowed.
        #[test]
        fn idempotent(pq in "(/([a-c.]|%6[12]|%2[eE]|%2[fF]){0,4}){0,6}(\\?[a-c%=]{0,6})?") {
            if let Ok(once) = n(&pq) {
                proptest::prop_assert_eq!(n(&once), Ok(once.clone()));
            }
        }
    }
}
