//! Per-kind completions and run time per minute, in Redis, for the dashboard's metrics pages
//! (what Horizon shows per job), kept in Redis so a dashboard on any host sees the fleet.
//!
//! Per partition of a queue, under the partition's hash tag like every key of it:
//! * `{tag}:kinds:<minute>` HASH `n:<kind>` -> jobs of the kind completed in that minute,
//!   `us:<kind>` -> their run time summed, in microseconds;
//! * `{tag}:kinds_max:<minute>` ZSET kind -> the longest of those runs (µs).
//!
//! `<minute>` is ms since the epoch / 60,000, as in the ack script's `throughput` hash. Both
//! keys expire [`KEEP_SECS`] after their last write: nothing prunes them, and Redis holds
//! two hours of minutes per queue at most.
//!
//! **Cost.** One pipelined round trip per ack batch, never per job: per kind in the batch two
//! `HINCRBY` and one `ZADD GT`, then one `EXPIRE` per key. The acker sends it after the
//! batch's ack committed and does not wait for the answer (a task of its own), so it adds
//! no latency to the ack path. `queue.kind_metrics = false` turns it off.
//!
//! **Fault points.** A process that dies after an ack and before this write loses that
//! batch's figures (the jobs are done; the pages undercount). A failed write is counted in
//! `switchboard_redis_errors_total{component="kind_metrics"}` and not retried. Only completed
//! runs count (like `throughput`); a job whose ack was skipped because its lease had passed
//! to the rescuer is counted here and again when its re-run completes (at least once, like
//! the jobs themselves).
//!
//! Reading ([`Queues::queue_hour`]) is one round trip per partition for the last hour.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{QueueError, Queues, keys::QueueKeys};
use crate::telemetry::metric;

/// How long a minute's keys live after their last write (two hours: the pages read one).
pub const KEEP_SECS: u64 = 7_200;

/// The minutes the pages read: this one and the 59 before it.
pub const MINUTES: u64 = 60;

/// One kind's completed runs: in one minute, or summed over several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Runs {
    /// Jobs completed.
    pub count: u64,
    /// Their run time summed, in µs.
    pub total_us: u64,
    /// The longest of them, in µs.
    pub max_us: u64,
}

impl Runs {
    /// One run of `us` microseconds.
    fn one(us: u64) -> Self {
        Self {
            count: 1,
            total_us: us,
            max_us: us,
        }
    }

    /// Add `other`'s runs to these.
    pub fn add(&mut self, other: Runs) {
        self.count += other.count;
        self.total_us += other.total_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The mean run time in ms; `None` when nothing ran.
    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.total_us as f64 / self.count as f64 / 1000.0)
    }
}

/// The completed runs of one ack batch, per kind (a batch holds a few kinds: a list).
#[derive(Debug, Default)]
struct Tally {
    kinds: Vec<(String, Runs)>,
}

impl Tally {
    fn add(&mut self, kind: &str, us: u64) {
        match self.kinds.iter_mut().find(|(k, _)| k == kind) {
            Some((_, runs)) => runs.add(Runs::one(us)),
            None => self.kinds.push((kind.to_owned(), Runs::one(us))),
        }
    }

    /// The writes of this tally into minute `minute` of the partition `keys`.
    fn pipeline(&self, keys: &QueueKeys, minute: u64) -> redis::Pipeline {
        let (sums, maxes) = (keys.kind_minute(minute), keys.kind_minute_max(minute));
        let mut pipe = redis::pipe();
        for (kind, runs) in &self.kinds {
            pipe.cmd("HINCRBY")
                .arg(&sums)
                .arg(format!("n:{kind}"))
                .arg(runs.count)
                .ignore();
            pipe.cmd("HINCRBY")
                .arg(&sums)
                .arg(format!("us:{kind}"))
                .arg(runs.total_us)
                .ignore();
            pipe.cmd("ZADD")
                .arg(&maxes)
                .arg("GT")
                .arg(runs.max_us)
                .arg(kind)
                .ignore();
        }
        for key in [&sums, &maxes] {
            pipe.cmd("EXPIRE").arg(key).arg(KEEP_SECS).ignore();
        }
        pipe
    }
}

/// Record the completed runs `(kind, µs)` of one ack batch of the partition `keys`, settled
/// at `now_ms`: one pipelined round trip, sent from a task of its own (see the module doc).
pub(crate) fn record<'a>(
    queues: &Queues,
    keys: &QueueKeys,
    now_ms: u64,
    runs: impl Iterator<Item = (&'a str, u64)>,
) {
    if !queues.settings().kind_metrics {
        return;
    }
    let mut tally = Tally::default();
    for (kind, us) in runs {
        tally.add(kind, us);
    }
    if tally.kinds.is_empty() {
        return;
    }
    let pipe = tally.pipeline(keys, now_ms / 60_000);
    let mut conn = queues.conn();
    tokio::spawn(async move {
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            metric::redis_error("kind_metrics");
            tracing::warn!(error = %e, "recording per-kind run times failed");
        }
    });
}

