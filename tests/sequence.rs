//! Sequence keys and expiry against a real Redis: jobs of one key run one at a time, in
//! enqueue order, fleet-wide, while other keys run in parallel; a crashed, dead or expired
//! head lets the next job of its key in; an expired job is recorded, never run, not dead.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use common::Harness;
use serde::{Deserialize, Serialize};
use switchboard_jobs::{EnqueueOptions, JobArgs, JobError, Registry};

const SECS: Duration = Duration::from_secs(60);

/// One step `n` of the object `key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    key: u32,
    n: u32,
    /// The first attempt fails (it is retried, and its successors must wait for it).
    flaky: bool,
    /// Fails for good.
    poison: bool,
}

impl JobArgs for Step {
    const KIND: &'static str = "test.step";
    const QUEUE: &'static str = "seq";
}

/// When each step ran: (key, n) -> (start, finish) of its successful attempt.
#[derive(Default)]
struct Ledger {
    runs: Mutex<Vec<(u32, u32, Instant, Instant)>>,
    failed_once: Mutex<HashSet<(u32, u32)>>,
    running: Mutex<(usize, usize)>,
}

fn registry(ledger: &Arc<Ledger>) -> Registry {
    let mut registry = switchboard_jobs::registry();
    let ledger = Arc::clone(ledger);
    registry.register::<Step, _, _>(move |step: Step, _| {
        let ledger = Arc::clone(&ledger);
        async move {
            let start = Instant::now();
            {
                let mut r = ledger.running.lock().unwrap();
                r.0 += 1;
                r.1 = r.1.max(r.0);
            }
            // Some work, so that a second job of the same key would overlap if let in.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_micros(200)).await;
            ledger.running.lock().unwrap().0 -= 1;
            if step.poison {
                return Err(JobError::permanent("step can never work"));
            }
            if step.flaky
                && ledger
                    .failed_once
                    .lock()
                    .unwrap()
                    .insert((step.key, step.n))
            {
                return Err(JobError::retry("first attempt fails"));
            }
            let finish = Instant::now();
            ledger
                .runs
                .lock()
                .unwrap()
                .push((step.key, step.n, start, finish));
            Ok(())
        }
    });
    registry
}

fn step(key: u32, n: u32) -> Step {
    Step {
        key,
        n,
        flaky: false,
        poison: false,
    }
}

async fn enqueue(h: &Harness, step: &Step) -> String {
    let options = EnqueueOptions::default()
        .on_queue("seq")
        .sequence(format!("object:{}", step.key));
    h.queues.enqueue(step, options).await.unwrap().id
}

/// Every key's steps ran in enqueue order, each starting after the previous one finished.
fn assert_in_order(runs: &[(u32, u32, Instant, Instant)], keys: u32, per_key: u32) {
    let mut by_key: HashMap<u32, Vec<(u32, Instant, Instant)>> = HashMap::new();
    for &(key, n, start, finish) in runs {
        by_key.entry(key).or_default().push((n, start, finish));
    }
    assert_eq!(by_key.len(), keys as usize);
    for (key, mut steps) in by_key {
        steps.sort_by_key(|s| s.1);
        let order: Vec<u32> = steps.iter().map(|s| s.0).collect();
        assert_eq!(
            order,
            (0..per_key).collect::<Vec<_>>(),
            "key {key} ran out of order"
        );
        for pair in steps.windows(2) {
            assert!(
                pair[1].1 >= pair[0].2,
                "key {key}: step {} started before step {} finished",
                pair[1].0,
                pair[0].0
            );
        }
    }
}

#[tokio::test]
async fn each_keys_jobs_run_one_at_a_time_in_order_while_keys_run_in_parallel() {
    const KEYS: u32 = 1_000;
    const PER_KEY: u32 = 10;
    let h = Harness::new().await;
    let ledger = Arc::new(Ledger::default());
    // Steps are enqueued round by round (every key's step 0, then every key's step 1, ...),
    // so each key's steps are spread through the queue; some first attempts fail.
    for n in 0..PER_KEY {
        let round = (0..KEYS).map(|key| {
            let h = &h;
            async move {
                let mut s = step(key, n);
                s.flaky = key % 97 == 0 && n == 3;
                enqueue(h, &s).await
            }
        });
        futures::future::join_all(round).await;
    }
    let s = h.stats("seq").await;
    assert_eq!(
        (s.pending, s.waiting),
        (u64::from(KEYS), u64::from(KEYS * (PER_KEY - 1))),
        "one job per key is out, the rest wait in line"
    );
    // Retries wait in the delayed set; the promoter brings them back.
    let promoter = h.start_promoter("seq");
    let fleet = h
        .fleet(&h.fleet_settings("seq", 32, 32, 5), registry(&ledger), None)
        .await;
    let started = Instant::now();
    h.wait_processed("seq", u64::from(KEYS * PER_KEY), SECS)
        .await;
    eprintln!("{} jobs in {:?}", KEYS * PER_KEY, started.elapsed());
    fleet.stop().await;
    promoter.cancel();

    let runs = ledger.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), (KEYS * PER_KEY) as usize);
    assert_in_order(&runs, KEYS, PER_KEY);
    let peak = ledger.running.lock().unwrap().1;
    assert!(peak > 1, "other keys ran in parallel (peak {peak})");
    let s = h.stats("seq").await;
    assert_eq!((s.pending, s.waiting, s.running, s.dead), (0, 0, 0, 0));
    let left: Vec<String> = h
        .keys()
        .await
        .into_iter()
        .filter(|k| k.contains(":seq:"))
        .collect();
    assert!(
        left.is_empty(),
        "sequence lists are gone when done: {left:?}"
    );
}

