//! Who is behind a request: read `Proxy-Authorization`, pick the scheme, and
//! let it check the credentials against the realm chain.
//!
//! This file is the dispatcher: it parses the header, routes to [`basic`],
//! [`ntlm`] or [`negotiate`], and keeps the connection's [`AuthState`] (what
//! a connection-bound scheme established, the Basic memo, the failure count)
//! in step with the answer. Each scheme maps its own failures to
//! [`AuthFailure`]; the proxy maps those to HTTP answers.
//!
//! `auth` imports `directory` (realms, identities) and `limit`, never `conn`:
//! it is handed the connection's state and the client's address.

mod basic;
pub mod cookie;
pub mod header;
pub mod negotiate;
mod ntlm;
pub mod ntlm_helper;
pub mod ntlm_msg;
mod revoked;
pub mod settings;
pub mod spnego;
mod state;
pub mod surrogate;
pub mod surrogate_cookie;
pub(crate) mod throttle;

use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderValue;

use crate::directory::{AccountProblem, Identity, RealmChain};
use header::{BadCredentials, Presented, PresentedScheme};
use ntlm::Framing;
use settings::{AuthConfig, Scheme};
pub use state::AuthState;

/// Why a request did not authenticate. Each maps to one HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials: challenge.
    Missing,
    /// Credentials we cannot read.
    Malformed(BadCredentials),
    /// A scheme that is not enabled (or not understood): challenge again.
    UnsupportedScheme(String),
    /// Wrong password or unknown user (never told apart to the client).
    Rejected {
        /// The login presented, or `-` when none could be read.
        user: String,
    },
    /// No realm could answer and nothing was cached: 503.
    Unavailable {
        /// The login presented.
        user: String,
        /// Which realm failed, and how.
        reason: String,
    },
    /// The directory refused the account itself (disabled, expired, locked
    /// out...): 407, logged with that reason.
    AccountRefused {
        /// The login presented.
        user: String,
        /// What the directory said is wrong with the account.
        problem: AccountProblem,
    },
    /// Every password-check permit is taken: 503 with Retry-After.
    Busy {
        /// The login presented.
        user: String,
        /// Which bound was reached.
        reason: String,
    },
    /// Too many failed passwords for this user or from this address: 407
    /// without asking the realm.
    Throttled {
        /// The login presented.
        user: String,
        /// Which limit.
        why: throttle::Throttled,
    },
    /// A handshake in progress (NTLM type 2): 407 with this one challenge.
    Continue {
        /// The whole `Proxy-Authenticate` value.
        challenge: String,
    },
}

impl AuthFailure {
    /// Counts toward `auth.max_failures_per_connection`: credentials were
    /// presented and refused, or a handshake was started (a connection that
    /// starts handshake after handshake without finishing one is closed).
    pub fn counts(&self) -> bool {
        matches!(
            self,
            Self::Malformed(_)
                | Self::Rejected { .. }
                | Self::AccountRefused { .. }
                | Self::Throttled { .. }
                | Self::Continue { .. }
        )
    }
}

/// How a request's identity was obtained, for policy and the access log.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who.
    pub identity: Arc<Identity>,
    /// `basic`, `negotiate-kerberos` or `ntlm`.
    pub scheme: &'static str,
    /// Answered from the credential cache or the connection, without asking the realm.
    pub cached: bool,
    /// Established for the connection (Negotiate, NTLM), not just this request.
    pub connection_bound: bool,
    /// `Proxy-Authenticate: Negotiate <token>` to send back (mutual authentication).
    pub mutual: Option<String>,
}

impl Authenticated {
    /// `x-auth-scheme`: the scheme, with `-cached` when no realm was asked.
    pub fn log_scheme(&self) -> String {
        if self.cached {
            format!("{}-cached", self.scheme)
        } else {
            self.scheme.to_string()
        }
    }
}

/// The `x-auth-scheme` (and policy `auth_scheme`) of a guest.
pub const GUEST: &str = "guest";

/// Every `x-auth-scheme` a request can be logged with (`-cached` aside):
/// the values a policy's `auth_scheme` condition may name.
pub const SCHEMES: [&str; 7] = [
    "basic",
    "negotiate-kerberos",
    "negotiate-ntlm",
    "ntlm",
    surrogate::SURROGATE_IP,
    cookie::SURROGATE_COOKIE,
    GUEST,
];

