//! Leader election for the maintenance that should run in one process at a time (rescuer,
//! pruner), as River does: a lease in Redis (`<prefix>:leader`, a random token with a TTL)
//! that the holder renews at a third of its length.
//!
//! A process believes it leads only until the lease it last renewed would expire, measured
//! from before the renewing call: a leader cut off from Redis stops acting before another
//! process can take over, so two leaders never act at once. Both services are idempotent
//! anyway; the lease saves the duplicate work, not correctness.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};

use super::Service;
use crate::{config::MaintenanceSettings, queue::Queues};

/// Whether this process leads now. Cheap to clone.
#[derive(Clone, Default)]
pub struct Leadership {
    /// Until when the lease this process holds is surely still its own.
    until: Arc<Mutex<Option<Instant>>>,
}

impl Leadership {
    /// True while this process holds the lease.
    pub fn is_leader(&self) -> bool {
        self.until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| Instant::now() < until)
    }

    fn set(&self, until: Option<Instant>) {
        *self.until.lock().unwrap_or_else(PoisonError::into_inner) = until;
    }
}

/// How the lease is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectorConfig {
    /// Length of the lease (default 15 s, `maintenance.leader_lease_secs`), renewed every
    /// third of it; a crashed leader is replaced within this.
    pub lease: Duration,
}

impl Default for ElectorConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
        }
    }
}

impl ElectorConfig {
    /// The first problem that would stop the lease from working.
    pub fn validate(&self) -> Result<(), String> {
        if !(Duration::from_secs(3)..=Duration::from_secs(600)).contains(&self.lease) {
            return Err("the leader lease must be between 3 and 600 s".into());
        }
        Ok(())
    }
}

impl From<&MaintenanceSettings> for ElectorConfig {
    fn from(s: &MaintenanceSettings) -> Self {
        Self {
            lease: Duration::from_secs(s.leader_lease_secs),
        }
    }
}

/// Takes and renews the lease.
pub struct Elector {
    queues: Queues,
    token: String,
    config: ElectorConfig,
    leadership: Leadership,
    /// Whether the last round held the lease: changes are logged, and a holder hands the
    /// lease back when it stops.
    held: AtomicBool,
}

impl Elector {
    /// An elector for this process.
    pub fn new(queues: Queues, config: impl Into<ElectorConfig>) -> Self {
        Self {
            queues,
            token: crate::instance::process_token(),
            config: config.into(),
            leadership: Leadership::default(),
            held: AtomicBool::new(false),
        }
    }

    /// The flag services consult.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    fn lease_ms(&self) -> u64 {
        self.config.lease.as_millis() as u64
    }
}

impl Service for Elector {
    const NAME: &'static str = "leader";
    /// True when this process leads after the round.
    type Outcome = bool;

    /// Take or renew the lease.
    async fn run_once(&self, _now: DateTime<Utc>) -> anyhow::Result<bool> {
        let asked = Instant::now();
        // On an error the flag stays as it was: it lapses by itself when the lease would.
        let held = self
            .queues
            .leader_lease(&self.token, self.lease_ms(), true)
            .await?;
        self.leadership.set(held.then(|| asked + self.config.lease));
        if self.held.swap(held, Ordering::Relaxed) != held {
            tracing::info!(leader = held, "maintenance leadership changed");
        }
        Ok(held)
    }

    fn interval(&self) -> Duration {
        self.config.lease / 3
    }

    /// Hand the lease back so another process takes over at once.
    async fn stopped(&self) {
        self.leadership.set(None);
        if self.held.load(Ordering::Relaxed)
            && let Err(e) = self
                .queues
                .leader_lease(&self.token, self.lease_ms(), false)
                .await
        {
            tracing::warn!(error = %e, "releasing the maintenance lease failed");
        }
    }
}
