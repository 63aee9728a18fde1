//! The completer: writes settlements to Redis in batches (one `ack` script call for up to
//! [`ACK_BATCH`] jobs) and returns their credits only after the write committed. (The lease
//! is renewed by the lease keeper, which a stalled write cannot hold up.)

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use super::state::{AckOp, Shared};
use crate::{
    queue::{job, kind_metrics, scripts},
    telemetry::metric,
};

/// Most settlements written by one ack script call.
const ACK_BATCH: usize = 500;

/// The acker: batches settlements into one script call each, returns credits after the write
/// commits.
pub(super) async fn ack_loop(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<AckOp>) {
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
        write(&shared, &mut batch).await;
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
        if stop {
            return;
        }
    }
}

/// Write one batch, retrying until Redis takes it: an unwritten ack would leave the job
/// leased until the rescuer re-ran it, so it is worth waiting for.
async fn write(shared: &Shared, batch: &mut Vec<AckOp>) {
    if batch.is_empty() {
        return;
    }
    let now = job::now_ms();
    let invocation = invocation(shared, batch, now);
    let mut failures = 0u32;
    loop {
        let mut conn = shared.queues.conn();
        match invocation.invoke_async::<(u64, u64)>(&mut conn).await {
            Ok((settled, skipped)) => {
                if skipped > 0 {
                    tracing::warn!(worker = %shared.worker_id, skipped, "acks for jobs whose lease had expired; they were re-queued");
                }
                debug_assert!(settled + skipped == batch.len() as u64);
                break;
            }
            Err(e) => {
                failures += 1;
                metric::redis_error("ack");
                tracing::error!(worker = %shared.worker_id, error = %e, failures, "ack failed; retrying");
                tokio::time::sleep(Duration::from_millis((50u64 << failures.min(6)).min(2_000)))
                    .await;
            }
        }
    }
    let done = batch.iter().filter_map(|op| match op {
        AckOp::Done { kind, ran_us, .. } => Some((kind.as_str(), *ran_us)),
        _ => None,
    });
    kind_metrics::record(&shared.queues, &shared.keys, now, done);
    shared.let_go(batch.iter().filter_map(AckOp::id));
    let orphans = batch
        .iter()
        .filter(|op| matches!(op, AckOp::Orphan { .. }))
        .count();
    shared.credits.add_permits(batch.len() - orphans);
    batch.clear();
}

/// The ack script's call for `batch`, settled at `now`.
fn invocation(shared: &Shared, batch: &[AckOp], now: u64) -> redis::ScriptInvocation<'static> {
    let settings = shared.queues.settings();
    let k = &shared.keys;
    let mut invocation = scripts::ACK.prepare_invoke();
    invocation
        .key(&shared.leased_key)
        .key(&k.stats)
        .key(&k.completed)
        .key(&k.delayed)
        .key(&k.dead)
        .key(&k.dead_at)
        .key(&k.pending)
        .key(&k.throughput)
        .key(&k.expired)
        .key(&k.expired_at)
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
                .arg(format!(
                    "{id} {now} {kind} {}",
                    tenant.as_deref().unwrap_or("")
                )),
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
    invocation
}
