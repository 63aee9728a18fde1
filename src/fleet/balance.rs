//! Auto-balancing (`balance = "auto"`): a supervisor's slots are shared by its queues and
//! move toward the queue with the longest time to clear (pending backlog × average run
//! time), each queue within `min_slots..=max_slots`, at most `balance_max_shift` slots per
//! `balance_cooldown_secs`. When every queue is empty the slots drift back to an even split
//! at the same pace.
//!
//! A queue's slots are the permits of one semaphore its workers lease under (all partitions,
//! all worker loops): growing adds permits at once, shrinking takes them back as running
//! jobs finish, so a move never interrupts a job.
//!
//! The split goes to the `switchboard_supervisor_slots` gauge and, as a history the
//! dashboard reads, to Redis ([`super::slots`]).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Semaphore, time::Instant};
use tokio_util::sync::CancellationToken;

use super::slots::{self, SlotLog};
use crate::{config::SupervisorSettings, queue::Queues, shutdown::sleep_or_stop};

/// One queue's share of a balanced supervisor.
pub struct Lane {
    pub queue: String,
    /// The permits its workers lease under.
    pub credits: Arc<Semaphore>,
    slots: AtomicUsize,
}

impl Lane {
    fn new(queue: &str, slots: usize) -> Arc<Self> {
        Arc::new(Self {
            queue: queue.to_owned(),
            credits: Arc::new(Semaphore::new(slots)),
            slots: AtomicUsize::new(slots),
        })
    }

    /// The slots it holds now (taken-back permits count as gone at once).
    pub fn slots(&self) -> usize {
        self.slots.load(Ordering::Acquire)
    }

    fn grow(&self, k: usize) {
        self.slots.fetch_add(k, Ordering::AcqRel);
        self.credits.add_permits(k);
    }

    fn shrink(&self, k: usize) {
        self.slots.fetch_sub(k, Ordering::AcqRel);
        let credits = Arc::clone(&self.credits);
        // Waits for running jobs to give their permits back; never interrupts one.
        tokio::spawn(async move {
            if let Ok(p) = credits.acquire_many(k as u32).await {
                p.forget();
            }
        });
    }
}

/// Average run time per queue (an exponentially weighted mean, µs), fed by the dispatcher.
#[derive(Default)]
pub struct RunTimes(HashMap<String, AtomicU64>);

impl RunTimes {
    pub fn new(queues: &[String]) -> Arc<Self> {
        Arc::new(Self(
            queues
                .iter()
                .map(|q| (q.clone(), AtomicU64::new(0)))
                .collect(),
        ))
    }

    /// One run of a job of `queue` took `ran`.
    pub fn record(&self, queue: &str, ran: Duration) {
        let Some(mean) = self.0.get(queue) else {
            return;
        };
        let sample = ran.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = mean.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 4 + sample) / 5
        };
        mean.store(new.max(1), Ordering::Relaxed);
    }

    fn mean_us(&self, queue: &str) -> u64 {
        self.0.get(queue).map_or(0, |m| m.load(Ordering::Relaxed))
    }
}

/// The balancer of one supervisor.
pub struct Balancer {
    supervisor: String,
    queues: Queues,
    lanes: Vec<Arc<Lane>>,
    run_times: Arc<RunTimes>,
    limits: Limits,
    cooldown: Duration,
}

/// The bounds of a balanced supervisor, in slots per queue (all worker loops together).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub min: usize,
    pub max: usize,
    /// Most slots moved in one round.
    pub shift: usize,
}

/// A move of `k` slots from lane `from` to lane `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub from: usize,
    pub to: usize,
    pub k: usize,
}

impl Balancer {
    /// The lanes of `sup` (its `concurrency × workers` slots split evenly to start) and
    /// their balancer.
    pub fn new(queues: &Queues, sup: &SupervisorSettings) -> Self {
        let total = sup.concurrency * sup.workers;
        let max = sup.max_slots.unwrap_or(sup.concurrency) * sup.workers;
        let min = sup.min_slots * sup.workers;
        let n = sup.queues.len();
        let lanes = sup
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| Lane::new(q, (total / n + usize::from(i < total % n)).clamp(min, max)))
            .collect();
        Self {
            supervisor: sup.name.clone(),
            queues: queues.clone(),
            lanes,
            run_times: RunTimes::new(&sup.queues),
            limits: Limits {
                min,
                max,
                shift: sup.balance_max_shift,
            },
            cooldown: Duration::from_secs(sup.balance_cooldown_secs),
        }
    }

    /// The lane of `queue`.
    pub fn lane(&self, queue: &str) -> Option<Arc<Lane>> {
        self.lanes.iter().find(|l| l.queue == queue).cloned()
    }

    /// Where the dispatcher records run times.
    pub fn run_times(&self) -> Arc<RunTimes> {
        Arc::clone(&self.run_times)
    }

    /// Every lane.
    pub fn lanes(&self) -> Vec<Arc<Lane>> {
        self.lanes.clone()
    }
}

