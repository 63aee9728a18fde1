//! Queue upkeep operations, each one bounded round of work; the maintenance services in
//! `crate::maintenance` run them in loops.
//!
//! Pruning has two clocks: every dead job goes after `dead_retention_secs`, and dead and
//! expired jobs of the personal kinds (`queue.personal_kinds`) after the shorter
//! `personal_dead_retention_secs`. Finding those means reading items, since the sets are
//! ordered by time, not kind: a cursor per set (`personal_cursor`) remembers how far the
//! pruner has looked, so each round reads at most [`PERSONAL_SCAN`] items per set and each
//! item is read about once, not once per round.

use super::{QueueError, QueueKeys, Queues, job, scripts};

/// Largest chunk the promoter moves in one script call.
pub const PROMOTE_CHUNK: usize = 500;

/// Minutes of per-minute completion counts kept (the dashboard reads the last 61).
pub const THROUGHPUT_MINUTES: i64 = 61;

/// What one promote round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promoted {
    /// Jobs moved from delayed to pending.
    pub moved: u64,
    /// Due time (ms) of the next delayed job, if any.
    pub next_due_ms: Option<u64>,
}

/// What one prune round removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Completed-job records older than the retention window.
    pub completed: u64,
    /// Dead jobs older than the dead retention, or of a personal kind and older than the
    /// personal retention.
    pub dead: u64,
    /// Expired jobs of a personal kind older than the personal retention.
    pub expired: u64,
}

/// Most items of one set (dead, expired) one prune round reads looking for personal kinds.
pub const PERSONAL_SCAN: usize = 500;

