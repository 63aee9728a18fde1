//! The fetcher: leases jobs in batches, never more than the worker has free credits for
//! (`concurrency + prefetch`), and blocks in `BLMOVE` when the queue is empty, so an idle
//! worker costs one Redis call per block timeout and a push starts a job at once. (A busy
//! worker with slots of its own leases most of its jobs through its completer instead, in
//! the call that settles the jobs before them: see `completer`.)

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::sync::mpsc;

use super::state::{AckOp, Shared};
use crate::{
    queue::{
        QueueError,
        conn::Dedicated,
        job::{self, Job},
        scripts,
    },
    shutdown::sleep_or_stop,
    telemetry::metric,
};

/// Lease jobs for free credits until stopped; block while the queue is empty.
pub(super) async fn fetch_loop(shared: Arc<Shared>, jobs: mpsc::UnboundedSender<Job>) {
    let settings = shared.queues.settings().clone();
    let block = Duration::from_millis(settings.block_timeout_ms);
    let mut blocking: Option<Blocking> = None;
    let mut failures = 0u32;
    let mut woken = false;
    loop {
        let Some(n) = take_credits(&shared, settings.fetch_batch).await else {
            return;
        };
        // Right after a blocking call returned a job, lease it over the same (now idle)
        // connection: one task hop less on the path from push to start.
        let fetched = match blocking.as_ref().filter(|_| woken) {
            Some(b) => fetch(&shared, n, &mut b.conn.conn.clone()).await,
            None => fetch(&shared, n, &mut shared.queues.conn()).await,
        };
        woken = false;
        match fetched {
            Ok(Fetched::Jobs(items)) => {
                failures = 0;
                let got = items.len();
                let counter = if got > 0 {
                    &shared.counters.leased
                } else {
                    &shared.counters.empty
                };
                counter.fetch_add(1, Ordering::Relaxed);
                shared.credits.add_permits(n - got);
                for item in items {
                    deliver(&shared, &jobs, item);
                }
                if got > 0 {
                    continue;
                }
            }
            Ok(Fetched::Paused) => {
                shared.counters.paused.fetch_add(1, Ordering::Relaxed);
                shared.credits.add_permits(n);
                if sleep_or_stop(&shared.stop, block).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                shared.credits.add_permits(n);
                failures += 1;
                metric::redis_error("fetch");
                tracing::error!(queue = %shared.queue_name, error = %e, "fetch failed");
                if sleep_or_stop(&shared.stop, backoff(failures)).await {
                    return;
                }
                continue;
            }
        }
        // The queue is empty: block until a job arrives, the timeout passes or we stop. An
        // idle worker repeats only the blocking call (one command per block timeout); its
        // lease is kept alive by the acker's heartbeat.
        loop {
            match wait_for_job(&shared, &mut blocking, block).await {
                Ok(true) => {
                    failures = 0;
                    woken = true;
                    break;
                }
                Ok(false) if shared.stop.is_cancelled() => return,
                Ok(false) => failures = 0,
                Err(e) => {
                    blocking = None;
                    failures += 1;
                    metric::redis_error("fetch");
                    tracing::error!(queue = %shared.queue_name, error = %e, "blocking fetch failed");
                    if sleep_or_stop(&shared.stop, backoff(failures)).await {
                        return;
                    }
                    break;
                }
            }
        }
        if shared.stop.is_cancelled() {
            return;
        }
    }
}

/// Wait for at least one free credit, then take as many more as are free (up to `batch`).
async fn take_credits(shared: &Shared, batch: usize) -> Option<usize> {
    let first = tokio::select! {
        biased;
        () = shared.stop.cancelled() => return None,
        permit = shared.credits.acquire() => permit.ok()?,
    };
    first.forget();
    let extra = shared.credits.available_permits().min(batch - 1);
    if extra > 0
        && let Ok(p) = shared.credits.try_acquire_many(extra as u32)
    {
        p.forget();
        return Some(1 + extra);
    }
    Some(1)
}

pub(super) enum Fetched {
    Jobs(Vec<String>),
    Paused,
}

pub(super) async fn fetch<C: redis::aio::ConnectionLike + Send>(
    shared: &Shared,
    n: usize,
    conn: &mut C,
) -> Result<Fetched, QueueError> {
    let sent = job::now_ms();
    let mut invocation = scripts::FETCH.prepare_invoke();
    lease_call(shared, n, sent, &mut invocation);
    let value: redis::Value = invocation.invoke_async(conn).await?;
    leased(shared, value, sent)
}

