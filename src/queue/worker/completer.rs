//! The completer: writes settlements to Redis in batches (one `ack` script call for up to
//! [`ACK_BATCH`] jobs) and returns their credits only after the write committed. (The lease
//! is renewed by the lease keeper, which a stalled write cannot hold up.)
//!
//! A worker with slots of its own has the same call lease jobs for the slots the batch frees
//! (`ack_fetch.lua`), so a busy worker settles and refills in one round trip; what the call
//! does not fill goes back to the fetcher as credits.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::sync::mpsc;

use super::{
    fetcher::{self, Fetched},
    state::{AckOp, Shared},
};
use crate::{
    queue::{
        job::{self, Job},
        kind_metrics, scripts,
    },
    telemetry::metric,
};

/// Most settlements written by one ack script call.
const ACK_BATCH: usize = 500;

/// The acker: batches settlements into one script call each, returns credits after the write
/// commits. With `refill` (the worker's jobs channel, held weakly: the stream of jobs ends
/// when the fetcher stops), the call also leases jobs for the credits it frees.
pub(super) async fn ack_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<AckOp>,
    refill: Option<mpsc::WeakUnboundedSender<Job>>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    let mut waiters = Vec::new();
    while let Some(op) = rx.recv().await {
        let mut stop = false;
        let mut next = Some(op);
        while let Some(op) = next.take() {
            match op {
                AckOp::Flush(tx) => waiters.push(tx),
                AckOp::Shutdown => stop = true,
                op => batch.push(op),
            }
            if batch.len() < ACK_BATCH {
                next = rx.try_recv().ok();
            }
        }
        write(&shared, &mut batch, refill.as_ref()).await;
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
        if stop {
            return;
        }
    }
}

/// Write one batch, retrying until Redis takes it: an unwritten ack would leave the job
/// leased until the rescuer re-ran it, so it is worth waiting for. The first try also leases
/// jobs for the freed credits when `refill` is open and the worker is not stopping; a retry
/// only settles (a lease whose answer was lost is handed back by the lease keeper).
async fn write(
    shared: &Shared,
    batch: &mut Vec<AckOp>,
    refill: Option<&mpsc::WeakUnboundedSender<Job>>,
) {
    if batch.is_empty() {
        return;
    }
    let now = job::now_ms();
    let orphans = batch
        .iter()
        .filter(|op| matches!(op, AckOp::Orphan { .. }))
        .count();
    let freed = batch.len() - orphans;
    let jobs = refill
        .filter(|_| freed > 0 && !shared.stop.is_cancelled())
        .and_then(mpsc::WeakUnboundedSender::upgrade);
    let want = if jobs.is_some() {
        freed.min(shared.queues.settings().fetch_batch)
    } else {
        0
    };
    let mut failures = 0u32;
    let leased = loop {
        let mut conn = shared.queues.conn();
        let written = if failures == 0 && want > 0 {
            invocation(shared, batch, now, want)
                .invoke_async::<(u64, u64, redis::Value)>(&mut conn)
                .await
                .map(|(settled, skipped, leased)| (settled, skipped, Some(leased)))
        } else {
            invocation(shared, batch, now, 0)
                .invoke_async::<(u64, u64)>(&mut conn)
                .await
                .map(|(settled, skipped)| (settled, skipped, None))
        };
        match written {
            Ok((settled, skipped, leased)) => {
                if skipped > 0 {
                    tracing::warn!(worker = %shared.worker_id, skipped, "acks for jobs whose lease had expired; they were re-queued");
                }
                debug_assert!(settled + skipped == batch.len() as u64);
                break leased;
            }
            Err(e) => {
                failures += 1;
                metric::redis_error("ack");
                tracing::error!(worker = %shared.worker_id, error = %e, failures, "ack failed; retrying");
                tokio::time::sleep(Duration::from_millis((50u64 << failures.min(6)).min(2_000)))
                    .await;
            }
        }
    };
    let done = batch.iter().filter_map(|op| match op {
        AckOp::Done { kind, ran_us, .. } => Some((kind.as_str(), *ran_us)),
        _ => None,
    });
    kind_metrics::record(&shared.queues, &shared.keys, now, done);
    // Settled jobs are let go before the new ones are held: a job released unstarted may
    // have been leased again by the same call.
    shared.let_go(batch.iter().filter_map(AckOp::id));
    let items = match leased.map(|value| fetcher::leased(shared, value, now)) {
        Some(Ok(Fetched::Jobs(items))) => items,
        Some(Ok(Fetched::Paused)) | None => Vec::new(),
        Some(Err(e)) => {
            // The jobs stay leased in Redis, unknown here: the lease keeper hands them back.
            metric::redis_error("fetch");
            tracing::error!(queue = %shared.queue_name, error = %e, "reading the jobs leased with an ack failed");
            Vec::new()
        }
    };
    if !items.is_empty() {
        shared.counters.leased.fetch_add(1, Ordering::Relaxed);
    }
    shared.credits.add_permits(freed - items.len());
    if let Some(jobs) = jobs {
        for item in items {
            fetcher::deliver(shared, &jobs, item);
        }
    }
    batch.clear();
}

