//! Settling jobs: the ack layer turns each outcome into an [`AckOp`]; the acker task writes
//! them to Redis in batches and heartbeats the worker.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use apalis_core::{error::BoxDynError, task::Task};
use futures::{FutureExt, future::BoxFuture};
use rand::Rng;
use switchboard_jobs::JobError;
use tokio::sync::{mpsc, oneshot};
use tower_layer::Layer;
use tower_service::Service;

use super::{
    backend::Shared,
    job::{self, Job},
    scripts,
};
use crate::telemetry::metric::{self, Outcome};

/// Most settlements written by one ack script call.
const ACK_BATCH: usize = 500;

/// Retry policy of a supervisor: attempts and exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before a job is dead, unless the job kind or the job says otherwise.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base: Duration,
    /// Longest delay between attempts.
    pub cap: Duration,
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1-based): `base * 2^(attempt-1)` capped, then
    /// "equal jitter" (uniform in the upper half) so failed bursts do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let full = exp.min(self.cap);
        let half = full / 2;
        half + full.mul_f64(rand::rng().random_range(0.0..0.5))
    }
}

/// One settlement for the acker.
#[derive(Debug)]
pub enum AckOp {
    /// Completed successfully.
    Done { id: Arc<str> },
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
    /// Leased but never started: back to the head of pending.
    Release { id: Arc<str>, item: Arc<str> },
    /// Failed for good; the item carries its last error.
    Dead { id: String, item: String },
    /// Reply once everything sent before has been written.
    Flush(oneshot::Sender<()>),
    /// The worker has retired: stop.
    Shutdown,
}

/// The backend's middleware: reports each job's outcome to the acker.
#[derive(Clone)]
pub struct AckLayer {
    shared: Arc<Shared>,
}

