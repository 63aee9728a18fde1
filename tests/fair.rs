//! Fair tenants, priorities and cancel by id against a real Redis and a real fleet: one
//! tenant's backlog never holds up another tenant's job; a tenant at its concurrency cap or
//! over its rate is skipped without holding a slot; a `high` job jumps a `low` backlog, and a
//! `low` job still ages in under a steady stream of `high` ones; cancelling one of 100,000
//! pending jobs (or a delayed one, or a tenant's) keeps it from ever running.

mod common;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use common::Harness;
use serde::{Deserialize, Serialize};
use switchboard::{
    fleet::Observer,
    queue::job::{Job, now_ms},
};
use switchboard_jobs::{EnqueueOptions, JobArgs, Priority, Registry, noop::Noop};

const QUEUE: &str = "fair";
const SECS: Duration = Duration::from_secs(60);
/// The bound on how long one tenant's (or priority's) job may wait behind another's backlog.
const JUMP: Duration = Duration::from_secs(1);
/// The backlog the fairness and priority tests put in front: 5,000 jobs of 5 ms on 8 slots,
/// about 3 s of work.
const BACKLOG: u32 = 5_000;
/// Jobs in the cancel test.
const N_CANCEL: usize = 100_000;

/// The `n`th job of `who` (a tenant, or a priority class), taking `ms`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Work {
    who: String,
    n: u32,
    ms: u64,
}

impl JobArgs for Work {
    const KIND: &'static str = "test.work";
    const QUEUE: &'static str = QUEUE;
}

/// What each `who` did, kept by the handler.
#[derive(Default)]
struct Record {
    /// Jobs enqueued (counted by the test's producers).
    queued: usize,
    started: usize,
    finished: usize,
    /// Jobs of this `who` running right now, and the most ever at once.
    running: usize,
    peak: usize,
    /// n -> its start.
    starts: HashMap<u32, Start>,
}

/// One job's start.
#[derive(Clone, Copy)]
struct Start {
    /// When it started (the last time, if it ran twice).
    at: Instant,
    /// How often it started.
    times: u32,
    /// Jobs of every `who` enqueued and not started yet, as it started.
    waiting: usize,
}

/// What the handler and the test's producers write down, behind one lock.
#[derive(Default)]
struct Ledger {
    inner: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    /// Every start in order: (who, n).
    order: Vec<(String, u32)>,
    /// A record per `who`.
    by: HashMap<String, Record>,
}

impl Ledger {
    fn start(&self, work: &Work) {
        let mut inner = self.inner.lock().unwrap();
        inner.order.push((work.who.clone(), work.n));
        let r = inner.by.entry(work.who.clone()).or_default();
        r.started += 1;
        r.running += 1;
        r.peak = r.peak.max(r.running);
        let waiting = inner
            .by
            .values()
            .map(|r| r.queued.saturating_sub(r.started))
            .sum();
        let r = inner.by.entry(work.who.clone()).or_default();
        let times = r.starts.get(&work.n).map_or(0, |s| s.times) + 1;
        let at = Instant::now();
        r.starts.insert(work.n, Start { at, times, waiting });
    }

    fn finish(&self, who: &str) {
        let mut inner = self.inner.lock().unwrap();
        let r = inner.by.entry(who.to_owned()).or_default();
        r.running -= 1;
        r.finished += 1;
    }

    fn queued(&self, who: &str, n: usize) {
        self.inner
            .lock()
            .unwrap()
            .by
            .entry(who.to_owned())
            .or_default()
            .queued += n;
    }

    /// Read `who`'s record.
    fn of<T>(&self, who: &str, read: impl FnOnce(&Record) -> T) -> T {
        let inner = self.inner.lock().unwrap();
        read(inner.by.get(who).unwrap_or(&Record::default()))
    }

    fn started(&self, who: &str) -> usize {
        self.of(who, |r| r.started)
    }

    fn finished(&self, who: &str) -> usize {
        self.of(who, |r| r.finished)
    }

    /// Job `n` of `who`'s start.
    fn start_of(&self, who: &str, n: u32) -> Option<Start> {
        self.of(who, |r| r.starts.get(&n).copied())
    }

    /// Every job `0..n` of `who` started exactly once.
    fn each_once(&self, who: &str, n: u32) -> bool {
        self.of(who, |r| {
            r.starts.len() == n as usize
                && (0..n).all(|i| r.starts.get(&i).is_some_and(|s| s.times == 1))
        })
    }

