//! What the proxy runs on, as one value: the configuration and everything
//! built from it — the policy, the realms, the certificate checks, the
//! names and refusals, the listeners' certificate.
//!
//! `gatehouse run`, `check`, `explain` and the SIGHUP reload all build
//! through [`Snapshot::build`], so a config that `check` accepts is one
//! `run` starts with, and a reload is refused for exactly the reasons a
//! start would be. A reload builds a new snapshot whole and puts it in
//! force with one store ([`Live::replace`]); a request takes one
//! `Arc<Snapshot>` and is decided by it to its end — never the new policy
//! with the old settings, or the new realms with the old policy. A tunnel
//! keeps its CONNECT's snapshot for its settings and certificate check,
//! and asks the one in force for each later judgement (what detection
//! found, each request inside, a reload's re-judging) and for the
//! interception CA. A connection keeps only a few numbers of it: an idle
//! keep-alive connection does not pin an old policy in memory.
//! (linkerd2-proxy swaps one whole value per update the same way.)

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::AuthError;
use crate::config::Config;
use crate::directory::{RealmChain, RealmError};
use crate::intercept::Interceptor;
use crate::listener::settings::ListenerConfig;
use crate::policy::Policy;
use crate::resolve::{Refused, Resolver};
use crate::tunnel::tls_check::{TlsChecker, VerifierError};

/// Why a config could not be built into a running proxy.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The policy (file, list files, categories) does not compile.
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::LoadError),
    /// A realm cannot be built (its files, its directory settings).
    #[error("realm: {0}")]
    Realm(#[from] RealmError),
    /// The authenticator's own settings are refused.
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    /// The certificate verifier cannot be built (`detection.ca_file`).
    #[error("detection: {0}")]
    Detection(#[from] VerifierError),
    /// The interception CA cannot be used (`[intercept]`).
    #[error("{0}")]
    Intercept(#[from] crate::intercept::InterceptError),
    /// The TLS listeners' certificate or key cannot be used.
    #[error("listener: {0}")]
    ListenerTls(#[from] crate::listener::tls::TlsListenerError),
    /// The policy intercepts, but `[intercept]` names no CA.
    #[error("policy: rule {0:?} intercepts, but [intercept] names no ca_cert/ca_key")]
    InterceptWithoutCa(String),
}

impl BuildError {
    /// The part of the configuration that was refused, for the reload's
    /// log line (`policy reload refused: ...`).
    pub fn part(&self) -> &'static str {
        match self {
            BuildError::Policy(_) | BuildError::InterceptWithoutCa(_) => "policy",
            BuildError::Realm(_) => "realm",
            BuildError::Auth(_) => "authentication",
            BuildError::Detection(_) => "detection certificate",
            BuildError::Intercept(_) => "interception certificate",
            BuildError::ListenerTls(_) => "listener certificate",
        }
    }
}

/// One configuration, built.
pub struct Snapshot {
    /// The settings.
    pub config: Arc<Config>,
    /// The compiled policy.
    pub policy: Policy,
    /// The realms, in `auth.realms` order.
    pub realms: Arc<RealmChain>,
    /// The SSL check's verifier and verdict cache (`detection.ca_file`).
    pub checker: TlsChecker,
    /// TLS interception, when `[intercept]` names a CA.
    pub interceptor: Option<Interceptor>,
    /// The TLS listeners' certificate, when `listener.tls_addresses` has any.
    pub listener_tls: Option<Arc<rustls::ServerConfig>>,
    /// Destination names to addresses.
    pub resolver: Resolver,
    /// `destinations.refuse`.
    pub refused: Refused,
}

impl Snapshot {
    /// Compiles the policy, builds the realms and reads the certificates
    /// `config` names. On a reload, `running` is the chain in force: each
    /// of its realms whose definition did not change is kept, caches and all.
    pub fn build(config: Arc<Config>, running: Option<&RealmChain>) -> Result<Self, BuildError> {
        let policy = Policy::load(&config.policy)?;
        // A policy that intercepts with no CA to intercept with is refused
        // here, at start-up and on SIGHUP alike.
        if config.intercept.ca_cert.is_none() {
            if let Some(rule) = policy.intercept_rule() {
                return Err(BuildError::InterceptWithoutCa(rule.to_string()));
            }
        }
        let realms = match running {
            Some(chain) => chain.rebuild(&config.realm_configs)?,
            None => RealmChain::build(&config.realm_configs, &config.auth.password_checks)?,
        };
        let checker = TlsChecker::new(&config.detection)?;
        let interceptor = Interceptor::build(
            &config.intercept,
            &config.http2,
            checker.verifier().rustls(),
        )?;
        Ok(Self {
            policy,
            realms: Arc::new(realms),
            checker,
            interceptor,
            listener_tls: config.listener.load_tls(config.http2.listener)?,
            resolver: Resolver::new(&config.resolver),
            refused: Refused::new(&config.destinations.refuse),
            config,
        })
    }
}

/// The listener reads its limits and certificate from the same value.
impl crate::listener::Settings for Snapshot {
    fn listener(&self) -> &ListenerConfig {
        &self.config.listener
    }

    fn tls(&self) -> Option<&Arc<rustls::ServerConfig>> {
        self.listener_tls.as_ref()
    }

    fn http2(&self) -> &crate::http2::Http2Config {
        &self.config.http2
    }
}

/// The snapshot in force: one `ArcSwap`, one store per reload.
pub struct Live(ArcSwap<Snapshot>);

impl Live {
    /// Starts with `first`.
    pub fn new(first: Arc<Snapshot>) -> Self {
        Self(ArcSwap::new(first))
    }

    /// The snapshot in force now; whoever holds it keeps it.
    pub fn now(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    /// Puts `next` in force; the one it replaces, for the caller to drop
    /// off the hot path (a policy or a realm's pools can take a while).
    pub fn replace(&self, next: Arc<Snapshot>) -> Arc<Snapshot> {
        self.0.swap(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_build_names_its_part() {
        let policy = BuildError::Policy(crate::policy::LoadError::Syntax {
            source_name: "policy.toml".into(),
            message: "x".into(),
        });
        assert_eq!(policy.part(), "policy");
        assert_eq!(BuildError::InterceptWithoutCa("r".into()).part(), "policy");
        let ca = BuildError::Detection(VerifierError::CaFile {
            path: "/nowhere/ca.pem".into(),
            problem: "unreadable".into(),
        });
        assert_eq!(ca.part(), "detection certificate");
    }
}
