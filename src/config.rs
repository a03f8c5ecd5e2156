//! Typed configuration: one TOML file plus `GATEHOUSE_`-prefixed environment
//! overrides, deserialised whole and validated whole before anything uses it.
//!
//! Unknown keys are errors (`deny_unknown_fields` everywhere): a typo in a proxy
//! config silently ignored is a security hole, not a convenience.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

use crate::directory::config::RealmConfig;

/// The default configuration, embedded so `gatehouse run` works with no file.
pub const DEFAULT_CONFIG: &str = include_str!("../config/gatehouse.toml");

/// Why a configuration was refused. The message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("config key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listener: ListenerConfig,
    #[serde(default)]
    pub forward: ForwardConfig,
    #[serde(default)]
    pub tunnel: TunnelConfig,
    #[serde(default)]
    pub resolver: ResolverConfig,
    #[serde(default)]
    pub destinations: DestinationsConfig,
    #[serde(default)]
    pub accesslog: AccessLogConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub detection: DetectionConfig,
    /// The realm files named by `auth.realms`, loaded and checked with the config.
    #[serde(skip)]
    pub realm_configs: Vec<RealmConfig>,
}

/// Where the policy comes from. The policy (file, categories, shortcuts) is
/// what SIGHUP reloads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Policy file (layers of rules); without one, every authenticated request is allowed.
    pub file: Option<PathBuf>,
    /// Category database (domains and CIDRs → category names).
    pub categories: Option<PathBuf>,
    /// Members of these groups get a raw tunnel for a CONNECT without User-Agent.
    pub allowed_groups: Vec<String>,
    /// ... and so do these users.
    pub allowed_users: Vec<String>,
}

/// What to do when a CONNECT client says nothing within the detection timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnSilence {
    Deny,
    Tunnel,
}

/// Protocol detection on CONNECT (ProxySG's "Detect Protocol").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Off: every allowed CONNECT is a raw tunnel.
    pub enabled: bool,
    /// How long to wait for the client's first bytes.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Most client bytes held while classifying.
    pub max_bytes: usize,
    /// A client that says nothing (server-speaks-first protocols).
    pub on_silence: OnSilence,
    /// The certificate check's connect + handshake time.
    #[serde(with = "humantime_serde")]
    pub check_timeout: Duration,
    /// How long a certificate verdict per (host, port, SNI) is reused.
    #[serde(with = "humantime_serde")]
    pub verdict_ttl: Duration,
    /// Extra CA certificates (PEM) trusted besides the bundled web roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            timeout: Duration::from_secs(5),
            max_bytes: 16 * 1024,
            on_silence: OnSilence::Deny,
            check_timeout: Duration::from_secs(10),
            verdict_ttl: Duration::from_secs(600),
            ca_file: None,
        }
    }
}

/// Authentication schemes offered in `Proxy-Authenticate`, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Negotiate,
    Ntlm,
    Basic,
}

/// NTLM passed through to the domain (Samba's ntlm_auth helpers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NtlmConfig {
    /// The helper command (squid-2.5-ntlmssp protocol), on a winbind-joined host.
    pub helper: Vec<String>,
    /// Helper processes at most: concurrent handshakes against the domain.
    pub max_helpers: usize,
    /// One exchange with a helper; past it the helper is killed and replaced.
    #[serde(with = "humantime_serde")]
    pub helper_timeout: Duration,
    /// A new handshake waits this long for a free helper, then gets 503.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// A type 1 not followed by its type 3 within this is dropped and its
    /// helper returned (on a timer: an idle client cannot hold it longer).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Handshakes between type 1 and type 3 from one client address at once;
    /// beyond this a type 1 waits `queue_timeout` for a place, then gets 503.
    /// One host cannot hold every helper.
    pub max_pending_per_address: usize,
    /// NTLMv1 and LM responses are refused unless this is true.
    pub allow_ntlmv1: bool,
}

impl Default for NtlmConfig {
    fn default() -> Self {
        Self {
            helper: vec![
                "ntlm_auth".into(),
                "--helper-protocol=squid-2.5-ntlmssp".into(),
            ],
            max_helpers: 8,
            helper_timeout: Duration::from_secs(10),
            queue_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            max_pending_per_address: 4,
            allow_ntlmv1: false,
        }
    }
}