    /// How many starts were recorded, all kinds together.
    fn starts(&self) -> usize {
        self.inner.lock().unwrap().order.len()
    }

    /// The position of job `n` of `who` among all starts.
    fn position(&self, who: &str, n: u32) -> Option<usize> {
        let inner = self.inner.lock().unwrap();
        inner.order.iter().position(|(w, i)| w == who && *i == n)
    }
}

fn registry(ledger: &Arc<Ledger>) -> Registry {
    let mut registry = switchboard_jobs::registry();
    let ledger = Arc::clone(ledger);
    registry.register::<Work, _, _>(move |work: Work, _| {
        let ledger = Arc::clone(&ledger);
        async move {
            ledger.start(&work);
            // The job's work: it holds its slot this long.
            tokio::time::sleep(Duration::from_millis(work.ms)).await;
            ledger.finish(&work.who);
            Ok(())
        }
    });
    registry
}

/// Enqueue jobs `0..n` of `who` (each taking `ms`) with `options`, 16 producers at once.
async fn enqueue_work(
    h: &Harness,
    ledger: &Ledger,
    who: &str,
    n: u32,
    ms: u64,
    options: &EnqueueOptions,
) {
    const PRODUCERS: u32 = 16;
    let producers = (0..PRODUCERS).map(|p| async move {
        for i in (p..n).step_by(PRODUCERS as usize) {
            let work = Work {
                who: who.to_owned(),
                n: i,
                ms,
            };
            h.queues.enqueue(&work, options.clone()).await.unwrap();
        }
    });
    futures::future::join_all(producers).await;
    ledger.queued(who, n as usize);
}

fn on_queue() -> EnqueueOptions {
    EnqueueOptions::default().on_queue(QUEUE)
}

/// 8 slots on one worker, 8 leased ahead.
async fn eight_slots(h: &Harness, ledger: &Arc<Ledger>) -> switchboard::fleet::Fleet {
    h.fleet(&h.fleet_settings(QUEUE, 8, 8, 3), registry(ledger), None)
        .await
}

