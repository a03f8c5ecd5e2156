//! A moka cache that keeps serving what it knows when its source is down.
//!
//! Each entry is *fresh* for its TTL, then *stale* for a grace period: a stale
//! hit triggers one reload (others keep the stale value meanwhile), and if the
//! source is unavailable the stale value is served until the grace ends
//! (stale-if-error). Misses load once per key however many ask at the same
//! time (`try_get_with`). Unavailability is never cached: moka does not cache
//! errors, and the load itself is bounded by a timeout inside it.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;

/// The source could not answer (directory down, timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Within its TTL.
    Fresh,
    /// Just asked of the source.
    Loaded,
    /// Past its TTL, served because the source was unavailable or reloading.
    Stale,
}

struct Entry<V> {
    value: V,
    at: Instant,
    fresh: Duration,
    keep: Duration,
    reloading: AtomicBool,
}

struct KeepFor;

impl<K, V> Expiry<K, Arc<Entry<V>>> for KeepFor {
    fn expire_after_create(&self, _: &K, e: &Arc<Entry<V>>, _: Instant) -> Option<Duration> {
        Some(e.keep)
    }
    fn expire_after_update(
        &self,
        _: &K,
        e: &Arc<Entry<V>>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.keep)
    }
}

/// Hit/miss/stale counters, readable at any time.
#[derive(Debug, Default)]
pub struct Counters {
    /// Answers from the cache.
    pub hits: AtomicU64,
    /// Answers loaded from the source.
    pub loads: AtomicU64,
    /// Stale answers served.
    pub stale: AtomicU64,
}

/// How long a value stays fresh, and how long it may be served stale.
pub trait Lifetimes<V>: Send + Sync + 'static {
    /// How long `v` is served without asking the source.
    fn fresh(&self, v: &V) -> Duration;
    /// How long past that `v` may be served while the source is down.
    fn grace(&self, v: &V) -> Duration;
}

/// What a load failure must be: cloneable (moka shares it between the
/// waiters of one load) and printable (a stale serve logs it).
pub trait LoadError: Clone + std::fmt::Display + Send + Sync + 'static {}
impl<E: Clone + std::fmt::Display + Send + Sync + 'static> LoadError for E {}

/// Clears an entry's "reloading" mark when the reload ends — however it
/// ends. A request future dropped mid-reload (the client closed) must not
/// leave the mark set, or every later caller would be served the stale value
/// without a reload until the grace period ends: revoked credentials alive
/// for an hour.
struct Reloading<'a>(&'a AtomicBool);

impl Drop for Reloading<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A bounded cache that serves stale values while its source is down (see the module).
pub struct StaleCache<K, V, E = Unavailable> {
    inner: moka::future::Cache<K, Arc<Entry<V>>>,
    life: Arc<dyn Lifetimes<V>>,
    /// Hits, loads and stale serves so far.
    pub counters: Counters,
    _error: std::marker::PhantomData<fn() -> E>,
}

