//! Webhook processing and notifications, on `MariaDB` and on `SQLite`: fixtures into rows,
//! out-of-order Retell events, duplicates, unknown events and businesses, emails into a real
//! SMTP sink, SMS into a wiremock gateway, and SMTP failures retried without duplicates.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use switchboard_jobs::{
    EnqueueOptions,
    store::{
        appointments, calls, companies, customers, invoices, notifications, usage_events,
        webhook_events,
    },
    webhook::{CalcomWebhook, RetellWebhook, StripeWebhook, WebhookEvent},
};
use world::{ADMIN_EMAIL, World};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

const CALL: &str = "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa";

fn event(provider: &str, event_type: &str, dedupe_key: &str, body: String) -> WebhookEvent {
    WebhookEvent {
        provider: provider.into(),
        event_type: event_type.into(),
        dedupe_key: dedupe_key.into(),
        received_at_ms: 1_790_150_400_000,
        request_id: "req-1".into(),
        body,
    }
}

async fn retell(w: &World, name: &str) {
    let body = fixture(name);
    let kind = name.trim_start_matches("retell_").trim_end_matches(".json");
    let e = event("retell", kind, &format!("{kind}:{CALL}"), body);
    w.h.queues
        .enqueue(&RetellWebhook(e), EnqueueOptions::default())
        .await
        .unwrap();
}

async fn calcom(w: &World, name: &str, trigger: &str) {
    let e = event(
        "calcom",
        trigger,
        &format!("{trigger}:{name}"),
        fixture(name),
    );
    w.h.queues
        .enqueue(&CalcomWebhook(e), EnqueueOptions::default())
        .await
        .unwrap();
}

async fn stripe(w: &World, name: &str, kind: &str) {
    let e = event("stripe", kind, &format!("evt:{name}"), fixture(name));
    w.h.queues
        .enqueue(&StripeWebhook(e), EnqueueOptions::default())
        .await
        .unwrap();
}

on_both_databases!(
    retell_events_merge_into_one_call_in_any_order,
    an_analysis_asking_for_an_appointment_enqueues_a_booking,
    bookings_are_stored_and_customers_told_once,
    a_booking_within_a_day_gets_no_day_reminder_but_its_two_hour_one,
    stripe_invoices_update_billing_and_warn_the_admin,
    unknown_events_are_ignored_and_unknown_businesses_fail_clearly,
    german_companies_get_german_messages,
    a_failing_smtp_server_is_retried_without_a_duplicate,
);