/// Enqueue a backlog of `BACKLOG` 5 ms jobs of `big` (with its options), start 8 slots, then
/// enqueue one job of `small` (with its options); returns how long the small job waited from
/// its enqueue to its start, after checking that the backlog was still more than a second of
/// work when it was enqueued and that every job ran exactly once.
async fn one_behind_a_backlog(
    big: (&str, EnqueueOptions),
    small: (&str, EnqueueOptions),
) -> Duration {
    let h = Harness::new().await;
    let ledger = Arc::new(Ledger::default());
    enqueue_work(&h, &ledger, big.0, BACKLOG, 5, &big.1).await;
    let fleet = eight_slots(&h, &ledger).await;
    let waiting = BACKLOG as usize - ledger.started(big.0);
    let enqueued = Instant::now();
    enqueue_work(&h, &ledger, small.0, 1, 5, &small.1).await;
    h.wait_for(&format!("{}'s job to start", small.0), SECS, || {
        let started = ledger.started(small.0);
        async move { started == 1 }
    })
    .await;
    let waited = ledger.start_of(small.0, 0).unwrap().at - enqueued;
    eprintln!(
        "{}'s job started {waited:?} after its enqueue, behind {waiting} waiting jobs of {}",
        small.0, big.0
    );
    // Less than a second of backlog (8 slots x 200 jobs of 5 ms) would let even a FIFO
    // queue pass.
    assert!(
        waiting >= 1_600,
        "only {waiting} of {}'s jobs were still waiting: the producers were too slow for this test",
        big.0
    );
    h.wait_processed(QUEUE, u64::from(BACKLOG) + 1, SECS).await;
    fleet.stop().await;
    assert_eq!(ledger.finished(big.0), BACKLOG as usize);
    assert!(
        ledger.each_once(big.0, BACKLOG),
        "every backlog job ran once"
    );
    waited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_one_job_starts_within_a_second_behind_another_tenants_5000() {
    let waited =
        one_behind_a_backlog(("a", on_queue().tenant("a")), ("b", on_queue().tenant("b"))).await;
    assert!(
        waited < JUMP,
        "tenant b's job waited {waited:?} behind tenant a's backlog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_job_starts_within_a_second_behind_5000_low_ones() {
    let waited = one_behind_a_backlog(
        ("low", on_queue().priority(Priority::Low)),
        ("high", on_queue().priority(Priority::High)),
    )
    .await;
    assert!(
        waited < JUMP,
        "the high job waited {waited:?} behind the low backlog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_cap_never_runs_more_than_that_and_holds_no_slot() {
    let h = Harness::with(|s| {
        s.queue.tenant_concurrency.insert(QUEUE.into(), 2);
    })
    .await;
    let ledger = Arc::new(Ledger::default());
    // a: 100 jobs of 20 ms, at most 2 at once: about a second. b: 20 such jobs after them.
    enqueue_work(&h, &ledger, "a", 100, 20, &on_queue().tenant("a")).await;
    enqueue_work(&h, &ledger, "b", 20, 20, &on_queue().tenant("b")).await;
    let fleet = eight_slots(&h, &ledger).await;
    h.wait_for("b's 20 jobs done", SECS, || {
        let done = ledger.finished("b");
        async move { done == 20 }
    })
    .await;
    let a_when_b_done = ledger.started("a");
    h.wait_processed(QUEUE, 120, SECS).await;
    fleet.stop().await;
    let (peak_a, peak_b) = (ledger.of("a", |r| r.peak), ledger.of("b", |r| r.peak));
    eprintln!(
        "most running at once: a {peak_a}, b {peak_b}; a had started {a_when_b_done} of 100 when b was done"
    );
    assert!(peak_a <= 2, "tenant a ran {peak_a} jobs at once, cap 2");
    assert_eq!(peak_a, 2, "tenant a used its cap of 2");
    assert!(peak_b <= 2, "tenant b ran {peak_b} jobs at once, cap 2");
    // Had a's waiting jobs held slots (or had b waited behind them), b would finish last.
    assert!(
        a_when_b_done < 100,
        "b's jobs ran only after all of a's had started"
    );
    assert!(ledger.each_once("a", 100) && ledger.each_once("b", 20));
}

/// The minute window a rate limit counts in, by the clock the fetch script is given.
fn minute() -> u64 {
    now_ms() / 60_000
}

/// a enqueues 30 jobs (its rate is 10 a minute), b 10 and 20 jobs come without a tenant;
/// once b's and the untenanted jobs are done, how many of a's started — or `None` when the
/// minute window changed during the run (a's count then spans two windows).
async fn rate_run() -> Option<usize> {
    let h = Harness::with(|s| {
        s.queue.tenant_rate_per_minute.insert(QUEUE.into(), 10);
    })
    .await;
    let ledger = Arc::new(Ledger::default());
    let window = minute();
    enqueue_work(&h, &ledger, "a", 30, 1, &on_queue().tenant("a")).await;
    enqueue_work(&h, &ledger, "b", 10, 10, &on_queue().tenant("b")).await;
    enqueue_work(&h, &ledger, "none", 20, 10, &on_queue()).await;
    let fleet = h
        .fleet(&h.fleet_settings(QUEUE, 4, 4, 3), registry(&ledger), None)
        .await;
    h.wait_for(
        "a's first 10, b's 10 and the 20 without a tenant",
        SECS,
        || {
            let done = (
                ledger.started("a"),
                ledger.finished("b"),
                ledger.finished("none"),
            );
            async move { done.0 >= 10 && done.1 == 10 && done.2 == 20 }
        },
    )
    .await;
    let a = ledger.started("a");
    let same_window = minute() == window;
    fleet.stop().await;
    eprintln!("tenant a started {a} of 30 (rate 10 a minute); same minute window: {same_window}");
    same_window.then_some(a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_waits_while_others_run() {
    // A run that straddles a minute boundary counts a's starts over two windows; the second
    // run then starts early in a fresh window and takes far less than a minute.
    for _ in 0..2 {
        if let Some(a) = rate_run().await {
            assert_eq!(
                a, 10,
                "tenant a started {a} jobs within one minute, rate 10"
            );
            return;
        }
        eprintln!("the minute window changed during the run; running it once more");
    }
    panic!("the minute window changed during both runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_job_ages_in_under_a_steady_stream_of_high_ones() {
    const FETCH_BATCH: usize = 2;
    const PREFETCH: usize = 1;
    let h = Harness::with(|s| s.queue.fetch_batch = FETCH_BATCH).await;
    let ledger = Arc::new(Ledger::default());
    // One slot drains about 400 high jobs of 2 ms a second; the producer keeps 40 waiting.
    let fleet = h
        .fleet(
            &h.fleet_settings(QUEUE, 1, PREFETCH, 3),
            registry(&ledger),
            None,
        )
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn({
        let (queues, ledger, stop) = (h.queues.clone(), Arc::clone(&ledger), Arc::clone(&stop));
        async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                if (n as usize).saturating_sub(ledger.started("high")) < 40 {
                    let work = Work {
                        who: "high".into(),
                        n,
                        ms: 2,
                    };
                    queues
                        .enqueue(&work, on_queue().priority(Priority::High))
                        .await
                        .unwrap();
                    ledger.queued("high", 1);
                    n += 1;
                } else {
                    // Pacing, not waiting for anything: the backlog is full.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            n
        }
    });
    h.wait_for("the high stream under way", SECS, || {
        let started = ledger.started("high");
        async move { started >= 50 }
    })
    .await;
    let before = ledger.starts();
    enqueue_work(
        &h,
        &ledger,
        "low",
        1,
        2,
        &on_queue().priority(Priority::Low),
    )
    .await;
    h.wait_for("the low job to start", SECS, || {
        let started = ledger.started("low");
        async move { started == 1 }
    })
    .await;
    let low_at = ledger.position("low", 0).unwrap();
    // High jobs waiting as the low one started: the stream had not run dry, so the low job
    // did overtake waiting high work.
    let overtaken = ledger.start_of("low", 0).unwrap().waiting;
    stop.store(true, Ordering::SeqCst);
    let high = producer.await.unwrap();
    h.wait_processed(QUEUE, u64::from(high) + 1, SECS).await;
    fleet.stop().await;
    let between = low_at - before;
    let bound = 13 + FETCH_BATCH + PREFETCH;
    eprintln!(
        "{between} high jobs started between the low job's enqueue and its start (bound {bound}); {overtaken} high jobs were waiting when it started; {high} high jobs in all"
    );
    assert!(
        overtaken > 0,
        "the high stream ran dry, so the low job proved nothing"
    );
    assert!(
        between < bound,
        "{between} high jobs started before the low one, bound {bound}"
    );
}

/// A fleet of 64 slots with an observer that counts the runs of `c<i>`, i < `n`.
async fn counted_fleet(
    h: &Harness,
    n: usize,
) -> (
    switchboard::fleet::Fleet,
    Arc<Vec<AtomicU8>>,
    Arc<Mutex<Vec<String>>>,
) {
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..n).map(|_| AtomicU8::new(0)).collect());
    let others = Arc::new(Mutex::new(Vec::new()));
    let (counter, other) = (Arc::clone(&runs), Arc::clone(&others));
    let observer: Observer = Arc::new(move |job: &Job| {
        match job
            .id
            .strip_prefix('c')
            .and_then(|i| i.parse::<usize>().ok())
            .and_then(|i| counter.get(i))
        {
            Some(slot) => {
                slot.fetch_add(1, Ordering::Relaxed);
            }
            None => other.lock().unwrap().push(job.id.to_string()),
        }
    });
    let fleet = h
        .fleet(
            &h.fleet_settings(QUEUE, 64, 64, 3),
            switchboard_jobs::registry(),
            Some(observer),
        )
        .await;
    (fleet, runs, others)
}

/// Wait until `queue` has processed `n` jobs and nothing is pending or running.
async fn wait_drained(h: &Harness, n: u64) {
    let queues = h.queues.clone();
    h.wait_for(&format!("{n} processed, none pending"), SECS, || {
        let queues = queues.clone();
        async move {
            queues
                .stats(QUEUE)
                .await
                .is_ok_and(|s| s.processed >= n && s.pending == 0 && s.running == 0)
        }
    })
    .await;
}

async fn assert_cancelled(h: &Harness, id: &str) {
    let view = h.queues.find_job(QUEUE, id).await.unwrap();
    assert_eq!(
        view.map(|v| v.state.as_str().to_owned()).as_deref(),
        Some("cancelled"),
        "job {id} is recorded as cancelled"
    );
    assert!(
        !h.queues.cancel(QUEUE, id).await.unwrap(),
        "a cancelled job cannot be cancelled again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_90000th_of_100000_pending_jobs_keeps_it_from_running() {
    let h = Harness::new().await;
    let ids: Vec<String> = (0..N_CANCEL).map(|i| format!("c{i}")).collect();
    for chunk in ids.chunks(10_000) {
        let args = vec![Noop::default(); chunk.len()];
        h.queues
            .enqueue_many(QUEUE, &args, Some(chunk))
            .await
            .unwrap();
    }
    assert_eq!(h.stats(QUEUE).await.pending, N_CANCEL as u64);
    let victim = 89_999;
    let t = Instant::now();
    let cancelled = h.queues.cancel(QUEUE, &ids[victim]).await.unwrap();
    let took = t.elapsed();
    eprintln!("cancel took {:.3} ms", took.as_secs_f64() * 1000.0);
    assert!(
        cancelled,
        "the 90,000th pending job was found and cancelled"
    );

    let (fleet, runs, _) = counted_fleet(&h, N_CANCEL).await;
    wait_drained(&h, N_CANCEL as u64 - 1).await;
    fleet.stop().await;
    assert_eq!(
        runs[victim].load(Ordering::Relaxed),
        0,
        "the cancelled job never ran"
    );
    let missing: Vec<usize> = (0..N_CANCEL)
        .filter(|&i| i != victim && runs[i].load(Ordering::Relaxed) == 0)
        .collect();
    assert!(
        missing.is_empty(),
        "{} jobs never ran: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let twice = runs
        .iter()
        .filter(|r| r.load(Ordering::Relaxed) > 1)
        .count();
    assert_eq!(twice, 0, "no job ran twice");
    assert_eq!(h.stats(QUEUE).await.processed, N_CANCEL as u64 - 1);
    assert_cancelled(&h, &ids[victim]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_delayed_job_never_runs_when_its_time_comes() {
    let h = Harness::new().await;
    let at = SystemTime::now() + Duration::from_millis(300);
    let delayed = |id: &str| on_queue().run_at(at).with_id(id);
    h.queues
        .enqueue(&Noop::default(), delayed("c0"))
        .await
        .unwrap();
    h.queues
        .enqueue(&Noop::default(), delayed("c1"))
        .await
        .unwrap();
    // The witness is due later than the cancelled job: once it ran, the other was due too.
    let witness = on_queue()
        .run_at(at + Duration::from_millis(200))
        .with_id("witness");
    h.queues.enqueue(&Noop::default(), witness).await.unwrap();
    assert!(h.queues.cancel(QUEUE, "c0").await.unwrap());
    assert_eq!(
        h.stats(QUEUE).await.delayed,
        2,
        "the cancelled job left the delayed set"
    );

    let promoter = h.start_promoter(QUEUE);
    let (fleet, runs, others) = counted_fleet(&h, 2).await;
    wait_drained(&h, 2).await;
    h.wait_for("the witness to run", SECS, || {
        let ran = others.lock().unwrap().contains(&"witness".to_owned());
        async move { ran }
    })
    .await;
    fleet.stop().await;
    promoter.cancel();
    assert_eq!(
        runs[0].load(Ordering::Relaxed),
        0,
        "the cancelled job never ran"
    );
    assert_eq!(runs[1].load(Ordering::Relaxed), 1);
    assert_cancelled(&h, "c0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_of_a_tenant_never_runs_and_the_tenants_others_do() {
    const N: usize = 50;
    let h = Harness::new().await;
    for i in 0..N {
        let tenant = if i % 2 == 0 { "a" } else { "b" };
        let options = on_queue().tenant(tenant).with_id(format!("c{i}"));
        h.queues.enqueue(&Noop::default(), options).await.unwrap();
    }
    // One in the middle of tenant a's lane.
    let victim = 24;
    assert!(h.queues.cancel(QUEUE, &format!("c{victim}")).await.unwrap());

    let (fleet, runs, _) = counted_fleet(&h, N).await;
    wait_drained(&h, N as u64 - 1).await;
    fleet.stop().await;
    let ran: Vec<u8> = runs.iter().map(|r| r.load(Ordering::Relaxed)).collect();
    assert_eq!(ran[victim], 0, "the cancelled job never ran");
    assert!(
        ran.iter().enumerate().all(|(i, &r)| i == victim || r == 1),
        "every other job ran once: {ran:?}"
    );
    assert_cancelled(&h, &format!("c{victim}")).await;
}
