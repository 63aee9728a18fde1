//! The cron scheduler: three scheduler processes enqueue each tick exactly once; catch-up
//! after downtime (once / skip); `schedule list` and `schedule run`; the maintenance leader
//! lease; the pruner's `webhook_events` retention on `MariaDB` and `SQLite`. (Next-fire times
//! across both Berlin DST changes are unit tests of `maintenance::scheduler::timetable`.)

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use std::{
    process::{Command, Output},
    time::Duration,
};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::{
    Harness, cases,
    cases::{pending_ids, terminate, write_config},
};
use serde_json::Value;
use switchboard::{
    config::{CatchUp, ScheduleSettings, SchedulerSettings},
    maintenance::{
        Elector, ElectorConfig, Prune, Pruner, Scheduler, Service as _, scheduler::FireOutcome,
    },
    queue::job::now_ms,
};
use switchboard_jobs::{
    EnqueueOptions,
    store::{appointment_reminders, webhook_events},
};

fn schedule(name: &str, cron: &str, queue: &str, catch_up: CatchUp) -> ScheduleSettings {
    ScheduleSettings {
        name: name.into(),
        cron: cron.into(),
        timezone: "Europe/Berlin".into(),
        kind: "noop".into(),
        args: serde_json::json!({}),
        queue: queue.into(),
        catch_up,
    }
}

fn scheduler_settings() -> SchedulerSettings {
    SchedulerSettings {
        grace_secs: 30,
        claim_ttl_secs: 600,
    }
}

fn switchboard(h: &Harness, config: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(["--redis-url", &h.settings.redis.url])
        .arg("--config")
        .arg(config)
        .env("SWITCHBOARD_QUEUE__PREFIX", h.prefix())
        .env("SWITCHBOARD_LOG", "warn");
    cmd
}

#[tokio::test]
async fn three_scheduler_processes_enqueue_each_of_20_ticks_exactly_once() {
    cases::three_scheduler_processes_enqueue_each_of_20_ticks_exactly_once(&Harness::new().await)
        .await;
}

/// A minute-aligned time in the past with room for simulated rounds after it.
fn minute_start() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() - TimeDelta::hours(1)
}

#[tokio::test]
async fn catch_up_once_enqueues_one_job_for_all_missed_ticks() {
    let h = Harness::new().await;
    let schedules = [schedule(
        "minutely",
        "0 * * * * *",
        "catchup",
        CatchUp::Once,
    )];
    let a = Scheduler::new(h.queues.clone(), &schedules, &scheduler_settings()).unwrap();
    let b = Scheduler::new(h.queues.clone(), &schedules, &scheduler_settings()).unwrap();
    let m = minute_start();

    // First sight at M+30s: the schedule starts from there, nothing is owed.
    assert_eq!(
        a.run_once(m + TimeDelta::seconds(30)).await.unwrap(),
        FireOutcome::default()
    );
    // Every instance was down from M+30s until M+10m45s: ticks M+1m ... M+10m were missed.
    let back = m + TimeDelta::seconds(10 * 60 + 45);
    let (ra, rb) = tokio::join!(a.run_once(back), b.run_once(back));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.caught_up + rb.caught_up, 1, "{ra:?} {rb:?}");
    assert_eq!(
        pending_ids(&h, "catchup").await,
        [format!(
            "cron-minutely-{}",
            (m + TimeDelta::minutes(10)).timestamp_millis()
        )]
    );
    // A later round owes nothing more; the next tick fires as usual.
    assert_eq!(
        a.run_once(back + TimeDelta::seconds(5)).await.unwrap(),
        FireOutcome::default()
    );
    let on_time = a
        .run_once(m + TimeDelta::seconds(11 * 60 + 1))
        .await
        .unwrap();
    assert_eq!(
        (on_time.enqueued, on_time.missed, on_time.caught_up),
        (1, 0, 0)
    );
    assert_eq!(pending_ids(&h, "catchup").await.len(), 2);
}

#[tokio::test]
async fn catch_up_skip_enqueues_nothing_for_missed_ticks() {
    let h = Harness::new().await;
    let schedules = [schedule(
        "minutely",
        "0 * * * * *",
        "skipped",
        CatchUp::Skip,
    )];
    let s = Scheduler::new(h.queues.clone(), &schedules, &scheduler_settings()).unwrap();
    let m = minute_start();
    s.run_once(m + TimeDelta::seconds(30)).await.unwrap();
    let back = s
        .run_once(m + TimeDelta::seconds(10 * 60 + 45))
        .await
        .unwrap();
    assert_eq!((back.missed, back.caught_up, back.enqueued), (10, 0, 0));
    assert!(pending_ids(&h, "skipped").await.is_empty());
    let on_time = s
        .run_once(m + TimeDelta::seconds(11 * 60 + 1))
        .await
        .unwrap();
    assert_eq!((on_time.enqueued, on_time.missed), (1, 0));
    assert_eq!(
        pending_ids(&h, "skipped").await,
        [format!(
            "cron-minutely-{}",
            (m + TimeDelta::minutes(11)).timestamp_millis()
        )]
    );
}

