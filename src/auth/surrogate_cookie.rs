//! The steps of a cookie surrogate ([`super::cookie`] has the sealing and
//! the why), for plain HTTP and for requests inside interception alike:
//!
//! ```text
//! GET http://h/p            (no credentials, no cookie)
//!   → 302 http://<virtual_host>/?back=http://h/p&sig=<back seal>
//! GET http://<virtual_host>/?back=…&sig=…   → 407, answered as any 407
//!   → 302 http://h/p?__gatehouse_token=<token: user, host, URL, 30 s>
//! GET http://h/p?__gatehouse_token=…        (never forwarded)
//!   → 302 http://h/p   Set-Cookie: __gatehouse_surrogate=<cookie>
//! GET http://h/p  Cookie: __gatehouse_surrogate=…  → that user; the
//!   cookie is taken out before the origin sees the request
//! ```

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use tokio::time::Instant;

use super::cookie::{self, Claims, KeyError, Keys, Purpose, Refused};
use super::revoked::Revoked;
use super::surrogate::{SurrogateConfig, SurrogateKind};
use super::Authenticated;
use crate::directory::RealmChain;

/// Tokens redeemed within their lifetime, remembered to refuse a replay.
const MAX_USED: u64 = 100_000;

/// The proxy's own redirect, one step of the flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `Location`.
    pub location: String,
    /// `Set-Cookie`, on the step that trades a token for the cookie.
    pub set_cookie: Option<String>,
    /// The log's `x-exception-id`.
    pub step: &'static str,
}

/// Cookie surrogates, when `[auth.surrogate]` turns them on.
pub struct CookieSurrogates {
    keys: Keys,
    ttl: Duration,
    virtual_host: String,
    used: Cache<String, ()>,
}

impl CookieSurrogates {
    /// The cookie surrogates `cfg` asks for (reading the key file), or none.
    pub fn new(cfg: &SurrogateConfig) -> Result<Option<Self>, KeyError> {
        let Some(path) = cfg
            .key_file
            .as_deref()
            .filter(|_| cfg.has(SurrogateKind::Cookie))
        else {
            return Ok(None);
        };
        let keys = Keys::load(path)?;
        tracing::info!(ttl = ?cfg.cookie_ttl, virtual_host = %cfg.virtual_host,
            "cookie surrogates on: browsers without credentials are sent through the virtual host");
        Ok(Some(Self::with_keys(keys, cfg)))
    }

    /// With `keys` given (tests).
    pub fn with_keys(keys: Keys, cfg: &SurrogateConfig) -> Self {
        Self {
            keys,
            ttl: cfg.cookie_ttl,
            virtual_host: cfg.virtual_host.to_ascii_lowercase(),
            used: Cache::builder()
                .max_capacity(MAX_USED)
                .time_to_live(cookie::TOKEN_TTL)
                .build(),
        }
    }

    /// Whether `host` is the virtual host (never resolved nor dialled).
    pub fn is_virtual(&self, host: &str) -> bool {
        cookie::host_of(host) == self.virtual_host
    }

    /// Step 1: a GET or HEAD for `url` on `host` without credentials goes to
    /// the virtual URL; `None` when `url` is too long to carry.
    pub fn to_virtual(&self, url: &str, host: &str) -> Option<Redirect> {
        if url.len() > cookie::MAX_BACK {
            return None;
        }
        let now = cookie::now_ms();
        let claims = Claims {
            user: String::new(),
            realm: String::new(),
            host: cookie::host_of(host),
            issued_ms: now,
            expires_ms: now + cookie::BACK_TTL.as_millis() as u64,
            back: url.to_string(),
        };
        let sig = self.keys.seal(Purpose::Back, &claims);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("back", url)
            .append_pair("sig", &sig)
            .finish();
        Some(Redirect {
            location: format!("http://{}/?{query}", self.virtual_host),
            set_cookie: None,
            step: "authentication_redirect_to_virtual_host",
        })
    }

