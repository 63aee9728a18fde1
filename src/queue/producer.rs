//! Typed enqueue: single, batched, delayed and unique, on [`Queues`] and on [`Producer`],
//! the enqueue-only handle given to those who must not also forget, rescue or pause (the
//! ingest endpoint, and handlers through [`Enqueuer`]).
//!
//! Every path that builds a new envelope seals its arguments here (when payload keys are
//! configured), so no job's arguments reach Redis in clear.

use std::time::UNIX_EPOCH;

use futures::{FutureExt, future::BoxFuture};
use serde_json::value::RawValue;
use switchboard_jobs::{EnqueueError, EnqueueOptions, Enqueuer, JobArgs, Priority};

use super::{
    QueueError, Queues,
    job::{self, Envelope},
    scripts,
};

/// The result of an enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's id; for a suppressed duplicate, the id of the job that holds the key.
    pub id: String,
    /// True when a unique key suppressed this push.
    pub duplicate: bool,
    /// True when the idempotency key was seen before: nothing was done, and `id` and
    /// `state` are the first request's.
    pub replayed: bool,
    /// Where the job went: `pending`, `delayed`, `waiting` (behind its sequence), or
    /// `duplicate` (a unique key suppressed it).
    pub state: String,
}

/// Items per LPUSH in a batched enqueue: large enough to amortize round trips, small
/// enough that one command never stalls Redis.
const BATCH_CHUNK: usize = 1000;

impl Queues {
    /// Enqueue typed arguments on their kind's queue (or `options.queue`).
    pub async fn enqueue<A: JobArgs>(
        &self,
        args: &A,
        mut options: EnqueueOptions,
    ) -> Result<Enqueued, QueueError> {
        let json = serde_json::to_string(args)?;
        let queue = options.queue.clone().unwrap_or_else(|| A::QUEUE.to_owned());
        options.priority.get_or_insert(A::PRIORITY);
        self.enqueue_json(A::KIND, A::VERSION, json, &queue, options)
            .await
    }

    /// Enqueue arguments already serialized to JSON. The JSON must be valid. With
    /// `queue.min_replicas_acked` set, done only once that many replicas hold the job.
    pub async fn enqueue_json(
        &self,
        kind: &str,
        version: u16,
        args_json: String,
        queue: &str,
        options: EnqueueOptions,
    ) -> Result<Enqueued, QueueError> {
        let acked = Acked::of_queue(self.settings());
        self.enqueue_json_acked(kind, version, args_json, queue, options, acked)
            .await
    }

    pub(crate) async fn enqueue_json_acked(
        &self,
        kind: &str,
        version: u16,
        args_json: String,
        queue: &str,
        options: EnqueueOptions,
        acked: Acked,
    ) -> Result<Enqueued, QueueError> {
        // A job with a sequence or dedupe key always lands in that key's partition, a
        // tenant's jobs in the tenant's (so its cap counts every running job).
        let hint = options
            .sequence
            .as_deref()
            .or(options.tenant.as_deref())
            .or(options.unique.as_ref().map(|(key, _)| key.as_str()))
            .or(options.idempotency.as_ref().map(|(key, _)| key.as_str()));
        let keys = self.keys_for_new_job(queue, hint)?;
        let free = hint.is_none();
        let pushed = if acked.replicas == 0 {
            self.push(kind, version, args_json, &keys, options, &mut self.conn())
                .await
        } else {
            // WAIT blocks the connection it is sent on and counts the writes made on it: the
            // push and its WAIT go over a connection of their own to the partition's master,
            // never over the shared one that other callers' commands queue on.
            async {
                let mut conn = self.replicated_conn(&keys.pending).await?;
                let enqueued = self
                    .push(kind, version, args_json, &keys, options, &mut conn)
                    .await?;
                self.confirm(&keys.pending, conn, acked).await?;
                Ok(enqueued)
            }
            .await
        };
        // A partition that failed (its master lost, or no replica confirming) is passed over
        // by the next jobs that may go anywhere, so they are not refused with it.
        if free && self.partition_count(queue) > 1 {
            self.shun(&keys.pending, pushed.is_err());
        }
        pushed
    }

