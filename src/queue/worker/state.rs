//! What one worker's parts share: the fetcher, the completer, the settle layer and the
//! backend all hold one [`Shared`], and talk to the completer through [`AckOp`] messages.
//!
//! Invariant: a credit is taken before a job is leased and returned only after its
//! settlement is committed in Redis, so the leased count never exceeds the credit total.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use switchboard_jobs::Registry;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    queue::{
        QueueError, QueueKeys, Queues,
        job::{self, Job},
        retry::RetryPolicy,
        scripts,
    },
    telemetry::metric::{self, JobOutcome},
};

/// How one worker fetches.
#[derive(Clone)]
pub struct WorkerOptions {
    /// Unique worker id.
    pub worker_id: String,
    /// Queue to fetch from: a queue's name, or one partition's (`queue#p`).
    pub queue: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Extra jobs leased ahead of free slots, to hide fetch latency.
    pub prefetch: usize,
    /// Retry policy for jobs that fail here (the supervisor's defaults).
    pub retry: RetryPolicy,
    /// The job kinds' own policies, which win over `retry`.
    pub policies: Arc<Registry>,
    /// Lease slots shared with the workers of the queue's other partitions (one worker per
    /// partition, one pool of slots); `None`: `concurrency + prefetch` of its own.
    pub credits: Option<Arc<Semaphore>>,
}

/// State shared by the backend, its fetcher, its acker and the ack layer.
pub(crate) struct Shared {
    pub(crate) queues: Queues,
    pub(crate) keys: Arc<QueueKeys>,
    pub(crate) queue_name: Arc<str>,
    pub(crate) worker_id: String,
    pub(crate) leased_key: String,
    pub(crate) retry: RetryPolicy,
    /// Each kind's own attempts, backoff and retry budget (over `retry`).
    pub(crate) policies: Arc<Registry>,
    /// Free lease slots; see the module invariant.
    pub(crate) credits: Arc<Semaphore>,
    /// Cancelled when the worker must stop fetching.
    pub(crate) stop: CancellationToken,
    pub(crate) acks: mpsc::UnboundedSender<AckOp>,
    /// Leased jobs not yet handed to apalis. Shared with the handle so a stop can hand
    /// them back to the queue at once instead of after the running jobs finish.
    pub(crate) unstarted: Mutex<mpsc::UnboundedReceiver<Job>>,
    /// What the fetcher has done, for tests and diagnostics.
    pub(crate) counters: FetchCounters,
    /// The fetcher task, awaited when the worker retires.
    pub(crate) fetcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Ids of the jobs this worker leased and has not settled yet, with the lease epoch they
    /// were leased in (written by the fetcher, cleared by the completer once the settlement
    /// is committed): to find leases Redis holds for it that it does not know of (see
    /// `lease`), and to settle a batch of one epoch in one step (`ack.lua`).
    held: Mutex<HashMap<Arc<str>, Arc<str>>>,
    /// When (ms) the newest successful lease renewal (heartbeat or fetch) was sent.
    renewed_at_ms: AtomicU64,
    /// Set while renewal has failed too long: no leased job is started (see `lease`).
    fenced: AtomicBool,
}

/// Counts of fetch rounds by result.
#[derive(Debug, Default)]
pub struct FetchCounters {
    /// Fetches that leased at least one job.
    pub leased: AtomicU64,
    /// Fetches that found the queue empty.
    pub empty: AtomicU64,
    /// Fetches refused because the queue is paused.
    pub paused: AtomicU64,
    /// Leased jobs not started because the worker was fenced (its lease could not be
    /// renewed), and handed back.
    pub fenced: AtomicU64,
}