    /// Step 2: `who` proved themselves at the virtual URL whose query is
    /// `query`: back to the URL its `sig` vouches for, with a token.
    pub fn from_virtual(&self, query: &str, who: &Authenticated) -> Result<Redirect, Refused> {
        if query.len() > 2 * cookie::MAX_SEALED + 3 * cookie::MAX_BACK {
            return Err(Refused::TooLong);
        }
        let (mut back, mut sig) = (None, None);
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "back" => back = Some(v.into_owned()),
                "sig" => sig = Some(v.into_owned()),
                _ => {}
            }
        }
        let (Some(back), Some(sig)) = (back, sig) else {
            return Err(Refused::Malformed);
        };
        let now = cookie::now_ms();
        let vouched = self.keys.open(Purpose::Back, &sig, now)?;
        if vouched.back != back {
            return Err(Refused::OtherUrl);
        }
        let claims = Claims {
            user: who.identity.user.clone(),
            realm: who.identity.realm.to_string(),
            host: vouched.host,
            issued_ms: now,
            expires_ms: now + cookie::TOKEN_TTL.as_millis() as u64,
            back: back.clone(),
        };
        let token = self.keys.seal(Purpose::Token, &claims);
        Ok(Redirect {
            location: cookie::with_token(&back, &token),
            set_cookie: None,
            step: "authentication_redirect_from_virtual_host",
        })
    }

    /// Step 3: a request for `url` (on `host`) that carries a token is
    /// answered by the proxy, never forwarded: back to the URL without it,
    /// with the cookie when the token is good (once, within its lifetime,
    /// for this host and URL). `None`: no token in `url`.
    pub fn redeem(&self, url: &str, host: &str) -> Option<Redirect> {
        let (clean, token) = cookie::split_token(url)?;
        let secure = url.starts_with("https:");
        let set_cookie = match self.trade(&clean, host, &token) {
            Ok(value) => {
                let secure = if secure { "; Secure" } else { "" };
                let age = self.ttl.as_secs();
                Some(format!(
                    "{}={value}; Max-Age={age}; Path=/; HttpOnly; SameSite=Lax{secure}",
                    cookie::COOKIE_NAME
                ))
            }
            Err(why) => {
                tracing::debug!(%host, reason = why.as_str(), "surrogate token refused");
                None
            }
        };
        Some(Redirect {
            location: clean,
            step: if set_cookie.is_some() {
                "authentication_surrogate_cookie_set"
            } else {
                "authentication_surrogate_token_refused"
            },
            set_cookie,
        })
    }

    fn trade(&self, clean: &str, host: &str, token: &str) -> Result<String, Refused> {
        let now = cookie::now_ms();
        let t = self.keys.open(Purpose::Token, token, now)?;
        if t.host != cookie::host_of(host) {
            return Err(Refused::OtherHost);
        }
        if t.back != clean {
            return Err(Refused::OtherUrl);
        }
        let mac = token.rsplit('.').next().unwrap_or_default().to_string();
        if self.used.contains_key(&mac) {
            return Err(Refused::Replayed);
        }
        self.used.insert(mac, ());
        let claims = Claims {
            back: String::new(),
            issued_ms: now,
            expires_ms: now + self.ttl.as_millis() as u64,
            ..t
        };
        Ok(self.keys.seal(Purpose::Cookie, &claims))
    }

    /// The user a request for `host` carrying our cookie in `headers` is:
    /// a good cookie for this host, whose user the realms still know
    /// (through their caches), in the same realm, not revoked since it was
    /// set. A cookie that does not count is logged at debug and ignored.
    pub async fn recall(
        &self,
        headers: &http::HeaderMap,
        host: &str,
        chain: &RealmChain,
        revoked: &Revoked,
    ) -> Option<Authenticated> {
        let value = cookie::find_cookie(headers)?;
        match self.check(&value, host, chain, revoked).await {
            Ok(who) => Some(who),
            Err(why) => {
                tracing::debug!(%host, reason = why.as_str(), "surrogate cookie ignored");
                None
            }
        }
    }

    async fn check(
        &self,
        value: &str,
        host: &str,
        chain: &RealmChain,
        revoked: &Revoked,
    ) -> Result<Authenticated, Refused> {
        let now = cookie::now_ms();
        let c = self.keys.open(Purpose::Cookie, value, now)?;
        if c.host != cookie::host_of(host) {
            return Err(Refused::OtherHost);
        }
        let identity = match chain.lookup(&c.user).await {
            Ok(Some(id)) if *id.realm == *c.realm => id,
            _ => return Err(Refused::Unknown),
        };
        // When it was set, on this process's clock.
        let age = Duration::from_millis(now.saturating_sub(c.issued_ms));
        let since = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        if revoked.covers(&identity, since) {
            return Err(Refused::Revoked);
        }
        Ok(Authenticated {
            identity: Arc::clone(&identity),
            scheme: cookie::SURROGATE_COOKIE,
            cached: false,
            connection_bound: false,
            mutual: None,
        })
    }
}

impl super::Authenticator {
    /// Cookie surrogates, when on.
    pub fn cookies(&self) -> Option<&CookieSurrogates> {
        self.cookies.as_ref()
    }

    /// The cookie surrogate a request for `host` carries in `headers`, for
    /// a request that presented no credentials (see the module).
    pub async fn cookie_surrogate(
        &self,
        headers: &http::HeaderMap,
        host: &str,
        chain: &RealmChain,
    ) -> Option<Authenticated> {
        let cookies = self.cookies.as_ref()?;
        cookies.recall(headers, host, chain, &self.revoked).await
    }
}
