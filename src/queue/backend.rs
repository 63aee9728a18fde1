//! The apalis [`Backend`] over Switchboard's Redis queue, one per worker.
//!
//! A worker owns three parts that run side by side:
//! * the **fetcher** task leases jobs in batches, never more than the worker has free
//!   credits for (`concurrency + prefetch`), and blocks in `BLMOVE` when the queue is empty;
//! * the **backend** hands leased jobs to apalis through `poll_next`;
//! * the **acker** task settles finished jobs in batches (see [`super::ack`]) and returns their
//!   credits, and heartbeats the worker's lease.
//!
//! Invariant: a credit is taken before a job is leased and returned only after its
//! settlement is committed in Redis, so the leased count never exceeds the credit total.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::{
    backend::{Backend, BackendConfig, finalize::Ephemeral},
    task::Task,
    worker::context::WorkerContext,
};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::telemetry::metric;

use super::{
    QueueError, QueueKeys, Queues,
    ack::{self, AckLayer, AckOp, RetryPolicy},
    job::{self, Job},
    scripts,
};

/// How one worker fetches.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique worker id.
    pub worker_id: String,
    /// Queue to fetch from.
    pub queue: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Extra jobs leased ahead of free slots, to hide fetch latency.
    pub prefetch: usize,
    /// Retry policy for jobs that fail here.
    pub retry: RetryPolicy,
}

/// State shared by the backend, its fetcher, its acker and the ack layer.
pub(crate) struct Shared {
    pub(crate) queues: Queues,
    pub(crate) keys: Arc<QueueKeys>,
    pub(crate) queue_name: Arc<str>,
    pub(crate) worker_id: String,
    pub(crate) leased_key: String,
    pub(crate) retry: RetryPolicy,
    /// Free lease slots; see the module invariant.
    pub(crate) credits: Arc<Semaphore>,
    /// Cancelled when the worker must stop fetching.
    stop: CancellationToken,
    pub(crate) acks: mpsc::UnboundedSender<AckOp>,
    /// Leased jobs not yet handed to apalis. Shared with the handle so a stop can hand
    /// them back to the queue at once instead of after the running jobs finish.
    unstarted: Mutex<mpsc::UnboundedReceiver<Job>>,
    /// What the fetcher has done, for tests and diagnostics.
    pub(crate) counters: FetchCounters,
    /// The fetcher task, awaited when the worker retires.
    fetcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
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
}

type Closing = Pin<Box<dyn Future<Output = Result<(), QueueError>> + Send>>;

/// One worker's backend. Create it with [`RedisBackend::start`] inside a tokio runtime.
pub struct RedisBackend {
    shared: Arc<Shared>,
    closing: Option<Closing>,
}

/// A handle the fleet keeps to stop a worker and, past the deadline, abandon its jobs.
#[derive(Clone)]
pub struct WorkerHandle(Arc<Shared>);

impl WorkerHandle {
    /// Stop fetching and hand every leased job not yet started back to the head of the
    /// queue at once. Running jobs go on; apalis is told to stop separately.
    pub async fn stop_fetching(&self) {
        self.0.stop.cancel();
        let unstarted: Vec<Job> = {
            let mut rx = self.0.unstarted.lock().expect("unstarted lock");
            rx.close();
            std::iter::from_fn(|| rx.try_recv().ok()).collect()
        };
        let n = unstarted.len();
        for job in unstarted {
            self.0.release(job);
        }
        ack::flush(&self.0).await;
        if n > 0 {
            tracing::info!(queue = %self.0.queue_name, worker = %self.0.worker_id, jobs = n, "handed unstarted jobs back");
        }
    }

    /// Give every job this worker still holds back to the queue and deregister it. Used when
    /// running jobs overstay the shutdown deadline: they will run again elsewhere.
    pub async fn abandon(&self) -> Result<u64, QueueError> {
        self.0.stop.cancel();
        self.0.release_all().await
    }

    /// The worker id.
    pub fn id(&self) -> &str {
        &self.0.worker_id
    }

    /// What the fetcher has done so far.
    pub fn counters(&self) -> &FetchCounters {
        &self.0.counters
    }
}

impl RedisBackend {
    /// Register the worker and start its fetcher and acker.
    pub fn start(
        queues: Queues,
        options: WorkerOptions,
    ) -> Result<(Self, WorkerHandle), QueueError> {
        let keys = queues.keys(&options.queue)?;
        let (acks_tx, acks_rx) = mpsc::unbounded_channel();
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            leased_key: keys.leased(&options.worker_id),
            queue_name: Arc::from(options.queue.as_str()),
            keys,
            queues,
            worker_id: options.worker_id,
            retry: options.retry,
            credits: Arc::new(Semaphore::new(options.concurrency + options.prefetch)),
            stop: CancellationToken::new(),
            acks: acks_tx,
            unstarted: Mutex::new(jobs_rx),
            counters: FetchCounters::default(),
            fetcher: Mutex::default(),
        });
        let fetcher = tokio::spawn(fetch_loop(Arc::clone(&shared), jobs_tx));
        *shared.fetcher.lock().expect("fetcher lock") = Some(fetcher);
        tokio::spawn(ack::ack_loop(Arc::clone(&shared), acks_rx));
        let handle = WorkerHandle(Arc::clone(&shared));
        Ok((
            Self {
                shared,
                closing: None,
            },
            handle,
        ))
    }
}

