//! Provider outages far past the old attempt budgets lose nothing: SMTP down (the sink
//! process killed, then started again on its port), the SMS gateway and Cal.com answering
//! 5xx, and `MariaDB` cut off behind a TCP proxy. Each outage lasts until the provider's
//! circuit is open (its jobs snooze, one probe per stretch) and the queue has recorded more
//! failed attempts than its jobs' attempts allow together (so without the kinds' retry budgets
//! a job would be dead), then ends; every message goes out once, the booking is made once,
//! every webhook event is stored once, and nothing is dead, without an operator. Each outage
//! begins before its jobs are enqueued, so none is cut off mid-send (a message a server took
//! whose "250" was lost is sent again: at-least-once is all SMTP allows). And when an outage
//! does outlast a budget, an operator's retry gives the dead jobs a whole budget again.
//!
//! Time is compressed: the world's supervisor waits 5 to 20 ms between attempts and allows
//! [`MAX_ATTEMPTS`], and an open circuit holds jobs for a second; the 24 h budget of
//! `Policy::OUTAGE_PROOF` and the circuit threshold are the production ones.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;
#[path = "common/outage.rs"]
mod outage;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{Harness, jobs};
use outage::{Outage, outlast};
use serde_json::{Value, json};
use switchboard::{
    maintenance::{Promoter, Service as _},
    queue::admin::Selection,
};
use switchboard_jobs::{
    EnqueueOptions,
    calendar::CalendarBook,
    notify::{Message, MessageVars, NotifyEmail, NotifySms, Template},
    store::{appointments, calls, notifications, usage_events, webhook_events},
    webhook::{RetellWebhook, WebhookEvent},
};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};
use tokio_util::sync::CancellationToken;
use wiremock::{Mock, Request, Respond, ResponseTemplate, matchers};
use world::{EVENT_TYPE, MAX_ATTEMPTS, Options, World};

/// Jobs per outage (few: once the circuit is open, each failure is a probe a second apart).
const JOBS: usize = 2;

/// The failed attempts an outage must outlast: all the attempts its jobs allow together.
const ALLOWED: u64 = JOBS as u64 * MAX_ATTEMPTS as u64;

/// A world whose fleet works `queues` (4 jobs at once, so the jobs fail side by side).
async fn world(dialect: &str, queues: &'static [&'static str], db_cut: bool) -> World {
    World::with(
        dialect,
        Options {
            queues,
            db_cut,
            calcom_per_minute: 100_000,
            ..Options::default()
        },
    )
    .await
}

/// Notification `n` to `to`.
fn message(n: usize, to: &str) -> Message {
    Message {
        key: format!("outage:{n}"),
        to: to.into(),
        to_name: Some(format!("Customer {n}")),
        template: Template::Confirmation,
        locale: "en".into(),
        vars: MessageVars {
            recipient_name: format!("Customer {n}"),
            company_name: "Harbor Dental".into(),
            ..MessageVars::default()
        },
    }
}

/// Every outbox row sent once; every failed attempt claimed its row and gave it back.
async fn all_sent_after_the_outage(w: &World, failed: u64) {
    let rows = notifications::list(&w.store, "outage:").await.unwrap();
    assert_eq!(rows.len(), JOBS, "{rows:?}");
    for row in &rows {
        assert_eq!(row.status, "sent", "{row:?}");
        assert!(row.message_id.is_some(), "{row:?}");
    }
    let claims: i64 = rows.iter().map(|r| r.attempts).sum();
    assert_eq!(
        claims,
        i64::try_from(failed).unwrap() + JOBS as i64,
        "{rows:?}"
    );
}

/// Settled with nothing dead, and the failed attempts recorded.
async fn settled_with_none_dead(w: &World, queue: &str, jobs: u64) -> u64 {
    w.settled(queue, jobs).await;
    let s = w.h.stats(queue).await;
    assert_eq!((s.processed, s.dead), (jobs, 0), "{s:?}");
    s.failed
}

#[tokio::test]
async fn mail_waits_out_an_smtp_server_that_is_down() {
    let mut w = world("sqlite", &["notifications"], false).await;
    w.sink.stop();
    for n in 0..JOBS {
        let job = NotifyEmail(message(n, &format!("customer{n}@example.com")));
        w.h.queues
            .enqueue(&job, EnqueueOptions::default())
            .await
            .unwrap();
    }
    outlast(&w.h, "notifications", "smtp", ALLOWED).await;
    assert!(w.sink.messages().is_empty(), "nothing got through");

    w.sink.restart();
    let failed = settled_with_none_dead(&w, "notifications", JOBS as u64).await;
    let mails = w.sink.messages();
    assert_eq!(mails.len(), JOBS, "one email per notification");
    for n in 0..JOBS {
        let to = format!("Delivered-To: customer{n}@example.com\r\n");
        assert_eq!(mails.iter().filter(|m| m.contains(&to)).count(), 1, "{to}");
    }
    all_sent_after_the_outage(&w, failed).await;
    w.stop().await;
}

