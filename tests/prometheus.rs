//! `dashboards/` against a real Prometheus: a running Switchboard (fleet, maintenance, HTTP
//! and ingest in one process, its own Redis prefix) works a steady load — noop jobs, slow jobs
//! that keep workers busy, a queue whose jobs always fail and go dead, signed, duplicate and
//! forged Stripe webhooks, a schedule firing every second — while a Prometheus of the test's
//! own scrapes it every second.
//! Then: `promtool check rules` passes; every expression of every Grafana panel, with the
//! dashboard variables set, parses and returns data; every rule of the alert file loads,
//! evaluates without error and its expression parses through the query API; the alerts this
//! load must raise are active while those it must not raise are not; and once the fleet is
//! stopped, an ingest alone with a pending webhook raises the no-workers alert.

mod common;
#[path = "common/prometheus.rs"]
mod prometheus;

use std::{path::PathBuf, time::Duration};

use common::{
    Harness,
    running::{self, Running},
};
use prometheus::{Prometheus, promtool, values};
use serde_json::Value;
use switchboard::{
    app::{Hooks, Roles},
    config::{CatchUp, ScheduleSettings, Settings, SupervisorSettings},
    ingest::{SecretList, WebhookSecrets},
    queue::Queues,
};
use switchboard_jobs::{EnqueueOptions, noop::Noop, webhook::StripeWebhook};

/// How long data may take to show up (a rate needs two scrapes in its window).
const DATA_DEADLINE: Duration = Duration::from_secs(90);

/// Values for the dashboard's variables, as Grafana would substitute them.
const VARIABLES: [(&str, &str); 4] = [
    ("$__rate_interval", "10s"),
    ("$__interval", "2s"),
    ("$__range", "5m"),
    ("$queue", ".*"),
];

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn supervisor(name: &str, concurrency: usize, max_attempts: u32) -> SupervisorSettings {
    common::supervisor(name, &[name], concurrency, concurrency, max_attempts)
}

/// Serve every role over three supervisors: `webhooks` (the ingest queue), `maintenance`
/// (noop jobs) and `billing` (jobs that always fail, 2 attempts); one schedule enqueues a
/// noop job every second.
async fn start_switchboard(h: &Harness) -> Running {
    let mut settings: Settings = h.settings.clone();
    settings.fleet.supervisors = vec![
        supervisor("webhooks", 4, 3),
        supervisor("maintenance", 8, 3),
        supervisor("billing", 2, 2),
    ];
    settings.schedule = vec![ScheduleSettings {
        name: "every-second".into(),
        cron: "* * * * * *".into(),
        timezone: "UTC".into(),
        kind: "noop".into(),
        args: serde_json::json!({}),
        queue: "maintenance".into(),
        catch_up: CatchUp::Skip,
    }];
    let mut registry = switchboard_jobs::registry();
    // Stands in for webhook processing, which is not what this test measures.
    registry.register::<StripeWebhook, _, _>(|_, _| async { Ok(()) });
    let hooks = Hooks {
        registry: Some(registry),
        secrets: Some(WebhookSecrets {
            stripe: Some(SecretList::parse(running::STRIPE_SECRET)),
            ..WebhookSecrets::default()
        }),
        ..Hooks::default()
    };
    let roles = Roles {
        embedded_redis: false,
        ..Roles::serve(&settings)
    };
    Running::start(settings, roles, hooks).await
}

/// Every 100 ms: 5 noop jobs, every other tick a slow one (250 ms, so workers are busy at
/// any scrape), a failing job on `billing`, a signed Stripe event; every third tick a
/// duplicate delivery and a forged one (a 401 share of 20 %).
async fn load(app: &Running, queues: &Queues) {
    let on = |queue: &str| EnqueueOptions::default().on_queue(queue.to_owned());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for n in 0u64.. {
        tick.tick().await;
        queues
            .enqueue_many("maintenance", &vec![Noop::default(); 5], None)
            .await
            .unwrap();
        if n % 2 == 0 {
            let slow = Noop {
                sleep_ms: Some(250),
                ..Noop::default()
            };
            queues.enqueue(&slow, on("maintenance")).await.unwrap();
        }
        let failing = Noop {
            fail: Some("the test's failing job".into()),
            ..Noop::default()
        };
        queues.enqueue(&failing, on("billing")).await.unwrap();
        let (body, signature) = running::signed_stripe(&format!("evt_prom_{n}"));
        assert_eq!(app.post_stripe(&body, Some(&signature)).await, 202);
        if n % 3 == 0 {
            assert_eq!(app.post_stripe(&body, Some(&signature)).await, 200);
            let forged = signature.replace("v1=", "v1=00");
            assert_eq!(app.post_stripe(&body, Some(&forged)).await, 401);
        }
    }
}

/// A panel target's expression with the dashboard variables set.
fn substitute(expr: &str) -> String {
    let mut out = expr.to_owned();
    for (name, value) in VARIABLES {
        out = out.replace(&format!("${{{}}}", &name[1..]), value);
        out = out.replace(name, value);
    }
    assert!(!out.contains('$'), "unknown variable left in {out}");
    out
}

/// (panel title, expression) for every target of every panel; checks the datasource set-up.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_file("dashboards/grafana/switchboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_owned();
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            out.push((title.clone(), substitute(target["expr"].as_str().unwrap())));
        }
    }
    out
}

