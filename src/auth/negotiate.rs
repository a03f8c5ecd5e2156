//! `Proxy-Authorization: Negotiate`: Kerberos (raw or in SPNEGO) accepted with
//! the keytab through libgssapi. GSS calls block, so they run on the blocking
//! pool, bounded by a semaphore: a slow validation never stalls other
//! connections, and a burst cannot take every blocking thread.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libgssapi::context::{SecurityContext, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::GSS_NT_KRB5_PRINCIPAL;

use super::blocking::{BlockingSlots, SlotError};
use super::spnego::{self, TokenKind};
use crate::config::NegotiateConfig;

/// Largest token we accept (a Kerberos ticket with a big PAC is a few KiB).
const MAX_TOKEN: usize = 64 * 1024;

/// Why a Negotiate token did not authenticate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiateError {
    #[error("token is not valid base64")]
    NotBase64,
    #[error("token larger than {MAX_TOKEN} bytes")]
    TooLarge,
    #[error("empty token")]
    Empty,
    #[error("NTLM inside Negotiate is not accepted here")]
    Ntlm,
    #[error("GSS: {0}")]
    Gss(String),
    #[error("GSS wants another round trip, which this acceptor does not keep state for")]
    Incomplete,
    #[error("too many Negotiate validations at once")]
    Busy,
}

/// A successful acceptance: who, and the mutual-authentication token if any.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// `alice@EXAMPLE.TEST`
    pub principal: String,
    /// Base64 token for `Proxy-Authenticate: Negotiate <token>`.
    pub mutual: Option<String>,
}

pub struct Acceptor {
    principal: Option<String>,
    /// GSS validations at once; the permit is held until GSS returns.
    slots: BlockingSlots,
}

impl Acceptor {
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
pub fn describe_keytab(cfg: &NegotiateConfig) -> Result<String, String> {
    let path = &cfg.keytab;
    std::fs::File::open(path).map_err(|e| format!("keytab {}: {e}", path.display()))?;
    let out = std::process::Command::new("klist")
        .args(["-k", "-t", "-e"])
        .arg(path)
        .output()
        .map_err(|e| format!("klist (krb5-user) not available: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "klist -k {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
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
        return Err(format!(
            "keytab {} holds no key for {}",
            path.display(),
            cfg.principal.as_deref().unwrap_or("any principal")
        ));
    }
    Ok(format!(
        "keytab {}: {} key(s)\n{}",
        path.display(),
        keys.len(),
        keys.join("\n")
    ))
}
