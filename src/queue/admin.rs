//! What operators read and change: stats, pause/continue, the dead set, workers.

use std::collections::HashMap;

use serde::Serialize;

use super::{
    QueueError, Queues,
    job::{self, Envelope},
    keys, scripts, seal,
};

/// The numbers of one queue, each read in O(1).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Ready jobs waiting for a worker.
    pub pending: u64,
    /// Scheduled jobs and retries waiting for their time.
    pub delayed: u64,
    /// Jobs leased to workers right now.
    pub running: u64,
    /// Jobs in the dead set.
    pub dead: u64,
    /// Jobs waiting behind an earlier job of their sequence key (not yet pending).
    pub waiting: u64,
    /// Jobs that passed their expiry before they started (never run, not dead), ever.
    pub expired: u64,
    /// Jobs completed successfully, ever.
    pub processed: u64,
    /// Attempts that ended in failure, ever.
    pub failed: u64,
    /// Seconds the oldest pending job has waited (0 when none is pending).
    pub oldest_pending_secs: f64,
    /// Whether fetching is paused.
    pub paused: bool,
}

/// A dead job as listed to operators.
#[derive(Debug, Clone, Serialize)]
pub struct DeadJob {
    /// Job id.
    pub id: String,
    /// Kind name.
    pub kind: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: Option<String>,
    /// When it died, ms since the epoch.
    pub died_at_ms: u64,
    /// When it was enqueued, ms since the epoch.
    pub enqueued_at_ms: u64,
    /// Its arguments as JSON.
    pub args: serde_json::Value,
}

/// A worker registered on a queue.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerInfo {
    /// Worker id: `<host>:<pid>:<supervisor>:<queue>:<n>:<random>`.
    pub id: String,
    /// Queue it fetches from.
    pub queue: String,
    /// Jobs it holds now.
    pub leased: u64,
    /// Seconds until its lease expires without a heartbeat (negative: expired).
    pub lease_left_secs: f64,
}

/// Which dead jobs an operation applies to.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These ids.
    Ids(Vec<String>),
    /// Every dead job of the queue.
    All,
}

impl Queues {
    /// Remember `queue` in the registry so `status` lists it even when idle.
    pub async fn register_queue(&self, queue: &str) -> Result<(), QueueError> {
        self.keys(queue)?;
        let mut conn = self.conn();
        let () = redis::cmd("SADD")
            .arg(keys::registry_key(&self.settings.prefix))
            .arg(queue)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Keep the result job `id` recorded, for the completed-jobs window.
    pub async fn store_result(
        &self,
        queue: &str,
        id: &str,
        value: &serde_json::Value,
    ) -> Result<(), QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let text = self.seal_result(id, value.to_string());
        let () = redis::cmd("SET")
            .arg(k.result(id))
            .arg(text)
            .arg("EX")
            .arg(self.settings.completed_retention_secs.max(1))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// The result completed job `id` recorded, while the completed window keeps it.
    pub async fn job_result(
        &self,
        queue: &str,
        id: &str,
    ) -> Result<Option<serde_json::Value>, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let raw: Option<String> = redis::cmd("GET")
            .arg(k.result(id))
            .query_async(&mut conn)
            .await?;
        Ok(raw.and_then(|r| {
            match seal::open_text(self.key_ring(), seal::Part::Result { id }, &r) {
                Ok(text) => serde_json::from_str(&text).ok(),
                Err(e) => Some(serde_json::Value::String(format!("<{e}>"))),
            }
        }))
    }