/// Poll every panel query until each returns at least one finite value (or fails to parse).
async fn check_panels(prom: &Prometheus) {
    let mut waiting = dashboard_queries();
    assert!(waiting.len() >= 14, "{} panel queries", waiting.len());
    let deadline = tokio::time::Instant::now() + DATA_DEADLINE;
    loop {
        let mut still = Vec::new();
        for (title, expr) in waiting {
            let result = prom
                .query(&expr)
                .await
                .unwrap_or_else(|e| panic!("panel {title:?}: {expr} does not evaluate: {e}"));
            if !values(&result).iter().any(|v| v.is_finite()) {
                still.push((title, expr));
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "panels without data after {DATA_DEADLINE:?}: {waiting:#?}\nprometheus log:\n{}",
            prom.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every loaded rule: its expression parses through the query API and Prometheus evaluates
/// it without error. Returns the rule count.
async fn check_rules(prom: &Prometheus) -> usize {
    let deadline = tokio::time::Instant::now() + DATA_DEADLINE;
    loop {
        let data = prom.api("rules", &[]).await.unwrap();
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        for rule in &rules {
            let (name, query) = (
                rule["name"].as_str().unwrap(),
                rule["query"].as_str().unwrap(),
            );
            if let Err(e) = prom.query(query).await {
                panic!("rule {name}: {query} does not evaluate: {e}");
            }
            assert!(
                rule["lastError"].as_str().unwrap_or_default().is_empty(),
                "rule {name} failed: {rule}"
            );
        }
        if rules.iter().all(|r| r["health"] == "ok") {
            return rules.len();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rules never all evaluated: {rules:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `alertname` and label pairs of the active (pending or firing) alerts.
async fn active_alerts(prom: &Prometheus) -> Vec<(String, Value)> {
    let data = prom.api("alerts", &[]).await.unwrap();
    data["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_owned(),
                a["labels"].clone(),
            )
        })
        .collect()
}

fn has(alerts: &[(String, Value)], name: &str, label: (&str, &str)) -> bool {
    alerts
        .iter()
        .any(|(n, labels)| n == name && labels[label.0] == label.1)
}

/// The alerts this load raises are active; those it must not raise are not.
async fn check_alerts(prom: &Prometheus) {
    let expected = [
        ("SwitchboardDeadJobsGrowing", ("queue", "billing")),
        ("SwitchboardJobFailureRateHigh", ("queue", "billing")),
        ("SwitchboardIngestUnauthorized", ("provider", "stripe")),
    ];
    let deadline = tokio::time::Instant::now() + DATA_DEADLINE;
    let alerts = loop {
        let alerts = active_alerts(prom).await;
        if expected
            .iter()
            .all(|(name, label)| has(&alerts, name, *label))
        {
            break alerts;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {expected:?} active, got {alerts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for quiet in [
        "SwitchboardNoWorkers",
        "SwitchboardQueueWaitLong",
        "SwitchboardRedisErrors",
        "SwitchboardDatabaseErrors",
        "SwitchboardIngestUnavailable",
        "SwitchboardJobsRescued",
        "SwitchboardSchedulerStalled",
        "SwitchboardSchedulerFailing",
    ] {
        assert!(
            alerts.iter().all(|(name, _)| name != quiet),
            "{quiet} is active: {alerts:#?}"
        );
    }
    assert!(
        !has(
            &alerts,
            "SwitchboardJobFailureRateHigh",
            ("queue", "maintenance")
        ),
        "maintenance jobs succeed: {alerts:#?}"
    );
}

/// With the fleet stopped (its slots gone) and only an ingest running, a webhook pending on
/// `webhooks` raises `SwitchboardNoWorkers` (pending: it waits 2 minutes before firing).
async fn check_no_workers(prom: &Prometheus, ingest: &Running) {
    let (body, signature) = running::signed_stripe("evt_prom_no_workers");
    assert_eq!(ingest.post_stripe(&body, Some(&signature)).await, 202);
    let deadline = tokio::time::Instant::now() + DATA_DEADLINE;
    loop {
        let alerts = active_alerts(prom).await;
        if has(&alerts, "SwitchboardNoWorkers", ("queue", "webhooks")) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SwitchboardNoWorkers not active without a fleet: {alerts:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_every_dashboard_panel_and_alert_rule() {
    let rules_file = repo_file("dashboards/prometheus/alerts.yml");
    let (ok, out) = promtool(&["check", "rules", rules_file.to_str().unwrap()]);
    assert!(ok, "promtool check rules:\n{out}");
    let promtool_count: usize = out
        .split_whitespace()
        .zip(out.split_whitespace().skip(1))
        .find(|(_, next)| *next == "rules")
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no rule count in {out}"));

    let h = Harness::new().await;
    // Scraped from the start, served only in the second part (an ingest without a fleet).
    let later = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = start_switchboard(&h).await;
    let prom = Prometheus::start(&[app.addr, later.local_addr().unwrap()], &rules_file).await;
    let checks = async {
        check_panels(&prom).await;
        assert_eq!(
            check_rules(&prom).await,
            promtool_count,
            "every rule loaded"
        );
        check_alerts(&prom).await;
    };
    tokio::select! {
        () = checks => {}
        () = load(&app, &h.queues) => unreachable!("the load runs until the checks end"),
    }
    app.stop().await;

    let hooks = Hooks {
        listener: Some(later),
        secrets: Some(WebhookSecrets {
            stripe: Some(SecretList::parse(running::STRIPE_SECRET)),
            ..WebhookSecrets::default()
        }),
        ..Hooks::default()
    };
    let ingest = Running::start(h.settings.clone(), Roles::ingest(), hooks).await;
    check_no_workers(&prom, &ingest).await;
    ingest.stop().await;
}
