//! Cluster-wide rate limiting on Redis: a token bucket per route and client, updated atomically
//! by one Lua script (the algorithm of Spring Cloud Gateway's `RequestRateLimiter`), so every
//! gateway instance sharing the Redis shares the limit. Redis's clock is used, not the
//! gateways'. If Redis fails, requests are let through (fail open) and a debug event is logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use redis::aio::ConnectionManager;

const TOKEN_BUCKET: &str = r#"
local tokens_key = KEYS[1]
local timestamp_key = KEYS[2]
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = math.floor(capacity / rate * 2) + 1
local last_tokens = tonumber(redis.call('get', tokens_key))
if last_tokens == nil then last_tokens = capacity end
local last_refreshed = tonumber(redis.call('get', timestamp_key))
if last_refreshed == nil then last_refreshed = 0 end
local filled = math.min(capacity, last_tokens + math.max(0, now - last_refreshed) * rate)
local allowed = filled >= requested
local left = filled
if allowed then left = filled - requested end
redis.call('setex', tokens_key, ttl, left)
redis.call('setex', timestamp_key, ttl, now)
if allowed then return { 1, math.floor(left) } else return { 0, math.floor(left) } end
"#;

/// A Redis connection for rate limits, shared by every route (cheap to clone).
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Arc<redis::Script>,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter").finish_non_exhaustive()
    }
}

/// The outcome of one take: allowed, and whole tokens left.
pub(crate) type Verdict = redis::RedisResult<(i64, i64)>;

pub(crate) type VerdictFuture = Pin<Box<dyn Future<Output = Verdict> + Send>>;

impl RedisLimiter {
    /// Connects to `redis://host:port[/db]` (reconnects by itself afterwards).
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        Ok(RedisLimiter {
            conn,
            script: Arc::new(redis::Script::new(TOKEN_BUCKET)),
        })
    }

    /// Takes one token from bucket `key`.
    pub(crate) fn take(&self, key: String, rate: f64, burst: u64) -> VerdictFuture {
        let mut conn = self.conn.clone();
        let script = self.script.clone();
        Box::pin(async move {
            script
                .key(format!("{key}:tokens"))
                .key(format!("{key}:ts"))
                .arg(rate)
                .arg(burst)
                .arg(1)
                .invoke_async(&mut conn)
                .await
        })
    }
}
