//! The worker's service: looks up the job kind's handler and runs it.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::task::Task;
use futures::{FutureExt, future::BoxFuture};
use switchboard_jobs::{Enqueuer, JobContext, JobError, JobMeta, Registry};
use tower_service::Service;
use tracing::Instrument;

use crate::{
    queue::{Job, Queues, circuit::Gate},
    telemetry::metric::WorkerSlots,
};

/// Called as each job starts (benchmarks count runs per job id with it).
pub type Observer = Arc<dyn Fn(&Job) + Send + Sync>;

/// Routes each job to its kind's handler. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    registry: Arc<Registry>,
    enqueuer: Arc<dyn Enqueuer>,
    queues: Queues,
    observer: Option<Observer>,
    slots: WorkerSlots,
    /// Limit on one attempt for kinds that do not set their own.
    default_timeout: Duration,
    /// Where run times go, for a balanced supervisor.
    run_times: Option<Arc<super::balance::RunTimes>>,
}

impl Dispatcher {
    /// A dispatcher for one supervisor's workers, counting its busy `slots`.
    pub fn new(
        registry: Arc<Registry>,
        enqueuer: Arc<dyn Enqueuer>,
        queues: Queues,
        observer: Option<Observer>,
        slots: WorkerSlots,
        default_timeout: Duration,
    ) -> Self {
        Self {
            registry,
            enqueuer,
            queues,
            observer,
            slots,
            default_timeout,
            run_times: None,
        }
    }

    /// The same dispatcher recording each run's time per queue in `run_times`.
    #[must_use]
    pub fn with_run_times(mut self, run_times: Arc<super::balance::RunTimes>) -> Self {
        self.run_times = Some(run_times);
        self
    }

    /// The registry it dispatches to (the kinds' policies too).
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }
}

impl Service<Task<Job>> for Dispatcher {
    type Response = ();
    type Error = JobError;
    type Future = BoxFuture<'static, Result<(), JobError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Job>) -> Self::Future {
        let job = &task.args;
        if let Some(observe) = &self.observer {
            observe(job);
        }
        let kind = job.envelope.kind.as_str();
        let Some(handler) = self.registry.get(kind) else {
            let err =
                JobError::permanent(format!("no handler is registered for job kind {kind:?}"));
            return futures::future::ready(Err(err)).boxed();
        };
        let meta = JobMeta {
            id: job.id.to_string(),
            queue: job.queue.to_string(),
            kind: kind.to_owned(),
            attempt: job.envelope.attempt + 1,
        };
        let ctx = JobContext::new(meta, Arc::clone(&self.enqueuer));
        let policy = self.registry.policy(kind);
        let limit = policy.timeout.unwrap_or(self.default_timeout);
        let circuit = policy.circuit;
        // Sealed arguments are opened here, just before the handler, and live only in memory.
        // A job no configured key opens can never run: it fails for good, naming the key.
        let run = match self.queues.open_args(&job.envelope) {
            Ok(args) => handler(args.get(), ctx.clone()),
            Err(e) => {
                return futures::future::ready(Err(JobError::permanent(e.to_string()))).boxed();
            }
        };
        // Every log line a handler writes carries the job's id, kind, queue and attempt.
        let span = tracing::info_span!("job", id = %job.id, kind, queue = %job.queue, attempt = job.envelope.attempt + 1);
        let slots = self.slots.clone();
        let queues = self.queues.clone();
        let run_times = self.run_times.clone();
        slots.take();
        async move {
            let gate = match circuit {
                Some(name) => guard(&queues, name).await,
                None => None,
            };
            if let Some(Gate::Open(wait)) = gate {
                slots.give_back();
                return Err(JobError::Snooze(wait));
            }
            // A timed-out attempt is a transient failure, like any other.
            let started = std::time::Instant::now();
            let result = tokio::time::timeout(limit, run)
                .await
                .unwrap_or_else(|_| Err(JobError::retry("timed out")));
            if let Some(run_times) = &run_times {
                run_times.record(&ctx.meta.queue, started.elapsed());
            }
            slots.give_back();
            if let (Some(name), Some(gate)) = (circuit, gate) {
                report(&queues, name, gate, &result).await;
            }
            if result.is_ok()
                && let Some(value) = ctx.result()
            {
                // A result is a report, not the job's effect: failing to keep it is logged.
                if let Err(e) = queues
                    .store_result(&ctx.meta.queue, &ctx.meta.id, &value)
                    .await
                {
                    tracing::warn!(error = %e, "keeping the job's result failed");
                }
            }
            result
        }
        .instrument(span)
        .boxed()
    }
}

/// The circuit's word for a job of provider `name`; `None` when Redis could not be asked
/// (the job runs: a circuit spares attempts, it never stops work on its own).
async fn guard(queues: &Queues, name: &str) -> Option<Gate> {
    match queues.circuit_check(name).await {
        Ok(gate) => Some(gate),
        Err(e) => {
            tracing::warn!(circuit = name, error = %e, "circuit check failed; running the job");
            None
        }
    }
}

/// Tell the circuit how the call went. A transient failure counts against the provider; a
/// success, or a permanent failure (the provider answered), closes a circuit that had
/// failures or was probing. A snooze (a rate limit) says nothing about the provider's health.
async fn report(queues: &Queues, name: &str, gate: Gate, result: &Result<(), JobError>) {
    let outcome = match result {
        Ok(()) | Err(JobError::Permanent(_)) => {
            if gate == (Gate::Closed { failures: 0 }) {
                return;
            }
            Ok(())
        }
        Err(JobError::Snooze(_)) => return,
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = queues
        .circuit_record(name, outcome.as_ref().copied().map_err(String::as_str))
        .await
    {
        tracing::warn!(circuit = name, error = %e, "recording the circuit's outcome failed");
    }
}
