//! Prometheus metrics (prometheus-client), fed by what the proxy already
//! produces: every access record (transactions by `s-action` and scheme,
//! bytes, refusals by exception id — authentication, detection and policy
//! reasons among them — intercepted requests), reload results, directory
//! operation latencies (by realm, operation and outcome), and what is read
//! at scrape time from the parts that keep it: open connections and tunnels,
//! leaves minted, the credential cache's hits/loads/stale serves, NTLM
//! helpers and Negotiate validations in use, and which policy runs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::accesslog::{AccessRecord, Observe};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Transaction {
    s_action: &'static str,
    scheme: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheResult {
    realm: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Authenticated {
    scheme: String,
    cached: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    source: String,
    digest: String,
}

/// A cache's counts since start.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheCounts {
    /// Answered from the cache.
    pub hits: u64,
    /// Loaded from the directory.
    pub loads: u64,
    /// Served stale while the directory was down.
    pub stale: u64,
}

impl From<&crate::directory::cache::Counters> for CacheCounts {
    fn from(c: &crate::directory::cache::Counters) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        Self {
            hits: c.hits.load(Relaxed),
            loads: c.loads.load(Relaxed),
            stale: c.stale.load(Relaxed),
        }
    }
}

/// What the auth pools hold now: (in use, size) each, `None` when off.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pools {
    /// NTLM helper processes leased / `max_helpers`.
    pub ntlm_helpers: Option<(usize, usize)>,
    /// Negotiate validations running / `max_concurrent`.
    pub negotiate: Option<(usize, usize)>,
}

/// Values only known at scrape time.
pub struct Live {
    /// Client connections open now.
    pub connections: Box<dyn Fn() -> i64 + Send + Sync>,
    /// CONNECT tunnels open now.
    pub tunnels: Box<dyn Fn() -> i64 + Send + Sync>,
    /// Interception leaves signed since start.
    pub leaves_minted: Box<dyn Fn() -> i64 + Send + Sync>,
    /// The credential cache's counts.
    pub credentials: Box<dyn Fn() -> CacheCounts + Send + Sync>,
    /// Each directory realm's user cache: (realm, counts).
    pub directories: Box<dyn Fn() -> Vec<(String, CacheCounts)> + Send + Sync>,
    /// The authentication pools.
    pub pools: Box<dyn Fn() -> Pools + Send + Sync>,
    /// The running policy: (source, digest).
    pub policy: Box<dyn Fn() -> (String, String) + Send + Sync>,
}

/// The proxy's metrics.
pub struct Metrics {
    registry: Registry,
    transactions: Family<Transaction, Counter>,
    bytes: Family<Direction, Counter>,
    refusals: Family<Reason, Counter>,
    intercepted: Counter,
    reloads: Family<Outcome, Counter>,
    connections: Gauge,
    tunnels: Gauge,
    leaves: Gauge,
    credentials: Family<Outcome, Counter>,
    directory_cache: Family<CacheResult, Counter>,
    /// The raw counts last seen for each scrape-time counter: a realm's
    /// counts start again from 0 when a reload builds it anew.
    seen: std::sync::Mutex<std::collections::HashMap<(String, &'static str), u64>>,
    authentications: Family<Authenticated, Counter>,
    pool_in_use: Family<Pool, Gauge>,
    pool_size: Family<Pool, Gauge>,
    policy: Family<PolicyLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let m = Metrics {
            transactions: Family::default(),
            bytes: Family::default(),
            refusals: Family::default(),
            intercepted: Counter::default(),
            reloads: Family::default(),
            connections: Gauge::default(),
            tunnels: Gauge::default(),
            leaves: Gauge::default(),
            credentials: Family::default(),
            directory_cache: Family::default(),
            seen: Default::default(),
            authentications: Family::default(),
            pool_in_use: Family::default(),
            pool_size: Family::default(),
            policy: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "transactions",
            "Transactions logged, by s-action and scheme (http, https inside interception, tcp for CONNECT)",
            m.transactions.clone(),
        );
        registry.register(
            "bytes",
            "Body and tunnel bytes relayed, by direction (sc: to clients, cs: from clients)",
            m.bytes.clone(),
        );
        registry.register(
            "refusals",
            "Transactions refused or failed, by x-exception-id (authentication, detection, policy, upstream)",
            m.refusals.clone(),
        );
        registry.register(
            "intercepted_requests",
            "Requests decrypted from intercepted tunnels",
            m.intercepted.clone(),
        );
        registry.register("reloads", "SIGHUP reloads, by result", m.reloads.clone());
        registry.register(
            "open_connections",
            "Client connections open",
            m.connections.clone(),
        );
        registry.register("open_tunnels", "CONNECT tunnels open", m.tunnels.clone());
        registry.register(
            "leaves_minted",
            "Interception leaf certificates signed since start",
            m.leaves.clone(),
        );
        registry.register(
            "credential_cache",
            "Basic credential checks by result: hit (cached verdict), load (asked the realm), stale (served past its TTL while the realm was down)",
            m.credentials.clone(),
        );
        registry.register(
            "directory_cache",
            "Directory user lookups by realm and result: hit, load (asked the directory), stale (served while it was down)",
            m.directory_cache.clone(),
        );
        registry.register(
            "authentications",
            "Transactions by the scheme that authenticated them; cached: the connection or a cached verdict vouched",
            m.authentications.clone(),
        );
        registry.register(
            "auth_pool_in_use",
            "Authentication workers busy: NTLM helpers leased, Negotiate validations running",
            m.pool_in_use.clone(),
        );
        registry.register(
            "auth_pool_size",
            "Authentication workers allowed (max_helpers, max_concurrent)",
            m.pool_size.clone(),
        );
        registry.register(
            "policy",
            "The running policy (always 1): its file and the digest of its text",
            m.policy.clone(),
        );
        registry.register(
            "directory_operation_seconds",
            "Directory operations by realm, operation (search, bind) and outcome",
            crate::directory::timing::OPERATIONS.clone(),
        );
        registry.register(
            "directory_watch_failures",
            "Directory watches broken (lost, refused), by realm: the TTLs cover until they are back",
            crate::directory::watch::FAILURES.clone(),
        );
        registry.register(
            "auth_throttle_store_fallbacks",
            "Failure-throttle operations answered from this instance's memory because the shared store failed",
            crate::auth::throttle::redis::FALLBACKS.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A SIGHUP reload ended: `ok` or refused.
    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&Outcome { result }).inc();
    }

