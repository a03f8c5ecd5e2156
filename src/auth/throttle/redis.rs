//! The throttle's counts in Redis (or Valkey), shared by every instance of
//! a fleet, so N instances give a stranger one budget, not N. Each
//! operation is one Lua script (atomic on the server) under a deadline;
//! when the store cannot be reached or answer in time, this instance falls
//! back to its own memory for that operation — logged (at most every 30 s)
//! and counted in `/metrics` — and never refuses everyone.
//!
//! Keys (`{p}` = `gatehouse:throttle:`): `{p}fam:<user>` a hash place →
//! last sign-in (unix seconds), expiring `familiar_for`; `{p}fail:<user>` a
//! sorted set of password marks (prefixed `f:`/`u:`, familiar or not) by
//! time, expiring `window`; `{p}place:<place>` a count expiring `window`
//! after its first failure. The password marks are HMACs under
//! `auth.throttle.key_file`, which every instance shares.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::local::Local;
use super::{unix_now, PasswordMark, Standing, ThrottleError};
use crate::auth::settings::ThrottleConfig;

/// Operations answered from this process's memory because the store failed.
pub static FALLBACKS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// How long one store operation may take before memory answers instead.
const DEADLINE: Duration = Duration::from_millis(500);
const PREFIX: &str = "gatehouse:throttle:";

const STANDING: &str = r#"
local fam = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
local marks = redis.call('ZRANGE', KEYS[2], 0, -1)
local place = redis.call('GET', KEYS[3])
return {fam or '0', marks, place or '0'}
"#;

const FAILED: &str = r#"
local fam = redis.call('HGET', KEYS[1], ARGV[1])
local familiar = fam and tonumber(fam) >= tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[2], 'f:' .. ARGV[3]) or redis.call('ZSCORE', KEYS[2], 'u:' .. ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[2], ARGV[6], (familiar and 'f:' or 'u:') .. ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
if redis.call('INCR', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[4]) end
return 1
"#;

const SUCCEEDED: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[4]) then
  local all = redis.call('HGETALL', KEYS[1])
  local oldest, at = nil, nil
  for i = 1, #all, 2 do
    local t = tonumber(all[i + 1])
    if at == nil or t < at then at = t; oldest = all[i] end
  end
  redis.call('HDEL', KEYS[1], oldest)
end
return 1
"#;

static SCRIPTS: LazyLock<[redis::Script; 3]> = LazyLock::new(|| {
    [
        redis::Script::new(STANDING),
        redis::Script::new(FAILED),
        redis::Script::new(SUCCEEDED),
    ]
});

/// The shared store, and this process's memory to fall back on.
pub(super) struct Shared {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    local: Local,
    window: Duration,
    familiar_for: Duration,
    max_places: usize,
    /// Unix seconds of the last fallback warning (one per 30 s).
    warned: AtomicU64,
}