#[tokio::test]
async fn a_tick_late_within_grace_still_fires_once() {
    let h = Harness::new().await;
    let schedules = [schedule("minutely", "0 * * * * *", "late", CatchUp::Skip)];
    let one = Scheduler::new(h.queues.clone(), &schedules, &scheduler_settings()).unwrap();
    let other = Scheduler::new(h.queues.clone(), &schedules, &scheduler_settings()).unwrap();
    let m = minute_start();
    one.run_once(m + TimeDelta::seconds(30)).await.unwrap();
    // 20 s late (grace is 30 s): on time; a second instance at the same moment finds the
    // tick claimed.
    let late = m + TimeDelta::seconds(80);
    let (a, b) = tokio::join!(one.run_once(late), other.run_once(late));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.enqueued + b.enqueued, a.missed + b.missed),
        (1, 0),
        "{a:?} {b:?}"
    );
    assert_eq!(pending_ids(&h, "late").await.len(), 1);
}

fn run_cli(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

#[tokio::test]
async fn schedule_list_shows_next_fires_and_run_enqueues_now() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[schedule]]\nname = \"nightly\"\ncron = \"0 30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nkind = \"noop\"\nargs = { note = \"x\" }\nqueue = \"nightly\"\ncatch_up = \"once\"\n",
    );
    let out = run_cli(switchboard(&h, &config).args(["schedule", "run", "nightly"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = pending_ids(&h, "nightly").await;
    assert_eq!(ids.len(), 1);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&ids[0]));

    // The text list speaks the configuration's words.
    let text = run_cli(switchboard(&h, &config).args(["schedule", "list"]));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("(catch_up = once)"), "{text}");

    let out = run_cli(switchboard(&h, &config).args(["schedule", "list", "--json"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let nightly = &list[0];
    assert_eq!(nightly["name"], "nightly");
    assert_eq!(nightly["last_job"], ids[0].as_str());
    assert!(nightly["last_fire"].as_str().is_some());
    let next: Vec<DateTime<Utc>> = nightly["next"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            DateTime::parse_from_rfc3339(t.as_str().unwrap())
                .unwrap()
                .to_utc()
        })
        .collect();
    assert_eq!(next.len(), 3);
    assert!(next.windows(2).all(|w| w[0] < w[1]) && next[0] > Utc::now());
    for t in nightly["next"].as_array().unwrap() {
        assert!(t.as_str().unwrap().contains("T02:30:00+0"), "{t}");
    }
    let table = run_cli(switchboard(&h, &config).args(["schedule", "list"]));
    assert!(String::from_utf8_lossy(&table.stdout).contains("nightly"));

    let out = run_cli(switchboard(&h, &config).args(["schedule", "run", "nope"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no schedule is named \"nope\""));
}

#[tokio::test]
async fn a_bad_schedule_is_refused_with_one_line_each() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[schedule]]\nname = \"a\"\ncron = \"*/5 * * * *\"\nkind = \"noop\"\nqueue = \"q\"\n\n[[schedule]]\nname = \"a\"\ncron = \"0 0 * * * *\"\ntimezone = \"Berlin\"\nkind = \"noop\"\nqueue = \"q\"\n",
    );
    let out = run_cli(switchboard(&h, &config).args(["schedule", "list"]));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for part in [
        "6 or 7 fields",
        "name is used twice",
        "\"Berlin\" is not an IANA zone",
    ] {
        assert!(err.contains(part), "{err}");
    }
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_handover_on_release() {
    let h = Harness::new().await;
    let a = Elector::new(
        h.queues.clone(),
        ElectorConfig {
            lease: Duration::from_secs(5),
        },
    );
    let b = Elector::new(
        h.queues.clone(),
        ElectorConfig {
            lease: Duration::from_secs(5),
        },
    );
    assert!(a.run_once(chrono::Utc::now()).await.unwrap());
    assert!(!b.run_once(chrono::Utc::now()).await.unwrap());
    assert!(a.leadership().is_leader() && !b.leadership().is_leader());
    assert!(
        a.run_once(chrono::Utc::now()).await.unwrap(),
        "the holder renews"
    );

    // The leader shuts down and hands the lease back; the other takes it at its next round.
    let stop = tokio_util::sync::CancellationToken::new();
    stop.cancel();
    let leadership = a.leadership();
    a.run(stop).await;
    assert!(!leadership.is_leader());
    assert!(b.run_once(chrono::Utc::now()).await.unwrap());
    assert!(b.leadership().is_leader());
}