#[tokio::test]
async fn sms_waits_out_a_gateway_answering_503() {
    let w = world("sqlite", &["notifications"], false).await;
    let outage = Outage::begin(&w.sms, 503).await;
    for n in 0..JOBS {
        let job = NotifySms(message(n, &format!("+1415555010{n}")));
        w.h.queues
            .enqueue(&job, EnqueueOptions::default())
            .await
            .unwrap();
    }
    outlast(&w.h, "notifications", "sms", ALLOWED).await;

    outage.end();
    let failed = settled_with_none_dead(&w, "notifications", JOBS as u64).await;
    let requests = w.sms.received_requests().await.unwrap();
    assert_eq!(failed, outage.refused(), "every failure was a 503");
    assert_eq!(
        requests.len() as u64 - outage.refused(),
        JOBS as u64,
        "one accepted SMS per notification"
    );
    // Requests are recorded in the order they are answered and the outage ends once: the
    // last ones are the accepted ones.
    let accepted = &requests[requests.len() - JOBS..];
    for n in 0..JOBS {
        let to = format!("To=%2B1415555010{n}");
        let count = accepted
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains(&to))
            .count();
        assert_eq!(count, 1, "{to}");
    }
    all_sent_after_the_outage(&w, failed).await;
    w.stop().await;
}

/// The Cal.com stand-in once it is up: one free slot, bookings listed from what was created,
/// and a create that books it.
async fn calcom_up(w: &World, slot: &str) -> Arc<Mutex<Vec<Value>>> {
    let created = Arc::new(Mutex::new(Vec::new()));
    let day = &slot[..10];
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/slots"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": {day: [{"start": slot}]}})),
        )
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/bookings"))
        .respond_with(Bookings(Arc::clone(&created)))
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v2/bookings"))
        .respond_with(Bookings(Arc::clone(&created)))
        .mount(&w.calcom)
        .await;
    created
}

/// Lists the bookings made so far (GET) or makes one (POST).
struct Bookings(Arc<Mutex<Vec<Value>>>);

impl Respond for Bookings {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut created = self.0.lock().unwrap();
        if request.method.as_str() == "GET" {
            return ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": *created}));
        }
        let asked: Value = serde_json::from_slice(&request.body).unwrap();
        let start = asked["start"].as_str().unwrap();
        let end = OffsetDateTime::parse(start, &Rfc3339).unwrap() + Span::minutes(30);
        let booking = json!({
            "id": 480_001, "uid": "bk_after_outage", "title": "Cleaning", "start": start,
            "end": end.format(&Rfc3339).unwrap(), "status": "accepted", "eventTypeId": EVENT_TYPE,
            "attendees": [{"name": "Dana Ruiz", "email": "dana.ruiz@example.com",
                           "timeZone": "America/Los_Angeles", "phoneNumber": "+14155550123"}],
            "metadata": asked["metadata"].clone(),
        });
        created.push(booking.clone());
        ResponseTemplate::new(201).set_body_json(json!({"status": "success", "data": booking}))
    }
}

#[tokio::test]
async fn a_booking_waits_out_cal_com_answering_500() {
    let t0 = std::time::Instant::now();
    let w = world("sqlite", &["calendar", "notifications"], false).await;
    eprintln!("world {:?}", t0.elapsed());
    let outage = Outage::begin(&w.calcom, 500).await;
    let start = (OffsetDateTime::now_utc() + Span::days(2))
        .replace_nanosecond(0)
        .unwrap()
        .replace_second(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap();
    let created = calcom_up(&w, &start).await;
    let book = CalendarBook {
        call_id: "call_outage".into(),
        company_id: w.company_id,
        branch_id: w.branch_id,
        customer_id: None,
        service: Some("Cleaning".into()),
        preferred_start: Some(start.clone()),
        customer_name: Some("Dana Ruiz".into()),
        customer_email: Some("dana.ruiz@example.com".into()),
        customer_phone: Some("+14155550123".into()),
    };
    w.h.queues
        .enqueue(&book, EnqueueOptions::default())
        .await
        .unwrap();
    outlast(&w.h, "calendar", "calcom", u64::from(MAX_ATTEMPTS)).await;
    eprintln!("outlast {:?}", t0.elapsed());
    assert!(created.lock().unwrap().is_empty());

    outage.end();
    let failed = settled_with_none_dead(&w, "calendar", 1).await;
    eprintln!("settled {:?}", t0.elapsed());
    assert_eq!(failed, outage.refused(), "every failure was a 500");
    assert_eq!(created.lock().unwrap().len(), 1, "booked once");
    let stored = appointments::get(&w.store, "bk_after_outage")
        .await
        .unwrap()
        .expect("appointment row");
    assert_eq!(
        (stored.status.as_str(), stored.call_id.as_deref()),
        ("booked", Some("call_outage"))
    );
    settled_with_none_dead(&w, "notifications", 2).await;
    assert_eq!(w.sink.messages().len(), 1, "one confirmation email");
    eprintln!("notif {:?}", t0.elapsed());
    w.stop().await;
    eprintln!("stop {:?}", t0.elapsed());
}

/// Retell's `call_ended` fixture as call `call_id`.
fn call_ended(call_id: &str) -> RetellWebhook {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks/retell_call_ended.json"
    ))
    .unwrap();
    let body = fixture.replace("call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa", call_id);
    assert_ne!(body, fixture, "the fixture's call id changed");
    RetellWebhook(WebhookEvent {
        provider: "retell".into(),
        event_type: "call_ended".into(),
        dedupe_key: format!("call_ended:{call_id}"),
        received_at_ms: 1_790_150_400_000,
        request_id: format!("req-{call_id}"),
        body,
    })
}

