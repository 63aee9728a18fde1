//! Switchboard's Redis queue: the backend apalis workers fetch from.
//!
//! How it uses Redis, per queue (all keys share the hash tag `{prefix:queue}`, see [`keys`]):
//!
//! * A job is one string item `<id> <envelope JSON>`. Producers `LPUSH` items onto
//!   `pending`; workers take them from the right end, so the queue is FIFO.
//! * Fetching leases: the `fetch` script pops up to N items and records them in the worker's
//!   own `leased` hash in the same step, and refreshes the worker's expiry in `workers`.
//!   Nothing is ever popped without being leased, so a crash cannot lose a job.
//! * An idle worker blocks in `BLMOVE pending -> inbox` (its own landing list) instead of
//!   polling; a push wakes exactly one blocked worker at once. The landing list is leased like
//!   everything else by the next `fetch`, and a dead worker's inbox is rescued with its lease.
//! * Settling (`ack`) happens in batches: completed ids go to `completed` (trimmed by count
//!   here and by age by the pruner), retries to `delayed` with their due time, final failures
//!   to `dead` with the last error. Counters in `stats` are updated in the same script, so
//!   every number `status` shows is O(1) to read and consistent with the data.
//! * Workers heartbeat by refreshing their score in `workers`. The rescuer re-queues the
//!   leased jobs of any worker whose score has expired (SIGKILL, lost host).
//! * `delayed` holds scheduled jobs and retries by due time; the promoter moves due ones to
//!   `pending` in bounded chunks and sleeps until the next due time.
//!
//! Every script is O(batch), never O(backlog), and never unpacks more than ~2,000 values.

pub mod admin;
pub mod circuit;
pub mod inspect;
pub mod job;
pub mod keys;
pub mod overview;
mod producer;
pub mod rate_limit;
pub mod retry;
pub mod schedule;
pub(crate) mod scripts;
pub mod swap;
pub mod upkeep;
pub mod worker;

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use redis::aio::ConnectionManager;

pub use job::{Envelope, Job};
pub use keys::QueueKeys;
pub use producer::{Enqueued, Producer};

use crate::config::QueueSettings;

/// Failures of queue operations.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis could not be reached or answered with an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered with an unexpected shape.
    #[error("unexpected redis reply: {0}")]
    Reply(#[from] redis::ParsingError),
    /// An item in Redis does not decode.
    #[error(transparent)]
    Malformed(#[from] job::MalformedItem),
    /// Arguments did not serialize.
    #[error("job arguments do not serialize: {0}")]
    Encode(#[from] serde_json::Error),
    /// A job kind's policy that cannot work with the queue settings.
    #[error("{0}")]
    InvalidPolicy(String),
    /// A queue name that cannot be used as part of a key.
    #[error("invalid queue name {0:?}: use letters, digits, '-', '_' and '.'")]
    InvalidQueue(String),
    /// A sequence key that cannot be used as part of a key.
    #[error("invalid sequence key {0:?}: use 1 to 200 of letters, digits, '.', '_', ':' and '-'")]
    InvalidSequence(String),
}

/// A handle on all queues under one key prefix. Cheap to clone; share it.
#[derive(Clone)]
pub struct Queues {
    client: redis::Client,
    conn: ConnectionManager,
    settings: Arc<QueueSettings>,
    keys: Arc<RwLock<HashMap<String, Arc<QueueKeys>>>>,
}

impl Queues {
    /// Connect to the Redis at `url`. Fails when Redis does not answer.
    pub async fn connect(url: &str, settings: QueueSettings) -> Result<Self, QueueError> {
        // Small request/response pairs on loopback: Nagle's algorithm would hold writes back
        // waiting for ACKs, adding latency to every round trip.
        let info = redis::IntoConnectionInfo::into_connection_info(url)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Self {
            client,
            conn,
            settings: Arc::new(settings),
            keys: Arc::default(),
        })
    }

    /// The queue settings in force.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// The shared, auto-reconnecting connection.
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A new dedicated connection (for blocking commands, which must not share a socket).
    pub async fn dedicated(&self) -> Result<redis::aio::MultiplexedConnection, QueueError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(None);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    /// The keys of `queue`.
    pub fn keys(&self, queue: &str) -> Result<Arc<QueueKeys>, QueueError> {
        if let Some(k) = self.keys.read().expect("keys lock").get(queue) {
            return Ok(Arc::clone(k));
        }
        validate_name(queue)?;
        let k = Arc::new(QueueKeys::new(&self.settings.prefix, queue));
        self.keys
            .write()
            .expect("keys lock")
            .insert(queue.to_owned(), Arc::clone(&k));
        Ok(k)
    }

    /// Answer whether Redis responds within `limit`.
    pub async fn ping(&self, limit: Duration) -> bool {
        let mut conn = self.conn.clone();
        matches!(
            tokio::time::timeout(limit, redis::cmd("PING").query_async::<String>(&mut conn)).await,
            Ok(Ok(_))
        )
    }
}

/// Queue names become part of keys and of metric labels: keep them plain.
pub fn validate_name(queue: &str) -> Result<(), QueueError> {
    crate::config::validate_name(queue).map_err(|e| QueueError::InvalidQueue(e.0))
}
