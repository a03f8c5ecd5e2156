//! Hop-by-hop header handling (RFC 9110 §7.6.1) and our `Via` entry.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that describe one hop and never cross the proxy, in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every header the `Connection`
/// header names. `Transfer-Encoding` goes too: hyper frames each hop itself.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most requests carry none: one pass over a few names costs less than
    // nine removals, each a hash and a probe.
    let hop = |n: &HeaderName| HOP_BY_HOP.contains(n) || n == header::TRANSFER_ENCODING;
    if !headers.keys().any(hop) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

/// Appends `1.1 <pseudonym>` to the message's `Via` (RFC 9110 §7.6.3).
pub fn add_via(headers: &mut HeaderMap, version: http::Version, pseudonym: &str) {
    let proto = match version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        _ => "1.1",
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{proto} {pseudonym}")) {
        headers.append(header::VIA, v);
    }
}

/// True when a `Via` entry already names us: the request has come round again.
pub fn via_names(headers: &HeaderMap, pseudonym: &str) -> bool {
    headers
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| entry.split_whitespace().nth(1))
        .any(|received_by| received_by.eq_ignore_ascii_case(pseudonym))
}

/// ProxySG's MISS vs NC_MISS: could a cache have stored this response (a
/// GET or HEAD answer without `no-store`, `private` or `Set-Cookie`)?
pub fn cacheable(method: &http::Method, response: &HeaderMap) -> bool {
    let private = response
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            let v = v.to_ascii_lowercase();
            v.contains("no-store") || v.contains("private")
        });
    (method == http::Method::GET || method == http::Method::HEAD)
        && !private
        && !response.contains_key(http::header::SET_COOKIE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_listed_and_fixed_hop_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("upgrade", "websocket"),
            ("transfer-encoding", "chunked"),
            ("x-kept", "yes"),
            ("content-length", "3"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["content-length", "x-kept"]);
    }

    #[test]
    fn garbage_in_connection_is_ignored() {
        let mut h = map(&[("connection", "  , ,bad header name, close"), ("x", "1")]);
        strip_hop_by_hop(&mut h);
        assert!(h.contains_key("x") && !h.contains_key("connection"));
    }

    #[test]
    fn via_round_trip_detects_loops() {
        let mut h = map(&[("via", "1.0 fred, 1.1 p.example (Apache)")]);
        assert!(!via_names(&h, "gatehouse"));
        add_via(&mut h, http::Version::HTTP_11, "gatehouse");
        assert!(via_names(&h, "gatehouse"));
        assert!(via_names(&h, "GateHouse"));
        assert!(via_names(&h, "fred"));
        assert!(!via_names(&h, "1.0"));
    }
}
