//! The pruner: trims what the engine keeps for operators once it is past retention:
//! completed-job records past the window, dead jobs past their retention (dead and expired
//! jobs of the personal kinds past the shorter `queue.personal_dead_retention_secs`), and
//! `webhook_events` and `appointment_reminders` rows past theirs. The same round runs as the
//! leader's loop and as the recurring `prune` job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use switchboard_jobs::{
    JobArgs, JobContext, JobError,
    store::{Store, StoreError, appointment_reminders, webhook_events},
};

use super::{Service, ms};
use crate::{config::MaintenanceSettings, queue::Queues};

/// Rows deleted per statement, so no statement holds locks for long.
const ROW_BATCH: i64 = 1000;

/// How the pruner runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrunerConfig {
    /// How often the leader prunes (default 60 s, `maintenance.prune_interval_secs`).
    pub interval: Duration,
    /// How long `webhook_events` and `appointment_reminders` rows are kept (default 30 days,
    /// `maintenance.webhook_events_retention_secs`).
    pub rows_retention: Duration,
}

impl Default for PrunerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            rows_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

impl PrunerConfig {
    /// The first problem that would stop the pruner from working well.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_secs(1) {
            return Err("the pruner's interval must be at least 1 s".into());
        }
        if self.rows_retention < Duration::from_secs(3600) {
            return Err("the pruner's rows_retention must be at least an hour".into());
        }
        Ok(())
    }
}

impl From<&MaintenanceSettings> for PrunerConfig {
    fn from(s: &MaintenanceSettings) -> Self {
        Self {
            interval: Duration::from_secs(s.prune_interval_secs),
            rows_retention: Duration::from_secs(s.webhook_events_retention_secs),
        }
    }
}

/// Trims everything past retention.
#[derive(Clone)]
pub struct Pruner {
    queues: Queues,
    names: Vec<String>,
    config: PrunerConfig,
    store: Option<Store>,
}

/// What a prune round removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PruneOutcome {
    /// Completed-job records.
    pub completed: u64,
    /// Dead jobs (of personal kinds too).
    pub dead: u64,
    /// Expired jobs of personal kinds.
    pub expired: u64,
    /// `webhook_events` rows.
    pub webhook_events: u64,
    /// `appointment_reminders` rows (same retention as `webhook_events`).
    pub appointment_reminders: u64,
}

impl Pruner {
    /// A pruner over the queues `names` (no database until [`Pruner::with_store`]).
    pub fn new(queues: Queues, names: Vec<String>, config: impl Into<PrunerConfig>) -> Self {
        Self {
            queues,
            names,
            config: config.into(),
            store: None,
        }
    }

    /// Also trim the database's `webhook_events` and `appointment_reminders`.
    #[must_use]
    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The handler of the recurring `prune` job: one round now, its counts as the result.
    pub async fn handle(self, _: Prune, ctx: JobContext) -> Result<(), JobError> {
        let out = self
            .run_once(Utc::now())
            .await
            .map_err(|e| JobError::retry(format!("{e:#}")))?;
        tracing::info!(?out, "prune job done");
        ctx.set_result(serde_json::to_value(out).unwrap_or_default());
        Ok(())
    }
}

impl Service for Pruner {
    const NAME: &'static str = "prune";
    type Outcome = PruneOutcome;

    /// Trim everything past retention at `now`.
    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<PruneOutcome> {
        let now_ms = ms(now);
        let mut out = PruneOutcome::default();
        for name in &self.names {
            let p = self.queues.prune(name, now_ms).await?;
            out.completed += p.completed;
            out.dead += p.dead;
            out.expired += p.expired;
        }
        if let Some(store) = &self.store {
            let cutoff =
                i64::try_from(now_ms)? - i64::try_from(self.config.rows_retention.as_millis())?;
            out.webhook_events = drain(|| webhook_events::prune(store, cutoff, ROW_BATCH)).await?;
            out.appointment_reminders =
                drain(|| appointment_reminders::prune(store, cutoff, ROW_BATCH)).await?;
        }
        Ok(out)
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn did_something(outcome: &PruneOutcome) -> bool {
        *outcome != PruneOutcome::default()
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Prune {}

impl JobArgs for Prune {
    const KIND: &'static str = "prune";
    const QUEUE: &'static str = "maintenance";
}