    /// `WAIT` on `conn` (which carried the writes to the partition of `pending`) until
    /// `acked.replicas` replicas hold them, at most `acked.timeout`; the connection is kept
    /// for the next replicated push.
    async fn confirm(
        &self,
        pending: &str,
        mut conn: redis::aio::MultiplexedConnection,
        acked: Acked,
    ) -> Result<(), QueueError> {
        let got: u32 = redis::cmd("WAIT")
            .arg(acked.replicas)
            .arg(acked.timeout.as_millis() as u64)
            .query_async(&mut conn)
            .await?;
        self.return_replicated_conn(pending, conn);
        if got < acked.replicas {
            crate::telemetry::metric::redis_error("replicas");
            return Err(QueueError::NotReplicated {
                wanted: acked.replicas,
                got,
            });
        }
        Ok(())
    }

    /// A new job's id, its item as stored (arguments sealed when keys are configured) and
    /// its start time (ms) when it has one.
    fn new_item(
        &self,
        kind: &str,
        version: u16,
        args_json: String,
        options: &EnqueueOptions,
    ) -> Result<(String, String, Option<u64>), QueueError> {
        if let Some(key) = &options.sequence {
            check_sequence_key(key)?;
        }
        if let Some(tenant) = &options.tenant {
            check_tenant(tenant)?;
        }
        let args = self.seal_args(kind, RawValue::from_string(args_json)?);
        let ms = |t: std::time::SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
        };
        let run_at = options.run_at.map(ms);
        let envelope = Envelope {
            max: options.max_attempts,
            run_at,
            unique: options.unique.as_ref().map(|(k, _)| k.clone()),
            sq: options.sequence.clone(),
            tn: options.tenant.clone(),
            pr: options.priority.filter(|p| *p != Priority::Normal),
            exp: options.expires_at.map(ms),
            // The trace and request the enqueuing code runs in (an ingest request, a job).
            tp: switchboard_jobs::trace::traceparent(),
            rid: switchboard_jobs::trace::carried().request_id,
            ..Envelope::new(kind, version, args)
        };
        let id = options.id.clone().unwrap_or_else(job::new_id);
        let item = job::encode(&id, &envelope);
        Ok((id, item, run_at))
    }

    /// Enqueue checked jobs (`kind`, arguments, queue, options) in order, with one pipeline
    /// per partition for the plain ones (keyed ones go one by one through the enqueue
    /// script); each answer with its queue. With `acked`, every partition's writes are
    /// confirmed by its replicas before the answer.
    pub(crate) async fn enqueue_checked_batch(
        &self,
        jobs: Vec<(&str, String, String, EnqueueOptions)>,
        acked: Acked,
    ) -> Result<Vec<(String, Enqueued)>, QueueError> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut pipes = std::collections::BTreeMap::<String, redis::Pipeline>::new();
        let now = job::now_ms();
        for (kind, args, queue, options) in jobs {
            if needs_script(&options) {
                let done = self
                    .enqueue_json_acked(kind, 1, args, &queue, options, acked)
                    .await?;
                out.push((queue, done));
                continue;
            }
            let keys = self.keys_for_new_job(&queue, None)?;
            let (id, item, run_at) = self.new_item(kind, 1, args, &options)?;
            let pipe = pipes.entry(keys.pending.clone()).or_insert_with(|| {
                let mut pipe = redis::pipe();
                pipe.atomic();
                pipe
            });
            let state = plain_push(pipe, &keys, &id, item, run_at.filter(|&at| at > now));
            out.push((
                queue,
                Enqueued {
                    id,
                    duplicate: false,
                    replayed: false,
                    state: state.to_owned(),
                },
            ));
        }
        for (pending, pipe) in pipes {
            if acked.replicas == 0 {
                let () = pipe.query_async(&mut self.conn()).await?;
                continue;
            }
            let mut conn = self.replicated_conn(&pending).await?;
            let () = pipe.query_async(&mut conn).await?;
            self.confirm(&pending, conn, acked).await?;
        }
        Ok(out)
    }

    async fn push<C: redis::aio::ConnectionLike + Send>(
        &self,
        kind: &str,
        version: u16,
        args_json: String,
        keys: &super::QueueKeys,
        options: EnqueueOptions,
        conn: &mut C,
    ) -> Result<Enqueued, QueueError> {
        let (id, item, run_at) = self.new_item(kind, version, args_json, &options)?;

        if needs_script(&options) {
            let (unique_key, ttl) = match &options.unique {
                Some((key, ttl)) => (keys.unique(key), ttl.as_millis().max(1).to_string()),
                None => (keys.unique(""), String::new()),
            };
            let (idem_key, idem_ttl) = match &options.idempotency {
                Some((key, ttl)) => (
                    keys.unique(&format!("idem:{key}")),
                    ttl.as_millis().max(1).to_string(),
                ),
                None => (keys.unique("idem:"), String::new()),
            };
            let due = run_at
                .filter(|&at| at > job::now_ms())
                .map(|t| t.to_string())
                .unwrap_or_default();
            let (outcome, first, state): (i64, String, String) = scripts::ENQUEUE
                .key(unique_key)
                .key(&keys.pending)
                .key(&keys.delayed)
                .key(keys.sequence(options.sequence.as_deref().unwrap_or("")))
                .key(&keys.stats)
                .key(idem_key)
                .arg(&id)
                .arg(ttl)
                .arg(&item)
                .arg(&due)
                .arg(if options.sequence.is_some() { "1" } else { "" })
                .arg(idem_ttl)
                .arg(keys.base())
                .arg(job::now_ms())
                .invoke_async(conn)
                .await?;
            return Ok(Enqueued {
                id: first,
                duplicate: outcome == 0,
                replayed: outcome == 2,
                state,
            });
        }

        let mut pipe = redis::pipe();
        pipe.atomic();
        let state = plain_push(
            &mut pipe,
            keys,
            &id,
            item,
            run_at.filter(|&at| at > job::now_ms()),
        );
        let () = pipe.query_async(conn).await?;
        Ok(Enqueued {
            id,
            duplicate: false,
            replayed: false,
            state: state.to_owned(),
        })
    }

    /// Enqueue many jobs of one kind in pipelined chunks of LPUSH; returns their ids in order.
    /// Ids may be supplied by the caller (`ids`), else they are generated.
    pub async fn enqueue_many<A: JobArgs>(
        &self,
        queue: &str,
        args: &[A],
        ids: Option<&[String]>,
    ) -> Result<Vec<String>, QueueError> {
        let mut out = Vec::with_capacity(args.len());
        // One pipeline per partition: a cluster pipeline stays within one slot.
        let mut pipes = std::collections::BTreeMap::<String, redis::Pipeline>::new();
        // Every job of the batch carries the enqueuing code's trace and request.
        let (tp, rid) = (
            switchboard_jobs::trace::traceparent(),
            switchboard_jobs::trace::carried().request_id,
        );
        for (chunk_no, chunk) in args.chunks(BATCH_CHUNK).enumerate() {
            // Chunks go round robin over the queue's partitions.
            let keys = self.keys_for_new_job(queue, None)?;
            let enq_us = job::now_us();
            let mut items = Vec::with_capacity(chunk.len());
            let mut indexed = Vec::with_capacity(2 * chunk.len());
            for (i, a) in chunk.iter().enumerate() {
                let id =
                    ids.map_or_else(job::new_id, |ids| ids[chunk_no * BATCH_CHUNK + i].clone());
                let args = self.seal_args(A::KIND, serde_json::value::to_raw_value(a)?);
                let envelope = Envelope {
                    enq_us,
                    tp: tp.clone(),
                    rid: rid.clone(),
                    ..Envelope::new(A::KIND, A::VERSION, args)
                };
                let item = job::encode(&id, &envelope);
                indexed.push(id.clone());
                indexed.push(item.clone());
                items.push(item);
                out.push(id);
            }
            pipes
                .entry(keys.pending.clone())
                .or_insert_with(|| {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    pipe
                })
                .cmd("HSET")
                .arg(&keys.index)
                .arg(indexed)
                .ignore()
                .cmd("LPUSH")
                .arg(&keys.pending)
                .arg(items)
                .ignore();
        }
        let mut conn = self.conn();
        for pipe in pipes.values() {
            let () = pipe.query_async(&mut conn).await?;
        }
        Ok(out)
    }
}

