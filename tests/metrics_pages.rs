//! Horizon-style metrics: a fresh `switchboard serve` (the real binary, its own Redis prefix,
//! directory and port) exports every metric family of `src/telemetry/metric.rs` with its
//! known label values before any job runs; and the dashboard's metrics pages and API show
//! the throughput and run times of jobs of two kinds with known run times, run by a real
//! worker over real Redis.

mod common;

use std::{
    collections::BTreeSet,
    process::{Child, Stdio},
    time::Duration,
};

use common::{Harness, expo, free_port};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard::{
    app::{self, Hooks, Roles},
    config::{BackoffSettings, SupervisorSettings},
    dashboard::Credentials,
    telemetry::metric,
};
use switchboard_jobs::{EnqueueOptions, JobArgs};
use tokio::sync::oneshot;

const LIMIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "metrics-password-3b9e51d2";

/// The one schedule of the serve test: a yearly tick, so nothing fires while it runs.
const SCHEDULES: &str = r#"
[[schedule]]
name = "yearly-reconcile"
cron = "0 0 3 1 1 *"
kind = "calendar.reconcile"
queue = "calendar"
"#;

/// `switchboard serve`, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET url`: status and body; `None` while nothing answers.
async fn get(client: &reqwest::Client, url: &str) -> Option<(u16, String)> {
    let r = client.get(url).send().await.ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
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

#[tokio::test]
async fn a_fresh_serve_exports_every_family_before_any_job_runs() {
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
        "webhooks" => 32.0,
        "calendar" => 8.0,
        "billing" => 4.0,
        "notifications" => 16.0,
        "maintenance" => 2.0,
        other => panic!("no default supervisor for {other}"),
    }
}

/// Sleeps 30 ms.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Quick {}

impl JobArgs for Quick {
    const KIND: &'static str = "test.quick";
    const QUEUE: &'static str = "quick";
}

/// Sleeps 150 ms.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Slow {}

impl JobArgs for Slow {
    const KIND: &'static str = "test.slow";
    const QUEUE: &'static str = "slow";
}

const QUICK_MS: f64 = 30.0;
const SLOW_MS: f64 = 150.0;
/// What a run may take beyond its sleep on a loaded test machine.
const SLACK_MS: f64 = 400.0;