impl Shared {
    /// The store at `url` (`redis://host:port/db`), with the fleet's key
    /// from `auth.throttle.key_file`. Nothing is dialled yet.
    pub(super) fn new(
        url: &str,
        cfg: &ThrottleConfig,
        local: Local,
    ) -> Result<(Vec<u8>, Self), ThrottleError> {
        let client = redis::Client::open(url).map_err(|e| ThrottleError::Store(e.to_string()))?;
        let path = cfg.key_file.as_deref().ok_or_else(|| {
            ThrottleError::Store(
                "needs auth.throttle.key_file: the key every instance marks passwords with".into(),
            )
        })?;
        let key =
            crate::settings::read_secret(path).map_err(|e| ThrottleError::Store(e.to_string()))?;
        if key.len() < 16 {
            return Err(ThrottleError::Store(format!(
                "{}: at least 16 characters of secret",
                path.display()
            )));
        }
        let shared = Self {
            client,
            conn: OnceCell::new(),
            local,
            window: cfg.window,
            familiar_for: cfg.familiar_for,
            max_places: cfg.familiar_places,
            warned: AtomicU64::new(0),
        };
        Ok((key.into_bytes(), shared))
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        self.conn
            .get_or_try_init(|| async {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(DEADLINE))
                    .set_response_timeout(Some(DEADLINE))
                    .set_number_of_retries(1);
                ConnectionManager::new_lazy_with_config(self.client.clone(), cfg)
            })
            .await
            .cloned()
    }

    /// Runs `script` with `keys` and `args` within the deadline.
    async fn run<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, String> {
        let attempt = async {
            let mut conn = self.connection().await.map_err(|e| e.to_string())?;
            let mut call = script.prepare_invoke();
            for k in keys {
                call.key(k);
            }
            for a in args {
                call.arg(a);
            }
            call.invoke_async::<T>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(DEADLINE, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {DEADLINE:?}")),
        }
    }

    fn fell_back(&self, op: &str, why: &str) {
        FALLBACKS.inc();
        let now = unix_now();
        let last = self.warned.load(Ordering::Relaxed);
        if now >= last + 30
            && self
                .warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                op,
                error = why,
                "throttle store unreachable: counting in this instance's memory"
            );
        }
    }

    fn keys(user: &str, place: IpAddr) -> Vec<String> {
        vec![
            format!("{PREFIX}fam:{user}"),
            format!("{PREFIX}fail:{user}"),
            format!("{PREFIX}place:{place}"),
        ]
    }

    pub(super) async fn standing(
        &self,
        user: &str,
        mark: &PasswordMark,
        place: IpAddr,
    ) -> Standing {
        let now = unix_now();
        let args = [
            place.to_string(),
            now.saturating_sub(self.window.as_secs()).to_string(),
        ];
        let answer: Result<(u64, Vec<String>, u32), String> =
            self.run(&SCRIPTS[0], &Self::keys(user, place), &args).await;
        let (fam, marks, place_failures) = match answer {
            Ok(a) => a,
            Err(why) => {
                self.fell_back("standing", &why);
                return self.local.standing(user, mark, place);
            }
        };
        let hex = to_hex(mark);
        let mut s = Standing {
            familiar: fam > 0 && fam + self.familiar_for.as_secs() > now,
            place_failures,
            ..Standing::default()
        };
        for m in &marks {
            let (kind, h) = m.split_at(m.len().min(2));
            s.repeated |= h == hex;
            if kind == "f:" {
                s.familiar_failures += 1;
            } else {
                s.unfamiliar_failures += 1;
            }
        }
        s
    }

    pub(super) async fn failed(&self, user: &str, mark: PasswordMark, place: IpAddr) {
        let now = unix_now();
        let args = [
            place.to_string(),
            now.saturating_sub(self.window.as_secs()).to_string(),
            to_hex(&mark),
            self.window.as_secs().max(1).to_string(),
            now.saturating_sub(self.familiar_for.as_secs()).to_string(),
            now.to_string(),
        ];
        if let Err(why) = self
            .run::<i64>(&SCRIPTS[1], &Self::keys(user, place), &args)
            .await
        {
            self.fell_back("failed", &why);
        }
        // Kept here too, so an outage starts from what this instance saw.
        self.local.failed(user, mark, place);
    }

    pub(super) async fn succeeded(&self, user: &str, place: IpAddr) {
        let args = [
            place.to_string(),
            unix_now().to_string(),
            self.familiar_for.as_secs().max(1).to_string(),
            self.max_places.to_string(),
        ];
        if let Err(why) = self
            .run::<i64>(&SCRIPTS[2], &Self::keys(user, place), &args)
            .await
        {
            self.fell_back("succeeded", &why);
        }
        // Kept here too, so a later outage still knows this user's places.
        self.local.succeeded(user, place);
    }
}

fn to_hex(mark: &PasswordMark) -> String {
    mark.iter().map(|b| format!("{b:02x}")).collect()
}
