//! Provider events out of order, on `MariaDB` and on `SQLite`: an older Cal.com or Stripe event
//! processed after a newer one changes nothing, notifies nobody and is recorded as
//! `ignored`/`stale`; a cancelled or moved booking is never booked again; rows written
//! without an event time (reconciliation, calendar jobs) yield to a timed webhook; and
//! writers racing on one booking cannot regress it.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use serde_json::Value;
use switchboard_jobs::{
    EnqueueOptions,
    store::{appointments, companies, invoices, notifications, webhook_events},
    webhook::{CalcomWebhook, StripeWebhook, WebhookEvent},
};
use world::World;

const UID: &str = "bK3v9Qp2LmX7tRz1Yc8WnA";
const MOVED_UID: &str = "Hq4nW8sZ1aB6cD2eF0gJkL";
const INVOICE: &str = "in_1T8xQ2HarborDental01";

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Enqueue a Cal.com delivery of `body`, keyed as ingest keys it.
async fn calcom(w: &World, body: &Value) {
    let trigger = body["triggerEvent"].as_str().unwrap();
    let e = event("calcom", trigger, &calcom_key(body), body);
    w.h.queues
        .enqueue(&CalcomWebhook(e), EnqueueOptions::default())
        .await
        .unwrap();
}

/// Enqueue a Stripe delivery of `body`, keyed by its event id.
async fn stripe(w: &World, body: &Value) {
    let kind = body["type"].as_str().unwrap();
    let e = event("stripe", kind, body["id"].as_str().unwrap(), body);
    w.h.queues
        .enqueue(&StripeWebhook(e), EnqueueOptions::default())
        .await
        .unwrap();
}

fn event(provider: &str, event_type: &str, key: &str, body: &Value) -> WebhookEvent {
    WebhookEvent {
        provider: provider.into(),
        event_type: event_type.into(),
        dedupe_key: key.into(),
        received_at_ms: 1_790_150_400_000,
        request_id: "req-stale".into(),
        body: body.to_string(),
    }
}

/// The `webhook_events` row of event `key`: (status, error).
async fn outcome(w: &World, provider: &str, key: &str) -> (String, Option<String>) {
    let row = webhook_events::get(&w.store, provider, key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no webhook_events row for {key}"));
    (row.1, row.2)
}

/// The dedupe key ingest gives a Cal.com delivery.
fn calcom_key(body: &Value) -> String {
    format!(
        "{}:{}:{}",
        body["triggerEvent"].as_str().unwrap(),
        body["payload"]["uid"].as_str().unwrap(),
        body["createdAt"].as_str().unwrap()
    )
}

/// The outbox keys under `prefix`, sorted, with each row's status.
async fn outbox(w: &World, prefix: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = notifications::list(&w.store, prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|n| (n.unique_key, n.status))
        .collect();
    rows.sort();
    rows
}

/// The emails the SMTP sink received, with quoted-printable soft breaks undone.
fn mails(w: &World) -> Vec<String> {
    w.sink
        .messages()
        .iter()
        .map(|m| m.replace("=\r\n", "").replace("=\n", ""))
        .collect()
}

/// The SMS texts the gateway received, decoded enough to search.
async fn sms_texts(w: &World) -> Vec<String> {
    w.sms
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).replace('+', " "))
        .collect()
}

on_both_databases!(
    a_late_created_never_rebooks_a_cancelled_booking,
    in_order_a_booking_is_confirmed_then_cancelled,
    a_move_seen_before_the_old_booking_keeps_it_moved,
    a_timed_webhook_wins_over_rows_written_without_a_time,
    a_late_payment_failure_leaves_a_paid_invoice_paid,
    racing_writers_never_regress_a_booking,
);

