//! The worker fleet: supervisors run apalis workers over the Redis queues.
//!
//! Each supervisor (Horizon's term) runs `workers` worker loops per queue it names; each
//! loop is one apalis worker with the configured concurrency, timeout and panic catching,
//! fed by its own [`RedisBackend`]. Shutdown: stop fetching everywhere, let apalis finish
//! running jobs (the backend hands unstarted ones back as it closes), and when the deadline
//! passes, hand back whatever is still running so another worker takes it. A supervisor
//! with `balance = "auto"` shares its slots over its queues instead ([`balance`]) and
//! keeps the history of its split in Redis for the dashboard ([`slots`]).

pub mod balance;
mod dispatch;
pub mod inline;
pub mod slots;

use std::{sync::Arc, time::Duration};

use apalis::layers::{WorkerBuilderExt, catch_panic::CatchPanicLayer};
use apalis_core::{error::WorkerError, worker::builder::WorkerBuilder};
use switchboard_jobs::{Enqueuer, Registry};
use tokio_util::sync::CancellationToken;

pub use dispatch::{Dispatcher, Observer};

use self::{
    balance::{Balancer, Lane},
    slots::SlotLog,
};
use crate::{
    config::{Balance, FleetSettings, SupervisorSettings},
    queue::{
        Queues,
        retry::RetryPolicy,
        worker::{RedisBackend, WorkerHandle, WorkerOptions},
    },
    telemetry::metric::{self, WorkerSlots},
};

/// A running fleet.
pub struct Fleet {
    workers: Vec<(WorkerHandle, tokio::task::JoinHandle<()>)>,
    /// Each supervisor's slot gauges and the slots this fleet added to them (removed at stop).
    slots: Vec<(WorkerSlots, f64)>,
    stop: CancellationToken,
    shutdown_timeout: Duration,
    /// The lanes of balanced supervisors, with their supervisor's name.
    lanes: Vec<(String, Arc<Lane>)>,
    /// The balancers' tasks; each writes its last (empty) sample as it ends.
    balancers: Vec<tokio::task::JoinHandle<()>>,
}

/// Longest a stopping fleet waits for a balancer's last sample.
const BALANCER_STOP: Duration = Duration::from_secs(2);

/// How the shutdown went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stopped {
    /// Workers that finished their running jobs in time.
    pub clean: usize,
    /// Workers whose running jobs overstayed the deadline and were handed back.
    pub abandoned: usize,
    /// Jobs handed back at the deadline.
    pub jobs_handed_back: u64,
}

impl Fleet {
    /// Start every supervisor's workers. Needs a tokio runtime.
    pub async fn start(
        queues: &Queues,
        registry: Arc<Registry>,
        settings: &FleetSettings,
        observer: Option<Observer>,
    ) -> Result<Self, crate::queue::QueueError> {
        let enqueuer: Arc<dyn Enqueuer> = Arc::new(queues.producer());
        // A job must end (or time out) before its lease could pass to another worker.
        let lease = Duration::from_secs(queues.settings().lease_secs);
        for kind in registry.kinds() {
            if let Some(timeout) = registry.policy(kind).timeout
                && timeout >= lease
            {
                return Err(crate::queue::QueueError::InvalidPolicy(format!(
                    "job kind {kind}: its timeout ({timeout:?}) must be shorter than queue.lease_secs ({lease:?})"
                )));
            }
        }
        let stop = CancellationToken::new();
        let mut workers = Vec::new();
        let mut slots = Vec::new();
        let mut lanes = Vec::new();
        let mut balancers = Vec::new();
        let log = SlotLog::new(queues);
        for sup in &settings.supervisors {
            let balancer = (sup.balance == Balance::Auto && sup.queues.len() > 1)
                .then(|| Balancer::new(queues, sup));
            let sup_slots = WorkerSlots::new(&sup.name);
            let n = match &balancer {
                Some(_) => sup.concurrency * sup.workers,
                None => sup.concurrency * sup.workers * sup.queues.len(),
            } as f64;
            sup_slots.add(n);
            slots.push((sup_slots.clone(), n));
            let dispatcher = Dispatcher::new(
                Arc::clone(&registry),
                Arc::clone(&enqueuer),
                queues.clone(),
                observer.clone(),
                sup_slots,
                Duration::from_secs(sup.timeout_secs),
            );
            let dispatcher = match &balancer {
                Some(b) => dispatcher.with_run_times(b.run_times()),
                None => dispatcher,
            };
            for queue in &sup.queues {
                queues.register_queue(queue).await?;
                let lane = balancer.as_ref().and_then(|b| b.lane(queue));
                if balancer.is_none() {
                    // A fixed split, exported like a balanced one so the family always exists.
                    metric::supervisor_slots(&sup.name, queue, sup.concurrency * sup.workers);
                }
                for n in 0..sup.workers {
                    workers.extend(start_worker(
                        queues,
                        sup,
                        queue,
                        n,
                        &dispatcher,
                        &stop,
                        lane.as_ref(),
                    )?);
                }
            }
            if let Some(b) = balancer {
                lanes.extend(b.lanes().into_iter().map(|l| (sup.name.clone(), l)));
                balancers.push(tokio::spawn(b.run(stop.clone(), log.clone())));
            }
        }
        tracing::debug!(workers = workers.len(), "fleet started");
        Ok(Self {
            workers,
            slots,
            stop,
            shutdown_timeout: Duration::from_secs(settings.shutdown_timeout_secs),
            lanes,
            balancers,
        })
    }

