//! `Proxy-Authorization: Negotiate`: Kerberos (raw or in SPNEGO) accepted with
//! the keytab through libgssapi, and its principal mapped to a directory user
//! through the realm chain. GSS calls block, so they run on the blocking
//! pool, bounded by a semaphore: a slow validation never stalls other
//! connections, and a burst cannot take every blocking thread.
//!
//! Raw NTLMSSP sent under `Negotiate` (Windows without a ticket) never comes
//! here: the dispatcher routes it to [`super::ntlm`] by the token's prefix.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libgssapi::context::{SecurityContext, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::GSS_NT_KRB5_PRINCIPAL;

use super::settings::NegotiateConfig;
use super::spnego::{self, TokenKind};
use super::{AuthFailure, Authenticated};
use crate::directory::RealmChain;
use crate::limit::{BlockingSlots, SlotError};

/// Largest token we accept (a Kerberos ticket with a big PAC is a few KiB).
const MAX_TOKEN: usize = 64 * 1024;

/// Why a Negotiate token did not authenticate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    /// The header's token is not base64.
    #[error("token is not valid base64")]
    NotBase64,
    /// The token is larger than any real ticket.
    #[error("token larger than {MAX_TOKEN} bytes")]
    TooLarge,
    /// `Negotiate` with nothing after it.
    #[error("empty token")]
    Empty,
    /// NTLM wrapped in SPNEGO, which the Kerberos acceptor cannot take.
    #[error("NTLM inside Negotiate is not accepted here")]
    Ntlm,
    /// GSS refused the token (bad ticket, wrong service key, replay...).
    #[error("GSS: {0}")]
    Gss(String),
    /// A multi-round-trip exchange, which this acceptor does not keep.
    #[error("GSS wants another round trip, which this acceptor does not keep state for")]
    Incomplete,
    /// Every validation permit is taken.
    #[error("too many Negotiate validations at once")]
    Busy,
}

/// Why `gatehouse check` finds the keytab unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeytabError {
    /// The keytab file cannot be opened.
    #[error("keytab {}: {source}", path.display())]
    Unreadable {
        /// `auth.negotiate.keytab`.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `klist` could not be run.
    #[error("klist (krb5-user) not available: {0}")]
    NoKlist(std::io::Error),
    /// `klist` could not read the keytab.
    #[error("klist -k {}: {stderr}", path.display())]
    Klist {
        /// `auth.negotiate.keytab`.
        path: std::path::PathBuf,
        /// What klist said.
        stderr: String,
    },
    /// The keytab holds no key for the configured principal.
    #[error("keytab {} holds no key for {principal}", path.display())]
    NoKey {
        /// `auth.negotiate.keytab`.
        path: std::path::PathBuf,
        /// `auth.negotiate.principal`, or "any principal".
        principal: String,
    },
}

/// A successful acceptance: who, and the mutual-authentication token if any.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// `alice@EXAMPLE.TEST`
    pub principal: String,
    /// Base64 token for `Proxy-Authenticate: Negotiate <token>`.
    pub mutual: Option<String>,
}

/// Validates Kerberos tokens against the keytab, a bounded number at once.
pub struct Acceptor {
    principal: Option<String>,
    /// GSS validations at once; the permit is held until GSS returns.
    slots: BlockingSlots,
}

impl Acceptor {
    /// An acceptor for `auth.negotiate`.
    pub fn new(cfg: &NegotiateConfig) -> Self {
        Self {
            principal: cfg.principal.clone(),
            slots: BlockingSlots::new(cfg.max_concurrent, cfg.queue_timeout),
        }
    }

    /// Decodes and routes the header's token (sans I/O), then accepts it.
    pub async fn accept(&self, b64: &str) -> Result<Accepted, NegotiateError> {
        let b64 = b64.trim();
        if b64.is_empty() {
            return Err(NegotiateError::Empty);
        }
        if b64.len() > MAX_TOKEN * 4 / 3 + 4 {
            return Err(NegotiateError::TooLarge);
        }
        let token = STANDARD
            .decode(b64)
            .map_err(|_| NegotiateError::NotBase64)?;
        let kind = spnego::inspect(&token);
        if kind.is_ntlm() {
            return Err(NegotiateError::Ntlm);
        }
        if kind == TokenKind::Unknown {
            return Err(NegotiateError::Gss("not a Kerberos or SPNEGO token".into()));
        }
        let principal = self.principal.clone();
        self.slots
            .run(move || accept_blocking(principal.as_deref(), &token))
            .await
            .map_err(|e| match e {
                SlotError::Busy(_) => NegotiateError::Busy,
                SlotError::Failed(e) => NegotiateError::Gss(format!("validation task failed: {e}")),
            })?
    }
}

