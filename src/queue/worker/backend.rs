//! The apalis [`Backend`] over Switchboard's Redis queue, one per worker: it hands leased
//! jobs to apalis through `poll_next`, and on close hands every job it still holds back.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use apalis_core::{
    backend::{Backend, BackendConfig, finalize::Ephemeral},
    task::Task,
    worker::context::WorkerContext,
};

use super::{
    completer, fetcher, lease,
    settle::SettleLayer,
    state::{AckOp, FetchCounters, Shared, WorkerOptions},
};
use crate::queue::{QueueError, Queues, job::Job};

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
        self.0.flush().await;
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
        // Slots shared with the queue's other partitions go back to the pool, for whichever
        // partition's fetcher is next: only a worker with slots of its own refills them as
        // it settles.
        let own_slots = options.credits.is_none();
        let (shared, acks_rx, jobs_tx) = Shared::new(queues, options)?;
        let refill = own_slots.then(|| jobs_tx.downgrade());
        let fetcher = tokio::spawn(fetcher::fetch_loop(Arc::clone(&shared), jobs_tx));
        *shared.fetcher.lock().expect("fetcher lock") = Some(fetcher);
        tokio::spawn(completer::ack_loop(Arc::clone(&shared), acks_rx, refill));
        tokio::spawn(lease::keep(Arc::clone(&shared)));
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
        let mut rx = self.shared.unstarted.lock().expect("unstarted lock");
        loop {
            match rx.poll_recv(cx) {
                // A fenced worker's lease may have passed: the job may run elsewhere.
                Poll::Ready(Some(job)) if self.shared.is_fenced() => {
                    self.shared.hand_back_fenced(job);
                }
                Poll::Ready(Some(job)) => return Poll::Ready(Some(Ok(Task::new(job)))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
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
            self.closing = Some(Box::pin(async move { retire(&shared).await }));
        }
        self.closing.as_mut().expect("set above").as_mut().poll(cx)
    }
}

impl BackendConfig for RedisBackend {
    type Args = Job;
    type Id = String;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = SettleLayer;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        SettleLayer::new(Arc::clone(&self.shared))
    }
}

/// Stop fetching, wait for the fetcher, flush acks, then hand every job still leased
/// back to the head of the queue and deregister.
async fn retire(shared: &Shared) -> Result<(), QueueError> {
    shared.stop.cancel();
    let fetcher = shared.fetcher.lock().expect("fetcher lock").take();
    if let Some(fetcher) = fetcher {
        let _ = fetcher.await;
    }
    shared.flush().await;
    let handed_back = shared.release_all().await;
    let _ = shared.acks.send(AckOp::Shutdown);
    let handed_back = handed_back?;
    if handed_back > 0 {
        tracing::info!(queue = %shared.queue_name, worker = %shared.worker_id, jobs = handed_back, "handed unstarted jobs back");
    }
    Ok(())
}