async fn a_late_created_never_rebooks_a_cancelled_booking(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    let (created, cancelled) = (
        fixture("calcom_booking_created.json"),
        fixture("calcom_booking_cancelled.json"),
    );
    assert!(
        created["createdAt"].as_str() < cancelled["createdAt"].as_str(),
        "fixtures: the creation is the older event"
    );
    // The cancellation (t2) runs first; the creation (t1) is a late retry.
    calcom(&w, &cancelled).await;
    w.settled("webhooks", 1).await;
    calcom(&w, &created).await;
    w.settled("webhooks", 2).await;
    w.settled("notifications", 2).await;

    let row = appointments::get(&w.store, UID).await.unwrap().unwrap();
    assert_eq!(row.status, "cancelled");
    assert_eq!(
        outcome(&w, "calcom", &calcom_key(&created)).await,
        ("ignored".into(), Some("stale".into()))
    );
    assert_eq!(
        outcome(&w, "calcom", &calcom_key(&cancelled)).await,
        ("processed".into(), None)
    );
    assert_eq!(
        outbox(&w, "appointment:").await,
        [
            (
                format!("appointment:{UID}:cancellation:email"),
                "sent".into()
            ),
            (format!("appointment:{UID}:cancellation:sms"), "sent".into()),
        ]
    );
    let mails = mails(&w);
    assert_eq!(mails.len(), 1, "one cancellation email, no confirmation");
    assert!(mails[0].contains("cancelled") && !mails[0].contains("confirmed"));
    let texts = sms_texts(&w).await;
    assert_eq!(texts.len(), 1, "one cancellation SMS: {texts:?}");
    assert!(texts[0].contains("cancelled"), "{}", texts[0]);
    w.stop().await;
}

async fn in_order_a_booking_is_confirmed_then_cancelled(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    let (created, cancelled) = (
        fixture("calcom_booking_created.json"),
        fixture("calcom_booking_cancelled.json"),
    );
    calcom(&w, &created).await;
    w.settled("webhooks", 1).await;
    w.settled("notifications", 2).await;
    assert_eq!(
        appointments::get(&w.store, UID)
            .await
            .unwrap()
            .unwrap()
            .status,
        "booked"
    );
    calcom(&w, &cancelled).await;
    w.settled("webhooks", 2).await;
    w.settled("notifications", 4).await;

    assert_eq!(
        appointments::get(&w.store, UID)
            .await
            .unwrap()
            .unwrap()
            .status,
        "cancelled"
    );
    for body in [&created, &cancelled] {
        assert_eq!(
            outcome(&w, "calcom", &calcom_key(body)).await,
            ("processed".into(), None)
        );
    }
    let sent: Vec<String> = outbox(&w, "appointment:")
        .await
        .into_iter()
        .filter(|(_, status)| status == "sent")
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        sent,
        [
            format!("appointment:{UID}:cancellation:email"),
            format!("appointment:{UID}:cancellation:sms"),
            format!("appointment:{UID}:confirmation:email"),
            format!("appointment:{UID}:confirmation:sms"),
        ]
    );
    let texts = sms_texts(&w).await;
    assert_eq!(texts.len(), 2);
    assert!(
        texts[0].contains("confirmed") && texts[1].contains("cancelled"),
        "{texts:?}"
    );
    assert_eq!(w.sink.messages().len(), 2);
    w.stop().await;
}

async fn a_move_seen_before_the_old_booking_keeps_it_moved(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    // The move (t4) arrives before the old booking's own creation (t1).
    let (moved, created) = (
        fixture("calcom_booking_rescheduled.json"),
        fixture("calcom_booking_created.json"),
    );
    calcom(&w, &moved).await;
    w.settled("webhooks", 1).await;
    calcom(&w, &created).await;
    w.settled("webhooks", 2).await;
    w.settled("notifications", 2).await;

    let old = appointments::get(&w.store, UID).await.unwrap().unwrap();
    assert_eq!(
        (old.status.as_str(), old.start_at.as_str()),
        ("rescheduled", "2026-09-29T16:30:00Z"),
        "the old booking is known as moved, at its old time"
    );
    let new = appointments::get(&w.store, MOVED_UID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (new.status.as_str(), new.rescheduled_from_uid.as_deref()),
        ("booked", Some(UID))
    );
    assert_eq!(
        outcome(&w, "calcom", &calcom_key(&created)).await,
        ("ignored".into(), Some("stale".into()))
    );
    let keys: Vec<String> = outbox(&w, "appointment:")
        .await
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        keys,
        [
            format!("appointment:{MOVED_UID}:reschedule:email"),
            format!("appointment:{MOVED_UID}:reschedule:sms"),
        ],
        "no confirmation of the booking that was moved away"
    );
    w.stop().await;
}

