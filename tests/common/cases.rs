//! The queue's core cases, each a function over a [`Harness`], so the same case runs on a
//! single Redis (tests/queue.rs, fleet.rs, scheduler.rs) and on a Redis Cluster
//! (tests/cluster.rs): processing, retries, the dead set, delays, pause, unique keys, rescue
//! after SIGKILL, and the scheduler's once-per-tick claim.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chrono::{Datelike, DurationRound, TimeDelta, Timelike, Utc};
use switchboard::{
    fleet::Observer,
    maintenance::{Rescuer, Service as _},
    queue::job::Job,
};
use switchboard_jobs::{EnqueueOptions, noop::Noop};
use tokio_util::sync::CancellationToken;

use super::{Harness, jobs};

const SECS: Duration = Duration::from_secs(10);
/// Jobs in the crash case.
const N_CRASH: usize = 20_000;

pub async fn processes_a_job(h: &Harness) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let observer: Observer =
        Arc::new(move |job: &Job| sink.lock().unwrap().push(job.id.to_string()));
    let fleet = h
        .fleet(
            &h.fleet_settings("work", 4, 4, 3),
            switchboard_jobs::registry(),
            Some(observer),
        )
        .await;

    let out = h
        .queues
        .enqueue(&Noop::default(), EnqueueOptions::default().on_queue("work"))
        .await
        .unwrap();
    assert!(!out.duplicate);
    h.wait_processed("work", 1, SECS).await;

    assert_eq!(*seen.lock().unwrap(), vec![out.id.clone()]);
    let s = h.stats("work").await;
    assert_eq!(
        (s.pending, s.running, s.delayed, s.dead, s.failed),
        (0, 0, 0, 0, 0)
    );
    let mut conn = h.conn();
    let keys = h.queues.keys("work").unwrap();
    let score: Option<f64> = redis::cmd("ZSCORE")
        .arg(&keys.completed)
        .arg(&out.id)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(score.is_some(), "completed record kept for the trim window");
    let stopped = fleet.stop().await;
    assert_eq!(stopped.abandoned, 0);
}

pub async fn failing_job_retries_with_backoff_then_dies_with_its_error(h: &Harness) {
    let switches = jobs::Switches::new();
    let promoter = h.start_promoter("flaky");
    let fleet = h
        .fleet(
            &h.fleet_settings("flaky", 2, 2, 3),
            jobs::registry(&switches),
            None,
        )
        .await;

    let out = h
        .queues
        .enqueue(&jobs::Flaky::default(), EnqueueOptions::default())
        .await
        .unwrap();
    let queues = h.queues.clone();
    h.wait_for("the job in the dead set", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("flaky").await.unwrap().dead == 1 }
    })
    .await;

    assert_eq!(switches.started(), 3, "max_attempts = 3 runs");
    let dead = h.queues.dead_list("flaky", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, out.id);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].error.as_deref(), Some("boom"));
    assert!(dead[0].died_at_ms >= dead[0].enqueued_at_ms);
    let s = h.stats("flaky").await;
    assert_eq!(
        (s.failed, s.processed, s.pending, s.delayed, s.running),
        (3, 0, 0, 0, 0)
    );

    fleet.stop().await;
    promoter.cancel();
}

pub async fn poisoned_job_goes_to_the_dead_set_at_once(h: &Harness) {
    let switches = jobs::Switches::new();
    let fleet = h
        .fleet(
            &h.fleet_settings("poison", 2, 2, 5),
            jobs::registry(&switches),
            None,
        )
        .await;
    h.queues
        .enqueue(&jobs::Poison::default(), EnqueueOptions::default())
        .await
        .unwrap();
    // Arguments that do not decode are poison too.
    h.queues
        .enqueue_json(
            "noop",
            1,
            r#"{"sleep_ms":"not a number"}"#.into(),
            "poison",
            EnqueueOptions::default(),
        )
        .await
        .unwrap();
    let queues = h.queues.clone();
    h.wait_for("two dead jobs", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("poison").await.unwrap().dead == 2 }
    })
    .await;
    let dead = h.queues.dead_list("poison", 10).await.unwrap();
    let errors: Vec<_> = dead
        .iter()
        .map(|d| (d.attempts, d.error.clone().unwrap()))
        .collect();
    assert!(errors.iter().all(|(a, _)| *a == 1), "{errors:?}");
    assert!(
        errors.iter().any(|(_, e)| e == "payload can never work"),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|(_, e)| e.contains("do not decode")),
        "{errors:?}"
    );
    fleet.stop().await;
}

