//! Cookie surrogate credentials (`[auth.surrogate] kind = "cookie"`),
//! ProxySG's origin-cookie-redirect adapted to an explicit proxy: a browser
//! request without proxy credentials is sent through a virtual URL where
//! it is challenged; once it proves itself there it comes back to its URL
//! with a one-time token, which the proxy trades for a cookie on the
//! origin's host. Later requests carrying that cookie are that user
//! (`surrogate-cookie`), and the cookie never reaches the origin.
//!
//! This file is the sealing: three signed values, each its own purpose so
//! one can never stand for another, each `<key id>.<claims>.<mac>` in
//! base64url with an HMAC-SHA256 over the purpose, key id and claims:
//! - the **back** link (the virtual URL's `sig`): the URL the proxy itself
//!   redirected from, so the virtual host never redirects anywhere else;
//! - the **token** ([`TOKEN_TTL`], one use): the user, the host and the
//!   exact URL it may be redeemed at;
//! - the **cookie** (`cookie_ttl`): the user, realm, host, issue time.
//!
//! Keys: `key_file` holds one secret per line (the first signs, every one
//! verifies; the key id is a hash of the secret), so a fleet shares them
//! and rotates by adding a line everywhere, then moving it first.
//! Everything a client sends is bounded before it is decoded.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `x-auth-scheme` (and policy `auth_scheme`) of a cookie surrogate.
pub const SURROGATE_COOKIE: &str = "surrogate-cookie";
/// The cookie's name: unlikely to be an origin's own.
pub const COOKIE_NAME: &str = "__gatehouse_surrogate";
/// The query parameter carrying the token back to the origin's URL.
pub const TOKEN_PARAM: &str = "__gatehouse_token";
/// A token is redeemable this long after the virtual host issued it.
pub const TOKEN_TTL: Duration = Duration::from_secs(30);
/// A virtual URL (its signed `back`) is good this long.
pub const BACK_TTL: Duration = Duration::from_secs(300);
/// Longest sealed value (cookie, token, `sig`) read; longer is ignored.
pub const MAX_SEALED: usize = 2048;
/// Longest URL sent through the virtual host (longer: challenged instead).
pub const MAX_BACK: usize = 2048;
/// Shortest secret accepted in the key file.
const MIN_KEY: usize = 32;

/// What a sealed value is for (the MAC's first bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The virtual URL's `sig`.
    Back,
    /// The one-time token.
    Token,
    /// The cookie.
    Cookie,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Back => b"gatehouse back v1",
            Purpose::Token => b"gatehouse token v1",
            Purpose::Cookie => b"gatehouse cookie v1",
        }
    }
}

/// What a sealed value says. Short field names keep cookies small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User (empty in a back link).
    #[serde(rename = "u")]
    pub user: String,
    /// Realm (empty in a back link).
    #[serde(rename = "r")]
    pub realm: String,
    /// The host it is good for (lowercase, no port).
    #[serde(rename = "h")]
    pub host: String,
    /// Issued, unix milliseconds.
    #[serde(rename = "i")]
    pub issued_ms: u64,
    /// Good until, unix milliseconds.
    #[serde(rename = "e")]
    pub expires_ms: u64,
    /// The URL (back link, token).
    #[serde(rename = "b", default, skip_serializing_if = "String::is_empty")]
    pub back: String,
}

/// Why a sealed value does not count (logged at debug).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Longer than [`MAX_SEALED`].
    TooLong,
    /// Not `<kid>.<claims>.<mac>` in base64url, or unreadable claims.
    Malformed,
    /// Signed with a key not in the key file (rotated out, or forged).
    UnknownKey,
    /// The MAC does not match: tampered.
    Tampered,
    /// Past its expiry.
    Expired,
    /// Issued for another host.
    OtherHost,
    /// A token presented at another URL than its own.
    OtherUrl,
    /// A token already redeemed.
    Replayed,
    /// Its user was revoked after it was issued.
    Revoked,
    /// No realm knows its user (now), or the directory cannot say.
    Unknown,
}

impl Refused {
    /// The log's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::TooLong => "too long",
            Refused::Malformed => "malformed",
            Refused::UnknownKey => "unknown key",
            Refused::Tampered => "tampered",
            Refused::Expired => "expired",
            Refused::OtherHost => "issued for another host",
            Refused::OtherUrl => "token for another URL",
            Refused::Replayed => "token already used",
            Refused::Revoked => "user revoked since",
            Refused::Unknown => "user unknown or directory unavailable",
        }
    }
}

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Unreadable, or readable by others.
    #[error(transparent)]
    Secret(#[from] crate::settings::SecretError),
    /// No key, or one too short.
    #[error("{0}: one secret of at least 32 characters per line (the first signs)")]
    Weak(String),
}

