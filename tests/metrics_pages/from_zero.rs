//! A fresh `switchboard serve` (the real binary, its own Redis prefix, directory and port)
//! exports every metric family of `src/telemetry/metric.rs` with its known label values
//! before any job runs.

use std::{
    collections::BTreeSet,
    process::{Child, Stdio},
};

use switchboard::telemetry::metric;

use super::support::{LIMIT, get};
use crate::common::{Harness, expo, free_port};

/// The one schedule of the serve test: a yearly tick, so nothing fires while it runs; and
/// one watched queue whose threshold nothing reaches, with a webhook nothing listens on.
const SCHEDULES: &str = r#"
[[schedule]]
name = "yearly-reconcile"
cron = "0 0 3 1 1 *"
kind = "calendar.reconcile"
queue = "calendar"

[waits]
webhooks = 3600

[alerts]
webhook_url = "http://127.0.0.1:9/hooks"
"#;

/// `switchboard serve`, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every `"switchboard_..."` name a `pub const` of `metric.rs` gives.
fn families_in_metric_rs() -> Vec<String> {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/telemetry/metric.rs"
    ))
    .unwrap();
    let names: Vec<String> = source
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \"switchboard_"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_owned))
        .collect();
    assert!(names.len() >= 15, "{names:?}");
    names
}

/// The samples of `text` named `name` whose labels include `labels`.
fn samples<'a>(
    all: &'a [expo::Sample],
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a expo::Sample> {
    all.iter().filter(move |s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

/// Exactly one sample `name{labels}`, at 0.
fn zero(all: &[expo::Sample], name: &str, labels: &[(&str, &str)]) {
    let found: Vec<_> = samples(all, name, labels).collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    assert!(
        found[0].value == 0.0,
        "{name} {labels:?} = {}",
        found[0].value
    );
}

/// Start `switchboard serve` in `dir` with [`SCHEDULES`]; its base URL once it is ready.
async fn start_serve(h: &Harness, dir: &std::path::Path) -> (Serve, String) {
    let config = dir.join("schedules.toml");
    std::fs::write(&config, SCHEDULES).unwrap();
    let port = free_port();
    let child = h
        .command()
        .current_dir(dir)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("SWITCHBOARD_REDIS__EMBEDDED", "false")
        .env_remove("SWITCHBOARD_DASHBOARD_TOKEN")
        .env_remove("SWITCHBOARD_DASHBOARD_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let serve = Serve(child);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    h.wait_for("serve to be ready", LIMIT, || {
        let (client, url) = (client.clone(), format!("{base}/readyz"));
        async move {
            get(&client, &url)
                .await
                .is_some_and(|(code, _)| code == 200)
        }
    })
    .await;
    (serve, base)
}

/// The job series: every kind on its queue (all five are worked by the default
/// supervisors) and the recurring prune job on maintenance, every outcome at 0 and the run
/// time histogram empty. Returns the queues.
fn assert_job_series(all: &[expo::Sample]) -> BTreeSet<&'static str> {
    let mut pairs: BTreeSet<(&str, &str)> = switchboard_jobs::catalogue()
        .iter()
        .map(|k| (k.queue, k.kind))
        .collect();
    pairs.insert(("maintenance", "prune"));
    for (queue, kind) in &pairs {
        for outcome in metric::JOB_OUTCOMES {
            let labels = [("queue", *queue), ("kind", *kind), ("outcome", outcome)];
            zero(all, metric::JOBS, &labels);
        }
        let labels = [("queue", *queue), ("kind", *kind)];
        zero(all, "switchboard_job_run_seconds_count", &labels);
        let inf = [("queue", *queue), ("kind", *kind), ("le", "+Inf")];
        zero(all, "switchboard_job_run_seconds_bucket", &inf);
    }
    let queues: BTreeSet<&str> = pairs.iter().map(|(q, _)| *q).collect();
    assert_eq!(queues.len(), 5, "{queues:?}");
    queues
}

