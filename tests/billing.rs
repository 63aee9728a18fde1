//! Usage billing against a Stripe stand-in that enforces the meter-event window ("within the
//! past 35 calendar days or up to 5 minutes in the future", 400 otherwise), on `MariaDB` and
//! `SQLite`: meter events carry the time the call ended; usage older than the window is billed
//! at the time of the report with its end kept in the event; a report refused for good is
//! recorded, counted and never offered again by `billing.reconcile`.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use serde_json::{Value, json};
use switchboard_jobs::{
    EnqueueOptions,
    billing::BillingReconcile,
    store::{
        calls::{self, Call, STAGE_ENDED},
        now_ms, usage_events,
    },
};
use wiremock::{Mock, Request, Respond, ResponseTemplate, matchers};
use world::{Options, World};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Stripe's meter events endpoint as far as time goes: a timestamp outside the window is
/// refused as Stripe refuses it; so is, as an unknown customer, the usage of `call_refused`.
struct Window;

impl Respond for Window {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&request.body).unwrap();
        let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let now = now_ms() / 1000;
        let ts: i64 = field("timestamp").and_then(|t| t.parse().ok()).unwrap_or(0);
        if ts < now - 35 * 24 * 3600 || ts > now + 300 {
            return refuse(
                "timestamp",
                "Timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
            );
        }
        if field("identifier").as_deref() == Some("call_refused") {
            return refuse(
                "payload[stripe_customer_id]",
                "No such customer: 'cus_T8xHarborDental'",
            );
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "object": "billing.meter_event",
            "created": now,
            "event_name": field("event_name"),
            "identifier": field("identifier"),
            "livemode": false,
            "payload": {"value": field("payload[value]")},
            "timestamp": ts,
        }))
    }
}

fn refuse(param: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_json(json!({
        "error": {"type": "invalid_request_error", "param": param, "message": message}
    }))
}

async fn world(dialect: &str) -> World {
    let w = World::with(
        dialect,
        Options {
            queues: &["billing"],
            inline: true,
            ..Options::default()
        },
    )
    .await;
    // Only this stand-in answers (not the world's accepting default).
    w.stripe.reset().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/billing/meter_events"))
        .respond_with(Window)
        .mount(&w.stripe)
        .await;
    w
}

async fn ended_call(w: &World, call_id: &str, ended_ms: i64, duration_ms: i64) {
    let call = Call {
        call_id: call_id.into(),
        company_id: w.company_id,
        branch_id: w.branch_id,
        from_number: "+14155550123".into(),
        to_number: world::NUMBER.into(),
        stage: STAGE_ENDED,
        started_at_ms: Some(ended_ms - duration_ms),
        ended_at_ms: Some(ended_ms),
        duration_ms: Some(duration_ms),
        ..Default::default()
    };
    calls::upsert(&w.store, &call).await.unwrap();
}

/// Run `billing.reconcile` once, drain the queue, and return the run's result.
async fn reconcile(w: &World, settled: u64) -> Value {
    let id =
        w.h.queues
            .enqueue(&BillingReconcile::default(), EnqueueOptions::default())
            .await
            .unwrap()
            .id;
    w.settled("billing", settled).await;
    w.h.queues
        .job_result("billing", &id)
        .await
        .unwrap()
        .unwrap()
}

/// Every meter event the stand-in received, as its form fields.
async fn meter_events(w: &World) -> Vec<Vec<(String, String)>> {
    w.stripe
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_urlencoded::from_bytes(&r.body).unwrap())
        .collect()
}

fn field(form: &[(String, String)], k: &str) -> Option<String> {
    form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
}

async fn old_usage_is_billed_now_with_its_end_kept_and_recent_usage_at_its_end(dialect: &str) {
    let w = world(dialect).await;
    let now = now_ms();
    let old_end = now - 40 * DAY_MS;
    let recent_end = now - 3 * DAY_MS;
    ended_call(&w, "call_old", old_end, 125_000).await;
    ended_call(&w, "call_recent", recent_end, 61_000).await;

    let first = reconcile(&w, 3).await;
    assert_eq!(first["enqueued"], 2, "{first}");
    let events = meter_events(&w).await;
    assert_eq!(
        events.len(),
        2,
        "one request per call, none refused and retried"
    );
    let by_call = |id: &str| {
        events
            .iter()
            .find(|f| field(f, "identifier").as_deref() == Some(id))
            .unwrap()
            .clone()
    };
    let old = by_call("call_old");
    let ts: i64 = field(&old, "timestamp").unwrap().parse().unwrap();
    assert!(
        (now / 1000 - 5..=now_ms() / 1000).contains(&ts),
        "late usage is billed at the time of the report: {ts}"
    );
    assert_eq!(
        field(&old, "payload[call_ended_at]"),
        Some((old_end / 1000).to_string()),
        "with the call's real end kept in the event"
    );
    assert_eq!(field(&old, "payload[value]").as_deref(), Some("3"));
    let recent = by_call("call_recent");
    assert_eq!(
        field(&recent, "timestamp"),
        Some((recent_end / 1000).to_string()),
        "usage is billed at the time the call ended, not when it was recorded"
    );
    assert_eq!(field(&recent, "payload[call_ended_at]"), None);
    for call in ["call_old", "call_recent"] {
        let (_, reported) = usage_events::get(&w.store, call).await.unwrap().unwrap();
        assert!(reported.is_some(), "{call} reported");
    }
    let s = w.h.stats("billing").await;
    assert_eq!(s.dead, 0);

    // The next run has nothing to offer.
    let second = reconcile(&w, 4).await;
    assert_eq!(
        (second["enqueued"].as_u64(), second["unbillable"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(meter_events(&w).await.len(), 2);
    w.stop().await;
}

async fn a_report_refused_for_good_is_recorded_and_never_offered_again(dialect: &str) {
    let w = world(dialect).await;
    ended_call(&w, "call_refused", now_ms() - DAY_MS, 30_000).await;

    let first = reconcile(&w, 2).await;
    assert_eq!(first["enqueued"], 1, "{first}");
    let s = w.h.stats("billing").await;
    assert_eq!(
        s.dead,
        1,
        "the refused report is dead, with its reason: {s:?} {:?}",
        meter_events(&w).await
    );
    let dead = w.h.queues.dead_list("billing", 5).await.unwrap();
    let error = dead[0].error.clone().unwrap();
    assert!(
        error.contains("cannot be billed") && error.contains("No such customer"),
        "{error}"
    );
    let (_, reason) = usage_events::unbillable_reason(&w.store, "call_refused")
        .await
        .unwrap()
        .unwrap();
    assert!(reason.contains("No such customer"), "{reason}");

    // Later runs count it for finance but never enqueue it again: no repeating dead job.
    for settled in [3, 4] {
        let run = reconcile(&w, settled).await;
        assert_eq!(
            (run["enqueued"].as_u64(), run["unbillable"].as_u64()),
            (Some(0), Some(1)),
            "{run}"
        );
    }
    assert_eq!(w.h.stats("billing").await.dead, 1);
    assert_eq!(meter_events(&w).await.len(), 1);
    w.stop().await;
}

on_both_databases!(
    old_usage_is_billed_now_with_its_end_kept_and_recent_usage_at_its_end,
    a_report_refused_for_good_is_recorded_and_never_offered_again,
);
