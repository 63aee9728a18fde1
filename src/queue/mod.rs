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
//!
//! With payload keys configured, a job's arguments, last error and result are sealed before
//! they reach Redis ([`seal`]); the scripts never read them, so they work on sealed and plain
//! items alike. [`Queues::open_args`] gives the plaintext to whoever needs it.

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
pub mod seal;
pub mod swap;
pub mod upkeep;
pub mod worker;

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use redis::aio::ConnectionManager;
use serde_json::value::RawValue;

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
    /// Sealed job data that does not open.
    #[error(transparent)]
    Sealed(#[from] seal::SealError),
    /// A sequence key that cannot be used as part of a key.
    #[error("invalid sequence key {0:?}: use 1 to 200 of letters, digits, '.', '_', ':' and '-'")]
    InvalidSequence(String),
}

/// Most queue names whose keys [`Queues::keys`] remembers; more are built on each call.
const MAX_CACHED_QUEUES: usize = 1024;

/// A handle on all queues under one key prefix. Cheap to clone; share it.
#[derive(Clone)]
pub struct Queues {
    client: redis::Client,
    conn: ConnectionManager,
    settings: Arc<QueueSettings>,
    keys: Arc<RwLock<HashMap<String, Arc<QueueKeys>>>>,
    /// The payload keys of `settings`, ready to use; `None` when none is configured (then
    /// nothing is sealed and no sealing cost is paid).
    ring: Option<Arc<seal::KeyRing>>,
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
        let ring = seal::KeyRing::new(&settings.payload_keys).map(Arc::new);
        Ok(Self {
            client,
            conn,
            settings: Arc::new(settings),
            keys: Arc::default(),
            ring,
        })
    }

    /// The payload keys, when configured.
    pub fn key_ring(&self) -> Option<&seal::KeyRing> {
        self.ring.as_deref()
    }

    /// The plaintext arguments of `envelope`, opened when sealed (plain ones are borrowed).
    /// Fails when no configured key opens them; the error names the key id.
    pub fn open_args<'a>(
        &self,
        envelope: &'a Envelope,
    ) -> Result<Cow<'a, RawValue>, seal::SealError> {
        seal::open_args(self.key_ring(), &envelope.kind, &envelope.args)
    }

    /// The last error of `envelope` in clear, for operators; an error that does not open
    /// is shown as why not.
    pub fn open_error(&self, envelope: &Envelope) -> Option<String> {
        let text = envelope.err.as_deref()?;
        let part = seal::Part::Error {
            kind: &envelope.kind,
        };
        Some(seal::open_text(self.key_ring(), part, text).unwrap_or_else(|e| format!("<{e}>")))
    }

    /// `args` of a new job of `kind` as stored: sealed when keys are configured.
    pub(crate) fn seal_args(&self, kind: &str, args: Box<RawValue>) -> Box<RawValue> {
        match self.key_ring() {
            Some(ring) => seal::seal_args(ring, kind, &args),
            None => args,
        }
    }

    /// The result job `id` recorded, as stored: sealed when keys are configured (results can
    /// quote what the job handled, a booking's attendee say).
    pub(crate) fn seal_result(&self, id: &str, text: String) -> String {
        match self.key_ring() {
            Some(ring) => ring.seal(seal::Part::Result { id }, text.as_bytes()),
            None => text,
        }
    }

    /// An error of a job of `kind` as stored: sealed when keys are configured (errors often
    /// quote a phone number or an address).
    pub(crate) fn seal_error(&self, kind: &str, text: String) -> String {
        match self.key_ring() {
            Some(ring) => ring.seal(seal::Part::Error { kind }, text.as_bytes()),
            None => text,
        }
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
        let mut cache = self.keys.write().expect("keys lock");
        // Names can come from URLs (the dashboard's API): the memory of them has a bound.
        if cache.len() < MAX_CACHED_QUEUES {
            cache.insert(queue.to_owned(), Arc::clone(&k));
        }
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