/// A completion's entry in the queue's recently completed list: "<id> <finish ms> <kind>
/// <tenant>" (the tenant empty for none). Written by hand: it is made once per job.
fn done_entry(id: &str, now: &str, kind: &str, tenant: Option<&str>) -> String {
    let tenant = tenant.unwrap_or("");
    let mut entry = String::with_capacity(id.len() + now.len() + kind.len() + tenant.len() + 3);
    for (i, part) in [id, now, kind, tenant].into_iter().enumerate() {
        if i > 0 {
            entry.push(' ');
        }
        entry.push_str(part);
    }
    entry
}

/// The ack script's call for `batch`, settled at `now`; with `lease` > 0 the call of
/// `ack_fetch.lua`, leasing up to that many jobs too.
fn invocation(
    shared: &Shared,
    batch: &[AckOp],
    now: u64,
    lease: usize,
) -> redis::ScriptInvocation<'static> {
    let settings = shared.queues.settings();
    let k = &shared.keys;
    let script = if lease > 0 {
        &scripts::ACK_FETCH
    } else {
        &scripts::ACK
    };
    let mut invocation = script.prepare_invoke();
    for key in k.ack_script_keys(&shared.leased_key) {
        invocation.key(key);
    }
    invocation
        .arg(now)
        .arg(settings.completed_max)
        .arg(settings.dead_max)
        .arg(k.base());
    // Completions leased in one epoch of the lease (the first one's) and outside a sequence
    // are settled in one step by the script ('C'); the rest one by one.
    let epochs = shared.epochs(batch.iter().map(|op| match op {
        AckOp::Done { id, seq: None, .. } => Some(&**id),
        _ => None,
    }));
    let epoch = epochs.iter().flatten().next().cloned();
    invocation.arg(epoch.as_deref().unwrap_or(""));
    let now_text = now.to_string();
    for (op, leased_in) in batch.iter().zip(&epochs) {
        match op {
            AckOp::Done {
                id,
                seq,
                kind,
                tenant,
                ..
            } => invocation
                .arg(if leased_in.is_some() && *leased_in == epoch {
                    "C"
                } else {
                    "c"
                })
                .arg(id.as_ref())
                .arg(seq.as_deref().unwrap_or(""))
                .arg(done_entry(id, &now_text, kind, tenant.as_deref())),
            AckOp::Retry { id, due_ms, item } => {
                invocation.arg("r").arg(id.as_ref()).arg(*due_ms).arg(item)
            }
            AckOp::Snooze { id, due_ms, item } => {
                invocation.arg("s").arg(id.as_ref()).arg(*due_ms).arg(item)
            }
            AckOp::Dead { id, item, seq } => invocation
                .arg("f")
                .arg(id)
                .arg(seq.as_deref().unwrap_or(""))
                .arg(item),
            AckOp::Expired { id, item, seq } => invocation
                .arg("e")
                .arg(id.as_ref())
                .arg(seq.as_deref().unwrap_or(""))
                .arg(item.as_ref()),
            AckOp::Release { id, item } | AckOp::Orphan { id, item } => invocation
                .arg("x")
                .arg(id.as_ref())
                .arg("")
                .arg(item.as_ref()),
            AckOp::Flush(_) | AckOp::Shutdown => unreachable!("control messages are not batched"),
        };
    }
    // The fetch's keys after the ack's ten, its arguments after the ack's (ack_fetch.lua).
    if lease > 0 {
        fetcher::lease_call(shared, lease, now, &mut invocation);
    }
    invocation
}