/// One settlement for the acker.
#[derive(Debug)]
pub enum AckOp {
    /// Completed successfully; `seq` is its sequence's key (`QueueKeys::sequence`), if any;
    /// kind and tenant are kept for browsing recently completed jobs.
    Done {
        id: Arc<str>,
        seq: Option<String>,
        kind: String,
        tenant: Option<String>,
        /// How long it ran, in µs (per-kind metrics, `queue::kind_metrics`).
        ran_us: u64,
    },
    /// Failed; run again at `due_ms` with the rewritten item.
    Retry {
        id: Arc<str>,
        due_ms: u64,
        item: String,
    },
    /// Asked to run again later; no attempt used.
    Snooze {
        id: Arc<str>,
        due_ms: u64,
        item: String,
    },
    /// Leased, and past its expiry before it started: recorded as expired, never run.
    Expired {
        id: Arc<str>,
        item: Arc<str>,
        seq: Option<String>,
    },
    /// Leased but never started: back to the head of its line.
    Release { id: Arc<str>, item: Arc<str> },
    /// A lease Redis holds for this worker that the worker does not know of (its settlement
    /// was lost in a failover): back to the head of pending. It holds no credit.
    Orphan { id: Arc<str>, item: Arc<str> },
    /// Failed for good; the item carries its last error. `seq` as for `Done`.
    Dead {
        id: String,
        item: String,
        seq: Option<String>,
    },
    /// Reply once everything sent before has been written.
    Flush(oneshot::Sender<()>),
    /// The worker has retired: stop.
    Shutdown,
}

impl AckOp {
    /// The job a settlement is for (none for control messages).
    pub(crate) fn id(&self) -> Option<&str> {
        match self {
            AckOp::Done { id, .. }
            | AckOp::Retry { id, .. }
            | AckOp::Snooze { id, .. }
            | AckOp::Expired { id, .. }
            | AckOp::Release { id, .. }
            | AckOp::Orphan { id, .. } => Some(id),
            AckOp::Dead { id, .. } => Some(id),
            AckOp::Flush(_) | AckOp::Shutdown => None,
        }
    }
}

impl Shared {
    /// The state of a new worker as `options` describe it, with the receiving ends of its
    /// completer's and its jobs' channels.
    #[allow(clippy::type_complexity)]
    pub(crate) fn new(
        queues: Queues,
        options: WorkerOptions,
    ) -> Result<
        (
            Arc<Self>,
            mpsc::UnboundedReceiver<AckOp>,
            mpsc::UnboundedSender<Job>,
        ),
        QueueError,
    > {
        let keys = queues.keys(&options.queue)?;
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let credits = options
            .credits
            .unwrap_or_else(|| Arc::new(Semaphore::new(options.concurrency + options.prefetch)));
        let shared = Arc::new(Self {
            leased_key: keys.leased(&options.worker_id),
            queue_name: Arc::from(keys.name.as_str()),
            keys,
            queues,
            worker_id: options.worker_id,
            retry: options.retry,
            policies: options.policies,
            credits,
            stop: CancellationToken::new(),
            acks: acks_tx,
            unstarted: Mutex::new(jobs_rx),
            counters: FetchCounters::default(),
            fetcher: Mutex::default(),
            held: Mutex::default(),
            renewed_at_ms: AtomicU64::new(job::now_ms()),
            fenced: AtomicBool::new(false),
        });
        Ok((shared, acks_rx, jobs_tx))
    }

    /// Remember the jobs of `items` (`<id> <envelope>`) as held, leased in `epoch`.
    pub(crate) fn hold(&self, items: &[String], epoch: &Arc<str>) {
        let mut held = self.held.lock().expect("held lock");
        for item in items {
            let id = item.split_once(' ').map_or(item.as_str(), |(id, _)| id);
            held.insert(Arc::from(id), Arc::clone(epoch));
        }
    }