async fn pruner_trims_webhook_events_past_retention(dialect: &str) {
    let h = Harness::new().await;
    let (store, _db) = world::database(dialect).await;
    let day = 86_400_000_i64;
    let now = i64::try_from(now_ms()).unwrap();
    let retention =
        i64::try_from(h.settings.maintenance.webhook_events_retention_secs).unwrap() * 1000;
    for (id, age) in [
        ("old_1", retention + day),
        ("old_2", retention + 1),
        ("fresh", day),
    ] {
        webhook_events::begin(&store, "stripe", id, "invoice.paid", now - age)
            .await
            .unwrap();
    }
    let pruner = Pruner::new(
        h.queues.clone(),
        vec!["webhooks".into()],
        &h.settings.maintenance,
    )
    .with_store(store.clone());
    let out = pruner.run_once(chrono::Utc::now()).await.unwrap();
    assert_eq!(out.webhook_events, 2);
    for (id, kept) in [("old_1", false), ("old_2", false), ("fresh", true)] {
        let row = webhook_events::get(&store, "stripe", id).await.unwrap();
        assert_eq!(row.is_some(), kept, "{id}");
    }
    assert_eq!(
        pruner
            .run_once(chrono::Utc::now())
            .await
            .unwrap()
            .webhook_events,
        0
    );

    // Reminder claims follow the same retention (their appointments are long past by then).
    assert_eq!(
        appointment_reminders::claim(&store, "uid_1", "reminder_24h")
            .await
            .unwrap(),
        appointment_reminders::ReminderClaim::New
    );
    assert_eq!(
        pruner
            .run_once(chrono::Utc::now())
            .await
            .unwrap()
            .appointment_reminders,
        0
    );
    let later = now_ms() + h.settings.maintenance.webhook_events_retention_secs * 1000 + 1000;
    let out = pruner.run_once(common::at_ms(later)).await.unwrap();
    assert_eq!((out.webhook_events, out.appointment_reminders), (1, 1));
}

on_both_databases!(pruner_trims_webhook_events_past_retention);

#[tokio::test]
async fn the_prune_job_runs_a_round_and_keeps_its_counts_as_the_result() {
    let h = Harness::new().await;
    let (store, _db) = world::database("sqlite").await;
    let now = i64::try_from(now_ms()).unwrap();
    let retention =
        i64::try_from(h.settings.maintenance.webhook_events_retention_secs).unwrap() * 1000;
    webhook_events::begin(
        &store,
        "retell",
        "call_old",
        "call_ended",
        now - retention - 1,
    )
    .await
    .unwrap();
    let pruner = Pruner::new(
        h.queues.clone(),
        vec!["maint".into()],
        &h.settings.maintenance,
    )
    .with_store(store);
    let mut registry = switchboard_jobs::Registry::default();
    registry.register::<Prune, _, _>(move |args, ctx| pruner.clone().handle(args, ctx));
    let fleet = h
        .fleet(&h.fleet_settings("maint", 1, 1, 1), registry, None)
        .await;
    let job = h
        .queues
        .enqueue(&Prune {}, EnqueueOptions::default().on_queue("maint"))
        .await
        .unwrap();
    h.wait_processed("maint", 1, Duration::from_secs(20)).await;
    fleet.stop().await;
    let result = h.queues.job_result("maint", &job.id).await.unwrap();
    assert_eq!(
        result,
        Some(serde_json::json!({
            "completed": 0,
            "dead": 0,
            "expired": 0,
            "webhook_events": 1,
            "appointment_reminders": 0
        }))
    );
}

#[tokio::test]
async fn a_scheduler_process_with_listen_exports_its_fires_to_prometheus() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "[[schedule]]\nname = \"every-second\"\ncron = \"* * * * * *\"\nkind = \"noop\"\nqueue = \"exported\"\n",
    );
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut child = switchboard(&h, &config)
        .args(["schedule", "--listen", &addr])
        .spawn()
        .unwrap();
    let url = format!("http://{addr}/metrics");
    let series =
        "switchboard_scheduler_fires_total{schedule=\"every-second\",outcome=\"enqueued\"}";
    h.wait_for(
        "the scheduler's fires at /metrics",
        Duration::from_secs(20),
        || {
            let url = url.clone();
            async move {
                match reqwest::get(&url).await {
                    Ok(r) => r.text().await.is_ok_and(|body| {
                        body.lines().any(|l| {
                            l.starts_with(series)
                                && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())
                                    >= Some(1.0)
                        })
                    }),
                    Err(_) => false,
                }
            }
        },
    )
    .await;
    assert!(terminate(&mut child).success());
}
