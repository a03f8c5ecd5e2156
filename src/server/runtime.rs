//! The one build stage: everything a config names, compiled and opened once —
//! the policy, the realms and the authenticator, the certificate verifier,
//! the resolver. `gatehouse run`, `gatehouse check`, `gatehouse explain` and
//! the SIGHUP reload all build through here, so a config that `check`
//! accepts is one `run` starts with, and a reload is refused for exactly
//! the reasons a start would be.

use crate::auth::AuthError;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::directory::{RealmChain, RealmError};
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

/// Everything SIGHUP swaps in, built from a config: the policy, the
/// realms, the certificate checks, the names and refusals. Start-up builds
/// the same (and the authenticator over the realms).
pub struct Reloadable {
    /// The compiled policy.
    pub policy: Policy,
    /// The realms, in `auth.realms` order.
    pub realms: RealmChain,
    /// The SSL check's verifier and verdict cache (`detection.ca_file`).
    pub checker: TlsChecker,
    /// TLS interception, when `[intercept]` names a CA.
    pub interceptor: Option<crate::intercept::Interceptor>,
    /// The TLS listeners' certificate, when `listener.tls_addresses` has any.
    pub listener_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Destination names to addresses.
    pub resolver: Resolver,
    /// `destinations.refuse`.
    pub refused: Refused,
}

impl Reloadable {
    /// Compiles the policy, builds the realms and reads the certificates
    /// the config names. On a reload, `running` is the chain in force: each
    /// of its realms whose definition did not change is kept, caches and all.
    pub fn build(config: &Config, running: Option<&RealmChain>) -> Result<Self, BuildError> {
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
        let interceptor =
            crate::intercept::Interceptor::build(&config.intercept, checker.verifier().rustls())?;
        Ok(Self {
            policy,
            realms,
            checker,
            interceptor,
            listener_tls: config.listener.load_tls()?,
            resolver: Resolver::new(&config.resolver),
            refused: Refused::new(&config.destinations.refuse),
        })
    }
}

/// What is valid but probably not meant: said by `check` and logged at start-up.
pub fn warnings(config: &Config, policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    if !config.detection.enabled {
        if let Some(rule) = policy.detection_rule() {
            out.push(format!(
                "policy rule {rule:?} looks at what detection finds (protocol, sni, fingerprints) \
                 but [detection] enabled = false: it never matches"
            ));
        }
    }
    out
}

/// A config, built.
pub struct Runtime {
    /// The compiled policy.
    pub policy: Policy,
    /// The authenticator over the realms.
    pub auth: Authenticator,
    /// The SSL check's verifier and verdict cache.
    pub checker: TlsChecker,
    /// TLS interception, when `[intercept]` names a CA.
    pub interceptor: Option<crate::intercept::Interceptor>,
    /// Destination names to addresses.
    pub resolver: Resolver,
    /// `destinations.refuse`.
    pub refused: Refused,
    /// The TLS listeners' certificate, when `listener.tls_addresses` has any.
    pub listener_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

impl Runtime {
    /// Builds everything the config names; nothing listens yet.
    pub fn build(config: &Config) -> Result<Self, BuildError> {
        let Reloadable {
            policy,
            realms,
            checker,
            interceptor,
            listener_tls,
            resolver,
            refused,
        } = Reloadable::build(config, None)?;
        Ok(Self {
            policy,
            auth: Authenticator::new(&config.auth, realms)?,
            checker,
            interceptor,
            resolver,
            refused,
            listener_tls,
        })
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