    /// Every registered queue name, sorted.
    pub async fn queue_names(&self) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn();
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(keys::registry_key(&self.settings.prefix))
            .query_async(&mut conn)
            .await?;
        names.sort();
        Ok(names)
    }

    /// The stats of one partition (or an unpartitioned queue) in one round trip.
    async fn stats_one(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let (pending, delayed, dead, counters, oldest, paused): (
            u64,
            u64,
            u64,
            HashMap<String, i64>,
            Option<String>,
            bool,
        ) = redis::pipe()
            .llen(&k.pending)
            .zcard(&k.delayed)
            .zcard(&k.dead_at)
            .hgetall(&k.stats)
            .lindex(&k.pending, -1)
            .exists(&k.paused)
            .query_async(&mut conn)
            .await?;
        let counter = |name: &str| counters.get(name).copied().unwrap_or(0).max(0) as u64;
        // The next element out is a plain item or a lane token `~<ms>` (the time its job
        // became ready).
        let ready_at_us = |next: &str| match next.strip_prefix('~') {
            Some(ms) => ms.parse::<u64>().ok().map(|ms| ms * 1000),
            None => job::decode(next).ok().map(|(_, env)| env.ready_at_us()),
        };
        let oldest_pending_secs = oldest
            .as_deref()
            .and_then(ready_at_us)
            .map_or(0.0, |at| job::now_us().saturating_sub(at) as f64 / 1e6);
        // Pending counts plain items and lane tokens, plus tokens parked while their tenant
        // is at its limit, less the cancelled jobs still sitting in a list.
        let pending = (pending + counter("parked")).saturating_sub(counter("tomb"));
        Ok(QueueStats {
            name: queue.to_owned(),
            pending,
            delayed,
            running: counter("running"),
            dead,
            waiting: counter("waiting"),
            expired: counter("expired"),
            processed: counter("processed"),
            failed: counter("failed"),
            oldest_pending_secs,
            paused,
        })
    }

    /// Stop workers from fetching `queue` (running jobs finish; nothing is lost).
    async fn pause_one(&self, queue: &str) -> Result<(), QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let () = redis::cmd("SET")
            .arg(&k.paused)
            .arg(1)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Let workers fetch `queue` again.
    async fn resume_one(&self, queue: &str) -> Result<(), QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let () = redis::cmd("DEL")
            .arg(&k.paused)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Dead jobs of `queue`, newest first, at most `limit`.
    async fn dead_list_one(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let ids: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&k.dead_at)
            .arg(0)
            .arg(limit.saturating_sub(1) as i64)
            .arg("REV")
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let items: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&k.dead)
            .arg(ids.iter().map(|(id, _)| id).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for ((id, died), item) in ids.into_iter().zip(items) {
            let Some(item) = item else { continue };
            let Ok((_, env)) = job::decode(&item) else {
                // An item that never decoded was sent here as is; show it rather than fail.
                out.push(DeadJob {
                    id,
                    kind: "<malformed>".into(),
                    attempts: 0,
                    error: Some(format!("malformed queue item: {item}")),
                    died_at_ms: died as u64,
                    enqueued_at_ms: 0,
                    args: serde_json::Value::Null,
                });
                continue;
            };
            out.push(DeadJob {
                id,
                kind: env.kind.clone(),
                attempts: env.attempt,
                error: if env.lost {
                    Some(format!(
                        "its worker was lost {} times while running it (process crash, OOM kill or lost host); set aside as poisonous",
                        env.resc
                    ))
                } else {
                    self.open_error(&env)
                },
                died_at_ms: died as u64,
                enqueued_at_ms: env.enq_us / 1000,
                args: self.plain_args(&env).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// The arguments of `env` as JSON, opened; ones that do not open show why not.
    pub(crate) fn plain_args(&self, env: &Envelope) -> Option<serde_json::Value> {
        match self.open_args(env) {
            Ok(args) => serde_json::from_str(args.get()).ok(),
            Err(e) => Some(serde_json::Value::String(format!("<{e}>"))),
        }
    }

    /// Put dead jobs back on the queue with fresh attempts and retry budgets; returns how many.
    async fn dead_retry_one(&self, queue: &str, which: Selection) -> Result<u64, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let mut total = 0;
        loop {
            let ids = self.dead_chunk(&k.dead_at, &which).await?;
            if ids.is_empty() {
                return Ok(total);
            }
            let items: Vec<Option<String>> = redis::cmd("HMGET")
                .arg(&k.dead)
                .arg(&ids)
                .query_async(&mut conn)
                .await?;
            let mut invocation = scripts::REVIVE.prepare_invoke();
            invocation
                .key(&k.dead)
                .key(&k.dead_at)
                .key(&k.pending)
                .arg(k.base())
                .arg(job::now_ms());
            for (id, item) in ids.iter().zip(items) {
                let Some(item) = item else { continue };
                let (_, env) = job::decode(&item)?;
                invocation.arg(id).arg(job::encode(id, &revived(env)));
            }
            let n: u64 = invocation.invoke_async(&mut conn).await?;
            total += n;
            if matches!(which, Selection::Ids(_)) || n == 0 {
                return Ok(total);
            }
        }
    }

    /// Delete dead jobs for good; returns how many.
    async fn dead_forget_one(&self, queue: &str, which: Selection) -> Result<u64, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let mut total = 0;
        loop {
            let ids = self.dead_chunk(&k.dead_at, &which).await?;
            if ids.is_empty() {
                return Ok(total);
            }
            let (n, _): (u64, u64) = redis::pipe()
                .atomic()
                .hdel(&k.dead, &ids)
                .zrem(&k.dead_at, &ids)
                .query_async(&mut conn)
                .await?;
            total += n;
            if matches!(which, Selection::Ids(_)) || n == 0 {
                return Ok(total);
            }
        }
    }

    async fn dead_chunk(
        &self,
        dead_at: &str,
        which: &Selection,
    ) -> Result<Vec<String>, QueueError> {
        match which {
            Selection::Ids(ids) => Ok(ids.clone()),
            Selection::All => {
                let mut conn = self.conn();
                Ok(redis::cmd("ZRANGE")
                    .arg(dead_at)
                    .arg(0)
                    .arg(499)
                    .query_async(&mut conn)
                    .await?)
            }
        }
    }

    /// Workers registered on `queue`, with what they hold.
    async fn workers_one(&self, queue: &str) -> Result<Vec<WorkerInfo>, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(&k.workers)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, _) in &entries {
            pipe.hlen(k.leased(id));
        }
        let leased: Vec<u64> = pipe.query_async(&mut conn).await?;
        let now = job::now_ms() as f64;
        Ok(entries
            .into_iter()
            .zip(leased)
            .map(|((id, expiry), leased)| WorkerInfo {
                id,
                queue: queue.to_owned(),
                leased,
                lease_left_secs: (expiry - now) / 1000.0,
            })
            .collect())
    }
}