impl<K, V, E> StaleCache<K, V, E>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
    E: LoadError,
{
    /// At most `capacity` entries, living as `life` says.
    pub fn new(capacity: u64, life: impl Lifetimes<V>) -> Self {
        Self {
            inner: moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(KeepFor)
                .support_invalidation_closures()
                .build(),
            life: Arc::new(life),
            counters: Counters::default(),
            _error: std::marker::PhantomData,
        }
    }

    fn entry(&self, value: V) -> Arc<Entry<V>> {
        let fresh = self.life.fresh(&value);
        let keep = fresh + self.life.grace(&value);
        Arc::new(Entry {
            value,
            at: Instant::now(),
            fresh,
            keep,
            reloading: AtomicBool::new(false),
        })
    }

    /// The cached value for `key`, or `load`'s answer.
    pub async fn get<F, Fut>(&self, key: K, load: F) -> Result<(V, Source), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Some(e) = self.inner.get(&key).await {
            if e.at.elapsed() < e.fresh {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((e.value.clone(), Source::Fresh));
            }
            // Stale: one caller reloads, the others keep the stale value meanwhile.
            if e.reloading.swap(true, Ordering::AcqRel) {
                self.counters.stale.fetch_add(1, Ordering::Relaxed);
                return Ok((e.value.clone(), Source::Stale));
            }
            let _reloading = Reloading(&e.reloading);
            tracing::debug!("refreshing a stale cache entry");
            self.counters.loads.fetch_add(1, Ordering::Relaxed);
            // Loads are boxed: a directory round trip's state is kilobytes, and
            // inline it would swell every request future, hit or miss.
            return match Box::pin(load()).await {
                Ok(v) => {
                    self.inner.insert(key, self.entry(v.clone())).await;
                    Ok((v, Source::Loaded))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "source unavailable: serving a stale cache entry");
                    self.counters.stale.fetch_add(1, Ordering::Relaxed);
                    Ok((e.value.clone(), Source::Stale))
                }
            };
        }
        let loaded = AtomicBool::new(false);
        let e = Box::pin(self.inner.try_get_with(key, async {
            loaded.store(true, Ordering::Relaxed);
            load().await.map(|v| self.entry(v))
        }))
        .await
        .map_err(|e: Arc<E>| (*e).clone())?;
        let source = if loaded.load(Ordering::Relaxed) {
            self.counters.loads.fetch_add(1, Ordering::Relaxed);
            Source::Loaded
        } else {
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            Source::Fresh
        };
        Ok((e.value.clone(), source))
    }

    /// The value held for `key`, fresh or stale, without loading.
    pub async fn peek(&self, key: &K) -> Option<V> {
        self.inner.get(key).await.map(|e| e.value.clone())
    }

    /// Forgets `key`: the next `get` asks the source.
    pub async fn invalidate(&self, key: &K) {
        self.inner.invalidate(key).await;
    }

    /// The keys whose values `pick` picks: a scan of the whole cache, for
    /// rare events (a directory change), never per request.
    pub fn keys_where(&self, pick: impl Fn(&V) -> bool) -> Vec<K> {
        self.inner
            .iter()
            .filter(|(_, e)| pick(&e.value))
            .map(|(k, _)| (*k).clone())
            .collect()
    }

    /// Forgets every entry whose value `drop` picks: none of them is served
    /// again (moka removes them lazily, but never returns one).
    pub fn invalidate_if(&self, drop: impl Fn(&V) -> bool + Send + Sync + 'static) {
        let picked = self.inner.invalidate_entries_if(move |_, e| drop(&e.value));
        if let Err(e) = picked {
            // Enabled in `new`; fail loudly in the log rather than silently.
            tracing::error!(error = %e, "cache cannot invalidate by predicate");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Fixed(Duration, Duration);
    impl Lifetimes<u32> for Fixed {
        fn fresh(&self, _: &u32) -> Duration {
            self.0
        }
        fn grace(&self, _: &u32) -> Duration {
            self.1
        }
    }

    #[tokio::test]
    async fn one_load_for_many_concurrent_misses() {
        let cache = Arc::new(StaleCache::<_, _, Unavailable>::new(
            100,
            Fixed(Duration::from_secs(60), Duration::ZERO),
        ));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get("k", || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok(7)
                    })
                    .await
                    .unwrap()
                    .0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    // Paused time: the abandoned refresh's timeout costs no real time.
    #[tokio::test(start_paused = true)]
    async fn a_reload_dropped_midway_does_not_pin_the_stale_value() {
        let cache = StaleCache::<_, _, Unavailable>::new(
            100,
            Fixed(Duration::ZERO, Duration::from_secs(60)),
        );
        cache.get("k", || async { Ok(1) }).await.unwrap();
        // A caller starts the refresh and goes away before it ends.
        let refresh = cache.get("k", std::future::pending);
        assert!(tokio::time::timeout(Duration::from_millis(10), refresh)
            .await
            .is_err());
        // The next caller refreshes again instead of being served the stale 1.
        let (v, src) = cache.get("k", || async { Ok(2) }).await.unwrap();
        assert_eq!((v, src), (2, Source::Loaded));
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = StaleCache::new(100, Fixed(Duration::from_secs(60), Duration::ZERO));
        let e = cache
            .get("k", || async { Err(Unavailable("down".into())) })
            .await;
        assert_eq!(e.unwrap_err(), Unavailable("down".into()));
        let (v, src) = cache.get("k", || async { Ok(1) }).await.unwrap();
        assert_eq!((v, src), (1, Source::Loaded));
        let (_, src) = cache.get("k", || async { Ok(2) }).await.unwrap();
        assert_eq!(src, Source::Fresh);
    }

    #[tokio::test]
    async fn stale_is_served_while_the_source_is_down_then_refreshed() {
        // Fresh for zero time: every later hit is stale, within a long grace.
        let cache = StaleCache::<_, _, Unavailable>::new(
            100,
            Fixed(Duration::ZERO, Duration::from_secs(60)),
        );
        cache.get("k", || async { Ok(1) }).await.unwrap();
        let (v, src) = cache
            .get("k", || async { Err(Unavailable("down".into())) })
            .await
            .unwrap();
        assert_eq!((v, src), (1, Source::Stale));
        let (v, src) = cache.get("k", || async { Ok(2) }).await.unwrap();
        assert_eq!((v, src), (2, Source::Loaded));
    }
}