    /// The Prometheus text exposition, gauges read from `live` now.
    pub fn render(&self, live: &Live) -> String {
        self.connections.set((live.connections)());
        self.tunnels.set((live.tunnels)());
        self.leaves.set((live.leaves_minted)());
        // Counters kept elsewhere: brought up to their value now (only here
        // are these counters moved, so they never go down).
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let c = (live.credentials)();
        for (result, now) in [("hit", c.hits), ("load", c.loads), ("stale", c.stale)] {
            let last = seen.entry(("-".into(), result)).or_default();
            catch_up(
                &self.credentials.get_or_create(&Outcome { result }),
                last,
                now,
            );
        }
        for (realm, c) in (live.directories)() {
            for (result, now) in [("hit", c.hits), ("load", c.loads), ("stale", c.stale)] {
                let last = seen.entry((realm.clone(), result)).or_default();
                let labels = CacheResult {
                    realm: realm.clone(),
                    result,
                };
                catch_up(&self.directory_cache.get_or_create(&labels), last, now);
            }
        }
        drop(seen);
        let pools = (live.pools)();
        for (pool, value) in [
            ("ntlm_helpers", pools.ntlm_helpers),
            ("negotiate", pools.negotiate),
        ] {
            if let Some((in_use, size)) = value {
                self.pool_in_use
                    .get_or_create(&Pool { pool })
                    .set(in_use as i64);
                self.pool_size
                    .get_or_create(&Pool { pool })
                    .set(size as i64);
            }
        }
        let (source, digest) = (live.policy)();
        self.policy.clear();
        self.policy
            .get_or_create(&PolicyLabels { source, digest })
            .set(1);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Moves `counter` by what a count kept elsewhere moved since `last`; a
/// count that went down was started anew (a reload), so all of it is new.
fn catch_up(counter: &Counter, last: &mut u64, now: u64) {
    counter.inc_by(if now >= *last { now - *last } else { now });
    *last = now;
}

impl Observe for Metrics {
    fn observe(&self, r: &AccessRecord) {
        if let Some(s) = r.auth_scheme.as_deref() {
            let (scheme, cached) = match s.strip_suffix("-cached") {
                Some(base) => (base, "yes"),
                None => (s, "no"),
            };
            let labels = Authenticated {
                scheme: scheme.to_string(),
                cached,
            };
            self.authentications.get_or_create(&labels).inc();
        }
        let scheme = match r.scheme {
            Some("https") => "https",
            Some("http") => "http",
            _ if r.is_connect() => "tcp",
            _ => "other",
        };
        self.transactions
            .get_or_create(&Transaction {
                s_action: r.action.as_str(),
                scheme,
            })
            .inc();
        self.bytes
            .get_or_create(&Direction { direction: "sc" })
            .inc_by(r.sc_bytes);
        self.bytes
            .get_or_create(&Direction { direction: "cs" })
            .inc_by(r.cs_bytes);
        if let Some(id) = &r.exception_id {
            self.refusals
                .get_or_create(&Reason {
                    reason: id.as_str().to_string(),
                })
                .inc();
        }
        if r.intercepted && !r.is_connect() {
            self.intercepted.inc();
        }
    }
}
