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
pub mod browse;
pub mod circuit;
pub mod conn;
pub mod inspect;
pub mod job;
pub mod keys;
pub mod kind_metrics;
#[cfg(test)]
mod lanes_check;
pub mod overview;
pub mod producer;
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
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::value::RawValue;

pub use conn::{Conn, Topology};
pub use job::{Envelope, Job};
pub use keys::QueueKeys;
pub use producer::{Enqueued, Producer, TENANT_MAX, check_tenant};

use crate::config::{QueueSettings, RedisMode, RedisSettings};

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
    /// A tenant that cannot be used as part of a key.
    #[error(
        "invalid tenant {0:?}: use 1 to 64 of letters, digits, '.', '_', ':' and '-' (not '_' alone)"
    )]
    InvalidTenant(String),
    /// Fewer replicas than asked for confirmed a write in time.
    #[error("only {got} of {wanted} replicas confirmed the job in time")]
    NotReplicated { wanted: u32, got: u32 },
    /// A queue's script keys do not share one cluster slot.
    #[error("{0}")]
    CrossSlot(String),
}

/// How long a partition whose push failed (its master gone, or not replicating while a
/// replica is asked for) is passed over by jobs free to go to any partition.
const SHUN_FOR: Duration = Duration::from_secs(1);

/// Most idle connections kept per partition for replicated pushes.
const MAX_IDLE_REPLICATED: usize = 64;

/// Most queue names whose keys [`Queues::keys`] remembers; more are built on each call.
const MAX_CACHED_QUEUES: usize = 1024;

/// A handle on all queues under one key prefix. Cheap to clone; share it.
#[derive(Clone)]
pub struct Queues {
    topology: Topology,
    conn: Conn,
    /// Round robin over the partitions of a queue, for jobs without a key to hash.
    turn: Arc<AtomicUsize>,
    /// Partitions (by `pending` key) whose last push failed, and until when jobs free to go
    /// anywhere pass them over ([`SHUN_FOR`]).
    shunned: Arc<Mutex<HashMap<String, Instant>>>,
    /// Idle connections for replicated pushes, by the partition's `pending` key.
    replicated: Arc<Mutex<HashMap<String, Vec<redis::aio::MultiplexedConnection>>>>,
    settings: Arc<QueueSettings>,
    keys: Arc<RwLock<HashMap<String, Arc<QueueKeys>>>>,
    /// The payload keys of `settings`, ready to use; `None` when none is configured (then
    /// nothing is sealed and no sealing cost is paid).
    ring: Option<Arc<seal::KeyRing>>,
}

impl Queues {
    /// Connect to the one Redis at `url`. Fails when Redis does not answer.
    pub async fn connect(url: &str, settings: QueueSettings) -> Result<Self, QueueError> {
        let redis = RedisSettings {
            url: url.to_owned(),
            embedded: false,
            mode: RedisMode::Standalone,
            sentinel_master: String::new(),
        };
        Self::open(&redis, settings).await
    }

