//! Typed configuration: one TOML file plus `GATEHOUSE_`-prefixed environment
//! overrides, deserialised whole and validated whole before anything uses it.
//!
//! Unknown keys are errors (`deny_unknown_fields` everywhere): a typo in a proxy
//! config silently ignored is a security hole, not a convenience.

pub mod process;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

use crate::accesslog::settings::AccessLogConfig;
use crate::admin::pac::PacConfig;
use crate::admin::settings::AdminConfig;
use crate::auth::settings::AuthConfig;
use crate::directory::config::RealmConfig;
use crate::forward::settings::ForwardConfig;
use crate::intercept::settings::InterceptConfig;
use crate::listener::settings::ListenerConfig;
use crate::policy::settings::PolicyConfig;
use crate::resolve::settings::{DestinationsConfig, ResolverConfig};
use crate::settings::Invalid;
use crate::tunnel::settings::{DetectionConfig, TunnelConfig};
use process::{LogConfig, ShutdownConfig};

/// The default configuration, embedded so `gatehouse run` works with no file.
pub const DEFAULT_CONFIG: &str = include_str!("../config/gatehouse.toml");

/// Why a configuration was refused. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an environment override does not parse, or has unknown keys.
    #[error("{0}")]
    Parse(#[from] Box<figment::Error>),
    /// A value a module's validation refused.
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(crate::settings::invalid(key, problem))
}

/// The whole configuration: each section is its module's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[listener]`.
    #[serde(default)]
    pub listener: ListenerConfig,
    /// `[forward]`.
    #[serde(default)]
    pub forward: ForwardConfig,
    /// `[tunnel]`.
    #[serde(default)]
    pub tunnel: TunnelConfig,
    /// `[resolver]`.
    #[serde(default)]
    pub resolver: ResolverConfig,
    /// `[destinations]`.
    #[serde(default)]
    pub destinations: DestinationsConfig,
    /// `[accesslog]`.
    #[serde(default)]
    pub accesslog: AccessLogConfig,
    /// `[shutdown]`.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// `[log]`.
    #[serde(default)]
    pub log: LogConfig,
    /// `[auth]`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[policy]`.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// `[detection]`.
    #[serde(default)]
    pub detection: DetectionConfig,
    /// `[intercept]`.
    #[serde(default)]
    pub intercept: InterceptConfig,
    /// `[http2]`: HTTP/2 inside interception and on the TLS listener.
    #[serde(default)]
    pub http2: crate::http2::Http2Config,
    /// `[admin]`.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[pac]`: the proxy auto-config file served on the admin listener.
    #[serde(default)]
    pub pac: PacConfig,
    /// The realm files named by `auth.realms`, loaded and checked with the config.
    #[serde(skip)]
    pub realm_configs: Vec<RealmConfig>,
}

impl Config {
    /// Loads `path` (or the embedded default when `None`), applies
    /// `GATEHOUSE_SECTION__KEY` environment overrides (variables without
    /// `__` are ignored), and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let base = match path {
            Some(p) => Figment::from(Toml::file_exact(p)),
            None => Figment::from(Toml::string(DEFAULT_CONFIG)),
        };
        // Only `GATEHOUSE_<SECTION>__<KEY>` is config: other variables that
        // share the prefix (`GATEHOUSE_BIN`, say) are not ours to refuse.
        let env = Env::prefixed("GATEHOUSE_")
            .filter(|k| k.as_str().contains("__"))
            .split("__");
        Self::from_figment(base.merge(env))
    }

    /// Parses a TOML string with no environment overrides (tests, `explain`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        for path in &config.auth.realms {
            let realm =
                RealmConfig::load(path).map_err(|e| invalid("auth.realms", e.to_string()))?;
            if config
                .realm_configs
                .iter()
                .any(|r| r.name() == realm.name())
            {
                return Err(invalid(
                    "auth.realms",
                    format!("two realms are named {:?}", realm.name()),
                ));
            }
            config.realm_configs.push(realm);
        }
        Ok(config)
    }

    /// Checks the whole config; the first problem found names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listener.validate()?;
        self.forward.validate()?;
        self.tunnel.validate()?;
        self.detection.validate()?;
        self.intercept.validate()?;
        self.http2.validate()?;
        // NTLM is never offered on an HTTP/2 stream (listener/h2.rs): with
        // no other scheme, HTTP/2 clients could not authenticate at all.
        let ntlm_only = self.auth.required
            && !self.auth.schemes.is_empty()
            && self
                .auth
                .schemes
                .iter()
                .all(|s| *s == crate::auth::settings::Scheme::Ntlm);
        if self.http2.listener && !self.listener.tls_addresses.is_empty() && ntlm_only {
            return Err(invalid(
                "http2.listener",
                "NTLM cannot authenticate HTTP/2 streams: add Basic or Negotiate to auth.schemes, or leave http2.listener off",
            ));
        }
        self.admin.validate()?;
        self.pac.validate()?;
        if let Some(a) = self.admin.address {
            if self.listener.all_addresses().any(|l| *l == a) {
                return Err(invalid(
                    "admin.address",
                    format!("{a} is a proxy listener: the admin endpoints need their own address"),
                ));
            }
        }
        self.resolver.validate()?;
        self.accesslog.validate()?;
        self.log.validate()?;
        self.auth.validate()?;
        // Timeouts the listener, forwarder and tunnel each check are longer
        // than zero; what spans modules is checked here.
        Ok(())
    }

    /// The access log file, when it is a file.
    pub fn accesslog_file(&self) -> Option<PathBuf> {
        self.accesslog.file()
    }
}