impl Queues {
    /// Move due delayed jobs of `queue` to pending, up to [`PROMOTE_CHUNK`].
    pub async fn promote(&self, queue: &str, now_ms: u64) -> Result<Promoted, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let (moved, next): (u64, i64) = scripts::PROMOTE
            .key(&k.delayed)
            .key(&k.pending)
            .arg(now_ms)
            .arg(PROMOTE_CHUNK)
            .arg(k.base())
            .arg(
                self.settings()
                    .tenant_rate_per_minute
                    .get(&k.name)
                    .copied()
                    .unwrap_or(0),
            )
            .invoke_async(&mut conn)
            .await?;
        Ok(Promoted {
            moved,
            next_due_ms: u64::try_from(next).ok(),
        })
    }

    /// Re-queue the jobs of every worker on `queue` whose lease expired before `now_ms`.
    /// Returns how many jobs went back.
    pub async fn rescue(&self, queue: &str, now_ms: u64) -> Result<u64, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let expired: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&k.workers)
            .arg("-inf")
            .arg(now_ms)
            .arg("LIMIT")
            .arg(0)
            .arg(100)
            .query_async(&mut conn)
            .await?;
        let mut total = 0;
        for worker in expired {
            let n: i64 = scripts::RESCUE
                .key(&k.workers)
                .key(k.leased(&worker))
                .key(k.inbox(&worker))
                .key(&k.pending)
                .key(&k.stats)
                .key(&k.dead)
                .key(&k.dead_at)
                .key(&k.delayed)
                .arg(&worker)
                .arg(now_ms)
                .arg(self.settings().max_rescues)
                .arg(k.sequence_prefix())
                .arg(k.base())
                .invoke_async(&mut conn)
                .await?;
            if n > 0 {
                tracing::warn!(queue, worker, jobs = n, "rescued jobs of a dead worker");
                total += n as u64;
            }
        }
        Ok(total)
    }

    /// Trim `queue`'s completed records and dead jobs older than their retention windows.
    pub async fn prune(&self, queue: &str, now_ms: u64) -> Result<Pruned, QueueError> {
        let k = self.keys(queue)?;
        let s = self.settings();
        let completed_cutoff = now_ms.saturating_sub(s.completed_retention_secs * 1000);
        let dead_cutoff = now_ms.saturating_sub(s.dead_retention_secs * 1000);
        let mut conn = self.conn();
        let completed: u64 = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&k.completed)
            .arg("-inf")
            .arg(completed_cutoff)
            .query_async(&mut conn)
            .await?;
        self.prune_done(&k.done, completed_cutoff).await?;
        // Throughput minutes past the hour the dashboard reads (at most ~1,440 a day when
        // no pruner ran).
        let minutes: Vec<i64> = redis::cmd("HKEYS")
            .arg(&k.throughput)
            .query_async(&mut conn)
            .await?;
        let oldest_kept = i64::try_from(now_ms / 60_000).unwrap_or(i64::MAX) - THROUGHPUT_MINUTES;
        let old: Vec<i64> = minutes.into_iter().filter(|m| *m < oldest_kept).collect();
        if !old.is_empty() {
            let () = redis::cmd("HDEL")
                .arg(&k.throughput)
                .arg(&old)
                .query_async(&mut conn)
                .await?;
        }
        let mut dead = 0;
        loop {
            let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
                .arg(&k.dead_at)
                .arg("-inf")
                .arg(dead_cutoff)
                .arg("LIMIT")
                .arg(0)
                .arg(500)
                .query_async(&mut conn)
                .await?;
            if ids.is_empty() {
                break;
            }
            let (n, _): (u64, u64) = redis::pipe()
                .atomic()
                .zrem(&k.dead_at, &ids)
                .hdel(&k.dead, &ids)
                .query_async(&mut conn)
                .await?;
            dead += n;
        }
        let personal_cutoff = now_ms.saturating_sub(s.personal_dead_retention_secs * 1000);
        dead += self.prune_personal(&k, Set::Dead, personal_cutoff).await?;
        let expired = self
            .prune_personal(&k, Set::Expired, personal_cutoff)
            .await?;
        Ok(Pruned {
            completed,
            dead,
            expired,
        })
    }

    /// Drop the entries of the completed list (`done`, newest first) that finished no later
    /// than `cutoff`, from its old end, a chunk at a time.
    async fn prune_done(&self, done: &str, cutoff: u64) -> Result<(), QueueError> {
        const CHUNK: isize = 500;
        let mut conn = self.conn();
        loop {
            let tail: Vec<String> = redis::cmd("LRANGE")
                .arg(done)
                .arg(-CHUNK)
                .arg(-1)
                .query_async(&mut conn)
                .await?;
            let old = tail
                .iter()
                .rev()
                .take_while(|entry| {
                    entry
                        .split(' ')
                        .nth(1)
                        .and_then(|ms| ms.parse::<u64>().ok())
                        .is_some_and(|ms| ms <= cutoff)
                })
                .count();
            if old == 0 {
                return Ok(());
            }
            // Entries pushed meanwhile went to the other end: the old end is still ours.
            let () = redis::cmd("LTRIM")
                .arg(done)
                .arg(0)
                .arg(-(old as isize) - 1)
                .query_async(&mut conn)
                .await?;
            if old < tail.len() {
                return Ok(());
            }
        }
    }

    /// Drop the jobs of personal kinds that entered `set` no later than `cutoff`, reading at
    /// most [`PERSONAL_SCAN`] items from where the last round stopped; how many went.
    ///
    /// Times in a set grow with the clock, so what lies before the cursor was looked at
    /// already. The cursor is `<time>:<n>`: the last time read, and how many jobs kept at that
    /// time were read (a whole batch can die in the same millisecond), so the next round
    /// starts right after them. (A host whose clock lags by more than a round's span could
    /// place a job behind the cursor, and an operator's forget or retry of a job at the
    /// cursor's own time shifts the count: `dead_retention_secs` still removes such jobs.)
    ///
    /// Fault points: dying after the drop and before the cursor moves reads the same chunk
    /// again next round (the dropped jobs are gone, the drop is idempotent); two pruners at
    /// once (the leader's loop and a `prune` job) drop the same jobs and write the same cursor.
    async fn prune_personal(
        &self,
        k: &QueueKeys,
        set: Set,
        cutoff: u64,
    ) -> Result<u64, QueueError> {
        let (at_key, items_key, field) = match set {
            Set::Dead => (&k.dead_at, &k.dead, "dead"),
            Set::Expired => (&k.expired_at, &k.expired, "expired"),
        };
        let mut conn = self.conn();
        let cursor: Option<String> = redis::cmd("HGET")
            .arg(k.personal_cursor())
            .arg(field)
            .query_async(&mut conn)
            .await?;
        let (from, skip) = cursor
            .as_deref()
            .and_then(|c| c.split_once(':'))
            .and_then(|(t, n)| Some((t.parse::<u64>().ok()?, n.parse::<usize>().ok()?)))
            .unwrap_or((0, 0));
        let seen: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
            .arg(at_key)
            .arg(from)
            .arg(cutoff)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(skip)
            .arg(PERSONAL_SCAN)
            .query_async(&mut conn)
            .await?;
        let seen: Vec<(String, u64)> = seen.into_iter().map(|(id, at)| (id, at as u64)).collect();
        let Some(&(_, last)) = seen.last() else {
            return Ok(0);
        };
        let items: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(items_key)
            .arg(seen.iter().map(|(id, _)| id).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await?;
        let settings = self.settings();
        let personal: Vec<bool> = items
            .iter()
            .map(|item| {
                item.as_deref()
                    .and_then(|item| job::decode(item).ok())
                    .is_some_and(|(_, env)| settings.is_personal(&env.kind))
            })
            .collect();
        let ids: Vec<&str> = seen
            .iter()
            .zip(&personal)
            .filter(|(_, p)| **p)
            .map(|((id, _), _)| id.as_str())
            .collect();
        let dropped: u64 = if ids.is_empty() {
            0
        } else {
            scripts::DROP_OLD
                .key(at_key)
                .key(items_key)
                .arg(cutoff)
                .arg(ids)
                .invoke_async(&mut conn)
                .await?
        };
        let kept_at_last = seen
            .iter()
            .zip(&personal)
            .filter(|((_, at), p)| *at == last && !**p)
            .count();
        let skip = kept_at_last + if last == from { skip } else { 0 };
        let () = redis::cmd("HSET")
            .arg(k.personal_cursor())
            .arg(field)
            .arg(format!("{last}:{skip}"))
            .query_async(&mut conn)
            .await?;
        Ok(dropped)
    }
}

/// A set of jobs kept for operators that the personal retention applies to.
#[derive(Debug, Clone, Copy)]
enum Set {
    Dead,
    Expired,
}
