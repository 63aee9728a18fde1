//! The rescuer: re-queues the leased jobs of every worker whose lease expired (SIGKILL, OOM
//! kill, lost host), and sets aside as dead a job that keeps killing its workers
//! (`queue.max_rescues`). Leader only: two rescuers would only repeat each other's work.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Service, ms};
use crate::{config::MaintenanceSettings, queue::Queues, telemetry::metric};

/// How the rescuer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RescuerConfig {
    /// How often expired workers are looked for (default 5 s,
    /// `maintenance.rescue_interval_secs`); a dead worker's jobs return within its lease
    /// plus this.
    pub interval: Duration,
}

impl Default for RescuerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
        }
    }
}

impl RescuerConfig {
    /// The first problem that would stop the rescuer from working well.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_secs(1) {
            return Err("the rescuer's interval must be at least 1 s".into());
        }
        Ok(())
    }
}

impl From<&MaintenanceSettings> for RescuerConfig {
    fn from(s: &MaintenanceSettings) -> Self {
        Self {
            interval: Duration::from_secs(s.rescue_interval_secs),
        }
    }
}

/// Returns dead workers' jobs to their queues.
pub struct Rescuer {
    queues: Queues,
    names: Vec<String>,
    config: RescuerConfig,
}

/// What a rescue round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RescueOutcome {
    /// Jobs handed back to their queues (or set aside as poisonous).
    pub rescued: u64,
}

impl Rescuer {
    /// A rescuer over the queues `names`.
    pub fn new(queues: Queues, names: Vec<String>, config: impl Into<RescuerConfig>) -> Self {
        Self {
            queues,
            names,
            config: config.into(),
        }
    }
}

impl Service for Rescuer {
    const NAME: &'static str = "rescue";
    type Outcome = RescueOutcome;

    /// Rescue the jobs of every worker whose lease expired before `now`.
    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<RescueOutcome> {
        let mut out = RescueOutcome::default();
        for name in &self.names {
            let n = self.queues.rescue(name, ms(now)).await?;
            let queue = crate::queue::keys::split_partition(name).map_or(name.as_str(), |(q, _)| q);
            metric::jobs_rescued(queue, n);
            out.rescued += n;
        }
        Ok(out)
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn did_something(outcome: &RescueOutcome) -> bool {
        outcome.rescued > 0
    }
}