/// The sections (or keys) that differ between `running` and `new` but are
/// read only at start-up: a reload that changes them is refused, naming
/// them. Everything else a reload takes (see `server::reload`).
pub fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let mut check = |name: &'static str, differ: bool| {
        if differ {
            changed.push(name);
        }
    };
    let (old, now) = (&running.listener, &new.listener);
    check("listener.addresses", old.addresses != now.addresses);
    check(
        "listener.tls_addresses / tls_cert_file / tls_key_file (the files themselves reload)",
        old.tls_addresses != now.tls_addresses
            || old.tls_cert_file != now.tls_cert_file
            || old.tls_key_file != now.tls_key_file,
    );
    // The upstream connection pool is built once.
    check(
        "forward.pool_idle_timeout / pool_max_idle_per_host",
        running.forward.pool_idle_timeout != new.forward.pool_idle_timeout
            || running.forward.pool_max_idle_per_host != new.forward.pool_max_idle_per_host,
    );
    // The queue is a bounded channel made once.
    check(
        "accesslog.queue",
        running.accesslog.queue != new.accesslog.queue,
    );
    check("log (the diagnostic log)", running.log != new.log);
    check("admin", running.admin != new.admin);
    let (mut a, mut b) = (running.auth.clone(), new.auth.clone());
    (a.realms, b.realms) = (Vec::new(), Vec::new());
    check("auth (other than realms)", a != b);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::from_toml(DEFAULT_CONFIG).unwrap();
        assert!(c.tunnel.allowed_ports.contains(443) && !c.tunnel.allowed_ports.contains(444));
        assert_eq!(c.listener.addresses[0].port(), 3128);
    }

    #[test]
    fn allowed_ports_take_ranges() {
        let c =
            Config::from_toml("[tunnel]\nallowed_ports = [443, \"8000-8999\", \"563\"]\n").unwrap();
        let p = &c.tunnel.allowed_ports;
        assert!(p.contains(443) && p.contains(563) && p.contains(8000) && p.contains(8999));
        assert!(!p.contains(80) && !p.contains(9000) && !p.contains(7999));
        for bad in ["\"9-1\"", "\"http\"", "0", "\"0-10\""] {
            let e = Config::from_toml(&format!("[tunnel]\nallowed_ports = [{bad}]\n")).unwrap_err();
            assert!(e.to_string().contains("allowed_ports"), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[listener]\nmax_conections = 5\n").unwrap_err();
        assert!(e.to_string().contains("max_conections"), "{e}");
    }

    #[test]
    fn invalid_value_names_key() {
        let e = Config::from_toml("[tunnel]\nidle_timeout = \"0s\"\n").unwrap_err();
        assert!(e.to_string().contains("tunnel.idle_timeout"), "{e}");
        let e = Config::from_toml("[forward]\nvia_pseudonym = \"a b\"\n").unwrap_err();
        assert!(e.to_string().contains("forward.via_pseudonym"), "{e}");
    }

    #[test]
    fn destinations_refuse_by_default_and_can_be_emptied() {
        let c = Config::from_toml(DEFAULT_CONFIG).unwrap();
        let refused: Vec<String> = c
            .destinations
            .refuse
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(refused, ["169.254.0.0/16", "fe80::/10", "0.0.0.0/8"]);
        let c = Config::from_toml("[destinations]\nrefuse = []\n").unwrap();
        assert!(c.destinations.refuse.is_empty());
        let e = Config::from_toml("[destinations]\nrefuse = [\"nope\"]\n").unwrap_err();
        assert!(e.to_string().contains("refuse"), "{e}");
        let e =
            Config::from_toml("[resolver]\nhosts = { \"127.1\" = [\"10.0.0.1\"] }\n").unwrap_err();
        assert!(e.to_string().contains("resolver.hosts"), "{e}");
    }

    #[test]
    fn bad_duration_is_an_error() {
        let e = Config::from_toml("[listener]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("idle_timeout"), "{e}");
    }
}
