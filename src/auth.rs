//! Who is behind a request: read `Proxy-Authorization`, check it against the
//! realms in order, and cache the verdict so a known user costs nothing.
//!
//! Verdicts are cached under an HMAC-SHA256 of realm chain + user + password
//! with a key drawn at start-up: the cache never holds a password, nor a hash
//! anyone could attack offline after the process ends.

pub mod blocking;
pub mod header;
pub mod identity;
pub mod negotiate;
pub mod ntlm_helper;
pub mod ntlm_msg;
pub mod realm_set;
pub mod spnego;
pub mod throttle;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::HeaderValue;

use crate::config::{AuthConfig, Scheme};
use crate::directory::cache::{Lifetimes, Source, StaleCache, Unavailable};
use crate::directory::{Realm, RealmVerdict};
use header::{BadCredentials, Presented};
use identity::Authenticated;
use realm_set::RealmSet;

/// Why a request did not authenticate. Each maps to one HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials: challenge.
    Missing,
    /// Credentials we cannot read, or a scheme that is not enabled.
    Malformed(BadCredentials),
    UnsupportedScheme(String),
    /// Wrong password or unknown user (never told apart to the client).
    Rejected {
        user: String,
    },
    /// No realm could answer and nothing was cached: 503.
    Unavailable {
        user: String,
        reason: String,
    },
    /// The directory refused the account itself (disabled, expired, locked
    /// out...): 407, logged with that reason.
    AccountRefused {
        user: String,
        problem: crate::directory::AccountProblem,
    },
    /// Every password-check permit is taken: 503 with Retry-After.
    Busy {
        user: String,
        reason: String,
    },
    /// Too many failed passwords for this user or from this address: 407
    /// without asking the realm.
    Throttled {
        user: String,
        why: throttle::Throttled,
    },
    /// A handshake in progress (NTLM type 2): 407 with this one challenge.
    Continue {
        challenge: String,
    },
}

/// Why a credential check has no verdict. Never cached: the next request
/// asks again.
#[derive(Debug, Clone, thiserror::Error)]
enum CheckError {
    #[error("{0}")]
    Unavailable(Unavailable),
    #[error("{0}")]
    Busy(String),
    #[error("{}", .0.as_str())]
    Throttled(throttle::Throttled),
}

/// A credential check's cached outcome.
#[derive(Debug, Clone)]
enum Outcome {
    Verified(Arc<identity::Identity>),
    /// Refused; `counts` toward the failure throttle when it was a wrong
    /// password or an unknown user (not a disabled or expired account, whose
    /// `account` problem is logged as the reason).
    Rejected {
        counts: bool,
        account: Option<crate::directory::AccountProblem>,
    },
}

struct CredLifetimes {
    ok: Duration,
    failed: Duration,
    grace: Duration,
}

impl Lifetimes<Outcome> for CredLifetimes {
    fn fresh(&self, v: &Outcome) -> Duration {
        match v {
            Outcome::Verified(_) => self.ok,
            Outcome::Rejected { .. } => self.failed,
        }
    }
    fn grace(&self, v: &Outcome) -> Duration {
        match v {
            Outcome::Verified(_) => self.grace,
            Outcome::Rejected { .. } => Duration::ZERO,
        }
    }
}

pub struct Authenticator {
    cfg: AuthConfig,
    /// Swapped whole by [`Authenticator::replace_realms`] on reload.
    realms: arc_swap::ArcSwap<RealmSet>,
    creds: StaleCache<[u8; 32], Outcome, CheckError>,
    throttle: throttle::Throttle,
    challenges: Vec<HeaderValue>,
    negotiate: Option<negotiate::Acceptor>,
    ntlm: Option<Arc<ntlm_helper::HelperPool>>,
}