/// Per queue: the wait histogram, rescued counter, queue gauges, and the slots of the
/// default supervisor named after it.
fn assert_queue_series(all: &[expo::Sample], queue: &str) {
    zero(
        all,
        "switchboard_job_wait_seconds_count",
        &[("queue", queue)],
    );
    zero(all, metric::JOBS_RESCUED, &[("queue", queue)]);
    zero(all, metric::QUEUE_OLDEST_PENDING, &[("queue", queue)]);
    for state in ["pending", "delayed", "running", "dead", "waiting"] {
        zero(
            all,
            metric::QUEUE_JOBS,
            &[("queue", queue), ("state", state)],
        );
    }
    let slots = [("supervisor", queue), ("queue", queue)];
    let slots: Vec<f64> = samples(all, metric::SUPERVISOR_SLOTS, &slots)
        .map(|s| s.value)
        .collect();
    assert_eq!(slots, [slots_of(queue)], "{queue}");
    let idle = [("supervisor", queue), ("state", "idle")];
    let idle: Vec<f64> = samples(all, metric::WORKERS, &idle)
        .map(|s| s.value)
        .collect();
    assert_eq!(idle, [slots_of(queue)], "{queue}");
    zero(
        all,
        metric::WORKERS,
        &[("supervisor", queue), ("state", "busy")],
    );
}

/// The scheduler's, ingest's and the process-wide series.
fn assert_other_series(all: &[expo::Sample]) {
    for outcome in metric::SCHEDULER_OUTCOMES {
        let labels = [("schedule", "yearly-reconcile"), ("outcome", outcome)];
        zero(all, metric::SCHEDULER_FIRES, &labels);
    }
    for provider in metric::INGEST_PROVIDERS {
        for status in metric::INGEST_STATUSES {
            let status = status.to_string();
            let labels = [("provider", provider), ("status", status.as_str())];
            zero(all, metric::INGEST_REQUESTS, &labels);
        }
        zero(
            all,
            "switchboard_ingest_seconds_count",
            &[("provider", provider)],
        );
    }
    for provider in ["calcom", "database", "sms", "smtp", "stripe"] {
        zero(all, metric::CIRCUIT_OPEN, &[("provider", provider)]);
    }
    for kind in metric::WAIT_KINDS {
        for outcome in metric::WAIT_OUTCOMES {
            let labels = [
                ("queue", "webhooks"),
                ("channel", "webhook"),
                ("kind", kind),
                ("outcome", outcome),
            ];
            zero(all, metric::WAIT_NOTICES, &labels);
        }
    }
    for component in metric::REDIS_COMPONENTS {
        zero(all, metric::REDIS_ERRORS, &[("component", component)]);
    }
    for reason in metric::SHED_REASONS {
        zero(all, metric::HTTP_CONNECTIONS_SHED, &[("reason", reason)]);
    }
    let open = samples(all, metric::HTTP_CONNECTIONS_OPEN, &[]).count();
    assert_eq!(open, 1, "the open connections gauge");
    for name in [
        switchboard_jobs::store::DATABASE_ERRORS,
        switchboard_jobs::billing::report_usage::UNBILLABLE,
        switchboard_jobs::billing::report_usage::REPORTED_LATE,
    ] {
        zero(all, name, &[]);
    }
}

/// Start a fresh serve and check every family of its first scrape.
pub async fn check() {
    let h = Harness::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (_serve, base) = start_serve(&h, dir.path()).await;
    let (code, text) = get(&reqwest::Client::new(), &format!("{base}/metrics"))
        .await
        .unwrap();
    assert_eq!(code, 200);
    let all = expo::parse(&text);
    for family in families_in_metric_rs() {
        let exported = all.iter().any(|s| {
            s.name == family
                || s.name
                    .strip_prefix(family.as_str())
                    .is_some_and(|rest| ["_bucket", "_sum", "_count"].contains(&rest))
        });
        assert!(
            exported,
            "{family} is not exported on a fresh serve:\n{text}"
        );
    }
    for queue in assert_job_series(&all) {
        assert_queue_series(&all, queue);
    }
    assert_other_series(&all);
    let jobs_run: f64 = samples(&all, metric::JOBS, &[]).map(|s| s.value).sum();
    assert!(jobs_run == 0.0, "no job ran: {jobs_run}");
}

/// Slots of the default supervisor of `queue` (`concurrency` x `workers`).
fn slots_of(queue: &str) -> f64 {
    match queue {
        "webhooks" => 128.0,
        "calendar" => 8.0,
        "billing" => 4.0,
        "notifications" => 16.0,
        "maintenance" => 2.0,
        other => panic!("no default supervisor for {other}"),
    }
}
