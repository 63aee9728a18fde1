//! The promoter: moves due scheduled jobs and retries from `delayed` to `pending`, in
//! bounded chunks, and sleeps until the next due time (at most `max_interval`). Runs in every
//! fleet process; rounds racing each other are harmless (the promote script is atomic).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Service, ms};
use crate::{
    config::MaintenanceSettings,
    queue::{Queues, upkeep::PROMOTE_CHUNK},
};

/// How the promoter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromoterConfig {
    /// Longest sleep between rounds, so newly scheduled jobs are seen promptly (default 1 s,
    /// `maintenance.promote_max_interval_ms`).
    pub max_interval: Duration,
}

impl Default for PromoterConfig {
    fn default() -> Self {
        Self {
            max_interval: Duration::from_secs(1),
        }
    }
}

impl PromoterConfig {
    /// The first problem that would stop the promoter from working well.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_interval < Duration::from_millis(10) {
            return Err("the promoter's max_interval must be at least 10 ms".into());
        }
        Ok(())
    }
}

impl From<&MaintenanceSettings> for PromoterConfig {
    fn from(s: &MaintenanceSettings) -> Self {
        Self {
            max_interval: Duration::from_millis(s.promote_max_interval_ms),
        }
    }
}

/// Promotes due delayed jobs.
pub struct Promoter {
    queues: Queues,
    names: Vec<String>,
    config: PromoterConfig,
}

/// What a promote round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PromoteOutcome {
    /// Jobs moved to pending.
    pub moved: u64,
    /// Earliest next due time over all queues (ms since the epoch).
    pub next_due_ms: Option<u64>,
}

impl Promoter {
    /// A promoter over the queues `names`.
    pub fn new(queues: Queues, names: Vec<String>, config: impl Into<PromoterConfig>) -> Self {
        Self {
            queues,
            names,
            config: config.into(),
        }
    }
}

impl Service for Promoter {
    const NAME: &'static str = "promote";
    type Outcome = PromoteOutcome;

    /// Promote everything due at `now`, in chunks.
    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<PromoteOutcome> {
        let now_ms = ms(now);
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

    fn interval(&self) -> Duration {
        self.config.max_interval
    }

    /// Until the next due job, at most the interval.
    fn wait_after(&self, outcome: &PromoteOutcome, now: DateTime<Utc>) -> Duration {
        outcome
            .next_due_ms
            .map_or(self.config.max_interval, |due| {
                Duration::from_millis(due.saturating_sub(ms(now)))
            })
            .min(self.config.max_interval)
    }
}