impl Authenticator {
    pub fn new(cfg: &AuthConfig, realms: Vec<Realm>) -> Result<Self, String> {
        let challenges = cfg
            .schemes
            .iter()
            .map(|s| match s {
                Scheme::Basic => HeaderValue::from_str(&header::basic_challenge(&cfg.basic_realm))
                    .map_err(|e| e.to_string()),
                Scheme::Negotiate => Ok(HeaderValue::from_static("Negotiate")),
                Scheme::Ntlm => Ok(HeaderValue::from_static("NTLM")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            creds: StaleCache::new(
                cfg.credential_cache_capacity,
                CredLifetimes {
                    ok: cfg.credential_ttl,
                    failed: cfg.failure_ttl,
                    grace: cfg.stale_grace,
                },
            ),
            throttle: throttle::Throttle::new(&cfg.throttle),
            cfg: cfg.clone(),
            realms: arc_swap::ArcSwap::from_pointee(RealmSet::new(realms)?),
            challenges,
            negotiate: cfg
                .negotiate
                .as_ref()
                .filter(|_| cfg.schemes.contains(&Scheme::Negotiate))
                .map(negotiate::Acceptor::new),
            ntlm: cfg
                .schemes
                .contains(&Scheme::Ntlm)
                .then(|| ntlm_helper::HelperPool::new(&cfg.ntlm)),
        })
    }

    /// The realms in force (a snapshot: a reload does not change it).
    pub fn realms(&self) -> Arc<RealmSet> {
        self.realms.load_full()
    }

    /// Puts a new set of realms in force (SIGHUP). Verdicts cached under the
    /// old set, on the credential cache and on open connections, are not
    /// used again: a changed password stops working at once.
    pub fn replace_realms(&self, realms: Vec<Realm>) -> Result<(), String> {
        self.realms.store(Arc::new(RealmSet::new(realms)?));
        Ok(())
    }

    pub fn required(&self) -> bool {
        self.cfg.required
    }

    pub fn max_failures(&self) -> u32 {
        self.cfg.max_failures_per_connection
    }

    /// One `Proxy-Authenticate` value per enabled scheme, in configured order.
    pub fn challenges(&self) -> &[HeaderValue] {
        &self.challenges
    }

    /// Cache hit/load/stale counts of the credential cache.
    pub fn cache_counters(&self) -> &crate::directory::cache::Counters {
        &self.creds.counters
    }

    /// Authenticates from the request's `Proxy-Authorization` values, or from
    /// the identity the connection already established (Negotiate).
    pub async fn authenticate<'a>(
        &self,
        mut values: impl Iterator<Item = &'a HeaderValue>,
        conn: &crate::conn::ConnState,
    ) -> Result<Authenticated, AuthFailure> {
        let on_connection = conn.identity();
        let per_request = self.cfg.negotiate.as_ref().is_some_and(|n| n.per_request);
        // The identity this connection established (Negotiate), unless every
        // request must prove itself.
        let bound = on_connection
            .filter(|who| who.connection_bound && !per_request)
            .map(|who| Authenticated {
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
            let scheme = value
                .as_bytes()
                .split(|b| *b == b' ')
                .next()
                .unwrap_or_default();
            if scheme.eq_ignore_ascii_case(b"negotiate") {
                return Ok(who);
            }
        }
        if values.next().is_some() {
            return Err(AuthFailure::Malformed(BadCredentials::Empty));
        }
        // The same Basic header again on this connection: already verified.
        // (Unless the realms were reloaded since.)
        if let Some(who) = conn
            .recall_basic(value, self.cfg.credential_ttl)
            .filter(|who| self.realms().vouched_for(&who.identity))
        {
            return Ok(Authenticated {
                cached: true,
                ..who
            });
        }
        match header::parse(value.as_bytes()).map_err(AuthFailure::Malformed)? {
            Presented::Basic(c) if self.cfg.schemes.contains(&Scheme::Basic) => {
                let who = self.basic(&c.user, &c.password, conn.client.ip()).await?;
                conn.remember_basic(value, &who);
                Ok(who)
            }
            Presented::Basic(_) => Err(AuthFailure::UnsupportedScheme("Basic".into())),
            Presented::Other {
                scheme,
                credentials,
            } if scheme.eq_ignore_ascii_case("negotiate") => {
                // Windows without a ticket sends raw NTLMSSP under Negotiate.
                let raw_ntlm = STANDARD
                    .decode(credentials.trim())
                    .is_ok_and(|t| t.starts_with(b"NTLMSSP\0"));
                match (&self.negotiate, &self.ntlm) {
                    (_, Some(pool)) if raw_ntlm => self.ntlm(pool, credentials, conn, true).await,
                    (Some(acceptor), _) => self.kerberos(acceptor, credentials).await,
                    _ => Err(AuthFailure::UnsupportedScheme(scheme.to_string())),
                }
            }
            Presented::Other {
                scheme,
                credentials,
            } if scheme.eq_ignore_ascii_case("ntlm") => match &self.ntlm {
                Some(pool) => self.ntlm(pool, credentials, conn, false).await,
                None => Err(AuthFailure::UnsupportedScheme(scheme.to_string())),
            },
            Presented::Other { scheme, .. } => {
                Err(AuthFailure::UnsupportedScheme(scheme.to_string()))
            }
        }
    }

    /// One step of an NTLM handshake, passed through to the domain by a
    /// helper the connection leases from type 1 to type 3.
    async fn ntlm(
        &self,
        pool: &Arc<ntlm_helper::HelperPool>,
        token: &str,
        conn: &crate::conn::ConnState,
        via_negotiate: bool,
    ) -> Result<Authenticated, AuthFailure> {
        use ntlm_helper::Reply;
        use ntlm_msg::NtlmMessage;
        let token = token.trim();
        let raw = match STANDARD.decode(token) {
            Ok(raw) if raw.len() <= 16 * 1024 => raw,
            _ => return Err(AuthFailure::Malformed(BadCredentials::NotBase64)),
        };
        let prefix = if via_negotiate { "Negotiate" } else { "NTLM" };
        let unavailable = |user: &str, e: ntlm_helper::HelperError| AuthFailure::Unavailable {
            user: user.to_string(),
            reason: e.to_string(),
        };
        match ntlm_msg::parse(&raw) {
            Ok(NtlmMessage::Negotiate { .. }) => {
                // Half-open handshakes hold helpers: a few per client address.
                let wait = self.cfg.ntlm.queue_timeout;
                let Some(place) = pool.pending.take_within(conn.client.ip(), wait).await else {
                    return Err(AuthFailure::Busy {
                        user: "-".into(),
                        reason: format!(
                            "{} NTLM handshakes already pending from this address",
                            self.cfg.ntlm.max_pending_per_address
                        ),
                    });
                };
                // A helper that breaks on its first question is replaced once.
                let mut lease = pool.lease().await.map_err(|e| unavailable("-", e))?;
                let mut answer = lease.ask(&format!("YR {token}")).await;
                if let Err(ntlm_helper::HelperError::Broken(_)) = answer {
                    lease = pool.lease().await.map_err(|e| unavailable("-", e))?;
                    answer = lease.ask(&format!("YR {token}")).await;
                }
                match answer.map_err(|e| unavailable("-", e))? {
                    Reply::Challenge(type2) => {
                        conn.ntlm_started(lease, place, self.cfg.ntlm.handshake_timeout);
                        Err(AuthFailure::Continue {
                            challenge: format!("{prefix} {type2}"),
                        })
                    }
                    Reply::Refused(why) | Reply::Accepted(why) => {
                        tracing::warn!(reason = %why, "NTLM helper refused a type 1");
                        Err(AuthFailure::Rejected { user: "-".into() })
                    }
                }
            }
            Ok(NtlmMessage::Authenticate(t3)) => {
                let user = format!("{}\\{}", t3.domain, t3.user);
                let pending = conn.ntlm_take();
                if t3.anonymous || (t3.ntlm_v1 && !self.cfg.ntlm.allow_ntlmv1) {
                    tracing::info!(%user, v1 = t3.ntlm_v1, anonymous = t3.anonymous, "NTLM response refused by policy");
                    return Err(AuthFailure::Rejected { user });
                }
                let Some(mut lease) = pending else {
                    tracing::debug!(%user, "NTLM type 3 without a handshake on this connection");
                    return Err(AuthFailure::Rejected { user });
                };
                match lease.ask(&format!("KK {token}")).await {
                    Ok(Reply::Accepted(account)) => self.ntlm_identity(account.trim()).await,
                    Ok(Reply::Refused(why)) => {
                        tracing::info!(%user, reason = %why, "NTLM authentication refused by the domain");
                        Err(AuthFailure::Rejected { user })
                    }
                    Ok(Reply::Challenge(_)) => Err(AuthFailure::Rejected { user }),
                    Err(e) => Err(unavailable(&user, e)),
                }
            }
            Ok(NtlmMessage::Challenge { .. }) | Err(_) => {
                Err(AuthFailure::Malformed(BadCredentials::NotBase64))
            }
        }
    }

    /// `DOMAIN\user` from the domain, as a directory identity.
    async fn ntlm_identity(&self, account: &str) -> Result<Authenticated, AuthFailure> {
        let mut unavailable = None;
        for realm in self.realms().iter() {
            match realm.lookup(account).await {
                Ok(Some(identity)) => {
                    return Ok(Authenticated {
                        identity,
                        scheme: "ntlm",
                        cached: false,
                        connection_bound: true,
                        mutual: None,
                    })
                }
                Ok(None) => {}
                Err(u) => unavailable = Some(u),
            }
        }
        Err(match unavailable {
            Some(u) => AuthFailure::Unavailable {
                user: account.into(),
                reason: u.0,
            },
            None => AuthFailure::Rejected {
                user: account.into(),
            },
        })
    }

    /// Accepts a Negotiate token and maps its principal to a directory user.
    async fn kerberos(
        &self,
        acceptor: &negotiate::Acceptor,
        token: &str,
    ) -> Result<Authenticated, AuthFailure> {
        let accepted = match acceptor.accept(token).await {
            Ok(a) => a,
            Err(negotiate::NegotiateError::Ntlm) => {
                // Until the NTLM path exists, a fresh challenge.
                return Err(AuthFailure::UnsupportedScheme("NTLM in Negotiate".into()));
            }
            Err(negotiate::NegotiateError::Busy) => {
                return Err(AuthFailure::Unavailable {
                    user: "-".into(),
                    reason: "too many Negotiate validations at once".into(),
                })
            }
            Err(e) => {
                let spn = self
                    .cfg
                    .negotiate
                    .as_ref()
                    .and_then(|n| n.principal.clone())
                    .unwrap_or_else(|| "any in keytab".into());
                tracing::warn!(error = %e, service_principal = %spn, "Negotiate token rejected");
                return Err(AuthFailure::Rejected { user: "-".into() });
            }
        };
        let strip = self.cfg.negotiate.as_ref().is_none_or(|n| n.strip_realm);
        let mut unavailable = None;
        for realm in self.realms().iter() {
            match realm.lookup_principal(&accepted.principal, strip).await {
                Ok(Some(identity)) => {
                    return Ok(Authenticated {
                        identity,
                        scheme: "negotiate-kerberos",
                        cached: false,
                        connection_bound: true,
                        mutual: accepted.mutual,
                    })
                }
                Ok(None) => {}
                Err(u) => unavailable = Some(u),
            }
        }
        match unavailable {
            Some(u) => Err(AuthFailure::Unavailable {
                user: accepted.principal,
                reason: u.0,
            }),
            None => {
                tracing::info!(principal = %accepted.principal, "Kerberos principal has no directory user");
                Err(AuthFailure::Rejected {
                    user: accepted.principal,
                })
            }
        }
    }

    /// Checks a user name and password against the realms, through the
    /// cache; a miss passes the failure throttle first.
    pub async fn basic(
        &self,
        user: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Authenticated, AuthFailure> {
        let realms = self.realms();
        let key = realms.cache_key(user, password);
        // Every spelling of a login the realms would take for one user
        // (`CORP\Alice`, `alice@corp`) counts as that user.
        let who = identity::normalise(user, true, true);
        let result = self
            .creds
            .get(key, || async {
                self.throttle
                    .check(&who, client)
                    .map_err(CheckError::Throttled)?;
                let outcome = self.verify_in_realms(&realms, user, password).await?;
                if let Outcome::Rejected { counts: true, .. } = outcome {
                    self.throttle.failed(&who, client);
                }
                Ok(outcome)
            })
            .await;
        match result {
            Ok((Outcome::Verified(identity), source)) => Ok(Authenticated {
                identity,
                scheme: "basic",
                cached: source != Source::Loaded,
                connection_bound: false,
                mutual: None,
            }),
            Ok((Outcome::Rejected { account: None, .. }, _)) => Err(AuthFailure::Rejected {
                user: user.to_string(),
            }),
            Ok((
                Outcome::Rejected {
                    account: Some(problem),
                    ..
                },
                _,
            )) => Err(AuthFailure::AccountRefused {
                user: user.to_string(),
                problem,
            }),
            Err(CheckError::Unavailable(u)) => Err(AuthFailure::Unavailable {
                user: user.to_string(),
                reason: u.0,
            }),
            Err(CheckError::Busy(reason)) => Err(AuthFailure::Busy {
                user: user.to_string(),
                reason,
            }),
            Err(CheckError::Throttled(why)) => Err(AuthFailure::Throttled {
                user: user.to_string(),
                why,
            }),
        }
    }

    /// Realms in order: the first that knows the user decides; a realm that
    /// cannot answer makes the whole check unavailable unless a later one verifies.
    async fn verify_in_realms(
        &self,
        realms: &[Realm],
        user: &str,
        password: &str,
    ) -> Result<Outcome, CheckError> {
        let mut unavailable = None;
        for realm in realms {
            match realm.verify(user, password).await {
                RealmVerdict::Verified(id) => return Ok(Outcome::Verified(id)),
                RealmVerdict::BadPassword => {
                    return Ok(Outcome::Rejected {
                        counts: true,
                        account: None,
                    })
                }
                RealmVerdict::Refused(problem) => {
                    tracing::info!(realm = realm.name(), %user, reason = problem.as_str(), "the directory refused the account");
                    return Ok(Outcome::Rejected {
                        counts: false,
                        account: Some(problem),
                    });
                }
                RealmVerdict::Busy(reason) => return Err(CheckError::Busy(reason)),
                RealmVerdict::UnknownUser => {}
                RealmVerdict::Unavailable(u) => {
                    tracing::warn!(realm = realm.name(), error = %u, "realm unavailable");
                    unavailable = Some(u);
                }
            }
        }
        match unavailable {
            Some(u) => Err(CheckError::Unavailable(u)),
            // Nobody knows the user: a failure like a wrong password.
            None => Ok(Outcome::Rejected {
                counts: true,
                account: None,
            }),
        }
    }
}