/// The fetch script's keys and arguments (after any already on `invocation`): lease up to
/// `n` jobs, asked at `sent` (ms).
pub(super) fn lease_call(
    shared: &Shared,
    n: usize,
    sent: u64,
    invocation: &mut redis::ScriptInvocation<'_>,
) {
    let k = &shared.keys;
    let settings = shared.queues.settings();
    let cap = settings
        .tenant_concurrency
        .get(&k.name)
        .copied()
        .unwrap_or(0);
    let rate = settings
        .tenant_rate_per_minute
        .get(&k.name)
        .copied()
        .unwrap_or(0);
    invocation
        .key(&k.pending)
        .key(k.inbox(&shared.worker_id))
        .key(&shared.leased_key)
        .key(&k.stats)
        .key(&k.paused)
        .key(&k.workers)
        .arg(n)
        .arg(&shared.worker_id)
        .arg(shared.lease_expiry_ms())
        .arg(k.base())
        .arg(cap)
        .arg(rate)
        .arg(sent);
}

/// The fetch script's reply, for a call sent at `sent` (ms): the leased jobs are held from
/// here on.
pub(super) fn leased(
    shared: &Shared,
    value: redis::Value,
    sent: u64,
) -> Result<Fetched, QueueError> {
    if let redis::Value::Int(-1) = value {
        return Ok(Fetched::Paused);
    }
    // The script refreshed the worker's lease.
    shared.renewed(sent);
    let mut items: Vec<String> = redis::from_redis_value(value)?;
    // The lease's epoch follows the jobs (`~<epoch>`).
    if let Some(epoch) = items.pop_if(|last| last.starts_with('~')) {
        shared.hold(&items, &Arc::from(&epoch[1..]));
    }
    Ok(Fetched::Jobs(items))
}

pub(super) fn deliver(shared: &Shared, jobs: &mpsc::UnboundedSender<Job>, item: String) {
    match job::decode(&item) {
        Ok((id, envelope)) => {
            let job = Job {
                id: Arc::from(id),
                queue: Arc::clone(&shared.queue_name),
                envelope,
                item: Arc::from(item),
            };
            if shared.expire_if_due(&job) {
                return;
            }
            if let Err(returned) = jobs.send(job) {
                // The worker is stopping: give the job straight back.
                shared.release(returned.0);
            }
        }
        Err(e) => {
            let id = item
                .split_once(' ')
                .map_or(item.as_str(), |(id, _)| id)
                .to_owned();
            tracing::error!(queue = %shared.queue_name, job = %id, error = %e, "malformed job sent to the dead set");
            let _ = shared.acks.send(AckOp::Dead {
                id,
                item,
                seq: None,
            });
        }
    }
}

/// The dedicated connection an idle fetcher blocks on, on the server holding its queue.
pub(super) struct Blocking {
    conn: Dedicated,
    /// Its client id there, for `CLIENT UNBLOCK`.
    client_id: i64,
}

/// Block in BLMOVE on a dedicated connection; on stop, unblock it from another socket to
/// the same server.
async fn wait_for_job(
    shared: &Shared,
    blocking: &mut Option<Blocking>,
    block: Duration,
) -> Result<bool, QueueError> {
    if blocking.is_none() {
        let mut conn = shared.queues.dedicated(&shared.keys.pending).await?;
        let client_id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut conn.conn)
            .await?;
        *blocking = Some(Blocking { conn, client_id });
    }
    if shared.stop.is_cancelled() {
        return Ok(false);
    }
    let Blocking { conn, client_id } = blocking.as_mut().expect("set above");
    let node = conn.node.clone();
    let conn = &mut conn.conn;
    let mut cmd = redis::cmd("BLMOVE");
    cmd.arg(&shared.keys.pending)
        .arg(shared.keys.inbox(&shared.worker_id))
        .arg("RIGHT")
        .arg("LEFT")
        .arg(block.as_secs_f64());
    let wait = cmd.query_async::<Option<String>>(conn);
    tokio::pin!(wait);
    tokio::select! {
        res = &mut wait => Ok(res?.is_some()),
        () = shared.stop.cancelled() => {
            // UNBLOCK may overtake a BLMOVE still in flight on the other socket: repeat it
            // until the blocked call returns. Whatever BLMOVE moved is in the inbox, which
            // `retire` hands back.
            let Ok(mut unblocker) = node.get_multiplexed_async_connection().await else {
                // The server is gone, and the blocked call with it.
                return Ok(false);
            };
            for _ in 0..100 {
                let _: Result<i64, _> = redis::cmd("CLIENT").arg("UNBLOCK").arg(*client_id).query_async(&mut unblocker).await;
                if tokio::time::timeout(Duration::from_millis(20), &mut wait).await.is_ok() {
                    break;
                }
            }
            Ok(false)
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis((100u64 << failures.min(6)).min(5_000))
}
