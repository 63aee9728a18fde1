//! The lease keeper: renews the worker's lease, and fences the worker when it cannot.
//!
//! A worker's lease is its score in the queue's `workers` set; the rescuer hands the jobs of
//! a worker whose lease passed to others. A worker cut off from Redis cannot renew, and after
//! the lease its leased jobs may already run elsewhere. So once renewal has failed for
//! [`FENCE_AFTER`] of the lease, the worker is fenced: it starts none of the jobs it leased
//! and has not started, hands them back (the hand-back is written when Redis answers again,
//! and skipped for any job rescued meanwhile), and starts jobs again only when a renewal
//! succeeds. Jobs already running go on; their lease covers them for the rest of the lease.
//!
//! After a failover the new master may lag the old one by the last writes: a settlement it
//! never got leaves the job leased to this worker, which renews its lease and would hold the
//! job forever. So at each renewal the keeper compares the leases Redis holds for the worker
//! with the jobs the worker knows it holds; a lease it does not know of, seen at two
//! renewals in a row (a fetch in flight is never that slow), is handed back to the queue.

use std::{collections::HashSet, sync::Arc, time::Duration};

use super::state::{AckOp, Shared};
use crate::{queue::job, telemetry::metric};

/// The share of the lease after which a worker that could not renew stops starting jobs.
pub(crate) const FENCE_AFTER: f64 = 0.5;

/// Renew every third of the lease; check every tenth whether renewal failed for too long.
pub(super) async fn keep(shared: Arc<Shared>) {
    let lease = Duration::from_secs(shared.queues.settings().lease_secs);
    let mut tick = tokio::time::interval(lease / 10);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease_ms = lease.as_millis() as u64;
    let mut suspects = HashSet::new();
    loop {
        tick.tick().await;
        // The completer is gone: the worker retired and holds nothing any more.
        if shared.acks.is_closed() {
            return;
        }
        let since = job::now_ms().saturating_sub(shared.renewed_at_ms());
        if since >= lease_ms / 3 && renew(&shared, lease / 10).await {
            suspects = reconcile(&shared, suspects, lease / 10).await;
        }
        let since = job::now_ms().saturating_sub(shared.renewed_at_ms());
        if since as f64 > lease_ms as f64 * FENCE_AFTER {
            shared.fence(since);
        }
    }
}

/// One heartbeat, given up after `limit` (a cut connection must not stall the checks);
/// whether it renewed the lease.
async fn renew(shared: &Shared, limit: Duration) -> bool {
    let sent = job::now_ms();
    let mut conn = shared.queues.conn();
    let mut cmd = redis::cmd("ZADD");
    // XX: a worker that retired (deregistered) is not registered again.
    cmd.arg(&shared.keys.workers)
        .arg("XX")
        .arg(sent + shared.queues.settings().lease_secs * 1000)
        .arg(&shared.worker_id);
    let beat = cmd.query_async::<i64>(&mut conn);
    match tokio::time::timeout(limit, beat).await {
        Ok(Ok(_)) => {
            shared.renewed(sent);
            return true;
        }
        Ok(Err(e)) => {
            metric::redis_error("heartbeat");
            tracing::error!(worker = %shared.worker_id, error = %e, "heartbeat failed");
        }
        Err(_) => {
            metric::redis_error("heartbeat");
            tracing::error!(worker = %shared.worker_id, timeout_ms = limit.as_millis() as u64, "heartbeat got no answer");
        }
    }
    false
}

/// Hand back the leases Redis holds for this worker that the worker does not know of and
/// that were `suspects` already; returns the new suspects.
async fn reconcile(shared: &Shared, suspects: HashSet<String>, limit: Duration) -> HashSet<String> {
    let mut conn = shared.queues.conn();
    let mut cmd = redis::cmd("HKEYS");
    cmd.arg(&shared.leased_key);
    let Ok(Ok(ids)) = tokio::time::timeout(limit, cmd.query_async::<Vec<String>>(&mut conn)).await
    else {
        return suspects;
    };
    let (orphans, fresh): (Vec<String>, Vec<String>) = ids
        .into_iter()
        .filter(|id| !shared.holds(id))
        .partition(|id| suspects.contains(id));
    if !orphans.is_empty() {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&shared.leased_key).arg(&orphans);
        if let Ok(Ok(items)) =
            tokio::time::timeout(limit, cmd.query_async::<Vec<Option<String>>>(&mut conn)).await
        {
            let mut n = 0;
            for (id, item) in orphans.iter().zip(items) {
                if let Some(item) = item {
                    n += 1;
                    let _ = shared.acks.send(AckOp::Orphan {
                        id: Arc::from(id.as_str()),
                        item: Arc::from(item),
                    });
                }
            }
            tracing::warn!(queue = %shared.queue_name, worker = %shared.worker_id, jobs = n, "leases this worker did not know of (a failover lost their settlement): handed back");
        }
    }
    fresh.into_iter().collect()
}
