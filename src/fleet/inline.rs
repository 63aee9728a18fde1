//! Run a queue's jobs inline until it is empty, through the same dispatcher, policy and
//! settlement a supervisor's workers use: the test helper that replaces "start a fleet and
//! poll it", and a tool for one-off drains.

use std::{sync::Arc, time::Duration};

use switchboard_jobs::Registry;

use super::Dispatcher;
use crate::{
    config::SupervisorSettings,
    queue::{
        QueueError, Queues,
        retry::RetryPolicy,
        worker::inline::{self, Drain, Drained},
    },
    telemetry::metric::WorkerSlots,
};

/// Runs at most per drain: far more than any test enqueues, few enough that a job snoozing
/// forever ends the drain within seconds.
const MAX_RUNS: u64 = 10_000;

/// Run every job of `queue` (delayed ones and retries too, at once) with `registry`'s
/// handlers and `supervisor`'s defaults until the queue is empty.
pub async fn drain(
    queues: &Queues,
    registry: Arc<Registry>,
    queue: &str,
    supervisor: &SupervisorSettings,
) -> Result<Drained, QueueError> {
    let dispatcher = Dispatcher::new(
        Arc::clone(&registry),
        Arc::new(queues.producer()),
        queues.clone(),
        None,
        WorkerSlots::new(&supervisor.name),
        Duration::from_secs(supervisor.timeout_secs),
    );
    let drain = Drain {
        with_scheduled: true,
        max_runs: MAX_RUNS,
        retry: RetryPolicy {
            max_attempts: supervisor.max_attempts,
            base: Duration::from_millis(supervisor.backoff.base_ms),
            cap: Duration::from_millis(supervisor.backoff.cap_ms),
        },
        policies: registry,
    };
    let mut total = Drained::default();
    for partition in queues.partition_names(queue) {
        let done = inline::drain(queues, &partition, drain.clone(), dispatcher.clone()).await?;
        total.runs += done.runs;
        total.stopped_early |= done.stopped_early;
    }
    Ok(total)
}
