//! The metrics at `GET /metrics` of a running Switchboard after known workloads: job outcome
//! counters and histogram counts equal to what ran, queue gauges equal to `Queues::stats`,
//! busy and idle worker slots, ingest requests by status, and scheduler fires by outcome.
//!
//! The recorder is one per process, so each test keeps its series apart by giving its queues
//! and supervisors names of their own (and its Redis keys a prefix of its own).

mod common;

use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use common::{
    Harness,
    expo::{count, value},
    jobs,
    running::{self, Running},
};
use switchboard::{
    app::{Hooks, Roles},
    config::{CatchUp, ScheduleSettings, SchedulerSettings},
    ingest::{SecretList, WebhookSecrets},
    maintenance::{Rescuer, Scheduler, Service as _, scheduler::FireOutcome},
    queue::admin::QueueStats,
    telemetry,
};
use switchboard_jobs::{EnqueueOptions, noop::Noop};

const LIMIT: Duration = Duration::from_secs(20);

/// A queue or supervisor name no other test uses.
fn unique(what: &str) -> String {
    format!("{what}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// Fleet, maintenance and HTTP over one supervisor `sup` of `concurrency` slots on `queue`.
async fn serve(
    h: &Harness,
    sup: &str,
    queue: &str,
    concurrency: usize,
) -> (Running, std::sync::Arc<jobs::Switches>) {
    let mut settings = h.settings.clone();
    settings.fleet = h.fleet_settings(queue, concurrency, concurrency, 3);
    sup.clone_into(&mut settings.fleet.supervisors[0].name);
    let switches = jobs::Switches::new();
    let roles = Roles {
        fleet: true,
        maintenance: true,
        http: true,
        ..Roles::default()
    };
    let hooks = Hooks {
        registry: Some(jobs::registry(&switches)),
        ..Hooks::default()
    };
    (Running::start(settings, roles, hooks).await, switches)
}

fn jobs_total(text: &str, queue: &str, kind: &str, outcome: &str) -> u64 {
    count(
        text,
        "switchboard_jobs_total",
        &[("queue", queue), ("kind", kind), ("outcome", outcome)],
    )
}

fn queue_gauge(text: &str, queue: &str, state: &str) -> u64 {
    let labels = [("queue", queue), ("state", state)];
    assert!(
        value(text, "switchboard_queue_jobs", &labels).is_some(),
        "no queue gauge {queue}/{state}"
    );
    count(text, "switchboard_queue_jobs", &labels)
}

fn assert_gauges_equal(text: &str, s: &QueueStats) {
    let q = s.name.as_str();
    assert_eq!(
        [
            queue_gauge(text, q, "pending"),
            queue_gauge(text, q, "delayed"),
            queue_gauge(text, q, "running"),
            queue_gauge(text, q, "dead"),
            queue_gauge(text, q, "waiting"),
        ],
        [s.pending, s.delayed, s.running, s.dead, s.waiting],
        "gauges of {q} against {s:?}"
    );
}

/// Per kind: completed, failed, retried, dead after [`known_workload`].
const EXPECTED: [(&str, [u64; 4]); 3] = [
    ("noop", [20, 0, 0, 0]),
    ("test.poison", [0, 3, 0, 3]),
    ("test.flaky", [0, 6, 4, 2]),
];

/// 20 noop jobs, 3 poisoned ones (dead at once) and 2 that always fail (3 attempts: 2
/// retried, then dead) on `queue`; returns once Redis has settled them all.
async fn known_workload(h: &Harness, queue: &str) {
    h.queues
        .enqueue_many(queue, &vec![Noop::default(); 20], None)
        .await
        .unwrap();
    h.queues
        .enqueue_many(queue, &vec![jobs::Poison::default(); 3], None)
        .await
        .unwrap();
    h.queues
        .enqueue_many(queue, &vec![jobs::Flaky::default(); 2], None)
        .await
        .unwrap();
    let queues = h.queues.clone();
    h.wait_for("20 processed and 5 dead", LIMIT, || {
        let queues = queues.clone();
        async move {
            let s = queues.stats(queue).await.unwrap();
            (s.processed, s.dead, s.pending, s.delayed, s.running) == (20, 5, 0, 0, 0)
        }
    })
    .await;
}

/// Register `queue` and leave 7 jobs pending and 2 delayed on it (nobody works it).
async fn idle_queue(h: &Harness, queue: &str) {
    h.queues.register_queue(queue).await.unwrap();
    h.queues
        .enqueue_many(queue, &vec![Noop::default(); 7], None)
        .await
        .unwrap();
    for _ in 0..2 {
        let later = EnqueueOptions::default()
            .on_queue(queue.to_owned())
            .run_in(Duration::from_secs(3600));
        h.queues.enqueue(&Noop::default(), later).await.unwrap();
    }
}

fn assert_outcomes(text: &str, worked: &QueueStats) {
    let queue = worked.name.as_str();
    for (kind, [completed, failed, retried, dead]) in EXPECTED {
        let got =
            ["completed", "failed", "retried", "dead"].map(|o| jobs_total(text, queue, kind, o));
        assert_eq!(
            got,
            [completed, failed, retried, dead],
            "{kind}: completed, failed, retried, dead"
        );
        let runs = count(
            text,
            "switchboard_job_run_seconds_count",
            &[("queue", queue), ("kind", kind)],
        );
        assert_eq!(runs, completed + failed, "{kind}: one run time per attempt");
    }
    let sum = |outcome: &str| -> u64 {
        EXPECTED
            .iter()
            .map(|(kind, _)| jobs_total(text, queue, kind, outcome))
            .sum()
    };
    assert_eq!(
        (sum("completed"), sum("failed")),
        (worked.processed, worked.failed),
        "counters agree with Redis' processed and failed"
    );
    let waits = count(
        text,
        "switchboard_job_wait_seconds_count",
        &[("queue", queue)],
    );
    assert_eq!(waits, 29, "one wait per start: 20 + 3 + 2 x 3");
}

#[tokio::test]
async fn job_counters_and_queue_gauges_match_a_known_workload() {
    let h = Harness::new().await;
    let (queue, idle, sup) = (unique("work"), unique("idle"), unique("sup"));
    let (app, _switches) = serve(&h, &sup, &queue, 8).await;
    known_workload(&h, &queue).await;
    idle_queue(&h, &idle).await;

    let before = h.stats(&idle).await;
    let text = app.metrics().await;
    let after = h.stats(&idle).await;
    let worked = h.stats(&queue).await;
    // A rescue round (here directly; in the app only the leader's) that found nothing still
    // creates the queue's rescued counter, at 0.
    let rescuer = Rescuer::new(
        h.queues.clone(),
        vec![queue.clone()],
        &h.settings.maintenance,
    );
    assert_eq!(
        rescuer.run_once(chrono::Utc::now()).await.unwrap().rescued,
        0
    );
    let after_rescue = telemetry::init_metrics().unwrap().render();
    assert_eq!(
        value(
            &after_rescue,
            "switchboard_jobs_rescued_total",
            &[("queue", &queue)]
        ),
        Some(0.0),
        "the rescued counter exists before the first rescue"
    );

    assert_outcomes(&text, &worked);
    assert_gauges_equal(&text, &worked);
    assert_gauges_equal(&text, &before);
    assert_eq!((before.pending, before.delayed), (7, 2));
    assert_eq!(
        before,
        QueueStats {
            oldest_pending_secs: before.oldest_pending_secs,
            ..after.clone()
        },
        "only the wait moved while the metrics were read"
    );
    let oldest = |q: &str| {
        value(
            &text,
            "switchboard_queue_oldest_pending_seconds",
            &[("queue", q)],
        )
        .unwrap()
    };
    assert!(
        before.oldest_pending_secs <= oldest(&idle) && oldest(&idle) <= after.oldest_pending_secs,
        "oldest pending {} between {} and {}",
        oldest(&idle),
        before.oldest_pending_secs,
        after.oldest_pending_secs
    );
    assert!(
        oldest(&queue) <= 0.0,
        "nothing pends on the worked queue: {}",
        oldest(&queue)
    );
    let slots = |state| {
        count(
            &text,
            "switchboard_workers",
            &[("supervisor", &sup), ("state", state)],
        )
    };
    assert_eq!((slots("busy"), slots("idle")), (0, 8));
    app.stop().await;
}

#[tokio::test]
async fn worker_slots_are_busy_while_jobs_run_and_gone_after_stop() {
    let h = Harness::new().await;
    let (queue, sup) = (unique("gated"), unique("sup"));
    let (app, switches) = serve(&h, &sup, &queue, 4).await;
    h.queues
        .enqueue_many(&queue, &vec![jobs::Gated::default(); 3], None)
        .await
        .unwrap();
    h.wait_for("3 jobs running", LIMIT, || {
        let n = switches.started();
        async move { n == 3 }
    })
    .await;
    let slots = |text: &str, state| {
        count(
            text,
            "switchboard_workers",
            &[("supervisor", &sup), ("state", state)],
        )
    };
    let text = app.metrics().await;
    assert_eq!((slots(&text, "busy"), slots(&text, "idle")), (3, 1));
    assert_eq!(queue_gauge(&text, &queue, "running"), 3);

    switches.gate.add_permits(3);
    h.wait_processed(&queue, 3, LIMIT).await;
    // The slot is given back as the handler returns, before the ack reaches Redis.
    let text = app.metrics().await;
    assert_eq!((slots(&text, "busy"), slots(&text, "idle")), (0, 4));

    app.stop().await;
    let text = telemetry::init_metrics()
        .expect("the app installed the recorder")
        .render();
    assert_eq!(
        (slots(&text, "busy"), slots(&text, "idle")),
        (0, 0),
        "a stopped fleet has no slots"
    );
}

#[tokio::test]
async fn ingest_counts_requests_by_status_and_exports_queue_gauges_without_a_fleet() {
    let h = Harness::new().await;
    let mut settings = h.settings.clone();
    settings.ingest.queue = unique("webhooks");
    let hooks = Hooks {
        secrets: Some(WebhookSecrets {
            stripe: Some(SecretList::parse(running::STRIPE_SECRET)),
            ..WebhookSecrets::default()
        }),
        ..Hooks::default()
    };
    let app = Running::start(settings.clone(), Roles::ingest(), hooks).await;
    let requests = |text: &str, status| {
        count(
            text,
            "switchboard_ingest_requests_total",
            &[("provider", "stripe"), ("status", status)],
        )
    };
    let timed = |text: &str| {
        count(
            text,
            "switchboard_ingest_seconds_count",
            &[("provider", "stripe")],
        )
    };
    let start = app.metrics().await;

    let mut answers = Vec::new();
    for n in 0..3 {
        let (body, signature) = running::signed_stripe(&format!("evt_metrics_{n}"));
        answers.push(app.post_stripe(&body, Some(&signature)).await);
    }
    let (body, signature) = running::signed_stripe("evt_metrics_0");
    answers.push(app.post_stripe(&body, Some(&signature)).await);
    let forged = signature.replace("v1=", "v1=00");
    answers.push(app.post_stripe(&body, Some(&forged)).await);
    answers.push(app.post_stripe(&body, None).await);
    assert_eq!(answers, [202, 202, 202, 200, 401, 401]);

    let text = app.metrics().await;
    let delta = |status| requests(&text, status) - requests(&start, status);
    assert_eq!((delta("202"), delta("200"), delta("401")), (3, 1, 2));
    assert_eq!(timed(&text) - timed(&start), 6, "every answer is timed");
    let webhooks = h.stats(&settings.ingest.queue).await;
    // Events of one provider object wait in line behind the first: one pending, the rest in line.
    assert_eq!(webhooks.pending + webhooks.waiting, 3);
    assert_gauges_equal(&text, &webhooks);
    app.stop().await;
}

#[tokio::test]
async fn scheduler_fires_count_enqueued_and_missed_ticks() {
    let _ = telemetry::init_metrics().expect("a recorder");
    let h = Harness::new().await;
    let (name, queue) = (unique("minutely"), unique("cron"));
    let entries = [ScheduleSettings {
        name: name.clone(),
        cron: "0 * * * * *".into(),
        timezone: "UTC".into(),
        kind: "noop".into(),
        args: serde_json::json!({}),
        queue: queue.clone(),
        catch_up: CatchUp::Skip,
    }];
    let timing = SchedulerSettings {
        grace_secs: 30,
        claim_ttl_secs: 600,
    };
    let scheduler = Scheduler::new(h.queues.clone(), &entries, &timing).unwrap();
    let m = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let mut total = FireOutcome::default();
    // First sight (nothing owed), the tick at M+1m on time, then down until M+10m45s (ticks
    // M+2m ... M+10m missed, skipped), then the tick at M+11m on time.
    for at in [30, 61, 10 * 60 + 45, 11 * 60 + 1] {
        let o = scheduler
            .run_once(m + TimeDelta::seconds(at))
            .await
            .unwrap();
        total.enqueued += o.enqueued;
        total.missed += o.missed;
        total.duplicate += o.duplicate;
        total.caught_up += o.caught_up;
    }
    assert_eq!(
        (
            total.enqueued,
            total.missed,
            total.duplicate,
            total.caught_up
        ),
        (2, 9, 0, 0)
    );
    let text = telemetry::init_metrics().unwrap().render();
    let fires = |outcome| {
        count(
            &text,
            "switchboard_scheduler_fires_total",
            &[("schedule", &name), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (fires("enqueued"), fires("missed"), fires("duplicate")),
        (total.enqueued, total.missed, 0)
    );
    assert_eq!(h.stats(&queue).await.pending, total.enqueued);
}
