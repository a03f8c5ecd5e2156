//! IP surrogate credentials (`[auth.surrogate] kind = "ip"`): after a user
//! proves themselves from an address, requests from that address that
//! present no credentials at all are taken as that user, for `ttl` after
//! their last proven request (ProxySG's IP surrogates, Squid's
//! `authenticate_ip_ttl`). It is for clients that cannot answer a
//! challenge — Java's `HttpClient` never answers a 407 to a CONNECT with
//! Basic, update agents send nothing — running beside a client that can.
//!
//! What it never does:
//! - override credentials that were presented: wrong ones still get 407;
//! - apply to an address in `exclude` or in `listener.shared_addresses`
//!   (a terminal server or a NAT carries many users: the last to sign in
//!   would lend their identity to everyone else there);
//! - slide on its own use: only a proven request extends it, so a client
//!   that never signs in again loses it `ttl` after the last one that did;
//! - outlive a revocation or a directory change (`gatehouse revoke`, the
//!   directory watch): a surrogate made before one no longer counts;
//! - bind the connection: every request looks it up again, so expiry and
//!   revocation apply on a kept-alive connection too.
//!
//! The key is the whole address, IPv6 too: `limit` counts an IPv6 client
//! by its prefix (a /64 is one LAN), and lending a surrogate to a prefix
//! would lend it to every neighbour, no spoofing needed.
//!
//! Memory is bounded: one entry per address that proved someone, at most `max_addresses`,
//! each gone `ttl` after it was last refreshed. An address that never
//! authenticated costs nothing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use moka::sync::Cache;
use serde::Deserialize;
use tokio::time::Instant;

use super::Authenticated;
use crate::directory::{Identity, RealmChain};
use crate::settings::{invalid, Invalid};

/// The `x-auth-scheme` (and policy `auth_scheme`) of an IP surrogate.
pub const SURROGATE_IP: &str = "surrogate-ip";

/// A proven request refreshes its address's surrogate at most this often
/// (the cache is not written on every request of a busy client).
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// Which surrogate, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SurrogateKind {
    /// No surrogates: every request proves itself.
    #[default]
    Off,
    /// By client address.
    Ip,
    /// By a signed cookie on the origin's host, set through a virtual URL
    /// (see [`super::cookie`]).
    Cookie,
}

/// `[auth.surrogate]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SurrogateConfig {
    /// `off`, `ip` or `cookie`.
    pub kind: SurrogateKind,
    /// Several at once, instead of `kind`: `["ip", "cookie"]`.
    pub kinds: Vec<SurrogateKind>,
    /// A surrogate lasts this long after its user's last proven request.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Client addresses never given a surrogate (`listener.shared_addresses`
    /// never are either).
    pub exclude: Vec<IpNet>,
    /// Most addresses remembered at once (the least recently used gives way).
    pub max_addresses: u64,
    /// A surrogate cookie is good this long after it was set.
    #[serde(with = "humantime_serde")]
    pub cookie_ttl: Duration,
    /// The cookies' secrets (mode 0600, one per line, the first signs),
    /// shared by a fleet.
    pub key_file: Option<std::path::PathBuf>,
    /// The name of the virtual URL where browsers are challenged: never
    /// resolved nor dialled.
    pub virtual_host: String,
}

impl Default for SurrogateConfig {
    fn default() -> Self {
        Self {
            kind: SurrogateKind::Off,
            ttl: Duration::from_secs(15 * 60),
            exclude: Vec::new(),
            max_addresses: 100_000,
            kinds: Vec::new(),
            cookie_ttl: Duration::from_secs(15 * 60),
            key_file: None,
            virtual_host: "gatehouse.auth".into(),
        }
    }
}

impl SurrogateConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.ttl.is_zero() {
            return Err(invalid("auth.surrogate.ttl", "must be longer than zero"));
        }
        if self.max_addresses == 0 {
            return Err(invalid("auth.surrogate.max_addresses", "at least 1"));
        }
        if !self.kinds.is_empty() && self.kind != SurrogateKind::Off {
            return Err(invalid("auth.surrogate.kinds", "kind or kinds, not both"));
        }
        let twice = (1..self.kinds.len()).any(|i| self.kinds[..i].contains(&self.kinds[i]));
        if self.kinds.contains(&SurrogateKind::Off) || twice {
            return Err(invalid(
                "auth.surrogate.kinds",
                "\"ip\" and/or \"cookie\", once each",
            ));
        }
        if self.has(SurrogateKind::Cookie) {
            if self.key_file.is_none() {
                return Err(invalid(
                    "auth.surrogate.key_file",
                    "cookie surrogates need the key file they are signed with",
                ));
            }
            if self.cookie_ttl.is_zero() {
                return Err(invalid(
                    "auth.surrogate.cookie_ttl",
                    "must be longer than zero",
                ));
            }
            let host = &self.virtual_host;
            let label = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if host.len() > 253
                || !host.contains('.')
                || !host.split('.').all(label)
                || host.parse::<IpAddr>().is_ok()
            {
                return Err(invalid(
                    "auth.surrogate.virtual_host",
                    "a host name with a dot (letters, digits, '-'), e.g. gatehouse.auth",
                ));
            }
        }
        Ok(())
    }

    /// Whether `kind` (or `kinds`) turns on this kind.
    pub fn has(&self, kind: SurrogateKind) -> bool {
        self.kind == kind || self.kinds.contains(&kind)
    }
}

