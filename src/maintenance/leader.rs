//! Leader election for the maintenance that should run in one process at a time (rescuer,
//! pruner), as River does: a lease in Redis (`<prefix>:leader`, a random token with a TTL)
//! that the holder renews at a third of its length.
//!
//! A process believes it leads only until the lease it last renewed would expire, measured
//! from before the renewing call: a leader cut off from Redis stops acting before another
//! process can take over, so two leaders never act at once. Both services are idempotent
//! anyway; the lease saves the duplicate work, not correctness.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

use crate::{
    shutdown::sleep_or_stop,
    queue::{QueueError, Queues},
    telemetry::metric,
};

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

/// Takes and renews the lease.
pub struct Elector {
    queues: Queues,
    token: String,
    lease: Duration,
    leadership: Leadership,
}

impl Elector {
    /// An elector for this process with a lease of `lease`.
    pub fn new(queues: Queues, lease: Duration) -> Self {
        let token = crate::instance::process_token();
        Self {
            queues,
            token,
            lease,
            leadership: Leadership::default(),
        }
    }

    /// The flag services consult.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Take or renew the lease; true when this process leads afterwards.
    pub async fn run_once(&self) -> Result<bool, QueueError> {
        let asked = Instant::now();
        let held = self
            .queues
            .leader_lease(&self.token, self.lease_ms(), true)
            .await?;
        self.leadership.set(held.then(|| asked + self.lease));
        Ok(held)
    }

    fn lease_ms(&self) -> u64 {
        self.lease.as_millis() as u64
    }

    /// Loop until `shutdown`, then hand the lease back so another process takes over at once.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut was_leader = false;
        loop {
            match self.run_once().await {
                Ok(leads) => {
                    if leads != was_leader {
                        tracing::info!(leader = leads, "maintenance leadership changed");
                        was_leader = leads;
                    }
                }
                Err(e) => {
                    metric::redis_error("leader");
                    tracing::warn!(error = %e, "renewing the maintenance lease failed");
                }
            }
            if sleep_or_stop(&shutdown, self.lease / 3).await {
                break;
            }
        }
        self.leadership.set(None);
        if was_leader
            && let Err(e) = self.queues.leader_lease(&self.token, self.lease_ms(), false).await
        {
            tracing::warn!(error = %e, "releasing the maintenance lease failed");
        }
    }
}