/// The keys of `key_file`: the first signs, every one verifies.
pub struct Keys {
    keys: Vec<(String, Vec<u8>)>,
}

type HmacSha256 = Hmac<Sha256>;

/// Now, in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Keys {
    /// Reads `path` as every secret is read (owner-only, else refused).
    pub fn load(path: &std::path::Path) -> Result<Self, KeyError> {
        let text = crate::settings::read_secret(path)?;
        let keys: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if keys.is_empty() || keys.iter().any(|k| k.len() < MIN_KEY) {
            return Err(KeyError::Weak(path.display().to_string()));
        }
        Ok(Self::from_secrets(&keys))
    }

    /// Keys from secrets, the first signing.
    pub fn from_secrets(secrets: &[&str]) -> Self {
        let keys = secrets
            .iter()
            .map(|s| {
                let id = Sha256::digest(s.as_bytes());
                (hex8(&id), s.as_bytes().to_vec())
            })
            .collect();
        Self { keys }
    }

    fn mac(key: &[u8], purpose: Purpose, kid: &str, body: &str) -> HmacSha256 {
        // Any key length is valid for HMAC.
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key");
        mac.update(purpose.label());
        mac.update(b"\0");
        mac.update(kid.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        mac
    }

    /// `claims` sealed for `purpose` with the signing key.
    pub fn seal(&self, purpose: Purpose, claims: &Claims) -> String {
        let (kid, key) = &self.keys[0];
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let body = B64.encode(json);
        let tag = Self::mac(key, purpose, kid, &body).finalize().into_bytes();
        format!("{kid}.{body}.{}", B64.encode(tag))
    }

    /// The claims of `sealed` when a key of ours signed it for `purpose`
    /// and it has not expired (compared in constant time).
    pub fn open(&self, purpose: Purpose, sealed: &str, now_ms: u64) -> Result<Claims, Refused> {
        if sealed.len() > MAX_SEALED {
            return Err(Refused::TooLong);
        }
        let mut parts = sealed.split('.');
        let (Some(kid), Some(body), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::Malformed);
        };
        let tag = B64.decode(tag).map_err(|_| Refused::Malformed)?;
        let (kid, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .ok_or(Refused::UnknownKey)?;
        Self::mac(key, purpose, kid, body)
            .verify_slice(&tag)
            .map_err(|_| Refused::Tampered)?;
        let json = B64.decode(body).map_err(|_| Refused::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| Refused::Malformed)?;
        if now_ms >= claims.expires_ms {
            return Err(Refused::Expired);
        }
        Ok(claims)
    }
}

fn hex8(bytes: &[u8]) -> String {
    bytes[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The host as claims name it: lowercase, without a trailing dot or port.
pub fn host_of(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The value of our cookie in `headers`' `Cookie` fields, if any (the
/// first; an oversized field is skipped).
pub fn find_cookie(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim_matches('"').to_string())
}

/// Our cookie taken out of `headers` before the request goes to the
/// origin (a `Cookie` left empty is removed).
pub fn strip_cookie(headers: &mut http::HeaderMap) {
    let all: Vec<http::HeaderValue> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .cloned()
        .collect();
    if !all.iter().any(|v| contains_ours(v.as_bytes())) {
        return;
    }
    headers.remove(http::header::COOKIE);
    for v in all {
        let Ok(text) = v.to_str() else {
            headers.append(http::header::COOKIE, v);
            continue;
        };
        let kept: Vec<&str> = text
            .split(';')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .filter(|c| c.split_once('=').map_or(*c, |(n, _)| n) != COOKIE_NAME)
            .collect();
        if let Ok(v) = http::HeaderValue::from_str(&kept.join("; ")) {
            if !kept.is_empty() {
                headers.append(http::header::COOKIE, v);
            }
        }
    }
}

fn contains_ours(v: &[u8]) -> bool {
    v.windows(COOKIE_NAME.len())
        .any(|w| w == COOKIE_NAME.as_bytes())
}

/// `url` without our token parameter, and the token, when it has one.
pub fn split_token(url: &str) -> Option<(String, String)> {
    let (base, query) = url.split_once('?')?;
    let mut token = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| {
            match p
                .strip_prefix(TOKEN_PARAM)
                .and_then(|r| r.strip_prefix('='))
            {
                Some(t) => {
                    token.get_or_insert_with(|| t.to_string());
                    false
                }
                None => *p != TOKEN_PARAM,
            }
        })
        .collect();
    let token = token.or_else(|| query.split('&').any(|p| p == TOKEN_PARAM).then(String::new))?;
    let clean = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Some((clean, token))
}

/// `url` with `token` as its last query parameter.
pub fn with_token(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{TOKEN_PARAM}={token}")
}

#[cfg(test)]
#[path = "cookie_tests.rs"]
mod tests;