    /// The slots each queue of a balanced supervisor holds now: (supervisor, queue, slots).
    pub fn balanced_slots(&self) -> Vec<(String, String, usize)> {
        self.lanes
            .iter()
            .map(|(sup, lane)| (sup.clone(), lane.queue.clone(), lane.slots()))
            .collect()
    }

    /// Handles of the running workers.
    pub fn workers(&self) -> Vec<WorkerHandle> {
        self.workers.iter().map(|(h, _)| h.clone()).collect()
    }

    /// Run until `shutdown` resolves, then stop gracefully.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Stopped {
        shutdown.await;
        self.stop().await
    }

    /// Stop gracefully: see the module documentation.
    pub async fn stop(self) -> Stopped {
        tracing::info!(
            timeout_secs = self.shutdown_timeout.as_secs(),
            "fleet stopping"
        );
        futures::future::join_all(self.workers.iter().map(|(h, _)| h.stop_fetching())).await;
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        let mut stopped = Stopped::default();
        for (handle, mut join) in self.workers {
            if tokio::time::timeout_at(deadline, &mut join).await.is_ok() {
                stopped.clean += 1;
            } else {
                join.abort();
                stopped.abandoned += 1;
                match handle.abandon().await {
                    Ok(n) => stopped.jobs_handed_back += n,
                    Err(e) => {
                        tracing::error!(worker = handle.id(), error = %e, "could not hand jobs back; the rescuer will after the lease");
                    }
                }
            }
        }
        for (slots, n) in &self.slots {
            slots.add(-n);
        }
        // The balancers write one sample as they end (a fleet that stopped holds no slots);
        // if that write cannot finish in time, the dashboard drops this fleet once its last
        // sample is stale.
        for mut balancer in self.balancers {
            if tokio::time::timeout(BALANCER_STOP, &mut balancer)
                .await
                .is_err()
            {
                balancer.abort();
            }
        }
        tracing::info!(?stopped, "fleet stopped");
        stopped
    }
}

/// Start worker `n` of `sup` on `queue`: one apalis worker per partition of the queue,
/// sharing one pool of lease slots. A partitioned queue leases no more than `concurrency`
/// jobs at once over all its partitions (no prefetch: its partitions fetch side by side); a
/// balanced one no more than its lane's slots.
#[allow(clippy::too_many_arguments)]
fn start_worker(
    queues: &Queues,
    sup: &SupervisorSettings,
    queue: &str,
    n: usize,
    dispatcher: &Dispatcher,
    stop: &CancellationToken,
    lane: Option<&Arc<Lane>>,
) -> Result<Vec<(WorkerHandle, tokio::task::JoinHandle<()>)>, crate::queue::QueueError> {
    let worker_id = crate::instance::worker_id(&sup.name, queue, n);
    let partitions = queues.partition_names(queue);
    // A balanced queue leases under its lane's slots, which the balancer moves; the worker's
    // own limit is then the most the lane may hold.
    let (prefetch, credits, concurrency) = match lane {
        Some(lane) => (
            0,
            Some(Arc::clone(&lane.credits)),
            sup.max_slots.unwrap_or(sup.concurrency) * sup.workers,
        ),
        None if partitions.len() > 1 => (
            0,
            Some(Arc::new(tokio::sync::Semaphore::new(sup.concurrency))),
            sup.concurrency,
        ),
        None => (sup.prefetch(), None, sup.concurrency),
    };
    let mut started = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let options = WorkerOptions {
            worker_id: worker_id.clone(),
            queue: partition.clone(),
            concurrency,
            prefetch,
            retry: RetryPolicy {
                max_attempts: sup.max_attempts,
                base: Duration::from_millis(sup.backoff.base_ms),
                cap: Duration::from_millis(sup.backoff.cap_ms),
            },
            policies: dispatcher.registry(),
            credits: credits.clone(),
        };
        let (backend, handle) = RedisBackend::start(queues.clone(), options)?;
        let name = if partition == queue {
            worker_id.clone()
        } else {
            format!("{worker_id}{}", &partition[queue.len()..])
        };
        let worker = WorkerBuilder::new(name.as_str())
            .backend(backend)
            .layer(CatchPanicLayer::with_panic_handler(on_panic))
            // The dispatcher applies each kind's timeout inside the limit, so waiting for a
            // free slot never eats a job's time.
            .concurrency(concurrency)
            .build(dispatcher.clone());
        let stop = stop.clone();
        let join = tokio::spawn(async move {
            let signal = async move {
                stop.cancelled().await;
                Ok::<(), WorkerError>(())
            };
            if let Err(e) = worker.run_until(signal).await {
                tracing::error!(worker = %name, error = %e, "worker ended with an error");
            }
        });
        started.push((handle, join));
    }
    Ok(started)
}

/// A panicking handler fails its attempt like an error does (it may be transient).
#[allow(clippy::borrowed_box)]
fn on_panic(payload: &Box<dyn std::any::Any + Send>) -> switchboard_jobs::JobError {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_owned());
    switchboard_jobs::JobError::retry(format!("handler panicked: {message}"))
}