async fn retell_events_merge_into_one_call_in_any_order(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    // Out of order: the analysis first, then the end, then the start.
    for name in [
        "retell_call_analyzed.json",
        "retell_call_ended.json",
        "retell_call_started.json",
    ] {
        retell(&w, name).await;
    }
    w.settled("webhooks", 3).await;
    let call = calls::get(&w.store, CALL)
        .await
        .unwrap()
        .expect("one call row");
    assert_eq!(call.company_id, w.company_id);
    assert_eq!(call.branch_id, w.branch_id);
    assert_eq!(call.stage, calls::STAGE_ANALYZED);
    assert_eq!(
        (call.started_at_ms, call.ended_at_ms, call.duration_ms),
        (
            Some(1_790_150_400_000),
            Some(1_790_150_542_000),
            Some(142_000)
        )
    );
    assert_eq!(call.disconnection_reason.as_deref(), Some("user_hangup"));
    assert_eq!(call.sentiment.as_deref(), Some("Positive"));
    assert_eq!(call.successful, Some(true));
    assert!(call.summary.unwrap().contains("cleaning"));
    assert!(call.analysis_json.unwrap().contains("appointment_booked"));
    assert_eq!(calls::count(&w.store, w.company_id).await.unwrap(), 1);
    let customer = customers::get(&w.store, call.customer_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(customer.0, "+14155550123");
    assert_eq!(
        usage_events::get(&w.store, CALL).await.unwrap(),
        Some((142, None))
    );
    // One usage report waits for the billing worker; the analysis says "booked in-call".
    assert_eq!(w.h.stats("billing").await.pending, 1);
    assert_eq!(w.h.stats("calendar").await.pending, 0);
    for kind in ["call_started", "call_ended", "call_analyzed"] {
        let row = webhook_events::get(&w.store, "retell", &format!("{kind}:{CALL}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((row.0.as_str(), row.1.as_str()), (kind, "processed"));
        assert!(row.3.is_some(), "processed time recorded");
    }
    // The same events again change nothing and enqueue no second usage report.
    for name in ["retell_call_started.json", "retell_call_ended.json"] {
        retell(&w, name).await;
    }
    w.settled("webhooks", 5).await;
    assert_eq!(calls::count(&w.store, w.company_id).await.unwrap(), 1);
    assert_eq!(w.h.stats("billing").await.pending, 1);
    w.stop().await;
}

async fn an_analysis_asking_for_an_appointment_enqueues_a_booking(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    let body = fixture("retell_call_analyzed.json").replace(
        r#""appointment_booked": true"#,
        r#""appointment_booked": false, "appointment_requested": true, "preferred_start": "2026-09-29T16:30:00Z", "customer_name": "Dana Ruiz""#,
    );
    assert!(
        body.contains("appointment_requested"),
        "fixture shape changed"
    );
    let e = event(
        "retell",
        "call_analyzed",
        &format!("call_analyzed:{CALL}"),
        body,
    );
    w.h.queues
        .enqueue(&RetellWebhook(e), EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("webhooks", 1).await;
    assert_eq!(
        w.h.stats("calendar").await.pending,
        1,
        "calendar.book enqueued"
    );
    let k = w.h.queues.keys("calendar").unwrap();
    let mut conn = w.h.conn();
    // The booking carries the company as its tenant: it waits in its lane, indexed.
    let items: Vec<String> = redis::cmd("HVALS")
        .arg(&k.index)
        .query_async(&mut conn)
        .await
        .unwrap();
    let [item] = items.as_slice() else {
        panic!("one waiting job: {items:?}")
    };
    assert!(
        item.contains("calendar.book")
            && item.contains("2026-09-29T16:30:00Z")
            && item.contains("Dana Ruiz"),
        "{item}"
    );
    let customer = customers::get(
        &w.store,
        calls::get(&w.store, CALL)
            .await
            .unwrap()
            .unwrap()
            .customer_id
            .unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(customer.1.as_deref(), Some("Dana Ruiz"));
    w.stop().await;
}

async fn bookings_are_stored_and_customers_told_once(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    calcom(&w, "calcom_booking_created.json", "BOOKING_CREATED").await;
    // The same job twice: one row, one email, one SMS.
    calcom(&w, "calcom_booking_created.json", "BOOKING_CREATED").await;
    w.settled("webhooks", 2).await;
    w.settled("notifications", 2).await;
    let booked = appointments::get(&w.store, "bK3v9Qp2LmX7tRz1Yc8WnA")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (booked.status.as_str(), booked.start_at.as_str()),
        ("booked", "2026-09-29T16:30:00Z")
    );
    assert_eq!(
        booked.attendee_email.as_deref(),
        Some("dana.ruiz@example.com")
    );
    assert_eq!(booked.call_id.as_deref(), Some(CALL));
    assert_eq!(customers::count(&w.store, w.company_id).await.unwrap(), 1);

    calcom(&w, "calcom_booking_cancelled.json", "BOOKING_CANCELLED").await;
    w.settled("webhooks", 3).await;
    let cancelled = appointments::get(&w.store, "bK3v9Qp2LmX7tRz1Yc8WnA")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(
        cancelled.cancellation_reason.as_deref(),
        Some("Patient has a schedule conflict")
    );

    calcom(&w, "calcom_booking_rescheduled.json", "BOOKING_RESCHEDULED").await;
    w.settled("webhooks", 4).await;
    w.settled("notifications", 6).await;
    let moved = appointments::get(&w.store, "Hq4nW8sZ1aB6cD2eF0gJkL")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (moved.status.as_str(), moved.rescheduled_from_uid.as_deref()),
        ("booked", Some("bK3v9Qp2LmX7tRz1Yc8WnA"))
    );
    assert_eq!(
        appointments::get(&w.store, "bK3v9Qp2LmX7tRz1Yc8WnA")
            .await
            .unwrap()
            .unwrap()
            .status,
        "rescheduled"
    );

    let mails = w.sink.messages();
    assert_eq!(
        mails.len(),
        3,
        "confirmation, cancellation, reschedule: one each"
    );
    for m in &mails {
        assert!(m.contains("dana.ruiz@example.com"), "{m}");
        assert!(
            m.contains("text/plain") && m.contains("text/html"),
            "both parts: {m}"
        );
    }
    assert!(
        mails
            .iter()
            .any(|m| m.contains("Subject:") && m.to_lowercase().contains("confirm"))
    );
    let sms = w.sms.received_requests().await.unwrap();
    assert_eq!(sms.len(), 3);
    let form = String::from_utf8_lossy(&sms[0].body).to_string();
    assert!(form.contains("To=%2B14155550123"), "{form}");
    let rows = notifications::list(&w.store, "appointment:").await.unwrap();
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter()
            .all(|n| n.status == "sent" && n.attempts == 1 && n.message_id.is_some()),
        "{rows:?}"
    );
    w.stop().await;
}

async fn stripe_invoices_update_billing_and_warn_the_admin(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    stripe(&w, "stripe_invoice_paid.json", "invoice.paid").await;
    w.settled("webhooks", 1).await;
    let paid = invoices::get(&w.store, "in_1T8xQ2HarborDental01")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            paid.status.as_str(),
            paid.amount_paid,
            paid.currency.as_str()
        ),
        ("paid", 4870, "usd")
    );
    assert_eq!(
        companies::get(&w.store, w.company_id)
            .await
            .unwrap()
            .unwrap()
            .billing_status,
        "active"
    );

    stripe(
        &w,
        "stripe_invoice_payment_failed.json",
        "invoice.payment_failed",
    )
    .await;
    w.settled("webhooks", 2).await;
    w.settled("notifications", 1).await;
    let failed = invoices::get(&w.store, "in_1T8xQ2HarborDental02")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.amount_due),
        ("payment_failed", 4870)
    );
    assert_eq!(
        companies::get(&w.store, w.company_id)
            .await
            .unwrap()
            .unwrap()
            .billing_status,
        "past_due"
    );
    let mails = w.sink.messages();
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].contains(ADMIN_EMAIL) && mails[0].contains("48.70"),
        "{}",
        mails[0]
    );

    let sub = r#"{"id":"evt_sub_1","type":"customer.subscription.updated","created":1790240500,"data":{"object":{"id":"sub_1","customer":"cus_T8xHarborDental","status":"canceled"}}}"#;
    let e = event(
        "stripe",
        "customer.subscription.updated",
        "evt_sub_1",
        sub.into(),
    );
    w.h.queues
        .enqueue(&StripeWebhook(e), EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("webhooks", 3).await;
    assert_eq!(
        companies::get(&w.store, w.company_id)
            .await
            .unwrap()
            .unwrap()
            .billing_status,
        "canceled"
    );
    w.stop().await;
}