fn accept_blocking(principal: Option<&str>, token: &[u8]) -> Result<Accepted, NegotiateError> {
    let gss = |e: libgssapi::error::Error| NegotiateError::Gss(e.to_string());
    let name = principal
        .map(|p| Name::new(p.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)))
        .transpose()
        .map_err(gss)?;
    let cred = Cred::acquire(name.as_ref(), None, CredUsage::Accept, None).map_err(gss)?;
    let mut ctx = ServerCtx::new(Some(cred));
    let out = ctx.step(token, None).map_err(gss)?;
    if !ctx.is_complete() {
        return Err(NegotiateError::Incomplete);
    }
    let source = ctx.source_name().map_err(gss)?.to_string();
    Ok(Accepted {
        // gss-ntlmssp names carry a trailing space.
        principal: source.trim().to_string(),
        mutual: out.filter(|b| !b.is_empty()).map(|b| STANDARD.encode(&*b)),
    })
}

/// Reports on the keytab for `gatehouse check`: readable, and the keys held
/// for the configured principal (from `klist -k -t -e`, MIT's own reader).
pub fn describe_keytab(cfg: &NegotiateConfig) -> Result<String, KeytabError> {
    let path = &cfg.keytab;
    std::fs::File::open(path).map_err(|source| KeytabError::Unreadable {
        path: path.clone(),
        source,
    })?;
    let out = std::process::Command::new("klist")
        .args(["-k", "-t", "-e"])
        .arg(path)
        .output()
        .map_err(KeytabError::NoKlist)?;
    if !out.status.success() {
        return Err(KeytabError::Klist {
            path: path.clone(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.trim_start()
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
        .filter(|l| cfg.principal.as_deref().is_none_or(|p| l.contains(p)))
        .collect();
    if keys.is_empty() {
        return Err(KeytabError::NoKey {
            path: path.clone(),
            principal: cfg
                .principal
                .clone()
                .unwrap_or_else(|| "any principal".into()),
        });
    }
    Ok(format!(
        "keytab {}: {} key(s)\n{}",
        path.display(),
        keys.len(),
        keys.join("\n")
    ))
}

/// The Negotiate scheme: the acceptor, and how its principals map to users.
pub(crate) struct Negotiate {
    acceptor: Acceptor,
    /// For the log when a token is rejected.
    service_principal: String,
    /// Look principals up by their login (`alice` of `alice@REALM`).
    strip_realm: bool,
}

impl Negotiate {
    pub(crate) fn new(cfg: &NegotiateConfig) -> Self {
        Self {
            acceptor: Acceptor::new(cfg),
            service_principal: cfg
                .principal
                .clone()
                .unwrap_or_else(|| "any in keytab".into()),
            strip_realm: cfg.strip_realm,
        }
    }

    /// Validation slots (in use, size), for `/metrics`.
    pub(crate) fn slots(&self) -> (usize, usize) {
        let s = &self.acceptor.slots;
        (s.size().saturating_sub(s.available()), s.size())
    }

    /// Accepts a Negotiate token and maps its principal to a directory user.
    pub(crate) async fn step(
        &self,
        chain: &RealmChain,
        token: &str,
    ) -> Result<Authenticated, AuthFailure> {
        let accepted = match self.acceptor.accept(token).await {
            Ok(a) => a,
            Err(NegotiateError::Ntlm) => {
                // NTLM in SPNEGO: a fresh challenge.
                return Err(AuthFailure::UnsupportedScheme("NTLM in Negotiate".into()));
            }
            Err(NegotiateError::Busy) => {
                return Err(AuthFailure::Unavailable {
                    user: "-".into(),
                    reason: "too many Negotiate validations at once".into(),
                })
            }
            Err(e) => {
                let spn = &self.service_principal;
                tracing::warn!(error = %e, service_principal = %spn, "Negotiate token rejected");
                return Err(AuthFailure::Rejected { user: "-".into() });
            }
        };
        match chain
            .lookup_principal(&accepted.principal, self.strip_realm)
            .await
        {
            Ok(Some(identity)) => Ok(Authenticated {
                identity,
                scheme: "negotiate-kerberos",
                cached: false,
                connection_bound: true,
                mutual: accepted.mutual,
            }),
            Ok(None) => {
                tracing::info!(principal = %accepted.principal, "Kerberos principal has no directory user");
                Err(AuthFailure::Rejected {
                    user: accepted.principal,
                })
            }
            Err(u) => Err(AuthFailure::Unavailable {
                user: accepted.principal,
                reason: u.0,
            }),
        }
    }
}
