//! What every API request passes first: its key (a short-lived cache of key records, so a
//! request costs no extra Redis read, and a revocation takes effect within
//! `api.key_cache_ms`), the key's fleet-wide rate (a counter per key and minute in Redis),
//! and the body's JSON depth.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, StatusCode, header};

use super::{
    ApiError,
    keys::{ApiKeys, Denied, KeyRecord},
};
use crate::{
    config::ApiSettings,
    queue::{Queues, job},
};

/// Most presented keys whose answer one process remembers.
const CACHE_MAX: usize = 1024;

static RATE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    // KEYS[1] this key's counter for this minute; ARGV[1] its TTL (ms). Returns the count.
    redis::Script::new(
        "local n = redis.call('INCR', KEYS[1]) \
         if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end \
         return n",
    )
});

/// Presented keys and what they were found to be, with when.
type KeyCache = HashMap<String, (Instant, Result<KeyRecord, Denied>)>;

/// The checks in front of every route. Cheap to clone.
#[derive(Clone)]
pub struct Door {
    keys: ApiKeys,
    queues: Queues,
    cache_for: Duration,
    cache: Arc<Mutex<KeyCache>>,
}

impl Door {
    pub(crate) fn new(queues: Queues, settings: &ApiSettings) -> Self {
        Self {
            keys: ApiKeys::new(queues.clone()),
            queues,
            cache_for: Duration::from_millis(settings.key_cache_ms),
            cache: Arc::default(),
        }
    }

    /// The key of this request, when it is a working one and within its rate.
    pub(crate) async fn admit(&self, headers: &HeaderMap) -> Result<KeyRecord, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "send the API key as Authorization: Bearer sbk_...",
                )
            })?;
        let record = self
            .record(presented)
            .await?
            .map_err(|denied| ApiError::new(StatusCode::UNAUTHORIZED, denied.to_string()))?;
        self.within_rate(&record).await?;
        Ok(record)
    }

    async fn record(&self, presented: &str) -> Result<Result<KeyRecord, Denied>, ApiError> {
        if let Some((at, known)) = self.cache.lock().expect("key cache").get(presented)
            && at.elapsed() < self.cache_for
        {
            return Ok(known.clone());
        }
        let found = self
            .keys
            .authenticate(presented)
            .await
            .map_err(ApiError::unavailable)?;
        let mut cache = self.cache.lock().expect("key cache");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(presented.to_owned(), (Instant::now(), found.clone()));
        Ok(found)
    }

    async fn within_rate(&self, key: &KeyRecord) -> Result<(), ApiError> {
        let now = job::now_ms();
        let minute = now / 60_000;
        let counter = format!(
            "{{{}:apikeys}}:rate:{}:{minute}",
            self.queues.settings().prefix,
            key.id
        );
        let n: u64 = RATE
            .key(counter)
            .arg(61_000)
            .invoke_async(&mut self.queues.conn())
            .await
            .map_err(ApiError::unavailable)?;
        if n > u64::from(key.rate_per_minute) {
            let wait = 60 - (now % 60_000) / 1000;
            return Err(ApiError {
                retry_after: Some(wait.max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "key {} is over its rate of {} requests per minute",
                        key.name, key.rate_per_minute
                    ),
                )
            });
        }
        Ok(())
    }
}

/// The deepest nesting of arrays and objects in `json` (strings skipped), without parsing.
pub fn depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::depth;

    #[test]
    fn depth_counts_nesting_outside_strings() {
        assert_eq!(depth(br#"{"a": 1}"#), 1);
        assert_eq!(depth(br#"{"a": [{"b": [1]}]}"#), 4);
        assert_eq!(depth(br#"{"a": "[[[[{{{{"}"#), 1);
        assert_eq!(depth(br#"{"a": "\"[[["}"#), 1);
        assert_eq!(depth(b"1"), 0);
    }
}