/// Whether a job goes through the enqueue script: a key to check or record (dedupe,
/// sequence, idempotency), or a lane to join (a tenant, a priority other than normal).
fn needs_script(options: &EnqueueOptions) -> bool {
    options.unique.is_some()
        || options.sequence.is_some()
        || options.idempotency.is_some()
        || options.tenant.is_some()
        || options.priority.is_some_and(|p| p != Priority::Normal)
}

/// Queue a plain job (no key, no lane) on `pipe`: indexed, then into delayed when it has a
/// start time to wait for, else onto pending. Returns its state. The caller makes the
/// pipeline atomic, so a job is never queued without its index entry.
fn plain_push(
    pipe: &mut redis::Pipeline,
    keys: &super::QueueKeys,
    id: &str,
    item: String,
    wait_until: Option<u64>,
) -> &'static str {
    pipe.cmd("HSET")
        .arg(&keys.index)
        .arg(id)
        .arg(&item)
        .ignore();
    if let Some(at) = wait_until {
        pipe.cmd("ZADD")
            .arg(&keys.delayed)
            .arg(at)
            .arg(item)
            .ignore();
        "delayed"
    } else {
        pipe.cmd("LPUSH").arg(&keys.pending).arg(item).ignore();
        "pending"
    }
}

/// Longest sequence key accepted.
const SEQUENCE_KEY_MAX: usize = 200;