/// Why the authenticator could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `auth.basic_realm` cannot be sent in a `Proxy-Authenticate` header.
    #[error("auth.basic_realm: {0}")]
    BasicRealm(#[from] http::header::InvalidHeaderValue),
    /// The failure throttle (its store or key).
    #[error(transparent)]
    Throttle(#[from] throttle::ThrottleError),
    /// `auth.surrogate.key_file`.
    #[error("auth.surrogate.key_file: {0}")]
    CookieKeys(#[from] cookie::KeyError),
}

/// The configured schemes in front of the realm chain in force.
pub struct Authenticator {
    cfg: AuthConfig,
    basic: basic::Basic,
    /// Users `gatehouse revoke` named, against identities kept on connections.
    revoked: revoked::Revoked,
    challenges: Vec<HeaderValue>,
    negotiate: Option<negotiate::Negotiate>,
    ntlm: Option<ntlm::Ntlm>,
    /// IP surrogates, when `auth.surrogate.kind = "ip"`.
    surrogates: Option<surrogate::Surrogates>,
    /// Cookie surrogates, when `auth.surrogate` names `cookie`.
    cookies: Option<surrogate_cookie::CookieSurrogates>,
    /// Who `action = "guest"` lets through.
    guest: Arc<Identity>,
}

impl Authenticator {
    /// The schemes `cfg` enables (the realms they check against are the
    /// snapshot's a request was taken under).
    pub fn new(cfg: &AuthConfig) -> Result<Self, AuthError> {
        let challenges = cfg
            .schemes
            .iter()
            .map(|s| match s {
                Scheme::Basic => HeaderValue::from_str(&header::basic_challenge(&cfg.basic_realm)),
                Scheme::Negotiate => Ok(HeaderValue::from_static("Negotiate")),
                Scheme::Ntlm => Ok(HeaderValue::from_static("NTLM")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            basic: basic::Basic::new(cfg)?,
            revoked: revoked::Revoked::default(),
            cfg: cfg.clone(),
            challenges,
            negotiate: cfg
                .negotiate
                .as_ref()
                .filter(|_| cfg.schemes.contains(&Scheme::Negotiate))
                .map(negotiate::Negotiate::new),
            ntlm: cfg
                .schemes
                .contains(&Scheme::Ntlm)
                .then(|| ntlm::Ntlm::new(&cfg.ntlm)),
            surrogates: surrogate::Surrogates::new(&cfg.surrogate),
            cookies: surrogate_cookie::CookieSurrogates::new(&cfg.surrogate)?,
            guest: Arc::new(Identity {
                user: cfg.guest_user.clone(),
                realm: GUEST.into(),
                dn: None,
                groups: Vec::new(),
            }),
        })
    }

    /// `gatehouse revoke`: `who` (normalised, domain stripped) must prove
    /// themselves again — their cached credentials are dropped, and an
    /// identity a kept connection holds (Basic, NTLM, Negotiate) from
    /// before now no longer counts.
    pub fn revoke(&self, who: &str) {
        self.basic.revoke(who);
        self.revoked.revoke(who);
    }

    /// `who` proved themselves from `from` (not by a surrogate): the
    /// address's IP surrogate is theirs from now, when surrogates are on.
    pub fn proven(&self, from: &surrogate::ClientPlace, who: &Authenticated) {
        if let Some(s) = &self.surrogates {
            s.proven(from, who);
        }
    }

    /// The IP surrogate of `from`, for a request that presented no
    /// credentials (see [`surrogate`]).
    pub fn surrogate(
        &self,
        from: &surrogate::ClientPlace,
        chain: &RealmChain,
    ) -> Option<Authenticated> {
        self.surrogates.as_ref()?.recall(from, chain, &self.revoked)
    }

    /// The guest identity (`auth.guest_user`), for a request without
    /// credentials that a `guest` rule lets through.
    pub fn guest(&self) -> Authenticated {
        Authenticated {
            identity: self.guest.clone(),
            scheme: GUEST,
            cached: false,
            connection_bound: false,
            mutual: None,
        }
    }

    /// `auth.required`: whether requests no policy rule exempts must authenticate.
    pub fn required(&self) -> bool {
        self.cfg.required
    }

    /// `auth.max_failures_per_connection`: counted failures after which the
    /// refusal closes the connection.
    pub fn max_failures(&self) -> u32 {
        self.cfg.max_failures_per_connection
    }

    /// One `Proxy-Authenticate` value per enabled scheme, in configured order.
    pub fn challenges(&self) -> &[HeaderValue] {
        &self.challenges
    }

    /// NTLM helpers (leased, `max_helpers`), when NTLM is on.
    pub fn ntlm_helpers(&self) -> Option<(usize, usize)> {
        self.ntlm.as_ref().map(|n| {
            let pool = n.pool();
            (pool.size().saturating_sub(pool.available()), pool.size())
        })
    }

    /// Where the per-address bounds of authentication count a client
    /// (`listener.ipv6_prefix`, `listener.shared_addresses`): at start-up and
    /// on each reload of `[listener]`.
    pub fn set_places(&self, places: crate::limit::Places) {
        if let Some(n) = &self.ntlm {
            n.set_places(places);
        }
    }

    /// Negotiate validations (running, `max_concurrent`), when Negotiate is on.
    pub fn negotiate_slots(&self) -> Option<(usize, usize)> {
        self.negotiate.as_ref().map(|n| n.slots())
    }

    /// Cache hit/load/stale counts of the credential cache.
    pub fn cache_counters(&self) -> &crate::directory::cache::Counters {
        self.basic.counters()
    }

    /// Authenticates from the request's `Proxy-Authorization` values, or from
    /// the identity the connection already established (Negotiate, NTLM),
    /// against `chain` (the realms of the request's snapshot). A verdict
    /// remembered under another chain (before a reload changed the realm)
    /// is not used: a changed password stops working at once.
    /// `state` follows the answer: a success binds or resets it, a failure
    /// that [`AuthFailure::counts`] is counted there.
    pub async fn authenticate<'a>(
        &self,
        chain: &RealmChain,
        values: impl Iterator<Item = &'a HeaderValue>,
        state: &AuthState,
        client: IpAddr,
        place: &throttle::Place,
    ) -> Result<Authenticated, AuthFailure> {
        let result = self.check(chain, values, state, client, place).await;
        match &result {
            Ok(who) => state.succeeded(who),
            Err(failure) if failure.counts() => {
                state.failed();
            }
            Err(_) => {}
        }
        result
    }

    async fn check<'a>(
        &self,
        chain: &RealmChain,
        mut values: impl Iterator<Item = &'a HeaderValue>,
        state: &AuthState,
        client: IpAddr,
        place: &throttle::Place,
    ) -> Result<Authenticated, AuthFailure> {
        let per_request = self.cfg.negotiate.as_ref().is_some_and(|n| n.per_request);
        // The identity this connection established, unless every request
        // must prove itself.
        let bound = state
            .bound_since()
            .filter(|_| !per_request)
            .filter(|(who, since)| !self.revoked.covers(&who.identity, *since))
            .map(|(who, _)| Authenticated {
                cached: true,
                mutual: None,
                ..who
            });
        let Some(value) = values.next() else {
            return bound.ok_or(AuthFailure::Missing);
        };
        // Clients such as curl re-send a fresh Negotiate token on every request
        // of a connection; once the connection is authenticated it is not
        // validated again (one GSS call, one replay-cache entry per connection).
        if let Some(who) = bound {
            if PresentedScheme::of_value(value.as_bytes()) == PresentedScheme::Negotiate {
                return Ok(who);
            }
        }
        if values.next().is_some() {
            return Err(AuthFailure::Malformed(BadCredentials::Empty));
        }
        // The same Basic header again on this connection: already verified.
        // (Unless the realms were reloaded since.)
        if let Some((who, _)) = state
            .recall_basic_at(value, self.cfg.credential_ttl)
            .filter(|(who, _)| chain.vouched_for(&who.identity))
            .filter(|(who, at)| !self.revoked.covers(&who.identity, *at))
        {
            return Ok(Authenticated {
                cached: true,
                ..who
            });
        }
        match header::parse(value.as_bytes()).map_err(AuthFailure::Malformed)? {
            Presented::Basic(c) if self.cfg.schemes.contains(&Scheme::Basic) => {
                let who = self.basic.check(chain, &c.user, &c.password, place).await?;
                state.remember_basic(value, &who);
                Ok(who)
            }
            Presented::Basic(_) => Err(AuthFailure::UnsupportedScheme("Basic".into())),
            Presented::Token {
                scheme: PresentedScheme::Negotiate,
                sent,
                credentials,
            } => {
                // Windows without a ticket sends NTLMSSP under Negotiate,
                // raw or inside SPNEGO: that goes to the NTLM helpers.
                let ntlm = self.ntlm.as_ref().and_then(|ntlm| {
                    let raw = STANDARD.decode(credentials.trim()).ok()?;
                    if raw.starts_with(b"NTLMSSP\0") {
                        return Some((ntlm, raw, Framing::RawNegotiate));
                    }
                    let inner = spnego::ntlm_inside(&raw)?.to_vec();
                    Some((ntlm, inner, Framing::Spnego))
                });
                match (&self.negotiate, ntlm) {
                    (_, Some((ntlm, raw, framing))) => {
                        ntlm.step(chain, &raw, framing, state, client).await
                    }
                    (Some(negotiate), None) => negotiate.step(chain, credentials).await,
                    _ => Err(AuthFailure::UnsupportedScheme(sent.to_string())),
                }
            }
            Presented::Token {
                scheme: PresentedScheme::Ntlm,
                sent,
                credentials,
            } => match &self.ntlm {
                Some(ntlm) => match STANDARD.decode(credentials.trim()) {
                    Ok(raw) => ntlm.step(chain, &raw, Framing::Ntlm, state, client).await,
                    Err(_) => Err(AuthFailure::Malformed(BadCredentials::NtlmNotBase64)),
                },
                None => Err(AuthFailure::UnsupportedScheme(sent.to_string())),
            },
            Presented::Token { sent, .. } => Err(AuthFailure::UnsupportedScheme(sent.to_string())),
        }
    }
}
