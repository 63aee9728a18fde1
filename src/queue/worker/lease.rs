//! The lease keeper: renews the worker's lease, and fences the worker when it cannot.
//!
//! A worker's lease is its score in the queue's `workers` set; the rescuer hands the jobs of
//! a worker whose lease passed to others. A worker cut off from Redis cannot renew, and after
//! the lease its leased jobs may already run elsewhere. So once renewal has failed for
//! [`FENCE_AFTER`] of the lease, the worker is fenced: it starts none of the jobs it leased
//! and has not started, hands them back (the hand-back is written when Redis answers again,
//! and skipped for any job rescued meanwhile), and starts jobs again only when a renewal
//! succeeds. Jobs already running go on; their lease covers them for the rest of the lease.

use std::{sync::Arc, time::Duration};

use super::state::Shared;
use crate::{queue::job, telemetry::metric};

/// The share of the lease after which a worker that could not renew stops starting jobs.
pub(crate) const FENCE_AFTER: f64 = 0.5;

/// Renew every third of the lease; check every tenth whether renewal failed for too long.
pub(super) async fn keep(shared: Arc<Shared>) {
    let lease = Duration::from_secs(shared.queues.settings().lease_secs);
    let mut tick = tokio::time::interval(lease / 10);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lease_ms = lease.as_millis() as u64;
    loop {
        tick.tick().await;
        // The completer is gone: the worker retired and holds nothing any more.
        if shared.acks.is_closed() {
            return;
        }
        let since = job::now_ms().saturating_sub(shared.renewed_at_ms());
        if since >= lease_ms / 3 {
            renew(&shared, lease / 10).await;
        }
        let since = job::now_ms().saturating_sub(shared.renewed_at_ms());
        if since as f64 > lease_ms as f64 * FENCE_AFTER {
            shared.fence(since);
        }
    }
}

/// One heartbeat, given up after `limit` (a cut connection must not stall the checks).
async fn renew(shared: &Shared, limit: Duration) {
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
        Ok(Ok(_)) => shared.renewed(sent),
        Ok(Err(e)) => {
            metric::redis_error("heartbeat");
            tracing::error!(worker = %shared.worker_id, error = %e, "heartbeat failed");
        }
        Err(_) => {
            metric::redis_error("heartbeat");
            tracing::error!(worker = %shared.worker_id, timeout_ms = limit.as_millis() as u64, "heartbeat got no answer");
        }
    }
}