/// The move one round makes given each lane's slots and time to clear (any unit).
pub fn decide(limits: Limits, slots: &[usize], ttc: &[f64]) -> Option<Move> {
    {
        let pick = |better: &dyn Fn(usize, usize) -> bool, ok: &dyn Fn(usize) -> bool| {
            (0..slots.len())
                .filter(|&i| ok(i))
                .reduce(|a, b| if better(b, a) { b } else { a })
        };
        let (to, from) = if ttc.iter().any(|&t| t > 0.0) {
            let to = pick(&|a, b| ttc[a] > ttc[b], &|i| {
                slots[i] < limits.max && ttc[i] > 0.0
            })?;
            let from = pick(&|a, b| ttc[a] < ttc[b], &|i| {
                i != to && slots[i] > limits.min && ttc[i] < ttc[to]
            })?;
            (to, from)
        } else {
            // Nothing waits anywhere: back toward an even split.
            let even = slots.iter().sum::<usize>() / slots.len();
            let to = pick(&|a, b| slots[a] < slots[b], &|i| slots[i] < even)?;
            let from = pick(&|a, b| slots[a] > slots[b], &|i| slots[i] > even)?;
            (to, from)
        };
        let k = limits
            .shift
            .min(limits.max - slots[to])
            .min(slots[from] - limits.min);
        (k > 0).then_some(Move { from, to, k })
    }
}

impl Balancer {
    /// Balance every `balance_cooldown_secs` until `stop`, writing the split to `log` at
    /// start, after each move, at least every [`slots::HEARTBEAT`] and (empty) at the stop.
    pub async fn run(self, stop: CancellationToken, log: SlotLog) {
        self.export();
        if let Err(e) = log.register(&self.supervisor).await {
            tracing::warn!(supervisor = %self.supervisor, error = %e, "registering the slot history failed");
        }
        self.sample(&log, false).await;
        let mut next_round = Instant::now() + self.cooldown;
        let mut next_sample = Instant::now() + slots::HEARTBEAT;
        loop {
            let wake = next_round.min(next_sample);
            if sleep_or_stop(&stop, wake.saturating_duration_since(Instant::now())).await {
                self.sample(&log, true).await;
                return;
            }
            if Instant::now() >= next_round {
                next_round = Instant::now() + self.cooldown;
                match self.round().await {
                    Ok(true) => next_sample = Instant::now(),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(supervisor = %self.supervisor, error = %e, "balancing round failed");
                    }
                }
            }
            if Instant::now() >= next_sample {
                self.sample(&log, false).await;
                next_sample = Instant::now() + slots::HEARTBEAT;
            }
        }
    }

    /// Write the split (empty once `stopped`). A lost sample is a gap in the dashboard's
    /// chart, nothing more: logged, never retried.
    async fn sample(&self, log: &SlotLog, stopped: bool) {
        let split = if stopped {
            BTreeMap::new()
        } else {
            self.lanes
                .iter()
                .map(|l| (l.queue.clone(), l.slots()))
                .collect()
        };
        if let Err(e) = log.record(&self.supervisor, split).await {
            tracing::warn!(supervisor = %self.supervisor, error = %e, "recording the slot split failed");
        }
    }

    /// One round; true when slots moved.
    async fn round(&self) -> Result<bool, crate::queue::QueueError> {
        let mut ttc = Vec::with_capacity(self.lanes.len());
        for lane in &self.lanes {
            let pending = self.queues.stats(&lane.queue).await?.pending;
            // A queue whose jobs never ran here counts 1 ms a job.
            let mean = self.run_times.mean_us(&lane.queue).max(1000);
            ttc.push(pending as f64 * mean as f64 / 1e6);
        }
        let slots: Vec<usize> = self.lanes.iter().map(|l| l.slots()).collect();
        if let Some(m) = decide(self.limits, &slots, &ttc) {
            self.lanes[m.from].shrink(m.k);
            self.lanes[m.to].grow(m.k);
            tracing::info!(
                supervisor = %self.supervisor,
                from = %self.lanes[m.from].queue,
                to = %self.lanes[m.to].queue,
                slots = m.k,
                "balanced slots toward the longer time to clear"
            );
            self.export();
            return Ok(true);
        }
        Ok(false)
    }

    fn export(&self) {
        for lane in &self.lanes {
            crate::telemetry::metric::supervisor_slots(&self.supervisor, &lane.queue, lane.slots());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_move_toward_the_longest_time_to_clear_within_the_limits() {
        let l = Limits {
            min: 1,
            max: 7,
            shift: 2,
        };
        let m = |from, to, k| Some(Move { from, to, k });
        assert_eq!(decide(l, &[4, 4], &[10.0, 0.0]), m(1, 0, 2));
        assert_eq!(decide(l, &[6, 2], &[10.0, 0.0]), m(1, 0, 1), "up to max");
        assert_eq!(decide(l, &[7, 1], &[10.0, 0.0]), None, "at max and min");
        assert_eq!(
            decide(l, &[7, 1], &[0.0, 0.0]),
            m(0, 1, 2),
            "back when idle"
        );
        assert_eq!(decide(l, &[4, 4], &[0.0, 0.0]), None, "even and idle");
        assert_eq!(decide(l, &[4, 4], &[5.0, 5.0]), None, "equal times");
        assert_eq!(decide(l, &[3, 3, 2], &[1.0, 9.0, 0.0]), m(2, 1, 1));
    }
}
