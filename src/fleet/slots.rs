//! The history of balanced supervisors' slot splits, kept in Redis because the dashboard
//! that shows it (`/dashboard/slots`, `GET /api/supervisors/slots`) may run in another
//! process than the fleet.
//!
//! Each balanced supervisor of a running fleet appends a [`Sample`] (when, which fleet
//! instance, the slots each queue holds) to its stream `{<prefix>:slots}:sup:<supervisor>`: at
//! start, after every move, at least every [`HEARTBEAT`], and an empty split when the fleet
//! stops. Each is one `XADD ... MINID ~ <an hour ago>`, so writing costs one command and the
//! stream holds about the last [`WINDOW`]: at most one sample per `balance_cooldown_secs`
//! plus one a minute, per instance. `{<prefix>:slots}:names` (a SET, one `SADD` as the
//! balancer starts) names the supervisors that keep a history.
//!
//! Several hosts may run the same supervisor, each balancing its own slots. Samples are
//! kept per fleet instance (`fleet`, unique per start); [`totals`] sums, at each moment, the
//! latest sample of every instance that is still live (sampled within [`STALE`]). An
//! instance that stopped cleanly wrote an empty split and drops out at once; one that was
//! killed drops out [`STALE`] after its last sample.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::queue::{QueueError, Queues, job::now_ms};

/// Longest a balanced supervisor goes without writing a sample.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// How much history the streams keep (trimmed as samples are written).
pub const WINDOW: Duration = Duration::from_secs(3600);
/// An instance whose latest sample is older than this counts as gone (2.5 heartbeats).
pub const STALE: Duration = Duration::from_secs(150);
/// Most samples one read takes per supervisor (the newest).
pub const MAX_READ: usize = 5_000;

/// One fleet instance's split of one supervisor's slots at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// When, ms since the epoch (the writer's clock).
    pub at_ms: u64,
    /// The fleet instance (`<host>:<pid>:<ulid>`, new at every start).
    pub fleet: String,
    pub host: String,
    /// Slots per queue; empty when the instance stopped.
    pub slots: BTreeMap<String, usize>,
}

/// Where a fleet writes its samples. Cheap to clone.
#[derive(Clone)]
pub struct SlotLog {
    queues: Queues,
    fleet: String,
    host: String,
}

impl SlotLog {
    /// The log of a fleet instance starting now.
    pub fn new(queues: &Queues) -> Self {
        Self {
            queues: queues.clone(),
            fleet: crate::instance::process_token(),
            host: crate::instance::hostname(),
        }
    }

