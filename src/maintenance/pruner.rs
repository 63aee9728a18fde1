//! The pruner: trims what the engine keeps for operators once it is past retention —
//! completed-job records past the window, dead jobs past their retention, and
//! `webhook_events` and `appointment_reminders` rows past theirs. The same round runs as the leader's loop and as the
//! recurring `prune` job.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_jobs::{
    JobArgs, JobContext, JobError,
    store::{Store, StoreError, appointment_reminders, webhook_events},
};
use tokio_util::sync::CancellationToken;

use super::{Leadership, sleep_or_stop};
use crate::{config::MaintenanceSettings, queue::Queues};

/// Rows deleted per statement, so no statement holds locks for long.
const ROW_BATCH: i64 = 1000;

/// Trims everything past retention.
#[derive(Clone)]
pub struct Pruner {
    queues: Queues,
    names: Vec<String>,
    interval: Duration,
    store: Option<Store>,
    webhook_events_retention: Duration,
    /// When set, the loop's rounds run only while this process leads.
    leader: Option<Leadership>,
}

/// What a prune round removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PruneOutcome {
    /// Completed-job records.
    pub completed: u64,
    /// Dead jobs.
    pub dead: u64,
    /// `webhook_events` rows.
    pub webhook_events: u64,
    /// `appointment_reminders` rows (same retention as `webhook_events`).
    pub appointment_reminders: u64,
}

impl Pruner {
    /// A pruner over the queues `names` (no database until [`Pruner::with_store`]).
    pub fn new(queues: Queues, names: Vec<String>, settings: &MaintenanceSettings) -> Self {
        Self {
            queues,
            names,
            interval: Duration::from_secs(settings.prune_interval_secs),
            store: None,
            webhook_events_retention: Duration::from_secs(settings.webhook_events_retention_secs),
            leader: None,
        }
    }

    /// Also trim the database's `webhook_events`.
    #[must_use]
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Run the loop's rounds only while `leadership` says this process leads.
    #[must_use]
    pub fn leader_only(mut self, leadership: Leadership) -> Self {
        self.leader = Some(leadership);
        self
    }

    /// Trim everything past retention at `now_ms`.
    pub async fn run_once(&self, now_ms: u64) -> anyhow::Result<PruneOutcome> {
        let mut out = PruneOutcome::default();
        for name in &self.names {
            let p = self.queues.prune(name, now_ms).await?;
            out.completed += p.completed;
            out.dead += p.dead;
        }
        if let Some(store) = &self.store {
            let cutoff =
                i64::try_from(now_ms)? - i64::try_from(self.webhook_events_retention.as_millis())?;
            out.webhook_events = drain(|| webhook_events::prune(store, cutoff, ROW_BATCH)).await?;
            out.appointment_reminders =
                drain(|| appointment_reminders::prune(store, cutoff, ROW_BATCH)).await?;
        }
        Ok(out)
    }

    /// Loop until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            if self.leader.as_ref().is_none_or(Leadership::is_leader) {
                match self.run_once(crate::queue::job::now_ms()).await {
                    Ok(o) if o != PruneOutcome::default() => tracing::info!(
                        completed = o.completed,
                        dead = o.dead,
                        webhook_events = o.webhook_events,
                        appointment_reminders = o.appointment_reminders,
                        "pruned"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "prune failed"),
                }
            }
            if sleep_or_stop(&shutdown, self.interval).await {
                return;
            }
        }
    }

    /// The handler of the recurring `prune` job: one round now, its counts as the result.
    pub async fn run_job(self, _: Prune, ctx: JobContext) -> Result<(), JobError> {
        let out = self
            .run_once(crate::queue::job::now_ms())
            .await
            .map_err(|e| JobError::retry(format!("{e:#}")))?;
        tracing::info!(
            completed = out.completed,
            dead = out.dead,
            webhook_events = out.webhook_events,
            "prune job done"
        );
        ctx.set_result(serde_json::to_value(out).unwrap_or_default());
        Ok(())
    }
}

/// Run `batch` until it deletes fewer than a full batch; the total deleted.
async fn drain<F, Fut>(mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < ROW_BATCH as u64 {
            return Ok(total);
        }
    }
}

/// The recurring `prune` job (no arguments).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Prune {}

impl JobArgs for Prune {
    const KIND: &'static str = "prune";
    const QUEUE: &'static str = "maintenance";
}
