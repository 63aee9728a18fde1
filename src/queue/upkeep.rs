//! Queue upkeep operations, each one bounded round of work; the maintenance services in
//! `crate::maintenance` run them in loops.

use super::{QueueError, Queues, scripts};

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
    /// Dead jobs older than the dead retention.
    pub dead: u64,
}

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
        Ok(Pruned { completed, dead })
    }
}