#[tokio::test]
async fn webhook_events_wait_out_a_database_cut() {
    let w = world("mysql", &["webhooks"], true).await;
    let cut = w.db_cut.as_ref().unwrap();
    cut.cut();
    let ids: Vec<String> = (0..JOBS).map(|n| format!("call_outage_{n}")).collect();
    for id in &ids {
        let event = call_ended(id);
        w.h.queues
            .enqueue(&event, EnqueueOptions::default())
            .await
            .unwrap();
    }
    let failed = outlast(&w.h, "webhooks", "database", ALLOWED).await;
    assert!(cut.closed() >= failed, "{} connections cut", cut.closed());
    assert_eq!(calls::count(&w.store, w.company_id).await.unwrap(), 0);

    cut.restore();
    settled_with_none_dead(&w, "webhooks", JOBS as u64).await;
    assert_eq!(
        calls::count(&w.store, w.company_id).await.unwrap(),
        JOBS as i64
    );
    for id in &ids {
        let call = calls::get(&w.store, id).await.unwrap().expect("call row");
        assert_eq!(call.duration_ms, Some(142_000), "{id}");
        assert_eq!(
            usage_events::get(&w.store, id).await.unwrap(),
            Some((142, None)),
            "{id}"
        );
        let event = webhook_events::get(&w.store, "retell", &format!("call_ended:{id}"))
            .await
            .unwrap()
            .expect("event row");
        assert_eq!(event.1, "processed", "{id}");
    }
    assert_eq!(
        w.h.stats("billing").await.pending,
        JOBS as u64,
        "one usage report per call"
    );
    w.stop().await;
}

/// An outage longer than a kind's budget leaves its jobs dead; an operator's retry after it
/// must give each a whole budget again, not one attempt.
#[tokio::test]
async fn a_retry_after_the_budget_ran_out_gets_a_whole_budget_again() {
    let h = Harness::new().await;
    let promoter = CancellationToken::new();
    let names = vec!["budget".to_owned()];
    tokio::spawn(
        Promoter::new(h.queues.clone(), names, &h.settings.maintenance).run(promoter.clone()),
    );
    let settings = h.fleet_settings("budget", 1, 1, MAX_ATTEMPTS);
    let fleet = h
        .fleet(&settings, jobs::registry(&jobs::Switches::new()), None)
        .await;
    // `test.budgeted` always fails and retries for 300 ms from its first failure.
    let job = h
        .queues
        .enqueue(&jobs::Budgeted::default(), EnqueueOptions::default())
        .await;
    let id = job.unwrap().id;
    let dead_again = |failed: u64| {
        let queues = h.queues.clone();
        async move {
            let s = queues.stats("budget").await.unwrap();
            s.dead == 1 && s.failed > failed && s.pending + s.delayed + s.running == 0
        }
    };
    h.wait_for("the job dead", Duration::from_secs(10), || dead_again(0))
        .await;
    let first = h.queues.dead_list("budget", 1).await.unwrap().remove(0);
    assert!(first.attempts > MAX_ATTEMPTS, "{first:?}");

    let revived = h
        .queues
        .dead_retry("budget", Selection::Ids(vec![id]))
        .await;
    assert_eq!(revived.unwrap(), 1);
    let failed = u64::from(first.attempts);
    h.wait_for("the job dead again", Duration::from_secs(10), || {
        dead_again(failed)
    })
    .await;
    let second = h.queues.dead_list("budget", 1).await.unwrap().remove(0);
    assert!(
        second.attempts > MAX_ATTEMPTS,
        "a whole budget again, not {} attempt(s): {second:?}",
        second.attempts
    );
    fleet.stop().await;
    promoter.cancel();
}