impl Shared {
    pub(crate) fn lease_expiry_ms(&self) -> u64 {
        job::now_ms() + self.queues.settings().lease_secs * 1000
    }

    /// Give a leased, unstarted job back to the head of the queue (through the acker, so it
    /// is ordered after earlier settlements).
    fn release(&self, job: Job) {
        let _ = self.acks.send(AckOp::Release {
            id: job.id,
            item: job.item,
        });
    }

    /// Stop fetching, wait for the fetcher, flush acks, then hand every job still leased
    /// back to the head of the queue and deregister.
    async fn retire(&self) -> Result<(), QueueError> {
        self.stop.cancel();
        let fetcher = self.fetcher.lock().expect("fetcher lock").take();
        if let Some(fetcher) = fetcher {
            let _ = fetcher.await;
        }
        ack::flush(self).await;
        let handed_back = self.release_all().await;
        let _ = self.acks.send(AckOp::Shutdown);
        let handed_back = handed_back?;
        if handed_back > 0 {
            tracing::info!(queue = %self.queue_name, worker = %self.worker_id, jobs = handed_back, "handed unstarted jobs back");
        }
        Ok(())
    }

    async fn release_all(&self) -> Result<u64, QueueError> {
        let mut conn = self.queues.conn();
        let n: i64 = scripts::RESCUE
            .key(&self.keys.workers)
            .key(&self.leased_key)
            .key(self.keys.inbox(&self.worker_id))
            .key(&self.keys.pending)
            .key(&self.keys.stats)
            .key(&self.keys.dead)
            .key(&self.keys.dead_at)
            .arg(&self.worker_id)
            .arg(u64::MAX / 2)
            .arg("")
            .invoke_async(&mut conn)
            .await?;
        Ok(n.max(0) as u64)
    }
}

async fn fetch_loop(shared: Arc<Shared>, jobs: mpsc::UnboundedSender<Job>) {
    let settings = shared.queues.settings().clone();
    let block = Duration::from_millis(settings.block_timeout_ms);
    let mut blocking: Option<(redis::aio::MultiplexedConnection, i64)> = None;
    let mut failures = 0u32;
    let mut woken = false;
    loop {
        let Some(n) = take_credits(&shared, settings.fetch_batch).await else {
            return;
        };
        // Right after a blocking call returned a job, lease it over the same (now idle)
        // connection: one task hop less on the path from push to start.
        let fetched = match blocking.as_ref().filter(|_| woken) {
            Some((conn, _)) => fetch(&shared, n, &mut conn.clone()).await,
            None => fetch(&shared, n, &mut shared.queues.conn()).await,
        };
        woken = false;
        match fetched {
            Ok(Fetched::Jobs(items)) => {
                failures = 0;
                let got = items.len();
                let counter = if got > 0 {
                    &shared.counters.leased
                } else {
                    &shared.counters.empty
                };
                counter.fetch_add(1, Ordering::Relaxed);
                shared.credits.add_permits(n - got);
                for item in items {
                    deliver(&shared, &jobs, item);
                }
                if got > 0 {
                    continue;
                }
            }
            Ok(Fetched::Paused) => {
                shared.counters.paused.fetch_add(1, Ordering::Relaxed);
                shared.credits.add_permits(n);
                if sleep_or_stop(&shared.stop, block).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                shared.credits.add_permits(n);
                failures += 1;
                metric::redis_error("fetch");
                tracing::error!(queue = %shared.queue_name, error = %e, "fetch failed");
                if sleep_or_stop(&shared.stop, backoff(failures)).await {
                    return;
                }
                continue;
            }
        }
        // The queue is empty: block until a job arrives, the timeout passes or we stop. An
        // idle worker repeats only the blocking call (one command per block timeout); its
        // lease is kept alive by the acker's heartbeat.
        loop {
            match wait_for_job(&shared, &mut blocking, block).await {
                Ok(true) => {
                    failures = 0;
                    woken = true;
                    break;
                }
                Ok(false) if shared.stop.is_cancelled() => return,
                Ok(false) => failures = 0,
                Err(e) => {
                    blocking = None;
                    failures += 1;
                    metric::redis_error("fetch");
                    tracing::error!(queue = %shared.queue_name, error = %e, "blocking fetch failed");
                    if sleep_or_stop(&shared.stop, backoff(failures)).await {
                        return;
                    }
                    break;
                }
            }
        }
        if shared.stop.is_cancelled() {
            return;
        }
    }
}