/// A sequence key is part of a Redis key name: 1 to [`SEQUENCE_KEY_MAX`] of
/// `A-Z a-z 0-9 . _ : -`.
fn check_sequence_key(key: &str) -> Result<(), QueueError> {
    if is_plain_key(key) {
        Ok(())
    } else {
        Err(QueueError::InvalidSequence(key.to_owned()))
    }
}

/// Most bytes in a tenant name.
pub const TENANT_MAX: usize = 64;

/// A tenant names a lane key (`lane:<priority>:<tenant>`): 1 to [`TENANT_MAX`] of
/// `A-Z a-z 0-9 . _ : -`, and not `_`, which stands for "no tenant".
pub fn check_tenant(tenant: &str) -> Result<(), QueueError> {
    if tenant.len() <= TENANT_MAX && tenant != "_" && is_plain_key(tenant) {
        Ok(())
    } else {
        Err(QueueError::InvalidTenant(tenant.to_owned()))
    }
}

/// Whether `key` may become part of a Redis key name (a sequence, dedupe or idempotency
/// key): 1 to [`SEQUENCE_KEY_MAX`] of `A-Z a-z 0-9 . _ : -`.
pub(crate) fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= SEQUENCE_KEY_MAX
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// How many replicas must hold a new job before its enqueue is done, and how long to wait.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    /// Replicas (0: the master's memory is enough).
    pub replicas: u32,
    /// Longest wait for them.
    pub timeout: std::time::Duration,
}

impl Acked {
    /// As `queue.min_replicas_acked` says.
    pub fn of_queue(settings: &crate::config::QueueSettings) -> Self {
        Self {
            replicas: settings.min_replicas_acked,
            timeout: std::time::Duration::from_millis(settings.replicas_timeout_ms),
        }
    }
}

/// The power to enqueue and nothing else. Cheap to clone.
#[derive(Clone)]
pub struct Producer(Queues, Acked);

impl Producer {
    /// Enqueue typed arguments; see [`Queues::enqueue`]. Done once the producer's replicas
    /// hold the job.
    pub async fn enqueue<A: JobArgs>(
        &self,
        args: &A,
        options: EnqueueOptions,
    ) -> Result<Enqueued, QueueError> {
        let json = serde_json::to_string(args)?;
        let queue = options.queue.clone().unwrap_or_else(|| A::QUEUE.to_owned());
        self.0
            .enqueue_json_acked(A::KIND, A::VERSION, json, &queue, options, self.1)
            .await
    }
}

impl Queues {
    /// An enqueue-only handle on these queues, acknowledging as `queue.min_replicas_acked`
    /// says.
    pub fn producer(&self) -> Producer {
        Producer(self.clone(), Acked::of_queue(self.settings()))
    }

    /// An enqueue-only handle whose enqueues are done once `acked` holds (ingest's own
    /// `ingest.min_replicas_acked`).
    pub fn producer_acked(&self, acked: Acked) -> Producer {
        Producer(self.clone(), acked)
    }
}

/// Handlers enqueue follow-up work through the queue without knowing it is Redis.
impl Enqueuer for Producer {
    fn enqueue_json(
        &self,
        kind: &str,
        version: u16,
        args_json: String,
        queue: &str,
        options: EnqueueOptions,
    ) -> BoxFuture<'_, Result<String, EnqueueError>> {
        let kind = kind.to_owned();
        let queue = queue.to_owned();
        async move {
            self.0
                .enqueue_json_acked(&kind, version, args_json, &queue, options, self.1)
                .await
                .map(|e| e.id)
                .map_err(|e| EnqueueError(e.to_string()))
        }
        .boxed()
    }
}