async fn unknown_events_are_ignored_and_unknown_businesses_fail_clearly(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    let unknown =
        r#"{"event":"transcript_updated","call":{"call_id":"c1","to_number":"+14155550987"}}"#;
    w.h.queues
        .enqueue(
            &RetellWebhook(event(
                "retell",
                "transcript_updated",
                "transcript_updated:c1",
                unknown.into(),
            )),
            EnqueueOptions::default(),
        )
        .await
        .unwrap();
    let stranger = fixture("retell_call_started.json").replace("+14155550987", "+19995550000");
    w.h.queues
        .enqueue(
            &RetellWebhook(event(
                "retell",
                "call_started",
                "call_started:stranger",
                stranger,
            )),
            EnqueueOptions::default(),
        )
        .await
        .unwrap();
    w.settled("webhooks", 2).await;

    let ignored = webhook_events::get(&w.store, "retell", "transcript_updated:c1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ignored.1, "ignored");
    let s = w.h.stats("webhooks").await;
    assert_eq!(
        (s.processed, s.dead),
        (1, 1),
        "ignored is not a failure; the stranger is dead"
    );
    let dead = w.h.queues.dead_list("webhooks", 10).await.unwrap();
    assert_eq!(dead[0].attempts, 1, "dead at once, no retries");
    assert_eq!(
        dead[0].error.as_deref(),
        Some(
            format!("no business owns the called number +19995550000 (retell call {CALL})")
                .as_str()
        )
    );
    let failed = webhook_events::get(&w.store, "retell", "call_started:stranger")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.1, "failed");
    assert!(failed.2.unwrap().contains("+19995550000"));
    w.stop().await;
}