/// Kerberos single sign-on (`Negotiate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegotiateConfig {
    /// The service keytab (process-wide: set as KRB5_KTNAME before start-up).
    pub keytab: PathBuf,
    /// Accept only tickets for this principal, e.g. `HTTP/proxy.example.com@EXAMPLE.COM`;
    /// any principal in the keytab when unset.
    pub principal: Option<String>,
    /// Require a token on every request instead of once per connection.
    #[serde(default)]
    pub per_request: bool,
    /// GSS validations running at once (each holds a blocking thread).
    #[serde(default = "default_gss_concurrency")]
    pub max_concurrent: usize,
    /// How long a request waits for a validation slot before a 503.
    #[serde(default = "default_gss_wait", with = "humantime_serde")]
    pub queue_timeout: Duration,
    /// Map `alice@REALM` to the directory user `alice` (else the realms'
    /// `principal_attribute` is searched for the whole principal).
    #[serde(default = "yes_please")]
    pub strip_realm: bool,
}

fn default_gss_concurrency() -> usize {
    16
}
fn default_gss_wait() -> Duration {
    Duration::from_secs(10)
}
fn yes_please() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Every request must authenticate (the policy layers refine this later).
    pub required: bool,
    pub schemes: Vec<Scheme>,
    /// The `realm="..."` of the Basic challenge, shown by browsers.
    pub basic_realm: String,
    /// Realm files, tried in this order. Relative paths are relative to the
    /// directory gatehouse is started in.
    pub realms: Vec<PathBuf>,
    /// A verified user+password is trusted this long without asking the realm.
    #[serde(with = "humantime_serde")]
    pub credential_ttl: Duration,
    /// A refused user+password is refused this long without asking the realm.
    #[serde(with = "humantime_serde")]
    pub failure_ttl: Duration,
    /// While realms are unreachable, verified credentials keep working this long past their TTL.
    #[serde(with = "humantime_serde")]
    pub stale_grace: Duration,
    pub credential_cache_capacity: u64,
    /// Consecutive failed attempts on one connection before it is closed.
    pub max_failures_per_connection: u32,
    /// A refused request's body is read and discarded up to this size so the
    /// connection survives the 407 (NTLM and Negotiate depend on it); larger: closed.
    pub max_drain_bytes: u64,
    /// Settings for the `negotiate` scheme.
    pub negotiate: Option<NegotiateConfig>,
    /// Settings for the `ntlm` scheme.
    pub ntlm: NtlmConfig,
    /// Failed-password throttling in front of the realms (account lockout).
    pub throttle: ThrottleConfig,
    /// Local-realm password hashing: bounded CPU and memory.
    pub password_checks: PasswordCheckConfig,
}

/// After this many failed distinct passwords within `window`, checks are
/// refused (407) without asking the realm until the window has passed.
/// Keep `user_failures` below the directory's lockout threshold (AD: often
/// 5–10) and `window` at least its observation window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Per user name (0 = no limit).
    pub user_failures: u32,
    /// Per client address, over all user names (0 = no limit).
    pub address_failures: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Most user names and addresses tracked at once.
    pub capacity: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            user_failures: 4,
            address_failures: 30,
            window: Duration::from_secs(30 * 60),
            capacity: 100_000,
        }
    }
}

/// argon2 checks of the local realm run on at most `permits` blocking
/// threads at once; each holds the hash's memory (19 MiB at the default
/// parameters) while it runs, so memory is bounded by permits × that.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordCheckConfig {
    /// Concurrent checks; 0 = half the CPU cores (at least one), so that a
    /// flood of wrong passwords leaves the other half to the traffic.
    pub permits: usize,
    /// A check waits this long for a permit, then the request gets 503 with Retry-After.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
}

impl Default for PasswordCheckConfig {
    fn default() -> Self {
        Self {
            permits: 0,
            queue_timeout: Duration::from_secs(2),
        }
    }
}

impl PasswordCheckConfig {
    /// The number of permits, with 0 resolved to the machine's cores.
    pub fn permits(&self) -> usize {
        match self.permits {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            required: true,
            schemes: vec![Scheme::Basic],
            basic_realm: "Gatehouse Proxy".into(),
            realms: vec![PathBuf::from("realms/local.toml")],
            credential_ttl: Duration::from_secs(300),
            failure_ttl: Duration::from_secs(30),
            stale_grace: Duration::from_secs(3600),
            credential_cache_capacity: 100_000,
            max_failures_per_connection: 5,
            max_drain_bytes: 1024 * 1024,
            negotiate: None,
            ntlm: NtlmConfig::default(),
            throttle: ThrottleConfig::default(),
            password_checks: PasswordCheckConfig::default(),
        }
    }
}