pub async fn delayed_job_never_runs_before_its_time(h: &Harness) {
    let started = Arc::new(Mutex::new(HashMap::new()));
    let sink = Arc::clone(&started);
    let observer: Observer = Arc::new(move |job: &Job| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        sink.lock().unwrap().insert(job.id.to_string(), now);
    });
    let promoter = h.start_promoter("later");
    let fleet = h
        .fleet(
            &h.fleet_settings("later", 4, 4, 3),
            switchboard_jobs::registry(),
            Some(observer),
        )
        .await;

    let mut due = Vec::new();
    for delay_ms in [300u64, 700, 1200] {
        let at = SystemTime::now() + Duration::from_millis(delay_ms);
        let out = h
            .queues
            .enqueue(
                &Noop::default(),
                EnqueueOptions::default().on_queue("later").run_at(at),
            )
            .await
            .unwrap();
        due.push((
            out.id,
            at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
        ));
    }
    let immediate = h
        .queues
        .enqueue(
            &Noop::default(),
            EnqueueOptions::default().on_queue("later"),
        )
        .await
        .unwrap();
    assert_eq!(h.stats("later").await.delayed, 3);
    h.wait_processed("later", 4, SECS).await;

    let started = started.lock().unwrap().clone();
    assert!(started.contains_key(&immediate.id));
    for (id, due_ms) in due {
        let at = started[&id];
        assert!(
            at >= due_ms,
            "job {id} started at {at}, {} ms before it was due",
            due_ms - at
        );
    }
    fleet.stop().await;
    promoter.cancel();
}

pub async fn pause_stops_fetching_and_continue_resumes(h: &Harness) {
    let fleet = h
        .fleet(
            &h.fleet_settings("pausable", 4, 4, 3),
            switchboard_jobs::registry(),
            None,
        )
        .await;
    let worker = fleet.workers().pop().unwrap();

    h.queues.pause("pausable").await.unwrap();
    assert!(h.stats("pausable").await.paused);
    let args = vec![Noop::default(); 10];
    h.queues
        .enqueue_many("pausable", &args, None)
        .await
        .unwrap();
    // Wait until the worker has been refused twice after the jobs arrived.
    let before = worker.counters().paused.load(Ordering::SeqCst);
    h.wait_for("two paused fetch rounds", SECS, || {
        let n = worker.counters().paused.load(Ordering::SeqCst);
        async move { n >= before + 2 }
    })
    .await;
    let s = h.stats("pausable").await;
    assert_eq!(
        (s.pending, s.running, s.processed),
        (10, 0, 0),
        "nothing fetched while paused"
    );

    h.queues.resume("pausable").await.unwrap();
    h.wait_processed("pausable", 10, SECS).await;
    assert!(!h.stats("pausable").await.paused);
    fleet.stop().await;
}

pub async fn unique_key_suppresses_the_second_push(h: &Harness) {
    let opts = || {
        EnqueueOptions::default()
            .on_queue("uniq")
            .unique("evt_123", Duration::from_secs(60))
    };
    let first = h.queues.enqueue(&Noop::default(), opts()).await.unwrap();
    let second = h.queues.enqueue(&Noop::default(), opts()).await.unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(
        second.id, first.id,
        "the duplicate answers with the first job's id"
    );

    // Fifty concurrent pushes of another key: exactly one lands.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let queues = h.queues.clone();
        tasks.push(tokio::spawn(async move {
            queues
                .enqueue(
                    &Noop::default(),
                    EnqueueOptions::default()
                        .on_queue("uniq")
                        .unique("evt_456", Duration::from_secs(60)),
                )
                .await
                .unwrap()
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| !r.duplicate).count(), 1);
    let winner = results.iter().find(|r| !r.duplicate).unwrap().id.clone();
    assert!(results.iter().all(|r| r.id == winner));
    assert_eq!(h.stats("uniq").await.pending, 2);
}

/// `h` keeps every completion record (`queue.completed_max` of 1,000,000 or more).
#[allow(clippy::too_many_lines)] // one story: the crash, then the rescue, then the count
pub async fn a_worker_killed_mid_drain_loses_nothing(h: &Harness) {
    let ids: Vec<String> = (0..N_CRASH).map(|i| format!("k{i}")).collect();
    let args = vec![
        Noop {
            fail: None,
            sleep_ms: Some(1)
        };
        N_CRASH
    ];
    h.queues
        .enqueue_many("drain", &args, Some(&ids))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = write_worker_config(dir.path(), h.prefix());
    let mut child = h
        .command()
        .arg("--config")
        .arg(&config)
        .arg("work")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    h.wait_processed("drain", 2_000, Duration::from_secs(60))
        .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = h.stats("drain").await;
    assert!(
        at_kill.processed < N_CRASH as u64,
        "killed mid-drain ({} processed)",
        at_kill.processed
    );
    assert!(at_kill.running > 0, "the dead worker held leased jobs");

    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..N_CRASH).map(|_| AtomicU8::new(0)).collect());
    let counter = Arc::clone(&runs);
    let observer: Observer = Arc::new(move |job: &Job| {
        let i: usize = job.id.strip_prefix('k').unwrap().parse().unwrap();
        counter[i].fetch_add(1, Ordering::Relaxed);
    });
    let token = CancellationToken::new();
    tokio::spawn(
        Rescuer::new(
            h.queues.clone(),
            vec!["drain".into()],
            &h.settings.maintenance,
        )
        .run(token.clone()),
    );
    let fleet = h
        .fleet(
            &h.fleet_settings("drain", 32, 32, 3),
            switchboard_jobs::registry(),
            Some(observer),
        )
        .await;
    h.wait_processed("drain", N_CRASH as u64, Duration::from_secs(60))
        .await;
    fleet.stop().await;
    token.cancel();

    let s = h.stats("drain").await;
    assert_eq!(
        (s.pending, s.running, s.delayed, s.dead, s.processed),
        (0, 0, 0, 0, N_CRASH as u64)
    );
    let keys = h.queues.keys("drain").unwrap();
    let mut conn = h.conn();
    let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
        .arg(&keys.completed)
        .arg(&ids)
        .query_async(&mut conn)
        .await
        .unwrap();
    let missing: Vec<_> = ids
        .iter()
        .zip(&scores)
        .filter(|(_, s)| s.is_none())
        .map(|(id, _)| id)
        .collect();
    assert!(
        missing.is_empty(),
        "{} jobs never completed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let rescued: u64 = redis::cmd("HGET")
        .arg(&keys.stats)
        .arg("rescued")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        rescued > 0,
        "the dead worker's jobs came back through the rescuer"
    );
    // Every job this fleet did not run had been completed by the killed worker before it died.
    let rerun = runs
        .iter()
        .filter(|r| r.load(Ordering::Relaxed) > 0)
        .count() as u64;
    assert!(rerun >= N_CRASH as u64 - at_kill.processed);
}

