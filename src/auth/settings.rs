//! `[auth]`: the schemes offered, the realms asked, caches, throttles and
//! the NTLM and Negotiate settings.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::directory::config::PasswordCheckConfig;
use crate::settings::{invalid, Invalid};

/// Authentication schemes offered in `Proxy-Authenticate`, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Kerberos/SPNEGO.
    Negotiate,
    /// NTLM, passed through to the domain (winbind's `ntlm_auth`).
    Ntlm,
    /// Basic, checked against the realms.
    Basic,
}

/// NTLM passed through to the domain (Samba's ntlm_auth helpers).
#[derive(Debug, Clone, Deserialize, PartialEq)]
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
#[derive(Debug, Clone, Deserialize, PartialEq)]
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

/// `[auth]`: schemes, realms, caches and the limits on password checks.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Every request must authenticate (the policy layers refine this later).
    pub required: bool,
    /// Offered in this order.
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
    /// Most cached credential outcomes.
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
    /// Surrogate credentials for clients that cannot answer a challenge.
    pub surrogate: super::surrogate::SurrogateConfig,
    /// The user a policy's `action = "guest"` lets requests without
    /// credentials through as (realm `guest`, no groups).
    pub guest_user: String,
}

/// The smart lockout ([`super::throttle`]): distinct failed passwords per
/// user within `window`, counted apart for places where the user signed in
/// within `familiar_for` and for anywhere else; beyond a budget, checks are
/// refused (407) without asking the realm. Keep `familiar_failures +
/// user_failures` below the directory's lockout threshold (AD: often 5–10)
/// and `window` at least its observation window.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Per user, from places unfamiliar to them — all a stranger can spend
    /// (0 = no limit).
    pub user_failures: u32,
    /// Per user, from their familiar places (0 = no limit).
    pub familiar_failures: u32,
    /// Per client place (address, IPv6 prefix), over all user names, for
    /// users not known there (0 = no limit); `listener.shared_addresses`
    /// may set another per address.
    pub address_failures: u32,
    /// Failures count for this long.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// A place where the user signed in stays familiar this long.
    #[serde(with = "humantime_serde")]
    pub familiar_for: Duration,
    /// Most familiar places kept per user (the least recently used gives way).
    pub familiar_places: usize,
    /// Most user names and places tracked at once (each table).
    pub capacity: u64,
    /// `redis://host:port/db`: counts shared by a fleet (Redis or Valkey);
    /// unset: this process's memory.
    pub store: Option<String>,
    /// With `store`: the secret (mode 0600) every instance marks failed
    /// passwords with, so one password counts once across the fleet.
    pub key_file: Option<PathBuf>,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            user_failures: 2,
            familiar_failures: 2,
            address_failures: 30,
            window: Duration::from_secs(30 * 60),
            familiar_for: Duration::from_secs(30 * 24 * 3600),
            familiar_places: 8,
            capacity: 100_000,
            store: None,
            key_file: None,
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
            surrogate: super::surrogate::SurrogateConfig::default(),
            guest_user: "guest".into(),
        }
    }
}

impl AuthConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        let a = self;
        if a.required && (a.realms.is_empty() || a.schemes.is_empty()) {
            return Err(invalid(
                "auth.realms",
                "auth.required needs at least one realm and one scheme",
            ));
        }
        if !super::header::valid_realm(&a.basic_realm) {
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
        if a.throttle.window.is_zero() || a.throttle.familiar_for.is_zero() {
            return Err(invalid(
                "auth.throttle.window",
                "window and familiar_for must be longer than zero",
            ));
        }
        if !(1..=64).contains(&a.throttle.familiar_places) {
            return Err(invalid("auth.throttle.familiar_places", "between 1 and 64"));
        }
        if a.throttle.store.is_some() && a.throttle.key_file.is_none() {
            return Err(invalid(
                "auth.throttle.key_file",
                "a shared store needs the fleet's key file",
            ));
        }
        if a.password_checks.permits > 1024 {
            return Err(invalid("auth.password_checks.permits", "at most 1024"));
        }
        a.surrogate.validate()?;
        let printable = |c: char| c.is_alphanumeric() || "._-@$".contains(c);
        if a.guest_user.is_empty()
            || a.guest_user.len() > 64
            || !a.guest_user.chars().all(printable)
        {
            return Err(invalid("auth.guest_user", "1-64 letters, digits or ._-@$"));
        }
        if a.max_failures_per_connection == 0 {
            return Err(invalid(
                "auth.max_failures_per_connection",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