/// Where clients connect, and the limits that protect the proxy from them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenerConfig {
    pub addresses: Vec<SocketAddr>,
    /// Connections beyond this are answered 503 and closed at once.
    pub max_connections: usize,
    /// Open connections (tunnels included) from one client address; beyond
    /// this: 503. One host cannot take every slot.
    pub max_connections_per_address: usize,
    /// Request line plus headers, in bytes; beyond this: 431.
    pub max_header_bytes: usize,
    /// Request-target length in bytes; beyond this: 414.
    pub max_uri_bytes: usize,
    /// Most header fields in one request; beyond this: 431.
    pub max_headers: usize,
    /// A client must deliver a whole request head within this (slowloris); else 408.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after this.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            addresses: vec![SocketAddr::from(([127, 0, 0, 1], 3128))],
            max_connections: 10_000,
            max_connections_per_address: 1_000,
            max_header_bytes: 64 * 1024,
            max_uri_bytes: 8 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Absolute-form requests forwarded to origin servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for the origin to send its response head.
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Pseudonym used in our `Via` entry; a request already carrying it is a loop.
    pub via_pseudonym: String,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            via_pseudonym: "gatehouse".into(),
        }
    }
}

/// CONNECT tunnels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelConfig {
    /// Destination ports a CONNECT may reach; anything else is 403.
    pub allowed_ports: Vec<u16>,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A tunnel with no byte in either direction for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Move tunnel bytes with splice(2) on Linux (socket → pipe → socket in
    /// the kernel) instead of read/write through a buffer. Off by default:
    /// on loopback here it measured 10–30% slower than the buffered copy
    /// (integration/bench); it may win on real NICs — measure before enabling.
    pub splice: bool,
}

impl Default for TunnelConfig {
    fn default() -> Self {
        Self {
            allowed_ports: vec![443],
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            splice: false,
        }
    }
}

/// How destination names become addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResolverConfig {
    /// Static names, checked first (like /etc/hosts, per proxy).
    pub hosts: std::collections::HashMap<String, Vec<std::net::IpAddr>>,
    /// Ask the system resolver for names not in `hosts`.
    pub system: bool,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            hosts: Default::default(),
            system: true,
        }
    }
}

/// Destinations refused before the policy is asked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DestinationsConfig {
    /// No request reaches an address in these ranges, whatever the policy
    /// says: if any address a destination resolves to is in one, 403
    /// `destination_refused`. The default keeps clients off link-local
    /// addresses, where cloud metadata services hand out credentials
    /// (169.254.169.254), and off 0.0.0.0/8 (which Linux dials as this host).
    pub refuse: Vec<ipnet::IpNet>,
}

impl Default for DestinationsConfig {
    fn default() -> Self {
        Self {
            refuse: ["169.254.0.0/16", "fe80::/10", "0.0.0.0/8"]
                .iter()
                .map(|s| s.parse().expect("constant CIDRs"))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Elff,
    Squid,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// A file path, or `-` for standard output.
    pub path: String,
    pub format: LogFormat,
    /// Lines queued for the writer; beyond this lines are dropped and counted,
    /// because the data path must never wait for a disk.
    pub queue: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            path: "-".into(),
            format: LogFormat::Elff,
            queue: 65_536,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// On SIGTERM/SIGINT, in-flight requests and tunnels get this long to finish.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

impl Config {
    /// Loads `path` (or the embedded default when `None`), applies
    /// `GATEHOUSE_SECTION__KEY` environment overrides, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let base = match path {
            Some(p) => Figment::from(Toml::file_exact(p)),
            None => Figment::from(Toml::string(DEFAULT_CONFIG)),
        };
        Self::from_figment(base.merge(Env::prefixed("GATEHOUSE_").split("__")))
    }

    /// Parses a TOML string with no environment overrides (tests, `explain`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        for path in &config.auth.realms {
            let realm = RealmConfig::load(path).map_err(|e| invalid("auth.realms", e))?;
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
        // The policy is compiled here too, so `check` and start-up refuse a bad one.
        crate::policy::Policy::load(&config.policy)
            .map_err(|e| invalid("policy", e.to_string()))?;
        Ok(config)
    }

