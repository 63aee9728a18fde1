//! The lane scripts against a real Redis, one step at a time: which job each fetch serves
//! (tenant turns, priority weights, caps, cancelled jobs) and what the counters say.
#![allow(clippy::many_single_char_names)]

use switchboard_jobs::{EnqueueOptions, Priority};

use super::{Queues, job, keys::QueueKeys, scripts};
use crate::config::Settings;

async fn queues() -> Queues {
    let mut settings = Settings::defaults().queue;
    settings.prefix = format!("t-{}", ulid::Ulid::new().to_string().to_lowercase());
    Queues::connect("redis://127.0.0.1:6379", settings)
        .await
        .expect("redis on 127.0.0.1:6379")
}

async fn push(q: &Queues, n: &str, options: EnqueueOptions) -> String {
    q.enqueue_json("noop", 1, format!(r#"{{"n":"{n}"}}"#), "lanes", options)
        .await
        .unwrap()
        .id
}

/// One fetch of up to `n` jobs by worker `w`, with a tenant cap; the ids leased, in order.
async fn fetch(q: &Queues, k: &QueueKeys, n: usize, cap: u32) -> Vec<String> {
    lease(q, k, n, cap).await.0
}

/// The fetch script's keys and arguments for worker `w`, after any already on `invocation`:
/// up to `n` jobs, with a tenant cap, at `now`.
fn lease_call(
    invocation: &mut redis::ScriptInvocation<'_>,
    k: &QueueKeys,
    n: usize,
    cap: u32,
    now: u64,
) {
    invocation
        .key(&k.pending)
        .key(k.inbox("w"))
        .key(k.leased("w"))
        .key(&k.stats)
        .key(&k.paused)
        .key(&k.workers)
        .arg(n)
        .arg("w")
        .arg(now + 60_000)
        .arg(k.base())
        .arg(cap)
        .arg(0)
        .arg(now);
}

/// One fetch as [`fetch`]; the ids leased and the lease's epoch (none when nothing was).
async fn lease(q: &Queues, k: &QueueKeys, n: usize, cap: u32) -> (Vec<String>, Option<String>) {
    let mut invocation = scripts::FETCH.prepare_invoke();
    lease_call(&mut invocation, k, n, cap, job::now_ms());
    let mut items: Vec<String> = invocation.invoke_async(&mut q.conn()).await.unwrap();
    // The lease's epoch follows the jobs.
    let epoch = items
        .pop_if(|last| last.starts_with('~'))
        .map(|e| e[1..].to_owned());
    let ids = items
        .iter()
        .map(|i| i.split_once(' ').unwrap().0.to_owned())
        .collect();
    (ids, epoch)
}

/// Settle worker `w`'s jobs `ids` as completed (kind noop, `tenant`), with `op` `c` (one by
/// one) or `C` (leased in `epoch`); the script's (settled, skipped).
async fn ack(
    q: &Queues,
    k: &QueueKeys,
    op: &str,
    epoch: &str,
    ids: &[String],
    tenant: &str,
) -> (u64, u64) {
    let mut invocation = scripts::ACK.prepare_invoke();
    for key in k.ack_script_keys(&k.leased("w")) {
        invocation.key(key);
    }
    invocation
        .arg(job::now_ms())
        .arg(1000)
        .arg(1000)
        .arg(k.base())
        .arg(epoch);
    for id in ids {
        invocation
            .arg(op)
            .arg(id)
            .arg("")
            .arg(format!("{id} {} noop {tenant}", job::now_ms()));
    }
    invocation.invoke_async(&mut q.conn()).await.unwrap()
}

/// Settle `id` as completed (kind noop, `tenant`).
async fn complete(q: &Queues, k: &QueueKeys, id: &str, tenant: &str) {
    let (settled, _) = ack(q, k, "c", "", &[id.to_owned()], tenant).await;
    assert_eq!(settled, 1);
}

/// The most jobs one tenant gives per turn (`TURN` in `fetch.lua`).
const TURN: usize = 32;

fn tenant(t: &str) -> EnqueueOptions {
    EnqueueOptions::default().tenant(t)
}

async fn cleanup(q: &Queues) {
    let pattern = format!("*{}*", q.settings().prefix);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut q.conn())
        .await
        .unwrap();
    if !keys.is_empty() {
        let () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut q.conn())
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn tenants_take_turns_and_a_high_job_jumps_the_line() {
    let q = queues().await;
    let k = q.keys("lanes").unwrap();
    let mut a = Vec::new();
    for i in 0..TURN + 6 {
        a.push(push(&q, &format!("a{i}"), tenant("a")).await);
    }
    let b = push(&q, "b", tenant("b")).await;
    assert_eq!(q.stats("lanes").await.unwrap().pending, TURN as u64 + 7);
    // The fetch serves a's turn, then b, then a again: b does not wait behind a's backlog.
    // Its 39 tokens take three whole rounds of slots (13 each), so the next one is high's.
    let mut expected = a[..TURN].to_vec();
    expected.push(b);
    expected.extend_from_slice(&a[TURN..]);
    assert_eq!(fetch(&q, &k, TURN + 7, 0).await, expected);
    let low: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..3 {
            let o = EnqueueOptions::default().priority(Priority::Low);
            v.push(push(&q, &format!("l{i}"), o).await);
        }
        v
    };
    let high = push(&q, "h", EnqueueOptions::default().priority(Priority::High)).await;
    let next = fetch(&q, &k, 1, 0).await;
    assert_eq!(next, [high]);
    // Everything else still comes out, once each.
    let rest = fetch(&q, &k, 100, 0).await;
    assert_eq!(rest.len(), 3, "{rest:?}");
    assert!(low.iter().all(|l| rest.contains(l)));
    assert_eq!(q.stats("lanes").await.unwrap().pending, 0);
    cleanup(&q).await;
}

/// Tenants a, b, c with a turn and 2 jobs each, fetched as many at a time: each fetch takes
/// the ring's next two tenants (a full turn, then the rest); a tenant with work left goes to
/// the back of the ring, one whose lane ran empty leaves it.
#[tokio::test]
async fn a_fetch_takes_the_next_tenants_turns_and_sends_them_to_the_back() {
    let q = queues().await;
    let k = q.keys("lanes").unwrap();
    let mut ids = std::collections::HashMap::new();
    for t in ["a", "b", "c"] {
        for i in 0..TURN + 2 {
            ids.insert(
                push(&q, &format!("{t}{i}"), tenant(t)).await,
                format!("{t}{i}"),
            );
        }
    }
    let mut names = Vec::new();
    for _ in 0..3 {
        let got: Vec<String> = fetch(&q, &k, TURN + 2, 0)
            .await
            .iter()
            .map(|id| ids[id].clone())
            .collect();
        names.push(got.join(" "));
    }
    let run = |t: &str, from: usize, to: usize| -> Vec<String> {
        (from..to).map(|i| format!("{t}{i}")).collect()
    };
    // A full turn of one tenant from job `from`, then the next tenant's two from job `then`.
    let fetched = |first: &str, from: usize, second: &str, then: usize| {
        let mut jobs = run(first, from, from + TURN);
        jobs.extend(run(second, then, then + 2));
        jobs.join(" ")
    };
    assert_eq!(
        names,
        [
            fetched("a", 0, "b", 0),
            fetched("c", 0, "a", TURN),
            fetched("b", 2, "c", TURN)
        ]
    );
    let ring: u64 = redis::cmd("LLEN")
        .arg(format!("{}ring:normal", k.base()))
        .query_async(&mut q.conn())
        .await
        .unwrap();
    assert_eq!((ring, q.stats("lanes").await.unwrap().pending), (0, 0));
    cleanup(&q).await;
}

#[tokio::test]
async fn a_tenant_at_its_cap_holds_no_slot_and_a_settled_job_lets_it_back() {
    let q = queues().await;
    let k = q.keys("lanes").unwrap();
    for i in 0..3 {
        push(&q, &format!("a{i}"), tenant("a")).await;
    }
    let first = fetch(&q, &k, 3, 1).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(fetch(&q, &k, 3, 1).await.is_empty());
    let b = push(&q, "b", tenant("b")).await;
    assert_eq!(fetch(&q, &k, 3, 1).await, std::slice::from_ref(&b));
    assert_eq!(q.stats("lanes").await.unwrap().pending, 2);
    complete(&q, &k, &first[0], "a").await;
    let second = fetch(&q, &k, 3, 1).await;
    assert_eq!(second.len(), 1, "{second:?}");
    complete(&q, &k, &b, "b").await;
    complete(&q, &k, &second[0], "a").await;
    assert_eq!(fetch(&q, &k, 3, 1).await.len(), 1);
    assert_eq!(q.stats("lanes").await.unwrap().pending, 0);
    cleanup(&q).await;
}

#[tokio::test]
async fn cancelled_jobs_never_come_out_wherever_they_wait() {
    let q = queues().await;
    let k = q.keys("lanes").unwrap();
    let plain = push(&q, "p", EnqueueOptions::default()).await;
    let keep = push(&q, "k", EnqueueOptions::default()).await;
    let laned = push(&q, "t", tenant("a")).await;
    let later = EnqueueOptions::default().run_in(std::time::Duration::from_secs(3600));
    let delayed = push(&q, "d", later).await;
    for id in [&plain, &laned, &delayed] {
        assert!(q.cancel("lanes", id).await.unwrap(), "{id}");
        assert!(!q.cancel("lanes", id).await.unwrap(), "twice {id}");
    }
    let s = q.stats("lanes").await.unwrap();
    assert_eq!((s.pending, s.delayed), (1, 0));
    assert_eq!(fetch(&q, &k, 10, 0).await, [keep]);
    assert_eq!(q.stats("lanes").await.unwrap().pending, 0);
    let found = q.find_job("lanes", &laned).await.unwrap().unwrap();
    assert_eq!(found.state.as_str(), "cancelled");
    cleanup(&q).await;
}

/// Jobs leased in the lease's current epoch settle in one step; the same acks written again
/// (an ack retried after its answer was lost) settle nothing; after a rescue took the jobs
/// back (the worker was presumed dead), its late acks settle nothing either, and one lost
/// lease (a failover) keeps `running` exact.
#[tokio::test]
async fn a_lease_epochs_jobs_settle_in_one_step_and_never_twice() {
    let q = queues().await;
    let k = q.keys("lanes").unwrap();
    let running = |q: &Queues| {
        let q = q.clone();
        async move { q.stats("lanes").await.unwrap().running }
    };
    for i in 0..3 {
        push(&q, &format!("a{i}"), EnqueueOptions::default()).await;
    }
    let (ids, epoch) = lease(&q, &k, 3, 0).await;
    let epoch = epoch.expect("an epoch with the jobs");
    assert_eq!((ids.len(), running(&q).await), (3, 3));
    assert_eq!(ack(&q, &k, "C", &epoch, &ids, "").await, (3, 0));
    assert_eq!(
        ack(&q, &k, "C", &epoch, &ids, "").await,
        (0, 3),
        "written twice"
    );
    assert_eq!(running(&q).await, 0);
    assert_eq!(q.stats("lanes").await.unwrap().processed, 3);

    // Two more leased in the same epoch; the worker is rescued as dead before it settles.
    for i in 0..2 {
        push(&q, &format!("b{i}"), EnqueueOptions::default()).await;
    }
    let (late, same) = lease(&q, &k, 2, 0).await;
    assert_eq!(same.as_deref(), Some(epoch.as_str()));
    let rescued: i64 = scripts::RESCUE
        .key(&k.workers)
        .key(k.leased("w"))
        .key(k.inbox("w"))
        .key(&k.pending)
        .key(&k.stats)
        .key(&k.dead)
        .key(&k.dead_at)
        .key(&k.delayed)
        .arg("w")
        .arg(u64::MAX / 4)
        .arg(3)
        .arg(k.sequence_prefix())
        .arg(k.base())
        .invoke_async(&mut q.conn())
        .await
        .unwrap();
    assert_eq!(rescued, 2);
    assert_eq!(
        ack(&q, &k, "C", &epoch, &late, "").await,
        (0, 2),
        "late acks"
    );
    assert_eq!(running(&q).await, 0);

    // Leased again, in a new epoch; one lease is lost (as a failover can lose it).
    let (again, fresh) = lease(&q, &k, 2, 0).await;
    let fresh = fresh.unwrap();
    assert_ne!(fresh, epoch);
    assert_eq!(again.len(), 2);
    let () = redis::pipe()
        .hdel(k.leased("w"), &again[0])
        .hincr(&k.stats, "running", -1)
        .query_async(&mut q.conn())
        .await
        .unwrap();
    assert_eq!(ack(&q, &k, "C", &fresh, &again, "").await, (1, 1));
    assert_eq!(running(&q).await, 0);
    cleanup(&q).await;
}

/// `ack_fetch.lua` for worker `w`: the ops (op, id, item) settled, then up to `n` jobs
/// leased; (settled, skipped, the fetch's reply).
async fn ack_fetch(
    q: &Queues,
    k: &QueueKeys,
    epoch: &str,
    ops: &[(&str, &str, String)],
    n: usize,
) -> (u64, u64, redis::Value) {
    let now = job::now_ms();
    let mut invocation = scripts::ACK_FETCH.prepare_invoke();
    for key in k.ack_script_keys(&k.leased("w")) {
        invocation.key(key);
    }
    invocation
        .arg(now)
        .arg(1000)
        .arg(1000)
        .arg(k.base())
        .arg(epoch);
    for (op, id, item) in ops {
        invocation.arg(*op).arg(*id).arg("").arg(item);
    }
    // The fetch's keys after the ack's ten, its arguments after the ack's.
    lease_call(&mut invocation, k, n, 0, now);
    invocation.invoke_async(&mut q.conn()).await.unwrap()
}

#[tokio::test]
async fn an_ack_settles_first_then_leases_for_the_freed_slots_in_the_same_call() {
    let q = queues().await;
    let k = q.keys("lanes").unwrap();
    for i in 0..4 {
        push(&q, &format!("a{i}"), EnqueueOptions::default()).await;
    }
    let (ids, epoch) = lease(&q, &k, 2, 0).await;
    let epoch = epoch.unwrap();
    let released: String = redis::cmd("HGET")
        .arg(k.leased("w"))
        .arg(&ids[1])
        .query_async(&mut q.conn())
        .await
        .unwrap();
    // The first completed, the second handed back unstarted: it is at the head of the line
    // again when the same call leases, so it comes back first.
    let done = format!("{} {} noop ", ids[0], job::now_ms());
    let (settled, skipped, leased) = ack_fetch(
        &q,
        &k,
        &epoch,
        &[("C", &ids[0], done), ("x", &ids[1], released)],
        3,
    )
    .await;
    assert_eq!((settled, skipped), (2, 0));
    let mut items: Vec<String> = redis::from_redis_value(leased).unwrap();
    assert_eq!(items.pop(), Some(format!("~{epoch}")), "the same epoch");
    let again: Vec<&str> = items.iter().map(|i| i.split_once(' ').unwrap().0).collect();
    assert_eq!(again.len(), 3);
    assert_eq!(again[0], ids[1], "the released job first");
    let stats = q.stats("lanes").await.unwrap();
    assert_eq!((stats.running, stats.processed), (3, 1));

    // Paused: the settlements are written, nothing is leased.
    let () = redis::cmd("SET")
        .arg(&k.paused)
        .arg(1)
        .query_async(&mut q.conn())
        .await
        .unwrap();
    let ops: Vec<(&str, &str, String)> = again
        .iter()
        .map(|id| ("C", *id, format!("{id} {} noop ", job::now_ms())))
        .collect();
    let (settled, skipped, leased) = ack_fetch(&q, &k, &epoch, &ops, 3).await;
    assert_eq!((settled, skipped, leased), (3, 0, redis::Value::Int(-1)));
    let stats = q.stats("lanes").await.unwrap();
    assert_eq!((stats.running, stats.processed, stats.pending), (0, 4, 0));
    cleanup(&q).await;
}