/// One minute of a queue: the ack script's count of completed jobs and the runs per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Minute {
    /// The minute's start, ms since the epoch.
    pub at_ms: u64,
    /// Jobs completed (the ack script's `throughput` counter).
    pub completed: u64,
    /// Completed runs per kind.
    pub kinds: BTreeMap<String, Runs>,
}

impl Minute {
    /// The runs of every kind together.
    pub fn runs(&self) -> Runs {
        let mut all = Runs::default();
        for r in self.kinds.values() {
            all.add(*r);
        }
        all
    }
}

impl Queues {
    /// The last [`MINUTES`] minutes of `queue` up to `now_ms` (the current one included),
    /// oldest first, summed over its partitions: one round trip per partition.
    pub async fn queue_hour(&self, queue: &str, now_ms: u64) -> Result<Vec<Minute>, QueueError> {
        let current = now_ms / 60_000;
        let minutes: Vec<u64> = (current + 1 - MINUTES..=current).collect();
        let mut out: Vec<Minute> = minutes
            .iter()
            .map(|m| Minute {
                at_ms: m * 60_000,
                ..Minute::default()
            })
            .collect();
        for part in self.partition_names(queue) {
            let k = self.keys(&part)?;
            let mut pipe = redis::pipe();
            pipe.cmd("HMGET").arg(&k.throughput).arg(&minutes);
            for m in &minutes {
                pipe.cmd("HGETALL").arg(k.kind_minute(*m));
            }
            for m in &minutes {
                pipe.cmd("ZRANGE")
                    .arg(k.kind_minute_max(*m))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES");
            }
            let mut replies: Vec<redis::Value> = pipe.query_async(&mut self.conn()).await?;
            let maxes = replies.split_off(1 + minutes.len());
            let sums = replies.split_off(1);
            let counts: Vec<Option<u64>> =
                redis::from_redis_value(replies.pop().unwrap_or(redis::Value::Nil))?;
            for (i, ((sums, maxes), minute)) in
                sums.into_iter().zip(maxes).zip(&mut out).enumerate()
            {
                minute.completed += counts.get(i).copied().flatten().unwrap_or(0);
                let sums: HashMap<String, u64> = redis::from_redis_value(sums)?;
                let maxes: Vec<(String, f64)> = redis::from_redis_value(maxes)?;
                merge(&mut minute.kinds, &sums, &maxes);
            }
        }
        Ok(out)
    }
}

/// Add one partition's minute (`n:`/`us:` fields and maxima) to `kinds`.
fn merge(kinds: &mut BTreeMap<String, Runs>, sums: &HashMap<String, u64>, maxes: &[(String, f64)]) {
    for (field, n) in sums {
        let Some(kind) = field.strip_prefix("n:") else {
            continue;
        };
        let runs = Runs {
            count: *n,
            total_us: sums.get(&format!("us:{kind}")).copied().unwrap_or(0),
            max_us: maxes
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, us)| *us as u64),
        };
        kinds.entry(kind.to_owned()).or_default().add(runs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_summed_per_kind() {
        let mut t = Tally::default();
        for (kind, us) in [("a", 100), ("b", 7), ("a", 300), ("a", 200)] {
            t.add(kind, us);
        }
        let expected = [
            (
                "a".to_owned(),
                Runs {
                    count: 3,
                    total_us: 600,
                    max_us: 300,
                },
            ),
            ("b".to_owned(), Runs::one(7)),
        ];
        assert_eq!(t.kinds, expected);
        assert_eq!(t.kinds[0].1.mean_ms(), Some(0.2));
        assert_eq!(Runs::default().mean_ms(), None);
    }

    #[test]
    fn partitions_merge_into_one_minute() {
        let mut kinds = BTreeMap::new();
        let sums = HashMap::from([("n:a".to_owned(), 2), ("us:a".to_owned(), 50)]);
        merge(&mut kinds, &sums, &[("a".to_owned(), 40.0)]);
        let sums = HashMap::from([("n:a".to_owned(), 1), ("us:a".to_owned(), 90)]);
        merge(&mut kinds, &sums, &[("a".to_owned(), 90.0)]);
        assert_eq!(
            kinds["a"],
            Runs {
                count: 3,
                total_us: 140,
                max_us: 90,
            }
        );
    }
}
