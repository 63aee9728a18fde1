//! Running a queue's jobs inline, in the caller's task, until the queue is empty: what a test
//! (or a one-off tool) uses instead of starting a fleet and polling it. The jobs go through
//! the same lease (fetch script), settle layer and batched completer as in a worker, so
//! retries, dead jobs, results and counters come out exactly as they would in the fleet; only
//! the concurrency is one.

use std::sync::Arc;

use apalis_core::{error::BoxDynError, task::Task};
use switchboard_jobs::Registry;
use tower_layer::Layer as _;
use tower_service::Service;

use super::{
    completer,
    fetcher::{self, Fetched},
    settle::SettleLayer,
    state::{AckOp, Shared, WorkerOptions},
};
use crate::queue::{
    QueueError, Queues,
    job::{self, Job},
    retry::RetryPolicy,
};

/// How far a drain goes.
#[derive(Clone)]
pub struct Drain {
    /// Also run delayed jobs (scheduled ones and retries) at once instead of at their time,
    /// round after round, until none is left.
    pub with_scheduled: bool,
    /// Stop after this many runs, so a job that snoozes or fails forever cannot spin.
    pub max_runs: u64,
    /// Attempts and backoff for jobs whose kind does not set its own.
    pub retry: RetryPolicy,
    /// The kinds' own policies.
    pub policies: Arc<Registry>,
}

/// What a drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Job runs (a retried job counts once per run).
    pub runs: u64,
    /// True when `max_runs` stopped the drain with work left.
    pub stopped_early: bool,
}

/// Run `queue`'s ready jobs through `service`, one at a time, until none is left.
pub async fn drain<S>(
    queues: &Queues,
    queue: &str,
    drain: Drain,
    service: S,
) -> Result<Drained, QueueError>
where
    S: Service<Task<Job>, Response = ()> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
{
    let options = WorkerOptions {
        worker_id: crate::instance::worker_id("inline", queue, 0),
        queue: queue.to_owned(),
        concurrency: 1,
        prefetch: 0,
        retry: drain.retry,
        policies: Arc::clone(&drain.policies),
        credits: None,
    };
    let (shared, acks_rx, _jobs) = Shared::new(queues.clone(), options)?;
    let completer = tokio::spawn(completer::ack_loop(
        std::sync::Arc::clone(&shared),
        acks_rx,
        None,
    ));
    let mut service = SettleLayer::new(std::sync::Arc::clone(&shared)).layer(service);
    let mut out = Drained::default();
    let result: Result<(), QueueError> = async {
        loop {
            if drain.with_scheduled {
                // Everything delayed is due "now" for a drain that asks for scheduled jobs.
                while queues.promote(queue, u64::MAX / 4).await?.moved > 0 {}
            }
            let items = match fetcher::fetch(&shared, 100, &mut queues.conn()).await? {
                Fetched::Jobs(items) if !items.is_empty() => items,
                Fetched::Jobs(_) | Fetched::Paused => return Ok(()),
            };
            for item in items {
                if out.runs >= drain.max_runs {
                    out.stopped_early = true;
                    return Ok(());
                }
                run_one(&shared, &mut service, item).await;
                out.runs += 1;
            }
            shared.flush().await;
        }
    }
    .await;
    shared.flush().await;
    // Whatever was leased and not run (a drain stopped early) goes back to the queue.
    let released = shared.release_all().await;
    let _ = shared.acks.send(AckOp::Shutdown);
    let _ = completer.await;
    result?;
    released?;
    Ok(out)
}

async fn run_one<S>(shared: &Shared, service: &mut S, item: String)
where
    S: Service<Task<Job>>,
{
    let Ok((id, envelope)) = job::decode(&item) else {
        let id = item
            .split_once(' ')
            .map_or(item.as_str(), |(id, _)| id)
            .to_owned();
        let _ = shared.acks.send(AckOp::Dead {
            id,
            item,
            seq: None,
        });
        return;
    };
    let job = Job {
        id: std::sync::Arc::from(id),
        queue: std::sync::Arc::clone(&shared.queue_name),
        envelope,
        item: std::sync::Arc::from(item.as_str()),
    };
    if shared.expire_if_due(&job) {
        return;
    }
    if std::future::poll_fn(|cx| service.poll_ready(cx))
        .await
        .is_ok()
    {
        // The settle layer reports the outcome to the completer.
        let _ = service.call(Task::new(job)).await;
    }
}
