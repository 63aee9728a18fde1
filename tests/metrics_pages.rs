//! Horizon-style metrics: a fresh `switchboard serve` (the real binary, its own Redis prefix,
//! directory and port) exports every metric family of `src/telemetry/metric.rs` with its
//! known label values before any job runs; and the dashboard's metrics pages and API show
//! the throughput and run times of jobs of two kinds with known run times, run by a real
//! worker over real Redis.

mod common;
#[path = "metrics_pages/from_zero.rs"]
mod from_zero;
#[path = "metrics_pages/support.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{LIMIT, MetricsApp, QUICK_MS, SLACK_MS, SLOW_MS, Session};

#[tokio::test]
async fn a_fresh_serve_exports_every_family_before_any_job_runs() {
    from_zero::check().await;
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