#[tokio::test]
async fn a_crashed_holder_releases_its_key_with_its_lease_and_order_holds() {
    let h = Harness::new().await;
    let ledger = Arc::new(Ledger::default());
    let first = enqueue(&h, &step(7, 0)).await;
    enqueue(&h, &step(7, 1)).await;
    enqueue(&h, &step(7, 2)).await;
    let held = h.lease_to_a_dead_worker("seq", "w-crashed").await;
    assert!(held.starts_with(&first));
    // While the dead worker holds step 0, nothing of key 7 is ready.
    let s = h.stats("seq").await;
    assert_eq!((s.pending, s.running, s.waiting), (0, 1, 2));

    // The lease runs out: the rescuer re-queues step 0, still at the head of its key.
    assert_eq!(h.queues.rescue("seq", u64::MAX / 2).await.unwrap(), 1);
    let s = h.stats("seq").await;
    assert_eq!((s.pending, s.running, s.waiting), (1, 0, 2));
    let fleet = h
        .fleet(&h.fleet_settings("seq", 8, 8, 3), registry(&ledger), None)
        .await;
    h.wait_processed("seq", 3, SECS).await;
    fleet.stop().await;
    assert_in_order(&ledger.runs.lock().unwrap(), 1, 3);
}

#[tokio::test]
async fn a_head_lost_too_often_goes_dead_and_lets_the_next_job_of_its_key_in() {
    let h = Harness::new().await;
    let ledger = Arc::new(Ledger::default());
    enqueue(&h, &step(3, 0)).await;
    enqueue(&h, &step(3, 1)).await;
    for round in 0..=h.settings.queue.max_rescues {
        h.lease_to_a_dead_worker("seq", &format!("w{round}")).await;
        assert_eq!(h.queues.rescue("seq", u64::MAX / 2).await.unwrap(), 1);
    }
    let s = h.stats("seq").await;
    assert_eq!(
        (s.dead, s.pending, s.waiting),
        (1, 1, 0),
        "step 1 is out now"
    );
    let fleet = h
        .fleet(&h.fleet_settings("seq", 2, 2, 3), registry(&ledger), None)
        .await;
    h.wait_processed("seq", 1, SECS).await;
    fleet.stop().await;
    let runs = ledger.runs.lock().unwrap();
    assert_eq!(
        runs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(),
        [(3, 1)]
    );
}

#[tokio::test]
async fn a_poisoned_job_goes_dead_and_its_successor_still_runs() {
    let h = Harness::new().await;
    let ledger = Arc::new(Ledger::default());
    let mut poison = step(5, 0);
    poison.poison = true;
    enqueue(&h, &poison).await;
    enqueue(&h, &step(5, 1)).await;
    let fleet = h
        .fleet(&h.fleet_settings("seq", 4, 4, 3), registry(&ledger), None)
        .await;
    h.wait_processed("seq", 1, SECS).await;
    fleet.stop().await;
    let s = h.stats("seq").await;
    assert_eq!((s.dead, s.processed, s.waiting), (1, 1, 0));
}

#[tokio::test]
async fn an_expired_job_is_recorded_as_expired_never_run_not_dead() {
    let h = Harness::new().await;
    let ledger = Arc::new(Ledger::default());
    let past = SystemTime::now() - Duration::from_secs(1);
    let later = SystemTime::now() + Duration::from_secs(3600);
    // Key 1: an expired head and a live successor; key 2: no key, expired; key 3: live.
    let expired_head = h
        .queues
        .enqueue(
            &step(1, 0),
            EnqueueOptions::default()
                .on_queue("seq")
                .sequence("object:1")
                .expires_at(past),
        )
        .await
        .unwrap()
        .id;
    enqueue(&h, &step(1, 1)).await;
    h.queues
        .enqueue(
            &step(2, 0),
            EnqueueOptions::default().on_queue("seq").expires_at(past),
        )
        .await
        .unwrap();
    h.queues
        .enqueue(
            &step(3, 0),
            EnqueueOptions::default().on_queue("seq").expires_at(later),
        )
        .await
        .unwrap();
    let fleet = h
        .fleet(&h.fleet_settings("seq", 4, 4, 3), registry(&ledger), None)
        .await;
    let queues = h.queues.clone();
    h.wait_for("two processed, two expired", SECS, || {
        let queues = queues.clone();
        async move {
            queues
                .stats("seq")
                .await
                .is_ok_and(|s| s.processed == 2 && s.expired == 2)
        }
    })
    .await;
    fleet.stop().await;
    let mut ran: Vec<(u32, u32)> = ledger
        .runs
        .lock()
        .unwrap()
        .iter()
        .map(|r| (r.0, r.1))
        .collect();
    ran.sort_unstable();
    assert_eq!(ran, [(1, 1), (3, 0)], "expired jobs never ran");
    let s = h.stats("seq").await;
    assert_eq!((s.dead, s.failed, s.waiting, s.pending), (0, 0, 0, 0));
    let k = h.queues.keys("seq").unwrap();
    let kept: Option<String> = redis::cmd("HGET")
        .arg(&k.expired)
        .arg(&expired_head)
        .query_async(&mut h.conn())
        .await
        .unwrap();
    assert!(kept.is_some(), "the expired job is kept for operators");
}
