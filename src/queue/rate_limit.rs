//! A rate limit shared by the whole fleet: a sliding window per provider key in Redis, so N
//! workers on any number of hosts together never exceed it.

use std::time::Duration;

use futures::{FutureExt, future::BoxFuture};
use sha2::{Digest, Sha256};
use switchboard_jobs::RateLimiter;

use super::{Queues, job, scripts};

/// The Redis implementation of [`RateLimiter`].
#[derive(Clone)]
pub struct RedisRateLimiter {
    queues: Queues,
}

impl RedisRateLimiter {
    /// A limiter storing its windows under the queue prefix.
    pub fn new(queues: Queues) -> Self {
        Self { queues }
    }

    fn key(&self, name: &str) -> String {
        // Names may embed credentials (an API key): only a digest reaches Redis.
        let digest = Sha256::digest(name.as_bytes());
        format!(
            "{{{}:ratelimit}}:{}",
            self.queues.settings().prefix,
            hex::encode(&digest[..12])
        )
    }
}

impl RateLimiter for RedisRateLimiter {
    fn acquire(
        &self,
        name: &str,
        limit: u32,
        window: Duration,
    ) -> BoxFuture<'_, Result<Option<Duration>, String>> {
        let key = self.key(name);
        async move {
            let mut conn = self.queues.conn();
            let member = format!("{}-{:08x}", job::now_us(), rand::random::<u32>());
            let wait: u64 = scripts::RATE_LIMIT
                .key(&key)
                .arg(job::now_ms())
                .arg(limit)
                .arg(window.as_millis() as u64)
                .arg(member)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| format!("rate limiter: {e}"))?;
            Ok((wait > 0).then(|| Duration::from_millis(wait)))
        }
        .boxed()
    }
}
