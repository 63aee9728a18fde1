//! Background services that keep the queues healthy, all of one shape (River's maintenance
//! services): each has a `Config` with documented defaults and a validate step, `new`,
//! `run_once(now) -> Outcome` with counts, and runs in the one loop [`run`] (interval, error
//! backoff, shutdown, a log line per round that did something). All are idempotent.
//!
//! * [`Promoter`] (`promoter.rs`): moves due scheduled jobs and retries to pending.
//! * [`Rescuer`] (`rescuer.rs`): re-queues the jobs of workers whose lease expired.
//! * [`Pruner`] (`pruner.rs`): trims completed records, old dead jobs and old database rows
//!   (Horizon's trim).
//! * [`Scheduler`] (`scheduler.rs`): enqueues the configured recurring jobs, once per tick
//!   across instances.
//! * [`WaitWatch`] (`waits/`): long-wait notices per queue (Horizon's `waits`), once per
//!   episode, to a webhook and email.
//! * [`Elector`] (`leader.rs`): the leader lease.
//! * [`Maintainer`]: starts the set a fleet process runs: the elector and promoter always, the
//!   rescuer, pruner and wait watch only while this process leads.
//!
//! The promoter and scheduler run in every process that has them (each is safe and cheap to
//! run many times over); the rescuer, pruner and wait watch only in the elected leader (the
//! wait watch so that a notice goes out once, not once per instance).

mod leader;
mod promoter;
mod pruner;
mod rescuer;
pub mod scheduler;
pub mod waits;

use std::{fmt, future::Future, time::Duration};

use chrono::{DateTime, Utc};
use switchboard_jobs::store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::{
    leader::{Elector, ElectorConfig, Leadership},
    promoter::{PromoteOutcome, Promoter, PromoterConfig},
    pruner::{Prune, PruneOutcome, Pruner, PrunerConfig},
    rescuer::{RescueOutcome, Rescuer, RescuerConfig},
    scheduler::Scheduler,
    waits::{WaitWatch, WaitsConfig},
};
use crate::{
    config::MaintenanceSettings, queue::Queues, shutdown::sleep_or_stop, telemetry::metric,
};

/// Longest wait after failed rounds: the backoff doubles from one second up to this.
const MAX_ERROR_BACKOFF: Duration = Duration::from_secs(30);

/// One background service.
pub trait Service: Send + Sync + Sized + 'static {
    /// The service's name in logs and in `switchboard_redis_errors_total{component}`.
    const NAME: &'static str;
    /// What one round did, with counts.
    type Outcome: fmt::Debug + Send;

    /// One bounded round of work as of `now`.
    fn run_once(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = anyhow::Result<Self::Outcome>> + Send;

    /// The usual wait between rounds (also how often a follower looks at the lease again).
    fn interval(&self) -> Duration;

    /// How long to wait after a successful round: the interval, unless the outcome knows
    /// better (e.g. the next due time).
    fn wait_after(&self, _outcome: &Self::Outcome, _now: DateTime<Utc>) -> Duration {
        self.interval()
    }

    /// Whether a round that did `outcome` is worth a log line.
    fn did_something(_outcome: &Self::Outcome) -> bool {
        false
    }

    /// Called once when the loop stops (e.g. to hand a lease back).
    fn stopped(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Run rounds in [`run`] until `shutdown`, in every process (not leader only).
    fn run(self, shutdown: CancellationToken) -> impl Future<Output = ()> + Send {
        run(self, None, shutdown)
    }
}

/// Run `service` until `shutdown`: a round, then its wait (after failures, a backoff doubling
/// from one second to [`MAX_ERROR_BACKOFF`], never longer than the service's interval). With `leader`, rounds run only while this
/// process leads; otherwise the loop just waits.
pub async fn run<S: Service>(service: S, leader: Option<Leadership>, shutdown: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let now = Utc::now();
        let wait = if leader.as_ref().is_none_or(Leadership::is_leader) {
            match service.run_once(now).await {
                Ok(outcome) => {
                    failures = 0;
                    if S::did_something(&outcome) {
                        tracing::info!(service = S::NAME, ?outcome, "maintenance round");
                    } else {
                        tracing::trace!(service = S::NAME, ?outcome, "maintenance round");
                    }
                    service.wait_after(&outcome, now)
                }
                Err(e) => {
                    failures += 1;
                    if e.downcast_ref::<crate::queue::QueueError>().is_some() {
                        metric::redis_error(S::NAME);
                    }
                    tracing::error!(service = S::NAME, failures, error = %format!("{e:#}"), "maintenance round failed");
                    Duration::from_secs(1 << (failures - 1).min(5))
                        .min(MAX_ERROR_BACKOFF)
                        .min(service.interval())
                }
            }
        } else {
            service.interval()
        };
        if sleep_or_stop(&shutdown, wait).await {
            service.stopped().await;
            return;
        }
    }
}

/// The maintenance a fleet process runs: the elector and promoter everywhere, the rescuer,
/// pruner and wait watch only while this process holds the leader lease.
pub struct Maintainer {
    elector: Elector,
    promoter: Promoter,
    rescuer: Rescuer,
    pruner: Pruner,
    waits: Option<WaitWatch>,
}

/// `names` with each partitioned queue replaced by its partitions (`queue`, `queue#1`, ...).
pub fn partitions(queues: &Queues, names: &[String]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| queues.partition_names(n))
        .collect()
}

impl Maintainer {
    /// The set over the queues `names`; the pruner also trims `store` when given. Fails with
    /// one line when a service's configuration cannot work.
    pub fn new(
        queues: &Queues,
        names: &[String],
        settings: &MaintenanceSettings,
        store: Option<Store>,
    ) -> Result<Self, String> {
        let elector_config = ElectorConfig::from(settings);
        let promoter_config = PromoterConfig::from(settings);
        let rescuer_config = RescuerConfig::from(settings);
        let pruner_config = PrunerConfig::from(settings);
        elector_config.validate()?;
        promoter_config.validate()?;
        rescuer_config.validate()?;
        pruner_config.validate()?;
        // Every partition of a queue is promoted, rescued and pruned on its own.
        let names = &partitions(queues, names);
        let mut pruner = Pruner::new(queues.clone(), names.clone(), pruner_config);
        if let Some(store) = store {
            pruner = pruner.with_store(store);
        }
        Ok(Self {
            elector: Elector::new(queues.clone(), elector_config),
            promoter: Promoter::new(queues.clone(), names.clone(), promoter_config),
            rescuer: Rescuer::new(queues.clone(), names.clone(), rescuer_config),
            pruner,
            waits: None,
        })
    }

    /// Also watch the waits (leader only).
    #[must_use]
    pub fn with_waits(mut self, waits: WaitWatch) -> Self {
        self.waits = Some(waits);
        self
    }

    /// Start every service's loop; each stops at `shutdown`.
    pub fn spawn(self, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        let leadership = self.elector.leadership();
        let mut tasks = vec![
            tokio::spawn(run(self.elector, None, shutdown.clone())),
            tokio::spawn(run(self.promoter, None, shutdown.clone())),
            tokio::spawn(run(
                self.rescuer,
                Some(leadership.clone()),
                shutdown.clone(),
            )),
            tokio::spawn(run(self.pruner, Some(leadership.clone()), shutdown.clone())),
        ];
        if let Some(waits) = self.waits {
            tasks.push(tokio::spawn(run(waits, Some(leadership), shutdown.clone())));
        }
        tasks
    }
}

/// Milliseconds since the epoch of `t` (the queue's time unit).
fn ms(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp_millis()).unwrap_or(0)
}
