//! Queue behaviour against a real Redis: processing, retries, the dead set, delays, pause,
//! unique keys and stats.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use common::{Harness, cases, jobs};
use switchboard::queue::admin::Selection;
use switchboard_jobs::{EnqueueOptions, noop::Noop};

const SECS: Duration = Duration::from_secs(10);

#[tokio::test]
async fn processes_a_job() {
    cases::processes_a_job(&Harness::new().await).await;
}

#[tokio::test]
async fn failing_job_retries_with_backoff_then_dies_with_its_error() {
    cases::failing_job_retries_with_backoff_then_dies_with_its_error(&Harness::new().await).await;
}

#[tokio::test]
async fn poisoned_job_goes_to_the_dead_set_at_once() {
    cases::poisoned_job_goes_to_the_dead_set_at_once(&Harness::new().await).await;
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_worker_is_set_aside_after_max_rescues() {
    let h = Harness::new().await;
    let max = h.settings.queue.max_rescues;
    let job = h
        .queues
        .enqueue(
            &Noop::default(),
            EnqueueOptions::default().on_queue("crashy"),
        )
        .await
        .unwrap();
    for round in 1..=max {
        let item = h
            .lease_to_a_dead_worker("crashy", &format!("w{round}"))
            .await;
        assert!(
            item.contains(&format!("\"resc\":{}", round - 1)) || round == 1,
            "{item}"
        );
        assert_eq!(h.queues.rescue("crashy", u64::MAX / 2).await.unwrap(), 1);
        let s = h.stats("crashy").await;
        assert_eq!(
            (s.pending, s.running, s.dead),
            (1, 0, 0),
            "rescue {round} re-queues"
        );
    }
    // One crash more than allowed: the job goes to the dead set, marked, with a clear error.
    h.lease_to_a_dead_worker("crashy", "w-last").await;
    assert_eq!(h.queues.rescue("crashy", u64::MAX / 2).await.unwrap(), 1);
    let s = h.stats("crashy").await;
    assert_eq!((s.pending, s.running, s.dead), (0, 0, 1));
    let dead = h.queues.dead_list("crashy", 10).await.unwrap();
    assert_eq!(dead[0].id, job.id);
    let error = dead[0].error.clone().unwrap();
    assert!(
        error.contains(&format!("lost {} times", max + 1)) && error.contains("poisonous"),
        "{error}"
    );
    // Retried by an operator, it starts with a clean slate and runs.
    assert_eq!(
        h.queues
            .dead_retry("crashy", Selection::Ids(vec![job.id.clone()]))
            .await
            .unwrap(),
        1
    );
    let fleet = h
        .fleet(
            &h.fleet_settings("crashy", 1, 1, 1),
            switchboard_jobs::registry(),
            None,
        )
        .await;
    h.wait_processed("crashy", 1, SECS).await;
    fleet.stop().await;
}

#[tokio::test]
async fn dead_jobs_can_be_retried_and_forgotten() {
    let h = Harness::new().await;
    let switches = jobs::Switches::new();
    let promoter = h.start_promoter("flaky");
    let fleet = h
        .fleet(
            &h.fleet_settings("flaky", 2, 2, 1),
            jobs::registry(&switches),
            None,
        )
        .await;

    let first = h
        .queues
        .enqueue(&jobs::Flaky::default(), EnqueueOptions::default())
        .await
        .unwrap();
    let second = h
        .queues
        .enqueue(&jobs::Flaky::default(), EnqueueOptions::default())
        .await
        .unwrap();
    let queues = h.queues.clone();
    h.wait_for("both dead", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("flaky").await.unwrap().dead == 2 }
    })
    .await;

    switches.failing.store(false, Ordering::SeqCst);
    let retried = h
        .queues
        .dead_retry("flaky", Selection::Ids(vec![first.id.clone()]))
        .await
        .unwrap();
    assert_eq!(retried, 1);
    h.wait_processed("flaky", 1, SECS).await;
    let s = h.stats("flaky").await;
    assert_eq!((s.dead, s.processed), (1, 1));
    let left = h.queues.dead_list("flaky", 10).await.unwrap();
    assert_eq!(
        left.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
        vec![second.id]
    );

    assert_eq!(
        h.queues
            .dead_retry("flaky", Selection::Ids(vec!["no-such-id".into()]))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        h.queues.dead_forget("flaky", Selection::All).await.unwrap(),
        1
    );
    assert_eq!(h.stats("flaky").await.dead, 0);
    fleet.stop().await;
    promoter.cancel();
}

