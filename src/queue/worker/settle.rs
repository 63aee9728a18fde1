//! The settle layer: the worker's middleware that turns each run's result into an
//! [`AckOp`] for the completer: done, retry (with the kind's backoff), snooze, or dead.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use apalis_core::{error::BoxDynError, task::Task};
use futures::{FutureExt, future::BoxFuture};
use switchboard_jobs::JobError;
use tower_layer::Layer;
use tower_service::Service;

use super::state::{AckOp, Shared};
use crate::{
    queue::{
        job::{self, Job},
        retry,
    },
    telemetry::metric::{self, JobOutcome},
};

/// The backend's middleware: reports each job's outcome to the acker.
#[derive(Clone)]
pub struct SettleLayer {
    shared: Arc<Shared>,
}

impl SettleLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for SettleLayer {
    type Service = SettleService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SettleService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// See [`SettleLayer`].
#[derive(Clone)]
pub struct SettleService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, R> Service<Task<Job>> for SettleService<S>
where
    S: Service<Task<Job>, Response = R>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    R: Default + Send + 'static,
{
    type Response = R;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<R, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Job>) -> Self::Future {
        // The last check before a job starts: a fenced worker's lease may have passed, and
        // the job may run elsewhere already.
        if self.shared.is_fenced() {
            self.shared.hand_back_fenced(task.args);
            return futures::future::ready(Ok(R::default())).boxed();
        }
        let job = &task.args;
        let started = Instant::now();
        let waited_us = job::now_us().saturating_sub(job.envelope.ready_at_us());
        let id = Arc::clone(&job.id);
        let envelope = job.envelope.clone();
        let shared = Arc::clone(&self.shared);
        metric::job_started(&shared.queue_name, waited_us);
        let fut = self.inner.call(task);
        async move {
            let result = fut.await.map_err(Into::into);
            let op = settle(
                &shared,
                id,
                envelope,
                result.as_ref().err(),
                started.elapsed(),
            );
            // Send fails only after the acker stopped, i.e. the worker was abandoned at the
            // deadline; the job was re-queued then and will run again.
            let _ = shared.acks.send(op);
            result
        }
        .boxed()
    }
}

/// Decide what happens to a job after a run.
fn settle(
    shared: &Shared,
    id: Arc<str>,
    mut envelope: job::Envelope,
    error: Option<&BoxDynError>,
    ran: Duration,
) -> AckOp {
    let queue = &shared.queue_name;
    let seq = envelope.sq.as_deref().map(|key| shared.keys.sequence(key));
    let Some(error) = error else {
        metric::job_finished(queue, &envelope.kind, JobOutcome::Completed, ran);
        return AckOp::Done {
            id,
            seq,
            kind: envelope.kind,
            tenant: envelope.tn,
            ran_us: ran.as_micros() as u64,
        };
    };
    let now = job::now_ms();
    if let Some(JobError::Snooze(delay)) = find_job_error(error) {
        envelope.snz += 1;
        let first = *envelope.first_snoozed_at.get_or_insert(now);
        let cap_secs = shared.queues.settings().max_snooze_secs;
        if now.saturating_sub(first) >= cap_secs * 1000 {
            // Snoozing uses no attempt, so without a cap a job held by a limit that never
            // frees (or a circuit that never closes) would wait forever, unseen.
            metric::job_finished(queue, &envelope.kind, JobOutcome::Dead, ran);
            let text = format!(
                "gave up after snoozing {} times over {} s without completing (queue.max_snooze_secs = {cap_secs})",
                envelope.snz,
                now.saturating_sub(first) / 1000
            );
            envelope.err = Some(shared.queues.seal_error(&envelope.kind, text));
            envelope.failed_at = Some(now);
            tracing::warn!(queue = %queue, job = %id, kind = %envelope.kind, snoozes = envelope.snz, "job snoozed past its cap; sent to the dead set");
            let item = job::encode(&id, &envelope);
            return AckOp::Dead {
                id: id.to_string(),
                item,
                seq,
            };
        }
        metric::job_finished(queue, &envelope.kind, JobOutcome::Snoozed, ran);
        let due_ms = now + delay.as_millis() as u64;
        envelope.run_at = Some(due_ms);
        let item = job::encode(&id, &envelope);
        return AckOp::Snooze { id, due_ms, item };
    }
    let permanent = matches!(find_job_error(error), Some(JobError::Permanent(_)));
    let attempt = envelope.attempt + 1;
    let kind = shared.policies.policy(&envelope.kind);
    let mut retry = shared.retry.for_kind(&kind);
    if let Some(max) = envelope.max {
        retry.max_attempts = max;
    }
    envelope.attempt = attempt;
    let text = error_text(error);
    tracing::warn!(queue = %queue, job = %id, kind = %envelope.kind, attempt, error = %text, "job failed");
    // Errors often quote the data they failed on (a number, an address): sealed like args.
    envelope.err = Some(shared.queues.seal_error(&envelope.kind, text));
    envelope.failed_at = Some(now);
    let first_failed = *envelope.first_failed_at.get_or_insert(now);
    // A per-job attempts override is stricter than a kind's budget: it counts attempts.
    let budget = kind.retry_budget.filter(|_| envelope.max.is_none());
    if permanent || retry::exhausted(&retry, budget, attempt, first_failed, now) {
        metric::job_finished(queue, &envelope.kind, JobOutcome::Dead, ran);
        let item = job::encode(&id, &envelope);
        return AckOp::Dead {
            id: id.to_string(),
            item,
            seq,
        };
    }
    metric::job_finished(queue, &envelope.kind, JobOutcome::Retried, ran);
    let delay = match find_job_error(error) {
        Some(JobError::RetryAfter(_, after)) => *after,
        _ => retry.delay(attempt),
    };
    let due_ms = now + delay.as_millis() as u64;
    envelope.run_at = Some(due_ms);
    let item = job::encode(&id, &envelope);
    AckOp::Retry { id, due_ms, item }
}

fn find_job_error(error: &BoxDynError) -> Option<&JobError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(e) = current {
        if let Some(job_error) = e.downcast_ref::<JobError>() {
            return Some(job_error);
        }
        current = e.source();
    }
    None
}

/// The error and its causes on one line, as stored with the job.
fn error_text(error: &BoxDynError) -> String {
    if error.is::<tower::timeout::error::Elapsed>() {
        return "timed out".to_owned();
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}
