//! The worker's service: looks up the job kind's handler and runs it.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use apalis_core::task::Task;
use futures::{FutureExt, future::BoxFuture};
use switchboard_jobs::{
    Enqueuer, JobContext, JobError, JobMeta, Registry,
    trace::{self, Carried},
};
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
    /// Shared, so a job takes one reference count rather than a copy of every handle.
    queues: Arc<Queues>,
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
            queues: Arc::new(queues),
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
        let span = job_span(job);
        let carried = Carried {
            traceparent: job.envelope.tp.clone(),
            request_id: job.envelope.rid.clone(),
        };
        let slots = self.slots.clone();
        let queues = Arc::clone(&self.queues);
        let run_times = self.run_times.clone();
        slots.take();
        let work = async move {
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
            if matches!(
                result,
                Err(JobError::Retry(_) | JobError::RetryAfter(..) | JobError::Permanent(_))
            ) {
                tracing::Span::current().record("otel.status_code", "ERROR");
            }
            result
        };
        // Enqueues and provider requests inside carry the job's trace and request on.
        trace::scope(carried, work).instrument(span).boxed()
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

/// The job's span: every log line a handler writes carries the job's id, kind, queue and
/// attempt, and the trace and ingest request it descends from; exported, it is the job's
/// part of that trace (a child of the span that enqueued it).
pub(crate) fn job_span(job: &Job) -> tracing::Span {
    use tracing::field::display;
    let kind = job.envelope.kind.as_str();
    let (id, queue, attempt) = (&*job.id, &*job.queue, job.envelope.attempt + 1);
    let request_id = job.envelope.rid.as_deref().map(display);
    let empty = tracing::field::Empty;
    // Text fields by `Display` (`%`): written as they are, not escaped character by character
    // (a span's fields are formatted when it opens, once per job). The OpenTelemetry-only
    // fields (name, kind, status) only when spans are exported: a logs-only worker formats
    // no more per job than it needs.
    let span = if trace::exporting() {
        tracing::info_span!(
            "job",
            otel.name = kind,
            otel.kind = "consumer",
            id = %id,
            kind = %kind,
            queue = %queue,
            attempt,
            trace_id = empty,
            request_id,
            otel.status_code = empty
        )
    } else {
        tracing::info_span!(
            "job",
            id = %id,
            kind = %kind,
            queue = %queue,
            attempt,
            trace_id = empty,
            request_id
        )
    };
    trace::adopt(&span, job.envelope.tp.as_deref());
    span
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::value::RawValue;

    use super::*;
    use crate::queue::job::Envelope;

    /// Log output kept in memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn job(tp: Option<&str>, rid: Option<&str>) -> Job {
        let envelope = Envelope {
            tp: tp.map(str::to_owned),
            rid: rid.map(str::to_owned),
            ..Envelope::new("noop", 1, RawValue::from_string("{}".into()).unwrap())
        };
        Job {
            id: "j1".into(),
            queue: "default".into(),
            item: crate::queue::job::encode("j1", &envelope).into(),
            envelope,
        }
    }

    #[test]
    fn a_jobs_log_lines_carry_its_trace_id_and_ingest_request_id() {
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let carried = job(
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                Some("req-42"),
            );
            job_span(&carried).in_scope(|| tracing::info!("inside the handler"));
            job_span(&job(None, None)).in_scope(|| tracing::info!("a scheduled job"));
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let logged: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(logged.len(), 2, "{text}");
        let span = &logged[0]["span"];
        assert_eq!(
            span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
            "{text}"
        );
        assert_eq!(span["request_id"], "req-42", "{text}");
        assert_eq!(span["kind"], "noop", "{text}");
        assert!(logged[1]["span"].get("trace_id").is_none(), "{text}");
    }
}