#[tokio::test]
async fn delayed_job_never_runs_before_its_time() {
    cases::delayed_job_never_runs_before_its_time(&Harness::new().await).await;
}

#[tokio::test]
async fn pause_stops_fetching_and_continue_resumes() {
    cases::pause_stops_fetching_and_continue_resumes(&Harness::new().await).await;
}

#[tokio::test]
async fn unique_key_suppresses_the_second_push() {
    cases::unique_key_suppresses_the_second_push(&Harness::new().await).await;
}

#[tokio::test]
async fn stats_equal_what_is_in_redis() {
    let h = Harness::new().await;
    let switches = jobs::Switches::new();
    // 3 complete, 2 die, 4 hold the worker (running) and 5 more wait behind them.
    let fleet = h
        .fleet(
            &h.fleet_settings("gated", 4, 0, 1),
            jobs::registry(&switches),
            None,
        )
        .await;
    h.queues
        .enqueue_many("gated", &vec![Noop::default(); 3], None)
        .await
        .unwrap();
    h.wait_processed("gated", 3, SECS).await;
    for _ in 0..2 {
        h.queues
            .enqueue(
                &jobs::Poison::default(),
                EnqueueOptions::default().on_queue("gated"),
            )
            .await
            .unwrap();
    }
    let queues = h.queues.clone();
    h.wait_for("two dead", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("gated").await.unwrap().dead == 2 }
    })
    .await;
    h.queues
        .enqueue_many("gated", &vec![jobs::Gated::default(); 9], None)
        .await
        .unwrap();
    h.wait_for("four running", SECS, || {
        let n = switches.started();
        async move { n == 4 }
    })
    .await;
    let later = SystemTime::now() + Duration::from_secs(3600);
    h.queues
        .enqueue(
            &Noop::default(),
            EnqueueOptions::default().on_queue("gated").run_at(later),
        )
        .await
        .unwrap();

    let s = h.stats("gated").await;
    let k = h.queues.keys("gated").unwrap();
    let mut conn = h.conn();
    let pending: u64 = redis::cmd("LLEN")
        .arg(&k.pending)
        .query_async(&mut conn)
        .await
        .unwrap();
    let delayed: u64 = redis::cmd("ZCARD")
        .arg(&k.delayed)
        .query_async(&mut conn)
        .await
        .unwrap();
    let dead: u64 = redis::cmd("HLEN")
        .arg(&k.dead)
        .query_async(&mut conn)
        .await
        .unwrap();
    let completed: u64 = redis::cmd("ZCARD")
        .arg(&k.completed)
        .query_async(&mut conn)
        .await
        .unwrap();
    let worker = fleet.workers().pop().unwrap();
    let leased: u64 = redis::cmd("HLEN")
        .arg(k.leased(worker.id()))
        .query_async(&mut conn)
        .await
        .unwrap();

    assert_eq!((pending, delayed, dead, completed, leased), (5, 1, 2, 3, 4));
    assert_eq!(
        (
            s.pending,
            s.delayed,
            s.dead,
            s.processed,
            s.running,
            s.failed
        ),
        (pending, delayed, dead, completed, leased, 2)
    );
    assert!(s.oldest_pending_secs >= 0.0 && s.oldest_pending_secs < 60.0);

    switches.gate.add_permits(100);
    h.wait_processed("gated", 12, SECS).await;
    let s = h.stats("gated").await;
    assert_eq!((s.pending, s.running, s.oldest_pending_secs), (0, 0, 0.0));
    fleet.stop().await;
}

