//! The words of an HTTP/1.1 protocol upgrade (RFC 9110 §7.8): what a
//! request offers to switch to, read from its `Upgrade` header when its
//! `Connection` header lists `upgrade` (else `Upgrade` is only a hop-by-hop
//! header to drop). Pure: the policy's `upgrade = [..]` condition, the
//! gate that lets `websocket` through and refuses `h2c`, and the forward
//! paths all read the request through [`offered`], so an upgrade cannot be
//! seen one way where it is judged and another where it is carried out.

use http::header::{HeaderMap, CONNECTION, UPGRADE};

/// One protocol an upgrade offers, by its name (the version after `/` is
/// not part of the name: `websocket`, `h2c`, `TLS/1.2` is `tls`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Token {
    /// `websocket` (RFC 6455): relayed after the origin's `101`.
    WebSocket,
    /// `h2c`: HTTP/2 in clear. Never relayed: its frames would carry
    /// requests no rule sees (and RFC 9113 §3.1 retired it).
    H2c,
    /// Any other protocol name, lowercase: relayed only when the rule that
    /// allowed the request names it in `upgrade = [..]`.
    Other(String),
}

impl Token {
    /// The token for a name as written in a header or a policy (any case).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.split('/').next().unwrap_or("").trim();
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"(),/:;<=>?@[\\]{}\"".contains(&b));
        if !ok {
            return None;
        }
        Some(match name.to_ascii_lowercase().as_str() {
            "websocket" => Token::WebSocket,
            "h2c" => Token::H2c,
            other => Token::Other(other.to_string()),
        })
    }

    /// The name, lowercase.
    pub fn name(&self) -> &str {
        match self {
            Token::WebSocket => "websocket",
            Token::H2c => "h2c",
            Token::Other(n) => n,
        }
    }
}

/// What an upgrade request offers, in the client's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The protocols offered; never empty.
    pub tokens: Vec<Token>,
}

impl Offer {
    /// Only WebSocket is offered.
    pub fn is_websocket(&self) -> bool {
        self.tokens.iter().all(|t| *t == Token::WebSocket)
    }

    /// `h2c` is among the offered protocols.
    pub fn h2c(&self) -> bool {
        self.tokens.contains(&Token::H2c)
    }

    /// `websocket, foo`: for messages and the log.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.tokens.iter().map(Token::name).collect();
        names.join(", ")
    }
}

/// Why an upgrade's headers cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// The upgrade `headers` ask for: `Ok(None)` when they ask none (no
/// `Upgrade`, or a `Connection` that does not list `upgrade`), `Err` when
/// an `Upgrade` header that counts names nothing readable.
pub fn offered(headers: &HeaderMap) -> Result<Option<Offer>, Malformed> {
    let asks = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !asks || !headers.contains_key(UPGRADE) {
        return Ok(None);
    }
    let mut tokens = Vec::new();
    for v in headers.get_all(UPGRADE) {
        let v = v.to_str().map_err(|_| Malformed)?;
        for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            tokens.push(Token::from_name(t).ok_or(Malformed)?);
        }
    }
    if tokens.is_empty() {
        return Err(Malformed);
    }
    Ok(Some(Offer { tokens }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn an_upgrade_needs_both_headers() {
        assert_eq!(offered(&map(&[("upgrade", "websocket")])), Ok(None));
        assert_eq!(offered(&map(&[("connection", "upgrade")])), Ok(None));
        let both = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        let offer = offered(&both).unwrap().unwrap();
        assert_eq!(offer.tokens, vec![Token::WebSocket]);
        assert!(offer.is_websocket() && !offer.h2c());
    }

    #[test]
    fn every_token_counts_versions_dropped() {
        let h = map(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket, TLS/1.2"),
            ("upgrade", "h2c"),
        ]);
        let offer = offered(&h).unwrap().unwrap();
        assert_eq!(
            offer.tokens,
            vec![Token::WebSocket, Token::Other("tls".into()), Token::H2c]
        );
        assert!(!offer.is_websocket() && offer.h2c());
        assert_eq!(offer.names(), "websocket, tls, h2c");
    }

    #[test]
    fn unreadable_upgrades_are_malformed() {
        for bad in ["", " , ", "web socket", "a(b)", "/1.0"] {
            let h = map(&[("connection", "upgrade"), ("upgrade", bad)]);
            assert_eq!(offered(&h), Err(Malformed), "{bad:?}");
        }
    }
}