/// Who last proved themselves from an address, and when.
#[derive(Clone)]
struct Entry {
    identity: Arc<Identity>,
    at: Instant,
}

/// The address → user table (see the module).
pub struct Surrogates {
    ttl: Duration,
    exclude: Vec<IpNet>,
    table: Cache<IpAddr, Entry>,
}

/// Where a request comes from, as surrogates see it.
#[derive(Debug, Clone, Copy)]
pub struct ClientPlace {
    /// The client's address (after the PROXY protocol).
    pub ip: IpAddr,
    /// In `listener.shared_addresses`.
    pub shared: bool,
}

impl ClientPlace {
    /// The table's key: the whole address (an IPv4-mapped IPv6 address as
    /// its IPv4 one), never a prefix.
    fn key(&self) -> IpAddr {
        crate::limit::place(self.ip, 128)
    }
}

impl Surrogates {
    /// The table `cfg` asks for, or none when surrogates are off.
    pub fn new(cfg: &SurrogateConfig) -> Option<Self> {
        let on = cfg.has(SurrogateKind::Ip);
        if on {
            tracing::info!(ttl = ?cfg.ttl, exclude = ?cfg.exclude,
                "IP surrogates on: requests without credentials are the last user proven from their address (never shared addresses)");
        }
        on.then(|| Self {
            ttl: cfg.ttl,
            exclude: cfg.exclude.clone(),
            table: Cache::builder()
                .max_capacity(cfg.max_addresses)
                .time_to_live(cfg.ttl)
                .build(),
        })
    }

    /// Can `from` ever have a surrogate?
    fn eligible(&self, from: &ClientPlace) -> bool {
        let ip = from.key();
        !from.shared && !self.exclude.iter().any(|n| n.contains(&ip))
    }

    /// `who` proved themselves from `from`: the address is theirs for
    /// `ttl` from now (another user's surrogate there is replaced, logged).
    pub fn proven(&self, from: &ClientPlace, who: &Authenticated) {
        if !self.eligible(from) {
            return;
        }
        let now = Instant::now();
        if let Some(was) = self.table.get(&from.key()) {
            let same =
                was.identity.user == who.identity.user && was.identity.realm == who.identity.realm;
            // Within a second the same user's entry is left as it is (their
            // groups, if a cache refresh changed them, follow a second later).
            if same && now.duration_since(was.at) < REFRESH_EVERY {
                return;
            }
            if !same {
                tracing::info!(client = %from.ip, user = %who.identity.user,
                    replaced = %was.identity.user, "IP surrogate replaced by another user");
            }
        }
        let entry = Entry {
            identity: who.identity.clone(),
            at: now,
        };
        self.table.insert(from.key(), entry);
    }

    /// The user `from` is taken as when it presents no credentials: one
    /// proven there within `ttl`, still vouched for by `chain` (a reload
    /// that changed the realms ends every surrogate) and not revoked since.
    pub fn recall(
        &self,
        from: &ClientPlace,
        chain: &RealmChain,
        revoked: &super::revoked::Revoked,
    ) -> Option<Authenticated> {
        if !self.eligible(from) {
            return None;
        }
        let e = self.table.get(&from.key())?;
        if e.at.elapsed() >= self.ttl
            || !chain.vouched_for(&e.identity)
            || revoked.covers(&e.identity, e.at)
        {
            self.table.invalidate(&from.key());
            return None;
        }
        Some(Authenticated {
            identity: e.identity,
            scheme: SURROGATE_IP,
            cached: false,
            connection_bound: false,
            mutual: None,
        })
    }

    /// Addresses remembered now (for tests and metrics).
    pub fn addresses(&self) -> u64 {
        self.table.run_pending_tasks();
        self.table.entry_count()
    }
}

#[cfg(test)]
#[path = "surrogate_tests.rs"]
mod tests;
