//! `Proxy-Authorization: NTLM` (and NTLMSSP sent under `Negotiate`, raw or
//! inside SPNEGO): each step passed through to the domain by a Samba helper
//! that the connection leases from its type 1 to its type 3 (see
//! [`super::ntlm_helper`]); the account the domain names is then looked up in
//! the realm chain.

use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::header::BadCredentials;
use super::ntlm_helper::{HelperError, HelperPool, Reply};
use super::ntlm_msg::{self, NtlmMessage};
use super::settings::NtlmConfig;
use super::spnego;
use super::state::AuthState;
use super::{AuthFailure, Authenticated};
use crate::directory::RealmChain;

/// Largest NTLM message we pass to a helper (a type 3 is a few hundred bytes).
pub(crate) const MAX_TOKEN: usize = 16 * 1024;

/// How a handshake's NTLM messages travel, so the type 2 goes back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `NTLM <message>`.
    Ntlm,
    /// `Negotiate <message>`: raw NTLMSSP under Negotiate (older Windows).
    RawNegotiate,
    /// `Negotiate <SPNEGO>` with the message inside (Windows without a
    /// ticket, curl with gss-ntlmssp).
    Spnego,
}

impl Framing {
    /// The `x-auth-scheme` of an identity established this way.
    fn scheme(self) -> &'static str {
        match self {
            Framing::Ntlm | Framing::RawNegotiate => "ntlm",
            Framing::Spnego => "negotiate-ntlm",
        }
    }

    /// The `Proxy-Authenticate` value carrying the helper's type 2 (base64).
    fn challenge(self, type2: &str) -> Result<String, AuthFailure> {
        Ok(match self {
            Framing::Ntlm => format!("NTLM {type2}"),
            Framing::RawNegotiate => format!("Negotiate {type2}"),
            Framing::Spnego => {
                let raw = STANDARD
                    .decode(type2.trim())
                    .map_err(|_| AuthFailure::Unavailable {
                        user: "-".into(),
                        reason: "NTLM helper sent a type 2 that is not base64".into(),
                    })?;
                format!(
                    "Negotiate {}",
                    STANDARD.encode(spnego::wrap_challenge(&raw))
                )
            }
        })
    }
}

/// The NTLM scheme: its helper pool and settings.
pub(crate) struct Ntlm {
    pool: Arc<HelperPool>,
    cfg: NtlmConfig,
}

impl Ntlm {
    pub(crate) fn new(cfg: &NtlmConfig) -> Self {
        Self {
            pool: HelperPool::new(cfg),
            cfg: cfg.clone(),
        }
    }

    /// Where pending handshakes are counted (`[listener]`, on start and reload).
    pub(crate) fn set_places(&self, places: crate::limit::Places) {
        self.pool.pending.set_places(places);
    }

    /// The helper pool (for `/metrics`).
    pub(crate) fn pool(&self) -> &HelperPool {
        &self.pool
    }

    /// One step of a handshake, given the NTLM message (already out of its
    /// base64 and any SPNEGO): a type 1 gets a type 2 back as
    /// [`AuthFailure::Continue`] and moves `state` to challenged; a type 3
    /// completes the handshake `state` holds.
    pub(crate) async fn step(
        &self,
        chain: &RealmChain,
        raw: &[u8],
        framing: Framing,
        state: &AuthState,
        client: IpAddr,
    ) -> Result<Authenticated, AuthFailure> {
        if raw.len() > MAX_TOKEN {
            return Err(AuthFailure::Malformed(BadCredentials::TooLarge));
        }
        let token = STANDARD.encode(raw);
        let token = token.as_str();
        match ntlm_msg::parse(raw) {
            Ok(NtlmMessage::Negotiate { .. }) => {
                self.challenge(token, state, client, framing).await
            }
            Ok(NtlmMessage::Authenticate(t3)) => {
                let user = format!("{}\\{}", t3.domain, t3.user);
                let pending = state.take_challenge();
                if t3.anonymous || (t3.ntlm_v1 && !self.cfg.allow_ntlmv1) {
                    tracing::info!(%user, v1 = t3.ntlm_v1, anonymous = t3.anonymous, "NTLM response refused by policy");
                    return Err(AuthFailure::Rejected { user });
                }
                let Some(mut lease) = pending else {
                    tracing::debug!(%user, "NTLM type 3 without a handshake on this connection");
                    return Err(AuthFailure::Rejected { user });
                };
                match lease.ask(&format!("KK {token}")).await {
                    Ok(Reply::Accepted(account)) => {
                        identity(chain, account.trim(), framing.scheme()).await
                    }
                    Ok(Reply::Refused(why)) => {
                        tracing::info!(%user, reason = %why, "NTLM authentication refused by the domain");
                        Err(AuthFailure::Rejected { user })
                    }
                    Ok(Reply::Challenge(_)) => Err(AuthFailure::Rejected { user }),
                    Err(e) => Err(unavailable(&user, e)),
                }
            }
            Ok(NtlmMessage::Challenge { .. }) | Err(_) => {
                Err(AuthFailure::Malformed(BadCredentials::NotNtlm))
            }
        }
    }

    /// A type 1: a place among the address's pending handshakes, a helper,
    /// and the helper's type 2.
    async fn challenge(
        &self,
        token: &str,
        state: &AuthState,
        client: IpAddr,
        framing: Framing,
    ) -> Result<Authenticated, AuthFailure> {
        // Half-open handshakes hold helpers: a few per client address.
        let wait = self.cfg.queue_timeout;
        let Some(place) = self.pool.pending.take_within(client, wait).await else {
            return Err(AuthFailure::Busy {
                user: "-".into(),
                reason: format!(
                    "{} NTLM handshakes already pending from this address",
                    self.pool.pending.cap(client)
                ),
            });
        };
        // A helper that breaks on its first question is replaced once.
        let pool = &self.pool;
        let mut lease = pool.lease().await.map_err(|e| unavailable("-", e))?;
        let mut answer = lease.ask(&format!("YR {token}")).await;
        if let Err(HelperError::Broken(_)) = answer {
            lease = pool.lease().await.map_err(|e| unavailable("-", e))?;
            answer = lease.ask(&format!("YR {token}")).await;
        }
        match answer.map_err(|e| unavailable("-", e))? {
            Reply::Challenge(type2) => {
                let challenge = framing.challenge(&type2)?;
                state.challenge_sent(lease, place, self.cfg.handshake_timeout);
                Err(AuthFailure::Continue { challenge })
            }
            Reply::Refused(why) | Reply::Accepted(why) => {
                tracing::warn!(reason = %why, "NTLM helper refused a type 1");
                Err(AuthFailure::Rejected { user: "-".into() })
            }
        }
    }
}

fn unavailable(user: &str, e: HelperError) -> AuthFailure {
    AuthFailure::Unavailable {
        user: user.to_string(),
        reason: e.to_string(),
    }
}

/// `DOMAIN\user` from the domain, as a directory identity.
async fn identity(
    chain: &RealmChain,
    account: &str,
    scheme: &'static str,
) -> Result<Authenticated, AuthFailure> {
    match chain.lookup(account).await {
        Ok(Some(identity)) => Ok(Authenticated {
            identity,
            scheme,
            cached: false,
            connection_bound: true,
            mutual: None,
        }),
        Ok(None) => Err(AuthFailure::Rejected {
            user: account.into(),
        }),
        Err(u) => Err(AuthFailure::Unavailable {
            user: account.into(),
            reason: u.0,
        }),
    }
}