async fn a_timed_webhook_wins_over_rows_written_without_a_time(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    // Reconciliation found the booking at Cal.com first: a row without an event time.
    let found = appointments::Appointment {
        uid: UID.into(),
        company_id: w.company_id,
        branch_id: w.branch_id,
        status: "booked".into(),
        start_at: "2026-09-29T16:30:00Z".into(),
        end_at: "2026-09-29T17:00:00Z".into(),
        ..appointments::Appointment::default()
    };
    assert!(
        appointments::insert_if_absent(&w.store, &found)
            .await
            .unwrap()
    );
    calcom(&w, &fixture("calcom_booking_cancelled.json")).await;
    w.settled("webhooks", 1).await;
    w.settled("notifications", 2).await;
    let row = appointments::get(&w.store, UID).await.unwrap().unwrap();
    assert_eq!(row.status, "cancelled", "the webhook's time beats no time");
    assert_eq!(outbox(&w, "appointment:").await.len(), 2);
    // A calendar job's late write (no time) does not book it again.
    assert!(
        !appointments::record_booked(&w.store, &found).await.unwrap(),
        "a cancelled booking stays cancelled"
    );
    // Nor does reconciliation, whose writes require a booked row.
    assert!(
        !appointments::move_if_booked(
            &w.store,
            UID,
            "2026-09-30T16:30:00Z",
            "2026-09-30T17:00:00Z"
        )
        .await
        .unwrap()
    );
    let row = appointments::get(&w.store, UID).await.unwrap().unwrap();
    assert_eq!(
        (row.status.as_str(), row.start_at.as_str()),
        ("cancelled", "2026-09-29T16:30:00Z")
    );
    w.stop().await;
}

async fn a_late_payment_failure_leaves_a_paid_invoice_paid(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    let paid = fixture("stripe_invoice_paid.json");
    let t2 = paid["created"].as_i64().unwrap();
    // A failed attempt on the same invoice an hour before it was paid, delivered late.
    let mut failed = fixture("stripe_invoice_payment_failed.json");
    failed["data"]["object"]["id"] = INVOICE.into();
    failed["created"] = (t2 - 3600).into();
    // And a subscription update older still.
    let subscription = serde_json::json!({
        "id": "evt_sub_old", "type": "customer.subscription.updated", "created": t2 - 7200,
        "data": {"object": {"id": "sub_1", "customer": world::STRIPE_CUSTOMER, "status": "past_due"}}
    });
    stripe(&w, &paid).await;
    w.settled("webhooks", 1).await;
    stripe(&w, &failed).await;
    stripe(&w, &subscription).await;
    w.settled("webhooks", 3).await;
    w.settled("notifications", 0).await;

    let invoice = invoices::get(&w.store, INVOICE).await.unwrap().unwrap();
    assert_eq!(
        (invoice.status.as_str(), invoice.amount_paid),
        ("paid", 4870)
    );
    let company = companies::get(&w.store, w.company_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(company.billing_status, "active");
    for key in ["evt_1T8xFail0001", "evt_sub_old"] {
        assert_eq!(
            outcome(&w, "stripe", key).await,
            ("ignored".into(), Some("stale".into())),
            "{key}"
        );
    }
    assert_eq!(
        outcome(&w, "stripe", "evt_1T8xPaid0001").await,
        ("processed".into(), None)
    );
    assert!(
        outbox(&w, "invoice:").await.is_empty(),
        "no payment-failed email queued"
    );
    assert!(w.sink.messages().is_empty(), "no payment-failed email sent");
    w.stop().await;
}

async fn racing_writers_never_regress_a_booking(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    let (t1, t2) = (1_790_150_400_000, 1_790_150_460_000);
    let booking = |uid: &str, status: &str| appointments::Appointment {
        uid: uid.into(),
        company_id: w.company_id,
        branch_id: w.branch_id,
        status: status.into(),
        start_at: "2026-09-29T16:30:00Z".into(),
        end_at: "2026-09-29T17:00:00Z".into(),
        ..appointments::Appointment::default()
    };
    for i in 0..20 {
        let uid = format!("race_{i}");
        let (created, cancelled) = (booking(&uid, "booked"), booking(&uid, "cancelled"));
        // Two workers at once: the creation (t1) and the cancellation (t2) of one booking.
        let (_, cancel_landed) = tokio::join!(
            appointments::record_event(&w.store, &created, t1),
            appointments::record_event(&w.store, &cancelled, t2),
        );
        assert!(
            cancel_landed.unwrap(),
            "{uid}: the newest event always lands"
        );
        let row = appointments::get(&w.store, &uid).await.unwrap().unwrap();
        assert_eq!(row.status, "cancelled", "{uid}");
        // Whoever came first, the creation now loses.
        assert!(
            !appointments::record_event(&w.store, &created, t1)
                .await
                .unwrap()
        );
    }
    w.stop().await;
}