#[tokio::test]
async fn a_retry_after_from_the_job_sets_the_next_attempt_time() {
    let h = Harness::new().await;
    let switches = jobs::Switches::new();
    let fleet = h
        .fleet(
            &h.fleet_settings("throttled", 2, 2, 5),
            jobs::registry(&switches),
            None,
        )
        .await;
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let out = h
        .queues
        .enqueue(&jobs::Throttled::default(), EnqueueOptions::default())
        .await
        .unwrap();
    let queues = h.queues.clone();
    h.wait_for("the job waiting for its retry", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("throttled").await.unwrap().delayed == 1 }
    })
    .await;
    let k = h.queues.keys("throttled").unwrap();
    let mut conn = h.conn();
    let due: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&k.delayed)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(due[0].0.starts_with(&out.id));
    let wait = due[0].1 - before;
    assert!(
        (59_000.0..=61_000.0).contains(&wait),
        "retry due {wait} ms later, not the 60 s the job asked for"
    );
    assert!(
        due[0].0.contains("rate limited"),
        "the error is kept: {}",
        due[0].0
    );
    assert_eq!(h.stats("throttled").await.failed, 1);
    fleet.stop().await;
}

#[tokio::test]
async fn the_rate_limit_holds_across_limiters_sharing_redis() {
    use switchboard::queue::{Queues, rate_limit::RedisRateLimiter};
    use switchboard_jobs::RateLimiter;

    let h = Harness::new().await;
    // Three limiters with their own connections stand for three processes.
    let mut limiters = Vec::new();
    for _ in 0..3 {
        let queues = Queues::connect(&h.settings.redis.url, h.settings.queue.clone())
            .await
            .unwrap();
        limiters.push(Arc::new(RedisRateLimiter::new(queues)));
    }
    let mut tasks = Vec::new();
    for i in 0..60 {
        let limiter = Arc::clone(&limiters[i % 3]);
        tasks.push(tokio::spawn(async move {
            limiter
                .acquire("calcom:key_A", 10, Duration::from_secs(60))
                .await
                .unwrap()
        }));
    }
    let mut granted = 0;
    for t in tasks {
        match t.await.unwrap() {
            None => granted += 1,
            Some(wait) => assert!(
                wait > Duration::ZERO && wait <= Duration::from_secs(60),
                "{wait:?}"
            ),
        }
    }
    assert_eq!(
        granted, 10,
        "exactly the limit is granted across all limiters"
    );
    // Another key has its own window.
    assert_eq!(
        limiters[0]
            .acquire("calcom:key_B", 10, Duration::from_secs(60))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn completions_are_counted_per_minute_for_the_recent_windows() {
    let h = Harness::new().await;
    let fleet = h
        .fleet(
            &h.fleet_settings("counted", 8, 8, 1),
            switchboard_jobs::registry(),
            None,
        )
        .await;
    h.queues
        .enqueue_many("counted", &vec![Noop::default(); 25], None)
        .await
        .unwrap();
    h.wait_processed("counted", 25, SECS).await;
    fleet.stop().await;

    let key = h.queues.keys("counted").unwrap().throughput.clone();
    let mut conn = h.conn();
    let minutes: HashMap<u64, u64> = redis::cmd("HGETALL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(minutes.values().sum::<u64>(), 25, "{minutes:?}");
    let now = switchboard::queue::job::now_ms();
    let recent = h.queues.recent("counted", now).await.unwrap();
    assert_eq!(recent.completed_last_hour, 25);
    // Exactly at the start of the minute after the last one counted, the last minute holds
    // everything of that minute and the one before it.
    let last = *minutes.keys().max().unwrap();
    let at_boundary = h
        .queues
        .recent("counted", (last + 1) * 60_000)
        .await
        .unwrap();
    let expected =
        minutes.get(&last).copied().unwrap_or(0) + minutes.get(&(last - 1)).copied().unwrap_or(0);
    assert_eq!(at_boundary.completed_last_minute, expected);
    // Two hours on, nothing is recent and the pruner drops the old minutes.
    let later = now + 2 * 3_600_000;
    assert_eq!(
        h.queues
            .recent("counted", later)
            .await
            .unwrap()
            .completed_last_hour,
        0
    );
    h.queues.prune("counted", later).await.unwrap();
    let left: u64 = redis::cmd("HLEN")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn a_kinds_own_attempts_timeout_and_backoff_win_over_the_supervisors() {
    let h = Harness::new().await;
    let switches = jobs::Switches::new();
    // The supervisor allows 5 attempts, 20 s per attempt and retries within 20 ms.
    let mut settings = h.fleet_settings("policy", 4, 4, 5);
    settings.supervisors[0].timeout_secs = 20;
    let fleet = h.fleet(&settings, jobs::registry(&switches), None).await;
    let one_shot = h
        .queues
        .enqueue(&jobs::OneShot::default(), EnqueueOptions::default())
        .await
        .unwrap();
    let hung = h
        .queues
        .enqueue(&jobs::Hung::default(), EnqueueOptions::default())
        .await
        .unwrap();
    let patient = h
        .queues
        .enqueue(&jobs::Patient::default(), EnqueueOptions::default())
        .await
        .unwrap();
    let queues = h.queues.clone();
    // Within 10 s, far less than the supervisor's 20 s timeout: only the kind's 100 ms can
    // have ended the hung job.
    h.wait_for("two dead and one retry waiting", SECS, || {
        let queues = queues.clone();
        async move {
            let s = queues.stats("policy").await.unwrap();
            s.dead == 2 && s.delayed == 1
        }
    })
    .await;
    let dead = h.queues.dead_list("policy", 10).await.unwrap();
    let find = |id: &str| dead.iter().find(|d| d.id == id).expect("dead job").clone();
    let d = find(&one_shot.id);
    assert_eq!(
        (d.attempts, d.error.as_deref()),
        (1, Some("boom")),
        "one attempt, not 5"
    );
    let d = find(&hung.id);
    assert_eq!((d.attempts, d.error.as_deref()), (1, Some("timed out")));
    // The retry waits the kind's hour (with jitter: 30 to 60 min), not the supervisor's 20 ms.
    let delayed: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(h.queues.keys("policy").unwrap().delayed.as_str())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut h.conn())
        .await
        .unwrap();
    assert_eq!(delayed.len(), 1);
    assert!(delayed[0].0.starts_with(&patient.id), "{delayed:?}");
    let wait_ms = delayed[0]
        .1
        .saturating_sub(switchboard::queue::job::now_ms());
    assert!(
        (29 * 60_000..=60 * 60_000).contains(&wait_ms),
        "retry in {wait_ms} ms"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_kind_timeout_longer_than_the_lease_is_refused_at_start() {
    let h = Harness::new().await;
    let mut registry = switchboard_jobs::registry();
    registry.register::<TooSlow, _, _>(|_, _| async { Ok(()) });
    let err = switchboard::fleet::Fleet::start(
        &h.queues,
        std::sync::Arc::new(registry),
        &h.fleet_settings("policy", 1, 1, 1),
        None,
    )
    .await
    .err()
    .expect("refused");
    assert!(
        err.to_string().contains("test.too_slow") && err.to_string().contains("lease"),
        "{err}"
    );
}

#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct TooSlow {}

impl switchboard_jobs::JobArgs for TooSlow {
    const KIND: &'static str = "test.too_slow";
    const QUEUE: &'static str = "policy";
    const POLICY: switchboard_jobs::Policy =
        switchboard_jobs::Policy::DEFAULT.timeout(Duration::from_secs(3600));
}

#[tokio::test]
async fn a_retry_budget_keeps_trying_past_the_attempts_until_its_time_is_up() {
    let h = Harness::new().await;
    let switches = jobs::Switches::new();
    let promoter = h.start_promoter("budget");
    // The supervisor would give up after 2 attempts; the kind keeps trying for 300 ms.
    let fleet = h
        .fleet(
            &h.fleet_settings("budget", 1, 1, 2),
            jobs::registry(&switches),
            None,
        )
        .await;
    let job = h
        .queues
        .enqueue(&jobs::Budgeted::default(), EnqueueOptions::default())
        .await
        .unwrap();
    let queues = h.queues.clone();
    h.wait_for("the budgeted job dead", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("budget").await.unwrap().dead == 1 }
    })
    .await;
    let dead = h.queues.dead_list("budget", 10).await.unwrap();
    assert_eq!(dead[0].id, job.id);
    assert!(dead[0].attempts > 2, "attempts: {}", dead[0].attempts);
    assert!(
        dead[0].died_at_ms >= dead[0].enqueued_at_ms + 300,
        "dead only once the budget passed: {:?}",
        dead[0]
    );
    fleet.stop().await;
    promoter.cancel();
}