    /// Checks the whole config; the first problem found names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.listener;
        if l.addresses.is_empty() {
            return Err(invalid(
                "listener.addresses",
                "at least one address is needed",
            ));
        }
        if l.max_connections == 0 {
            return Err(invalid("listener.max_connections", "must be at least 1"));
        }
        if l.max_connections_per_address == 0 {
            return Err(invalid(
                "listener.max_connections_per_address",
                "must be at least 1",
            ));
        }
        if !(1024..=1024 * 1024).contains(&l.max_header_bytes) {
            return Err(invalid(
                "listener.max_header_bytes",
                "must be between 1024 and 1048576",
            ));
        }
        if l.max_uri_bytes < 64 || l.max_uri_bytes >= l.max_header_bytes {
            return Err(invalid(
                "listener.max_uri_bytes",
                "must be at least 64 and below listener.max_header_bytes",
            ));
        }
        if !(1..=1000).contains(&l.max_headers) {
            return Err(invalid(
                "listener.max_headers",
                "must be between 1 and 1000",
            ));
        }
        for (key, d) in [
            ("listener.header_read_timeout", l.header_read_timeout),
            ("listener.idle_timeout", l.idle_timeout),
            ("forward.connect_timeout", self.forward.connect_timeout),
            ("forward.response_timeout", self.forward.response_timeout),
            ("tunnel.connect_timeout", self.tunnel.connect_timeout),
            ("tunnel.idle_timeout", self.tunnel.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        let via = &self.forward.via_pseudonym;
        if via.is_empty()
            || !via
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(invalid(
                "forward.via_pseudonym",
                "must be a non-empty token of letters, digits, '-', '.', '_'",
            ));
        }
        if self.tunnel.allowed_ports.contains(&0) {
            return Err(invalid(
                "tunnel.allowed_ports",
                "port 0 is not a destination",
            ));
        }
        if let Some((name, _)) = self.resolver.hosts.iter().find(|(_, ips)| ips.is_empty()) {
            return Err(invalid(
                "resolver.hosts",
                format!("{name:?} has no address"),
            ));
        }
        for name in self.resolver.hosts.keys() {
            // Requests are looked up by their canonical host: a key that is an
            // address, or not a host name at all, would never be found.
            match crate::resolve::host::canonical(name) {
                Ok(crate::resolve::Host::Name(_)) => {}
                _ => {
                    return Err(invalid(
                        "resolver.hosts",
                        format!("{name:?} is not a host name"),
                    ))
                }
            }
        }
        if self.accesslog.path.is_empty() {
            return Err(invalid("accesslog.path", "a file path or '-' for stdout"));
        }
        if self.accesslog.queue == 0 {
            return Err(invalid("accesslog.queue", "must be at least 1"));
        }
        let a = &self.auth;
        if a.required && (a.realms.is_empty() || a.schemes.is_empty()) {
            return Err(invalid(
                "auth.realms",
                "auth.required needs at least one realm and one scheme",
            ));
        }
        if !crate::auth::header::valid_realm(&a.basic_realm) {
            return Err(invalid(
                "auth.basic_realm",
                "1-128 printable characters, no '\"' or '\\'",
            ));
        }
        for (key, d) in [
            ("auth.credential_ttl", a.credential_ttl),
            ("auth.failure_ttl", a.failure_ttl),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if a.schemes.contains(&Scheme::Negotiate) {
            let Some(n) = &a.negotiate else {
                return Err(invalid(
                    "auth.negotiate",
                    "the negotiate scheme needs [auth.negotiate] with a keytab",
                ));
            };
            if n.max_concurrent == 0 {
                return Err(invalid(
                    "auth.negotiate.max_concurrent",
                    "must be at least 1",
                ));
            }
            if let Ok(env) = std::env::var("KRB5_KTNAME") {
                let want = format!("FILE:{}", n.keytab.display());
                if env != want && std::path::Path::new(&env) != n.keytab {
                    return Err(invalid(
                        "auth.negotiate.keytab",
                        format!("KRB5_KTNAME is already {env}: one process has one keytab"),
                    ));
                }
            }
        }
        if a.ntlm.max_pending_per_address == 0 || a.ntlm.handshake_timeout.is_zero() {
            return Err(invalid(
                "auth.ntlm.max_pending_per_address",
                "at least 1, with a handshake_timeout longer than zero",
            ));
        }
        if a.ntlm.helper.is_empty() || a.ntlm.max_helpers == 0 {
            return Err(invalid(
                "auth.ntlm",
                "a helper command and at least one helper",
            ));
        }
        if a.throttle.window.is_zero() {
            return Err(invalid("auth.throttle.window", "must be longer than zero"));
        }
        if a.password_checks.permits > 1024 {
            return Err(invalid("auth.password_checks.permits", "at most 1024"));
        }
        if a.max_failures_per_connection == 0 {
            return Err(invalid(
                "auth.max_failures_per_connection",
                "must be at least 1",
            ));
        }
        let d = &self.detection;
        if !(512..=crate::tunnel::detect::MAX_HELLO).contains(&d.max_bytes) {
            return Err(invalid("detection.max_bytes", "between 512 and 65536"));
        }
        for (key, v) in [
            ("detection.timeout", d.timeout),
            ("detection.check_timeout", d.check_timeout),
        ] {
            if v.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", e.to_string()));
        }
        Ok(())
    }

    /// The access log file, when it is a file.
    pub fn accesslog_file(&self) -> Option<PathBuf> {
        (self.accesslog.path != "-").then(|| PathBuf::from(&self.accesslog.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::from_toml(DEFAULT_CONFIG).unwrap();
        assert_eq!(c.tunnel.allowed_ports, vec![443]);
        assert_eq!(c.listener.addresses[0].port(), 3128);
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