/// Wait for at least one free credit, then take as many more as are free (up to `batch`).
async fn take_credits(shared: &Shared, batch: usize) -> Option<usize> {
    let first = tokio::select! {
        biased;
        () = shared.stop.cancelled() => return None,
        permit = shared.credits.acquire() => permit.ok()?,
    };
    first.forget();
    let extra = shared.credits.available_permits().min(batch - 1);
    if extra > 0
        && let Ok(p) = shared.credits.try_acquire_many(extra as u32)
    {
        p.forget();
        return Some(1 + extra);
    }
    Some(1)
}

enum Fetched {
    Jobs(Vec<String>),
    Paused,
}

async fn fetch<C: redis::aio::ConnectionLike + Send>(
    shared: &Shared,
    n: usize,
    conn: &mut C,
) -> Result<Fetched, QueueError> {
    let k = &shared.keys;
    let value: redis::Value = scripts::FETCH
        .key(&k.pending)
        .key(k.inbox(&shared.worker_id))
        .key(&shared.leased_key)
        .key(&k.stats)
        .key(&k.paused)
        .key(&k.workers)
        .arg(n)
        .arg(&shared.worker_id)
        .arg(shared.lease_expiry_ms())
        .invoke_async(conn)
        .await?;
    if let redis::Value::Int(-1) = value {
        return Ok(Fetched::Paused);
    }
    Ok(Fetched::Jobs(redis::from_redis_value(value)?))
}

fn deliver(shared: &Shared, jobs: &mpsc::UnboundedSender<Job>, item: String) {
    match job::decode(&item) {
        Ok((id, envelope)) => {
            let job = Job {
                id: Arc::from(id),
                queue: Arc::clone(&shared.queue_name),
                envelope,
                item: Arc::from(item),
            };
            if let Err(returned) = jobs.send(job) {
                // The worker is stopping: give the job straight back.
                shared.release(returned.0);
            }
        }
        Err(e) => {
            let id = item
                .split_once(' ')
                .map_or(item.as_str(), |(id, _)| id)
                .to_owned();
            tracing::error!(queue = %shared.queue_name, job = %id, error = %e, "malformed job sent to the dead set");
            let _ = shared.acks.send(AckOp::Dead { id, item });
        }
    }
}

/// Block in BLMOVE on a dedicated connection; on stop, unblock it from the shared one.
async fn wait_for_job(
    shared: &Shared,
    blocking: &mut Option<(redis::aio::MultiplexedConnection, i64)>,
    block: Duration,
) -> Result<bool, QueueError> {
    if blocking.is_none() {
        let mut conn = shared.queues.dedicated().await?;
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn)
            .await?;
        *blocking = Some((conn, id));
    }
    if shared.stop.is_cancelled() {
        return Ok(false);
    }
    let (conn, client_id) = blocking.as_mut().expect("set above");
    let mut cmd = redis::cmd("BLMOVE");
    cmd.arg(&shared.keys.pending)
        .arg(shared.keys.inbox(&shared.worker_id))
        .arg("RIGHT")
        .arg("LEFT")
        .arg(block.as_secs_f64());
    let wait = cmd.query_async::<Option<String>>(conn);
    tokio::pin!(wait);
    tokio::select! {
        res = &mut wait => Ok(res?.is_some()),
        () = shared.stop.cancelled() => {
            // UNBLOCK may overtake a BLMOVE still in flight on the other socket: repeat it
            // until the blocked call returns. Whatever BLMOVE moved is in the inbox, which
            // `retire` hands back.
            let mut unblocker = shared.queues.conn();
            for _ in 0..100 {
                let _: Result<i64, _> = redis::cmd("CLIENT").arg("UNBLOCK").arg(*client_id).query_async(&mut unblocker).await;
                if tokio::time::timeout(Duration::from_millis(20), &mut wait).await.is_ok() {
                    break;
                }
            }
            Ok(false)
        }
    }
}

/// Sleep for `d` unless stopped first; true when stopped.
async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(6)).min(5_000))
}

impl Backend for RedisBackend {
    type Task = Task<Job>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        match self
            .shared
            .unstarted
            .lock()
            .expect("unstarted lock")
            .poll_recv(cx)
        {
            Poll::Ready(Some(job)) => Poll::Ready(Some(Ok(Task::new(job)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.closing.is_none() {
            // Jobs still in the channel were leased but never started; dropping them here is
            // safe because `retire` re-queues everything the worker still holds in Redis.
            let mut rx = self.shared.unstarted.lock().expect("unstarted lock");
            rx.close();
            while rx.try_recv().is_ok() {}
            drop(rx);
            let shared = Arc::clone(&self.shared);
            self.closing = Some(Box::pin(async move { shared.retire().await }));
        }
        self.closing.as_mut().expect("set above").as_mut().poll(cx)
    }
}

impl BackendConfig for RedisBackend {
    type Args = Job;
    type Id = String;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        AckLayer::new(Arc::clone(&self.shared))
    }
}