    /// Connect to Redis in the topology `redis` describes. Fails when Redis does not answer.
    pub async fn open(redis: &RedisSettings, settings: QueueSettings) -> Result<Self, QueueError> {
        let (conn, topology) = conn::connect(redis).await?;
        let ring = seal::KeyRing::new(&settings.payload_keys).map(Arc::new);
        Ok(Self {
            topology,
            conn,
            turn: Arc::default(),
            shunned: Arc::default(),
            replicated: Arc::default(),
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
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// The servers behind [`conn`](Self::conn).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// A new dedicated connection to the server holding `key` (for blocking commands, which
    /// must not share a socket).
    pub async fn dedicated(&self, key: &str) -> Result<conn::Dedicated, QueueError> {
        Ok(self.topology.dedicated(key, None).await?)
    }

    /// A connection to every master (one outside a cluster), for commands that see one
    /// server's keys only, such as `SCAN`.
    pub async fn each_master(&self) -> Result<Vec<redis::aio::MultiplexedConnection>, QueueError> {
        let mut out = Vec::new();
        for node in self.topology.masters().await? {
            out.push(node.get_multiplexed_async_connection().await?);
        }
        Ok(out)
    }

    /// `names` with each partitioned queue followed by its partitions (`queue#0`, ...), for
    /// views that show the partitions on request.
    pub fn with_partitions(&self, names: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            out.push(name.clone());
            let n = self.partition_count(name);
            if n > 1 {
                out.extend(keys::partition_labels(name, n));
            }
        }
        out
    }

    /// How many partitions `queue` has (1 when it is not partitioned).
    pub fn partition_count(&self, queue: &str) -> u16 {
        self.settings
            .partitions
            .get(queue)
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// The names of `queue`'s partitions as [`keys`](Self::keys) takes them: `queue`, then
    /// `queue#1` ... `queue#<P-1>`.
    pub fn partition_names(&self, queue: &str) -> Vec<String> {
        (0..self.partition_count(queue))
            .map(|p| keys::partition_name(queue, p))
            .collect()
    }

    /// The keys of the partition a new job goes to: by hash of `key` when the job has one (a
    /// sequence or dedupe key: the same key always lands in the same partition, so its order
    /// and dedupe hold), round robin otherwise.
    pub fn keys_for_new_job(
        &self,
        queue: &str,
        key: Option<&str>,
    ) -> Result<Arc<QueueKeys>, QueueError> {
        let n = self.partition_count(queue);
        if n == 1 {
            return self.keys(queue);
        }
        if let Some(key) = key {
            return self.keys(&keys::partition_name(queue, keys::partition_of(key, n)));
        }
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        let turn = |i: usize| ((first + i) % usize::from(n)) as u16;
        // A partition that just failed a push is passed over while another is up (jobs
        // without a key have no partition of their own to keep to).
        let p = {
            let shunned = self.shunned.lock().expect("shunned lock");
            if shunned.is_empty() {
                turn(0)
            } else {
                let now = Instant::now();
                let up = |p: u16| {
                    self.keys(&keys::partition_name(queue, p))
                        .map_or(true, |k| {
                            shunned.get(&k.pending).is_none_or(|until| *until <= now)
                        })
                };
                (0..usize::from(n))
                    .map(turn)
                    .find(|p| up(*p))
                    .unwrap_or(turn(0))
            }
        };
        self.keys(&keys::partition_name(queue, p))
    }

    /// Record that a push to the partition of `pending` failed: jobs free to go to any
    /// partition pass it over for a while. A push that succeeds clears it.
    pub(crate) fn shun(&self, pending: &str, failed: bool) {
        let mut shunned = self.shunned.lock().expect("shunned lock");
        if failed {
            let now = Instant::now();
            shunned.retain(|_, until| *until > now);
            shunned.insert(pending.to_owned(), now + SHUN_FOR);
        } else if !shunned.is_empty() {
            shunned.remove(pending);
        }
    }

    /// A connection of its own to the master holding `key`, for a push and its `WAIT`
    /// (reused: see [`return_replicated_conn`](Self::return_replicated_conn)).
    pub(crate) async fn replicated_conn(
        &self,
        key: &str,
    ) -> Result<redis::aio::MultiplexedConnection, QueueError> {
        let pooled = self
            .replicated
            .lock()
            .expect("replicated lock")
            .get_mut(key)
            .and_then(Vec::pop);
        match pooled {
            Some(conn) => Ok(conn),
            // The WAIT's own bound is far below the reply timeout.
            None => Ok(self
                .topology
                .dedicated(key, Some(conn::RESPONSE_TIMEOUT))
                .await?
                .conn),
        }
    }

    /// Keep `conn` for the next replicated push to `key` (a connection that failed is
    /// dropped instead, so the next one finds the master anew).
    pub(crate) fn return_replicated_conn(
        &self,
        key: &str,
        conn: redis::aio::MultiplexedConnection,
    ) {
        let mut pool = self.replicated.lock().expect("replicated lock");
        let idle = pool.entry(key.to_owned()).or_default();
        if idle.len() < MAX_IDLE_REPLICATED {
            idle.push(conn);
        }
    }

    /// On a Redis Cluster, prove that the script keys of each partition of each of `queues`
    /// map to one slot, asking the cluster (`CLUSTER KEYSLOT`); elsewhere nothing to prove.
    pub async fn check_slots(&self, queues: &[String]) -> Result<(), QueueError> {
        if !matches!(self.topology, Topology::Cluster { .. }) {
            return Ok(());
        }
        let mut seen = std::collections::BTreeSet::new();
        for queue in queues {
            for part in self.partition_names(queue) {
                if !seen.insert(part.clone()) {
                    continue;
                }
                let keys = self.keys(&part)?.script_keys();
                let slots = self.topology.slots_of(&keys).await?.unwrap_or_default();
                if let Some((key, slot)) = keys.iter().zip(&slots).find(|(_, s)| **s != slots[0]) {
                    return Err(QueueError::CrossSlot(format!(
                        "queue {part}: key {key} is in cluster slot {slot}, not {} like {}",
                        slots[0], keys[0]
                    )));
                }
                tracing::debug!(queue = %part, slot = slots.first().copied().unwrap_or(0), "queue keys share one cluster slot");
            }
        }
        Ok(())
    }

    /// The keys of `queue`, or of one of its partitions (`queue#p`).
    pub fn keys(&self, queue: &str) -> Result<Arc<QueueKeys>, QueueError> {
        if let Some(k) = self.keys.read().expect("keys lock").get(queue) {
            return Ok(Arc::clone(k));
        }
        let (name, partition) = keys::split_partition(queue)
            .ok_or_else(|| QueueError::InvalidQueue(queue.to_owned()))?;
        validate_name(name)?;
        let k = Arc::new(QueueKeys::partition(&self.settings.prefix, name, partition));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[tokio::test]
    async fn a_partition_that_failed_a_push_is_passed_over_by_jobs_free_to_go_anywhere() {
        let mut settings = Settings::defaults().queue;
        settings.prefix = format!("t-{}", ulid::Ulid::new().to_string().to_lowercase());
        settings.partitions.insert("spread".into(), 3);
        let q = Queues::connect("redis://127.0.0.1:6379", settings)
            .await
            .expect("redis on 127.0.0.1:6379");
        let pick = |n: usize| -> Vec<String> {
            (0..n)
                .map(|_| q.keys_for_new_job("spread", None).unwrap().pending.clone())
                .collect()
        };
        let all = pick(3);
        assert_eq!(
            all.iter().collect::<std::collections::BTreeSet<_>>().len(),
            3,
            "round robin over the three: {all:?}"
        );
        q.shun(&all[1], true);
        let picked = pick(6);
        assert!(!picked.contains(&all[1]), "{picked:?}");
        assert_eq!(picked.len(), 6);
        // A keyed job keeps to its partition whatever failed.
        let key = (0..100)
            .map(|i| format!("k{i}"))
            .find(|k| q.keys_for_new_job("spread", Some(k)).unwrap().pending == all[1])
            .unwrap();
        assert_eq!(
            q.keys_for_new_job("spread", Some(&key)).unwrap().pending,
            all[1]
        );
        // Every partition failing: round robin as before, nothing is refused for it.
        q.shun(&all[0], true);
        q.shun(&all[2], true);
        assert_eq!(
            pick(3)
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3
        );
        // A push that succeeds brings it back at once.
        q.shun(&all[0], false);
        q.shun(&all[2], false);
        q.shun(&all[1], false);
        assert!(pick(3).contains(&all[1]));
    }
}