/// A dead job made fresh for another round: attempts, retry budget and snooze cap reset (both
/// count from a first failure or snooze, so a job that died of one would otherwise die again
/// at its next failure or snooze), error kept out of the way.
fn revived(mut env: Envelope) -> Envelope {
    env.attempt = 0;
    env.first_failed_at = None;
    env.snz = 0;
    env.first_snoozed_at = None;
    env.resc = 0;
    env.lost = false;
    env.run_at = None;
    env.err = None;
    env.failed_at = None;
    env
}

/// What operators do to a queue, on every partition of it (a name with `#p` names one
/// partition only). An unpartitioned queue costs what it always did: one partition.
impl Queues {
    fn partitions_of(&self, queue: &str) -> Vec<String> {
        if queue.contains('#') {
            vec![queue.to_owned()]
        } else {
            self.partition_names(queue)
        }
    }

    /// The stats of `queue`, its partitions summed (one round trip per partition).
    pub async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let mut total = QueueStats {
            name: queue.to_owned(),
            ..QueueStats::default()
        };
        for part in self.partition_stats(queue).await? {
            total.pending += part.pending;
            total.delayed += part.delayed;
            total.running += part.running;
            total.dead += part.dead;
            total.waiting += part.waiting;
            total.expired += part.expired;
            total.processed += part.processed;
            total.failed += part.failed;
            total.oldest_pending_secs = total.oldest_pending_secs.max(part.oldest_pending_secs);
            total.paused |= part.paused;
        }
        Ok(total)
    }

    /// The stats of each partition of `queue` (one for an unpartitioned queue), named
    /// `queue`, `queue#1`, ...
    pub async fn partition_stats(&self, queue: &str) -> Result<Vec<QueueStats>, QueueError> {
        let mut out = Vec::new();
        for part in self.partitions_of(queue) {
            out.push(self.stats_one(&part).await?);
        }
        Ok(out)
    }

    /// Stop workers from fetching `queue`, every partition (running jobs finish; nothing is
    /// lost).
    pub async fn pause(&self, queue: &str) -> Result<(), QueueError> {
        for part in self.partitions_of(queue) {
            self.pause_one(&part).await?;
        }
        Ok(())
    }

    /// Let workers fetch `queue` again, every partition.
    pub async fn resume(&self, queue: &str) -> Result<(), QueueError> {
        for part in self.partitions_of(queue) {
            self.resume_one(&part).await?;
        }
        Ok(())
    }

    /// Dead jobs of `queue`, newest first over all partitions, at most `limit`.
    pub async fn dead_list(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, QueueError> {
        let mut out = Vec::new();
        for part in self.partitions_of(queue) {
            out.extend(self.dead_list_one(&part, limit).await?);
        }
        out.sort_by_key(|d| std::cmp::Reverse(d.died_at_ms));
        out.truncate(limit);
        Ok(out)
    }

    /// Put dead jobs back on the queue with fresh attempts and retry budgets (each in its
    /// own partition); returns how many.
    pub async fn dead_retry(&self, queue: &str, which: Selection) -> Result<u64, QueueError> {
        let mut total = 0;
        for part in self.partitions_of(queue) {
            total += self.dead_retry_one(&part, which.clone()).await?;
        }
        Ok(total)
    }

    /// Delete dead jobs for good, in every partition; returns how many.
    pub async fn dead_forget(&self, queue: &str, which: Selection) -> Result<u64, QueueError> {
        let mut total = 0;
        for part in self.partitions_of(queue) {
            total += self.dead_forget_one(&part, which.clone()).await?;
        }
        Ok(total)
    }

    /// Workers registered on `queue`, on any partition, with what they hold.
    pub async fn workers(&self, queue: &str) -> Result<Vec<WorkerInfo>, QueueError> {
        let mut out = Vec::new();
        for part in self.partitions_of(queue) {
            let mut found = self.workers_one(&part).await?;
            for w in &mut found {
                queue.clone_into(&mut w.queue);
            }
            out.extend(found);
        }
        Ok(out)
    }
}