/// A config file for a separate `switchboard work` process draining queue `drain`.
fn write_worker_config(dir: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    let config = dir.join("crash.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[queue]
prefix = "{prefix}"
lease_secs = 3
block_timeout_ms = 200
completed_max = 1000000

[[fleet.supervisors]]
name = "drain"
queues = ["drain"]
concurrency = 32
prefetch = 64
max_attempts = 3
timeout_secs = 2
backoff = {{ base_ms = 10, cap_ms = 100 }}
"#
        ),
    )
    .unwrap();
    config
}

pub async fn three_scheduler_processes_enqueue_each_of_20_ticks_exactly_once(h: &Harness) {
    // Twenty one-second ticks inside one minute, starting a few seconds from now.
    let mut first =
        Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(5);
    if first.second() > 40 {
        first = first.duration_trunc(TimeDelta::minutes(1)).unwrap() + TimeDelta::seconds(61);
    }
    let cron = format!(
        "{}-{} {} {} {} {} * {}",
        first.second(),
        first.second() + 19,
        first.minute(),
        first.hour(),
        first.day(),
        first.month(),
        first.year()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[schedule]]\nname = \"tick\"\ncron = \"{cron}\"\ntimezone = \"UTC\"\nkind = \"noop\"\nqueue = \"ticks\"\n"
        ),
    );
    let mut procs: Vec<Child> = (0..3)
        .map(|_| {
            h.command()
                .arg("--config")
                .arg(&config)
                .arg("schedule")
                .spawn()
                .unwrap()
        })
        .collect();

    // Every process has started its scheduler (the state exists) before the first tick.
    let state = h.queues.keys("ticks").unwrap().schedule("tick");
    let conn = h.conn();
    h.wait_for("the schedule's state", Duration::from_secs(20), || {
        let (mut conn, state) = (conn.clone(), state.clone());
        async move {
            redis::cmd("EXISTS")
                .arg(state)
                .query_async::<bool>(&mut conn)
                .await
                .unwrap()
        }
    })
    .await;
    assert!(
        Utc::now() < first,
        "the schedulers started too late for the test's window"
    );

    let until = (first - Utc::now()).to_std().unwrap() + Duration::from_secs(40);
    let queues = h.queues.clone();
    h.wait_for("20 ticks enqueued", until, || {
        let queues = queues.clone();
        async move { queues.stats("ticks").await.unwrap().pending >= 20 }
    })
    .await;
    for p in &mut procs {
        assert!(terminate(p).success(), "scheduler exits cleanly on SIGTERM");
    }

    let ids = pending_ids(h, "ticks").await;
    let expected: Vec<String> = (0..20)
        .map(|i| {
            format!(
                "cron-tick-{}",
                (first + TimeDelta::seconds(i)).timestamp_millis()
            )
        })
        .collect();
    assert_eq!(
        ids, expected,
        "one job per tick, in order, none twice, none missing"
    );
}

/// Ids of the jobs pending on `queue`, oldest first.
pub async fn pending_ids(h: &Harness, queue: &str) -> Vec<String> {
    h.pending_items(queue)
        .await
        .iter()
        .map(|i| i.split(' ').next().unwrap().to_owned())
        .collect()
}

pub fn write_config(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("schedules.toml");
    std::fs::write(&path, body).unwrap();
    path
}

pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap()
}
