//! The rate-limit capability: handlers that call a provider take a slot first. The runtime
//! implements it fleet-wide (in Redis); the domain only names the limit.

use std::time::Duration;

use futures::future::BoxFuture;

/// A limit of `limit` requests per `window` for each `name`, shared by every worker.
pub trait RateLimiter: Send + Sync {
    /// Take one slot. `Ok(None)`: granted. `Ok(Some(wait))`: the limit is reached; a slot
    /// frees after `wait`. `Err`: the limiter could not be asked.
    fn acquire(
        &self,
        name: &str,
        limit: u32,
        window: Duration,
    ) -> BoxFuture<'_, Result<Option<Duration>, String>>;
}