    /// Name `supervisor` among those with a history (idempotent).
    pub async fn register(&self, supervisor: &str) -> Result<(), QueueError> {
        let mut conn = self.queues.conn();
        let _: u64 = redis::cmd("SADD")
            .arg(names_key(&self.queues.settings().prefix))
            .arg(supervisor)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Append this instance's split of `supervisor` now, trimming what is older than
    /// [`WINDOW`]. Losing a sample (Redis down) only leaves a gap in the chart.
    pub async fn record(
        &self,
        supervisor: &str,
        slots: BTreeMap<String, usize>,
    ) -> Result<(), QueueError> {
        let sample = Sample {
            at_ms: now_ms(),
            fleet: self.fleet.clone(),
            host: self.host.clone(),
            slots,
        };
        let oldest = sample.at_ms.saturating_sub(millis(WINDOW));
        let mut conn = self.queues.conn();
        let _: String = redis::cmd("XADD")
            .arg(key(&self.queues.settings().prefix, supervisor))
            .arg("MINID")
            .arg("~")
            .arg(oldest)
            .arg("*")
            .arg("s")
            .arg(serde_json::to_string(&sample)?)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

/// One supervisor's samples since some time, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    pub supervisor: String,
    pub samples: Vec<Sample>,
}

/// The samples written since `since_ms` (at most the newest [`MAX_READ`] each) of every
/// supervisor with samples in that time, sorted by name. One `SMEMBERS`, then one
/// `XREVRANGE` per supervisor.
pub async fn read(queues: &Queues, since_ms: u64) -> Result<Vec<History>, QueueError> {
    let prefix = &queues.settings().prefix;
    let mut conn = queues.conn();
    let names: BTreeSet<String> = redis::cmd("SMEMBERS")
        .arg(names_key(prefix))
        .query_async(&mut conn)
        .await?;
    let mut out = Vec::with_capacity(names.len());
    for supervisor in names {
        let rows: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(key(prefix, &supervisor))
            .arg("+")
            .arg(since_ms)
            .arg("COUNT")
            .arg(MAX_READ)
            .query_async(&mut conn)
            .await?;
        let mut samples: Vec<Sample> = rows
            .into_iter()
            .filter_map(|(_, fields)| {
                let json = fields.into_iter().find(|(k, _)| k == "s")?.1;
                serde_json::from_str(&json).ok()
            })
            .collect();
        samples.sort_by_key(|s| s.at_ms);
        // A supervisor gone from every configuration keeps its name in the set; once its
        // history has aged out it is not shown.
        if samples.is_empty() {
            continue;
        }
        out.push(History {
            supervisor,
            samples,
        });
    }
    Ok(out)
}

/// The split summed over the live instances after each sample, oldest first: one point per
/// sample time (a step series). An instance counts from its sample until its next one, or
/// until [`STALE`] has passed since.
pub fn totals(samples: &[Sample]) -> Vec<(u64, BTreeMap<String, usize>)> {
    let mut latest: BTreeMap<&str, &Sample> = BTreeMap::new();
    let mut out: Vec<(u64, BTreeMap<String, usize>)> = Vec::new();
    for s in samples {
        latest.insert(&s.fleet, s);
        let split = sum_live(latest.values().copied(), s.at_ms);
        match out.last_mut() {
            Some((at, last)) if *at == s.at_ms => *last = split,
            _ => out.push((s.at_ms, split)),
        }
    }
    out
}

/// The latest sample of each instance live at `at_ms` (sampled within [`STALE`] before it,
/// with a non-empty split).
pub fn live_at(samples: &[Sample], at_ms: u64) -> Vec<&Sample> {
    let mut latest: BTreeMap<&str, &Sample> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.at_ms <= at_ms) {
        latest.insert(&s.fleet, s);
    }
    latest.into_values().filter(|s| is_live(s, at_ms)).collect()
}

/// The split summed over the instances live at `at_ms`.
pub fn total_at(samples: &[Sample], at_ms: u64) -> BTreeMap<String, usize> {
    sum_live(live_at(samples, at_ms).into_iter(), at_ms)
}

fn sum_live<'a>(samples: impl Iterator<Item = &'a Sample>, at_ms: u64) -> BTreeMap<String, usize> {
    let mut sum = BTreeMap::new();
    for s in samples.filter(|s| is_live(s, at_ms)) {
        for (q, n) in &s.slots {
            *sum.entry(q.clone()).or_insert(0) += n;
        }
    }
    sum
}

fn is_live(s: &Sample, at_ms: u64) -> bool {
    !s.slots.is_empty() && at_ms.saturating_sub(s.at_ms) <= millis(STALE)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The stream of `supervisor`'s samples under `prefix`.
pub fn key(prefix: &str, supervisor: &str) -> String {
    format!("{{{prefix}:slots}}:sup:{supervisor}")
}

/// The SET of supervisors with a history under `prefix`.
fn names_key(prefix: &str) -> String {
    format!("{{{prefix}:slots}}:names")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, fleet: &str, slots: &[(&str, usize)]) -> Sample {
        Sample {
            at_ms,
            fleet: fleet.into(),
            host: "h".into(),
            slots: slots.iter().map(|(q, n)| ((*q).to_owned(), *n)).collect(),
        }
    }

    #[test]
    fn instances_are_summed_while_live() {
        let m = |pairs: &[(&str, usize)]| -> BTreeMap<String, usize> {
            pairs.iter().map(|(q, n)| ((*q).to_owned(), *n)).collect()
        };
        let s = [
            sample(1_000, "a", &[("hot", 4), ("cold", 4)]),
            sample(2_000, "b", &[("hot", 4), ("cold", 4)]),
            sample(3_000, "a", &[("hot", 5), ("cold", 3)]),
            sample(4_000, "b", &[]),
        ];
        let t = totals(&s);
        assert_eq!(t[0], (1_000, m(&[("hot", 4), ("cold", 4)])));
        assert_eq!(t[1], (2_000, m(&[("hot", 8), ("cold", 8)])));
        assert_eq!(t[2], (3_000, m(&[("hot", 9), ("cold", 7)])));
        assert_eq!(t[3], (4_000, m(&[("hot", 5), ("cold", 3)])), "b stopped");
        assert_eq!(total_at(&s, 4_500), m(&[("hot", 5), ("cold", 3)]));
        let stale = 3_000 + millis(STALE) + 1;
        assert!(total_at(&s, stale).is_empty(), "a went quiet");
        assert_eq!(live_at(&s, 2_500).len(), 2);
        assert_eq!(key("sb", "mixed"), "{sb:slots}:sup:mixed");
    }
}