/// Fleet, maintenance and HTTP over one supervisor on `quick` and `slow`, 4 slots each.
struct MetricsApp {
    h: Harness,
    base: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl MetricsApp {
    async fn start(kind_metrics: bool) -> Self {
        let h = Harness::with(|s| {
            s.dev.stand_ins = false;
            s.queue.kind_metrics = kind_metrics;
            s.fleet.supervisors = vec![SupervisorSettings {
                name: "metrics".into(),
                queues: vec!["quick".into(), "slow".into()],
                concurrency: 4,
                workers: 1,
                prefetch: Some(4),
                max_attempts: 2,
                timeout_secs: 2,
                backoff: BackoffSettings {
                    base_ms: 5,
                    cap_ms: 20,
                },
                balance: switchboard::config::Balance::Off,
                min_slots: 1,
                max_slots: None,
                balance_max_shift: 1,
                balance_cooldown_secs: 3,
            }];
        })
        .await;
        let mut registry = switchboard_jobs::registry();
        registry.register::<Quick, _, _>(|_, _| async {
            tokio::time::sleep(Duration::from_millis(QUICK_MS as u64)).await;
            Ok(())
        });
        registry.register::<Slow, _, _>(|_, _| async {
            tokio::time::sleep(Duration::from_millis(SLOW_MS as u64)).await;
            Ok(())
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hooks = Hooks {
            listener: Some(listener),
            registry: Some(registry),
            dashboard_credentials: Some(Credentials {
                password: Some(PASSWORD.into()),
                ..Credentials::default()
            }),
            ..Hooks::default()
        };
        let roles = Roles {
            fleet: true,
            maintenance: true,
            http: true,
            ..Roles::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app::run(h.settings.clone(), roles, hooks, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::new();
        let url = format!("{base}/readyz");
        h.wait_for("the app to answer", LIMIT, || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                get(&client, &url)
                    .await
                    .is_some_and(|(code, _)| code == 200)
            }
        })
        .await;
        Self {
            h,
            base,
            stop,
            task,
        }
    }

    /// 6 quick jobs on `quick`, 2 quick and 3 slow ones on `slow`; returns once all 11 are
    /// done in Redis.
    async fn run_jobs(&self) {
        let queues = &self.h.queues;
        queues
            .enqueue_many("quick", &vec![Quick::default(); 6], None)
            .await
            .unwrap();
        for _ in 0..2 {
            let on_slow = EnqueueOptions::default().on_queue("slow".to_owned());
            queues.enqueue(&Quick::default(), on_slow).await.unwrap();
        }
        queues
            .enqueue_many("slow", &vec![Slow::default(); 3], None)
            .await
            .unwrap();
        self.h.wait_processed("quick", 6, LIMIT).await;
        self.h.wait_processed("slow", 5, LIMIT).await;
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// A browser session: logs in through the form and keeps the cookie.
struct Session {
    client: reqwest::Client,
    cookie: String,
    base: String,
}

impl Session {
    async fn login(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = client
            .post(format!("{base}/dashboard/login"))
            .header("origin", base)
            .form(&[
                ("username", "admin"),
                ("password", PASSWORD),
                ("next", "/dashboard/metrics"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "logged in");
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_owned();
        Self {
            client,
            cookie,
            base: base.to_owned(),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Value {
        let (code, body) = self.get(path).await;
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// The entry of `list` named `name`.
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

fn assert_mean(entry: &Value, sleep_ms: f64) {
    let mean = entry["mean_ms"].as_f64().unwrap();
    let max = entry["max_ms"].as_f64().unwrap();
    assert!(
        (sleep_ms..sleep_ms + SLACK_MS).contains(&mean),
        "mean {mean} ms for a {sleep_ms} ms job: {entry}"
    );
    assert!(mean <= max && max < sleep_ms + SLACK_MS, "{entry}");
}

/// The text of the cell `data-field="field"` in the row that starts at `row` in `html`.
fn cell(html: &str, row: &str, field: &str) -> String {
    let at = html
        .find(row)
        .unwrap_or_else(|| panic!("no {row} in\n{html}"));
    let rest = &html[at..];
    let rest = &rest[..rest.find("</tr>").unwrap()];
    let marker = format!("data-field=\"{field}\">");
    let start = rest.find(&marker).unwrap() + marker.len();
    rest[start..start + rest[start..].find('<').unwrap()].to_owned()
}

/// `GET /api/metrics` once it counts all 11 runs: per-kind figures are written just after
/// each ack batch, without the acker waiting for them.
async fn recorded(s: &Session) -> Value {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let overview = s.json("/api/metrics").await;
        let counted: u64 = overview["slowest_kinds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["completed"].as_u64().unwrap())
            .sum();
        if counted == 11 {
            return overview;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "runs recorded: {overview}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The JSON API's numbers after [`MetricsApp::run_jobs`].
async fn check_api(s: &Session) {
    let overview = recorded(s).await;
    assert_eq!(overview["minutes"], 60);
    let kinds = &overview["slowest_kinds"];
    assert_eq!(kinds[0]["name"], "test.slow", "slowest first: {kinds}");
    assert_eq!(kinds[1]["name"], "test.quick");
    assert_eq!(
        (
            kinds[0]["completed"].as_u64(),
            kinds[1]["completed"].as_u64()
        ),
        (Some(3), Some(8))
    );
    assert_eq!(kinds[1]["queues"], serde_json::json!(["quick", "slow"]));
    assert_mean(&kinds[0], SLOW_MS);
    assert_mean(&kinds[1], QUICK_MS);
    let queues = &overview["queues"];
    assert_eq!(named(queues, "quick")["completed"], 6);
    assert_eq!(named(queues, "slow")["completed"], 5);
    assert_mean(named(queues, "quick"), QUICK_MS);

    let slow = s.json("/api/metrics/queues/slow").await;
    assert_eq!(
        (slow["name"].as_str(), slow["completed"].as_u64()),
        (Some("slow"), Some(5))
    );
    let points = slow["points"].as_array().unwrap();
    assert_eq!(points.len(), 60);
    let per_minute: u64 = points
        .iter()
        .map(|p| p["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(per_minute, 5, "the minutes add up");
    assert_eq!(named(&slow["breakdown"], "test.quick")["completed"], 2);
    assert_eq!(named(&slow["breakdown"], "test.slow")["completed"], 3);
    assert_mean(named(&slow["breakdown"], "test.slow"), SLOW_MS);
    // The queue's mean is over both kinds: between the two.
    let mean = slow["mean_ms"].as_f64().unwrap();
    assert!(
        QUICK_MS < mean && mean < kinds[0]["mean_ms"].as_f64().unwrap(),
        "{slow}"
    );

    let quick = s.json("/api/metrics/kinds/test.quick").await;
    assert_eq!(quick["completed"], 8);
    assert_eq!(named(&quick["breakdown"], "quick")["completed"], 6);
    assert_eq!(named(&quick["breakdown"], "slow")["completed"], 2);
    assert_mean(&quick, QUICK_MS);
    let unknown = s.json("/api/metrics/kinds/test.never").await;
    assert_eq!(
        (unknown["completed"].as_u64(), unknown["mean_ms"].is_null()),
        (Some(0), true)
    );
}

/// The pages show the API's numbers.
async fn check_pages(s: &Session) {
    let (code, page) = s.get("/dashboard/metrics").await;
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(r#"<a href="/dashboard/metrics" class="current">Metrics</a>"#),
        "in the navigation"
    );
    assert!(
        page.find(r#"data-kind="test.slow""#) < page.find(r#"data-kind="test.quick""#),
        "slowest first"
    );
    assert_eq!(cell(&page, r#"data-kind="test.quick""#, "completed"), "8");
    assert_eq!(cell(&page, r#"data-queue="quick""#, "completed"), "6");
    assert!(cell(&page, r#"data-kind="test.slow""#, "mean").ends_with(" ms"));
    let (code, page) = s.get("/dashboard/metrics/queues/slow").await;
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(r#"<div class="value" id="total-completed">5</div>"#),
        "{page}"
    );
    assert!(
        page.contains("this minute: ") || page.contains(" min ago: "),
        "bars with their minute"
    );
    assert_eq!(cell(&page, r#"data-name="test.slow""#, "completed"), "3");
    assert!(page.contains(r#"href="/dashboard/metrics/kinds/test.slow""#));
    let (code, page) = s.get("/dashboard/metrics/kinds/test.slow").await;
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(r#"<div class="value" id="total-completed">3</div>"#),
        "{page}"
    );
    assert_eq!(cell(&page, r#"data-name="slow""#, "completed"), "3");
}

#[tokio::test]
async fn the_metrics_pages_show_throughput_and_run_time_per_queue_and_kind() {
    let app = MetricsApp::start(true).await;
    app.run_jobs().await;
    let s = Session::login(&app.base).await;
    check_api(&s).await;
    check_pages(&s).await;
    for bad in [
        "/dashboard/metrics/kinds/a%20b",
        "/api/metrics/queues/a%20b",
    ] {
        assert_eq!(s.get(bad).await.0, 400, "{bad}");
    }
    let anonymous = reqwest::Client::new()
        .get(format!("{}/api/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401, "behind the guard");
    app.stop().await;
}

#[tokio::test]
async fn without_kind_metrics_the_pages_show_throughput_only() {
    let app = MetricsApp::start(false).await;
    app.run_jobs().await;
    let s = Session::login(&app.base).await;
    let overview = s.json("/api/metrics").await;
    assert_eq!(named(&overview["queues"], "slow")["completed"], 5);
    assert!(
        named(&overview["queues"], "slow")["mean_ms"].is_null(),
        "{overview}"
    );
    assert_eq!(overview["slowest_kinds"], serde_json::json!([]));
    let mut conn = app.h.queues.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}:*}}:kinds*", app.h.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "no per-kind keys: {keys:?}");
    app.stop().await;
}