    /// The lease epoch each of `ids` was leased in (`None` for an id not given or not held).
    pub(crate) fn epochs<'a>(
        &self,
        ids: impl Iterator<Item = Option<&'a str>>,
    ) -> Vec<Option<Arc<str>>> {
        let held = self.held.lock().expect("held lock");
        ids.map(|id| id.and_then(|id| held.get(id).cloned()))
            .collect()
    }

    /// Forget `ids`: their settlements are committed.
    pub(crate) fn let_go<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        let mut held = self.held.lock().expect("held lock");
        for id in ids {
            held.remove(id);
        }
    }

    /// Whether job `id` is held (leased, not yet settled) by this worker.
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.held.lock().expect("held lock").contains_key(id)
    }

    /// When the newest successful renewal was sent (ms since the epoch).
    pub(crate) fn renewed_at_ms(&self) -> u64 {
        self.renewed_at_ms.load(Ordering::Acquire)
    }

    /// A renewal sent at `sent_ms` succeeded: the lease holds until `sent_ms` + the lease.
    pub(crate) fn renewed(&self, sent_ms: u64) {
        self.renewed_at_ms.fetch_max(sent_ms, Ordering::AcqRel);
        if self.fenced.swap(false, Ordering::AcqRel) {
            tracing::info!(queue = %self.queue_name, worker = %self.worker_id, "lease renewed again; starting jobs again");
        }
    }

    /// Whether the worker is fenced: it must not start the jobs it holds.
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Renewal has failed for `since_ms`: stop starting jobs, and hand back every leased job
    /// not started yet (once per episode).
    pub(crate) fn fence(&self, since_ms: u64) {
        if self.fenced.swap(true, Ordering::AcqRel) {
            return;
        }
        let unstarted: Vec<Job> = {
            let mut rx = self.unstarted.lock().expect("unstarted lock");
            std::iter::from_fn(|| rx.try_recv().ok()).collect()
        };
        tracing::warn!(
            queue = %self.queue_name,
            worker = %self.worker_id,
            since_ms,
            unstarted = unstarted.len(),
            "lease not renewed for too long: fenced, starting no job and handing unstarted ones back"
        );
        for job in unstarted {
            self.hand_back_fenced(job);
        }
    }

    /// A leased job the fenced worker will not start: handed back (written when Redis
    /// answers; skipped if the job was rescued meanwhile).
    pub(crate) fn hand_back_fenced(&self, job: Job) {
        self.counters.fenced.fetch_add(1, Ordering::Relaxed);
        self.release(job);
    }

    pub(crate) fn lease_expiry_ms(&self) -> u64 {
        job::now_ms() + self.queues.settings().lease_secs * 1000
    }

    /// Give a leased, unstarted job back to the head of the queue (through the acker, so it
    /// is ordered after earlier settlements).
    pub(crate) fn release(&self, job: Job) {
        let _ = self.acks.send(AckOp::Release {
            id: job.id,
            item: job.item,
        });
    }

    /// True when `job` expired before it could start; it is then settled as expired (never
    /// run, not dead) and must not be handed to the service.
    pub(crate) fn expire_if_due(&self, job: &Job) -> bool {
        let Some(exp) = job.envelope.exp else {
            return false;
        };
        if exp > job::now_ms() {
            return false;
        }
        metric::job_finished(
            &self.queue_name,
            &job.envelope.kind,
            JobOutcome::Expired,
            Duration::ZERO,
        );
        tracing::info!(queue = %self.queue_name, job = %job.id, kind = %job.envelope.kind, "job expired before it started; not run");
        let _ = self.acks.send(AckOp::Expired {
            id: Arc::clone(&job.id),
            item: Arc::clone(&job.item),
            seq: job
                .envelope
                .sq
                .as_deref()
                .map(|key| self.keys.sequence(key)),
        });
        true
    }

    /// Hand every job this worker holds (leased or in its inbox) back to the head of the
    /// queue and deregister the worker; how many went back.
    pub(crate) async fn release_all(&self) -> Result<u64, QueueError> {
        let mut conn = self.queues.conn();
        let n: i64 = scripts::RESCUE
            .key(&self.keys.workers)
            .key(&self.leased_key)
            .key(self.keys.inbox(&self.worker_id))
            .key(&self.keys.pending)
            .key(&self.keys.stats)
            .key(&self.keys.dead)
            .key(&self.keys.dead_at)
            .key(&self.keys.delayed)
            .arg(&self.worker_id)
            .arg(u64::MAX / 2)
            .arg("")
            .arg(self.keys.sequence_prefix())
            .arg(self.keys.base())
            .invoke_async(&mut conn)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Ask the acker to write everything sent so far, and wait for it.
    pub(crate) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.acks.send(AckOp::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