impl AckLayer {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// See [`AckLayer`].
#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S, R> Service<Task<Job>> for AckService<S>
where
    S: Service<Task<Job>, Response = R>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    R: Send + 'static,
{
    type Response = R;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<R, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Job>) -> Self::Future {
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
    let Some(error) = error else {
        metric::job_finished(queue, &envelope.kind, Outcome::Completed, ran);
        return AckOp::Done { id };
    };
    let now = job::now_ms();
    if let Some(JobError::Snooze(delay)) = find_job_error(error) {
        metric::job_finished(queue, &envelope.kind, Outcome::Snoozed, ran);
        let due_ms = now + delay.as_millis() as u64;
        envelope.run_at = Some(due_ms);
        let item = job::encode(&id, &envelope);
        return AckOp::Snooze { id, due_ms, item };
    }
    let permanent = matches!(find_job_error(error), Some(JobError::Permanent(_)));
    let attempt = envelope.attempt + 1;
    let max = envelope.max.unwrap_or(shared.retry.max_attempts);
    envelope.attempt = attempt;
    envelope.err = Some(describe(error));
    envelope.failed_at = Some(now);
    tracing::warn!(queue = %queue, job = %id, kind = %envelope.kind, attempt, error = envelope.err.as_deref().unwrap_or_default(), "job failed");
    if permanent || attempt >= max {
        metric::job_finished(queue, &envelope.kind, Outcome::Dead, ran);
        let item = job::encode(&id, &envelope);
        return AckOp::Dead {
            id: id.to_string(),
            item,
        };
    }
    metric::job_finished(queue, &envelope.kind, Outcome::Retried, ran);
    let delay = match find_job_error(error) {
        Some(JobError::RetryAfter(_, after)) => *after,
        _ => shared.retry.delay(attempt),
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
fn describe(error: &BoxDynError) -> String {
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

/// Ask the acker to write everything sent so far, and wait for it.
pub(crate) async fn flush(shared: &Shared) {
    let (tx, rx) = oneshot::channel();
    if shared.acks.send(AckOp::Flush(tx)).is_ok() {
        let _ = rx.await;
    }
}

/// The acker: batches settlements into one script call each, returns credits after the write
/// commits, and refreshes the worker's lease every third of the lease time.
pub(crate) async fn ack_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<AckOp>) {
    let lease = Duration::from_secs(shared.queues.settings().lease_secs);
    let mut heartbeat = tokio::time::interval(lease / 3);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(ACK_BATCH);
    let mut waiters = Vec::new();
    loop {
        tokio::select! {
            op = rx.recv() => {
                let Some(op) = op else { return };
                let mut stop = false;
                let mut next = Some(op);
                while let Some(op) = next.take() {
                    match op {
                        AckOp::Flush(tx) => waiters.push(tx),
                        AckOp::Shutdown => stop = true,
                        op => batch.push(op),
                    }
                    if batch.len() < ACK_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                write(&shared, &mut batch).await;
                for w in waiters.drain(..) {
                    let _ = w.send(());
                }
                if stop {
                    return;
                }
            }
            _ = heartbeat.tick() => {
                let mut conn = shared.queues.conn();
                let beat: Result<i64, _> = redis::cmd("ZADD")
                    .arg(&shared.keys.workers)
                    .arg("XX")
                    .arg(shared.lease_expiry_ms())
                    .arg(&shared.worker_id)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = beat {
                    metric::redis_error("heartbeat");
                    tracing::error!(worker = %shared.worker_id, error = %e, "heartbeat failed");
                }
            }
        }
    }
}

/// Write one batch, retrying until Redis takes it: an unwritten ack would leave the job
/// leased until the rescuer re-ran it, so it is worth waiting for.
async fn write(shared: &Shared, batch: &mut Vec<AckOp>) {
    if batch.is_empty() {
        return;
    }
    let settings = shared.queues.settings();
    let k = &shared.keys;
    let mut invocation = scripts::ACK.prepare_invoke();
    invocation
        .key(&shared.leased_key)
        .key(&k.stats)
        .key(&k.completed)
        .key(&k.delayed)
        .key(&k.dead)
        .key(&k.dead_at)
        .key(&k.pending)
        .key(&k.throughput)
        .arg(job::now_ms())
        .arg(settings.completed_max)
        .arg(settings.dead_max);
    for op in batch.iter() {
        match op {
            AckOp::Done { id } => invocation.arg("c").arg(id.as_ref()).arg("").arg(""),
            AckOp::Retry { id, due_ms, item } => {
                invocation.arg("r").arg(id.as_ref()).arg(*due_ms).arg(item)
            }
            AckOp::Snooze { id, due_ms, item } => {
                invocation.arg("s").arg(id.as_ref()).arg(*due_ms).arg(item)
            }
            AckOp::Dead { id, item } => invocation.arg("f").arg(id).arg("").arg(item),
            AckOp::Release { id, item } => invocation
                .arg("x")
                .arg(id.as_ref())
                .arg("")
                .arg(item.as_ref()),
            AckOp::Flush(_) | AckOp::Shutdown => unreachable!("control messages are not batched"),
        };
    }
    let mut failures = 0u32;
    loop {
        let mut conn = shared.queues.conn();
        match invocation.invoke_async::<(u64, u64)>(&mut conn).await {
            Ok((settled, skipped)) => {
                if skipped > 0 {
                    tracing::warn!(worker = %shared.worker_id, skipped, "acks for jobs whose lease had expired; they were re-queued");
                }
                debug_assert!(settled + skipped == batch.len() as u64);
                break;
            }
            Err(e) => {
                failures += 1;
                metric::redis_error("ack");
                tracing::error!(worker = %shared.worker_id, error = %e, failures, "ack failed; retrying");
                tokio::time::sleep(Duration::from_millis((50u64 << failures.min(6)).min(2_000)))
                    .await;
            }
        }
    }
    shared.credits.add_permits(batch.len());
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for _ in 0..200 {
            let first = p.delay(1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = p.delay(3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            let late = p.delay(30);
            assert!(
                late >= Duration::from_millis(500) && late <= Duration::from_secs(1),
                "{late:?}"
            );
        }
    }
}