async fn german_companies_get_german_messages(dialect: &str) {
    let w = World::new(dialect, "de", 0).await;
    calcom(&w, "calcom_booking_created.json", "BOOKING_CREATED").await;
    w.settled("notifications", 2).await;
    let mails = w.sink.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("Termin"), "German text: {}", mails[0]);
    let english = World::new(dialect, "en", 0).await;
    calcom(&english, "calcom_booking_created.json", "BOOKING_CREATED").await;
    english.settled("notifications", 2).await;
    let subject = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("Subject:"))
            .unwrap_or_default()
            .to_owned()
    };
    assert_ne!(subject(&mails[0]), subject(&english.sink.messages()[0]));
    // 16:30 UTC is 09:30 in the branch's zone (America/Los_Angeles, daylight time then).
    let body = |m: &str| m.replace("=\r\n", "").replace("=\n", "");
    let german = body(&mails[0]);
    assert!(
        german.contains("Dienstag, 29. September 2026, 09:30 Uhr (PDT)"),
        "{german}"
    );
    let english_mail = body(&english.sink.messages()[0]);
    assert!(
        english_mail.contains("Tuesday, September 29, 2026 at 9:30 AM (PDT)"),
        "{english_mail}"
    );
    assert!(
        !english_mail.contains("2026-09-29T16:30:00Z"),
        "{english_mail}"
    );
    w.stop().await;
    english.stop().await;
}

async fn a_failing_smtp_server_is_retried_without_a_duplicate(dialect: &str) {
    let w = World::new(dialect, "en", 1).await;
    stripe(
        &w,
        "stripe_invoice_payment_failed.json",
        "invoice.payment_failed",
    )
    .await;
    w.settled("webhooks", 1).await;
    w.settled("notifications", 1).await;
    let s = w.h.stats("notifications").await;
    assert_eq!(
        (s.processed, s.failed, s.dead),
        (1, 1, 0),
        "one failed attempt, then success"
    );
    assert_eq!(w.sink.messages().len(), 1, "exactly one email arrived");
    let rows = notifications::list(&w.store, "invoice:").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("sent", 2));
    w.stop().await;
}

/// A Cal.com booking `uid` starting `from_now` ahead.
async fn booking_soon(w: &World, uid: &str, from_now: time::Duration) {
    use time::format_description::well_known::Rfc3339;
    let start = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        + from_now;
    let mut body: serde_json::Value =
        serde_json::from_str(&fixture("calcom_booking_created.json")).unwrap();
    body["payload"]["uid"] = uid.into();
    body["payload"]["startTime"] = start.format(&Rfc3339).unwrap().into();
    body["payload"]["endTime"] = (start + time::Duration::minutes(30))
        .format(&Rfc3339)
        .unwrap()
        .into();
    let e = event(
        "calcom",
        "BOOKING_CREATED",
        &format!("created:{uid}"),
        body.to_string(),
    );
    w.h.queues
        .enqueue(&CalcomWebhook(e), EnqueueOptions::default())
        .await
        .unwrap();
}

async fn a_booking_within_a_day_gets_no_day_reminder_but_its_two_hour_one(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    booking_soon(&w, "soon_10h", time::Duration::hours(10)).await;
    booking_soon(&w, "soon_90min", time::Duration::minutes(90)).await;
    w.settled("webhooks", 2).await;
    w.settled("notifications", 4).await;
    // Both confirmed; then a reminder run.
    let run =
        w.h.queues
            .enqueue(
                &switchboard_jobs::notify::reminders::NotifyReminders {},
                EnqueueOptions::default(),
            )
            .await
            .unwrap();
    w.settled("notifications", 5).await;
    let result =
        w.h.queues
            .job_result("notifications", &run.id)
            .await
            .unwrap();
    assert_eq!(
        result,
        Some(serde_json::json!({"reminder_24h": 0, "reminder_2h": 1, "no_contact": 0}))
    );
    w.settled("notifications", 7).await;
    let keys: Vec<String> = notifications::list(&w.store, "appointment:")
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.unique_key)
        .collect();
    assert!(
        !keys.iter().any(|k| k.contains("reminder_24h")),
        "no day reminder right after the confirmation: {keys:?}"
    );
    assert!(
        keys.contains(&"appointment:soon_90min:reminder_2h:email".to_owned()),
        "{keys:?}"
    );
    assert_eq!(keys.len(), 6, "{keys:?}");
    w.stop().await;
}
