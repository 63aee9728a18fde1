//! Background services that keep the queues healthy. Each has one shape: `new`,
//! `run_once(now)` returning counts, and `run(shutdown)`, a thin loop with one log line per
//! round that did something. All are idempotent.
//!
//! * [`Promoter`]: moves due scheduled jobs and retries to pending.
//! * [`Rescuer`]: re-queues the jobs of workers whose lease expired.
//! * [`Pruner`]: trims completed records, old dead jobs and old `webhook_events` rows
//!   (Horizon's trim); leader only.
//! * [`Scheduler`]: enqueues the configured recurring jobs, once per tick across instances.
//! * [`Elector`]: the leader lease the rescuer and pruner consult.
//!
//! The promoter and scheduler run in every process that has them (each is safe and cheap to
//! run many times over); the rescuer and pruner only in the elected leader. [`Gauges`] (queue
//! depths and waits as metrics) is not a loop: the HTTP role reads it at each `/metrics`
//! scrape.

mod leader;
mod pruner;
pub mod scheduler;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use self::{
    leader::{Elector, Leadership},
    pruner::{Prune, PruneOutcome, Pruner},
    scheduler::Scheduler,
};

use crate::{
    config::MaintenanceSettings,
    queue::{QueueError, Queues, job::now_ms, upkeep::PROMOTE_CHUNK},
    telemetry::metric,
};

/// Promotes due delayed jobs; sleeps until the next due time (at most `max_interval`).
pub struct Promoter {
    queues: Queues,
    names: Vec<String>,
    max_interval: Duration,
}

/// What a promote round did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PromoteOutcome {
    /// Jobs moved to pending.
    pub moved: u64,
    /// Earliest next due time over all queues.
    pub next_due_ms: Option<u64>,
}

impl Promoter {
    /// A promoter over `names`.
    pub fn new(queues: Queues, names: Vec<String>, settings: &MaintenanceSettings) -> Self {
        Self {
            queues,
            names,
            max_interval: Duration::from_millis(settings.promote_max_interval_ms),
        }
    }

    /// Promote everything due at `now_ms`, in chunks.
    pub async fn run_once(&self, now_ms: u64) -> Result<PromoteOutcome, QueueError> {
        let mut out = PromoteOutcome::default();
        for name in &self.names {
            loop {
                let p = self.queues.promote(name, now_ms).await?;
                out.moved += p.moved;
                if p.moved < PROMOTE_CHUNK as u64 {
                    out.next_due_ms = match (out.next_due_ms, p.next_due_ms) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Loop until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let now = now_ms();
            let wait = match self.run_once(now).await {
                Ok(o) => {
                    if o.moved > 0 {
                        tracing::debug!(moved = o.moved, "promoted due jobs");
                    }
                    o.next_due_ms
                        .map_or(self.max_interval, |due| {
                            Duration::from_millis(due.saturating_sub(now))
                        })
                        .min(self.max_interval)
                }
                Err(e) => {
                    metric::redis_error("promote");
                    tracing::error!(error = %e, "promote failed");
                    self.max_interval
                }
            };
            if sleep_or_stop(&shutdown, wait).await {
                return;
            }
        }
    }
}

/// Returns dead workers' jobs to their queues.
pub struct Rescuer {
    queues: Queues,
    names: Vec<String>,
    interval: Duration,
    /// When set, rounds run only while this process leads.
    leader: Option<Leadership>,
}

impl Rescuer {
    /// A rescuer over `names`.
    pub fn new(queues: Queues, names: Vec<String>, settings: &MaintenanceSettings) -> Self {
        Self {
            queues,
            names,
            interval: Duration::from_secs(settings.rescue_interval_secs),
            leader: None,
        }
    }

    /// Run rounds only while `leadership` says this process leads.
    #[must_use]
    pub fn leader_only(mut self, leadership: Leadership) -> Self {
        self.leader = Some(leadership);
        self
    }

    /// Rescue the jobs of every worker whose lease expired before `now_ms`.
    pub async fn run_once(&self, now_ms: u64) -> Result<u64, QueueError> {
        let mut total = 0;
        for name in &self.names {
            let n = self.queues.rescue(name, now_ms).await?;
            metric::jobs_rescued(name, n);
            total += n;
        }
        Ok(total)
    }

    /// Loop until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let leads = self.leader.as_ref().is_none_or(Leadership::is_leader);
            if leads && let Err(e) = self.run_once(now_ms()).await {
                metric::redis_error("rescue");
                tracing::error!(error = %e, "rescue failed");
            }
            if sleep_or_stop(&shutdown, self.interval).await {
                return;
            }
        }
    }
}

/// Publishes every registered queue's stats as the queue gauges. Redis is the truth for the
/// whole fleet, so every instance that runs this exports the same values (dashboards take
/// `max`, see [`crate::telemetry`]); each queue costs one pipelined round trip of O(1)
/// commands ([`Queues::stats`]).
pub struct Gauges {
    queues: Queues,
}

impl Gauges {
    /// Gauges over the queues registered in `queues`' Redis.
    pub fn new(queues: Queues) -> Self {
        Self { queues }
    }

    /// Read every registered queue's stats once and set the gauges; returns the queue count.
    pub async fn run_once(&self) -> Result<usize, QueueError> {
        let names = self.queues.queue_names().await?;
        for name in &names {
            let s = self.queues.stats(name).await?;
            for (state, v) in [
                ("pending", s.pending),
                ("delayed", s.delayed),
                ("running", s.running),
                ("dead", s.dead),
            ] {
                metrics::gauge!(metric::QUEUE_JOBS, "queue" => name.clone(), "state" => state)
                    .set(v as f64);
            }
            metrics::gauge!(metric::QUEUE_OLDEST_PENDING, "queue" => name.clone())
                .set(s.oldest_pending_secs);
        }
        Ok(names.len())
    }
}

/// Sleep for `d` unless `stop` fires first; true when stopped.
pub async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}
