//! The recurring reconciliation jobs on `MariaDB` and `SQLite`, run through the real fleet and
//! Redis queues: `calendar.reconcile` against a Cal.com stand-in with planted drift of every
//! kind, `notify.reminders` against the SMTP sink and the SMS stand-in (sequential and
//! concurrent runs), and `billing.reconcile` against the Stripe stand-in. Each is run twice:
//! the second run must change nothing.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use std::{collections::BTreeSet, time::Duration};

use serde_json::{Value, json};
use switchboard_jobs::{
    EnqueueOptions, JobArgs,
    billing::BillingReconcile,
    calendar::CalendarReconcile,
    notify::reminders::NotifyReminders,
    store::{
        appointments::{self, Appointment},
        calls::{self, Call, STAGE_ENDED, STAGE_STARTED},
        companies, customers, notifications, now_ms, usage_events,
    },
};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};
use wiremock::{Mock, ResponseTemplate, matchers};
use world::{EVENT_TYPE, Options, World};

const QUEUES: &[&str] = &["calendar", "notifications", "billing"];

async fn world(dialect: &str) -> World {
    World::with(
        dialect,
        Options {
            queues: QUEUES,
            ..Options::default()
        },
    )
    .await
}

/// Now, to the whole second.
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// `t` as Cal.com writes times (and the client stores them): UTC with milliseconds.
fn cal(t: OffsetDateTime) -> String {
    switchboard_jobs::clients::calcom::utc(&at(t)).unwrap()
}

/// Enqueue one run of `args` and return the result it recorded.
async fn run<A: JobArgs>(w: &World, args: &A) -> Value {
    let id =
        w.h.queues
            .enqueue(args, EnqueueOptions::default())
            .await
            .unwrap()
            .id;
    result(w, A::QUEUE, &id).await
}

/// Enqueue one run of `A` as the scheduler does (`args = {}`: every field defaulted) and
/// return the result it recorded.
async fn run_scheduled<A: JobArgs>(w: &World) -> Value {
    let id =
        w.h.queues
            .enqueue_json(
                A::KIND,
                A::VERSION,
                "{}".into(),
                A::QUEUE,
                EnqueueOptions::default(),
            )
            .await
            .unwrap()
            .id;
    result(w, A::QUEUE, &id).await
}

/// The result job `id` recorded, waiting for it (a dead job fails the test with its error).
async fn result(w: &World, queue: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = w.h.queues.job_result(queue, id).await.unwrap() {
            return value;
        }
        let dead = w.h.queues.dead_list(queue, 50).await.unwrap();
        if let Some(d) = dead.iter().find(|d| d.id == id) {
            panic!("job {id} died: {:?}", d.error);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no result from job {id} on {queue}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn appointment(w: &World, uid: &str, start: OffsetDateTime, status: &str) -> Appointment {
    Appointment {
        uid: uid.into(),
        company_id: w.company_id,
        branch_id: w.branch_id,
        status: status.into(),
        title: Some("Cleaning".into()),
        start_at: at(start),
        end_at: at(start + Span::minutes(30)),
        ..Default::default()
    }
}

/// A booking as Cal.com lists it.
fn booking(uid: &str, start: OffsetDateTime, status: &str) -> Value {
    json!({
        "id": 7100, "uid": uid, "title": "Cleaning", "start": cal(start), "end": cal(start + Span::minutes(30)),
        "status": status, "eventTypeId": EVENT_TYPE,
        "attendees": [{"name": "Lee Park", "email": "lee.park@example.com", "timeZone": "America/Los_Angeles", "phoneNumber": "+14155550177"}],
        "metadata": {"retell_call_id": "call_77"}
    })
}

/// The Cal.com stand-in answers every listing of `event_type` with `bookings`.
async fn list_bookings(w: &World, event_type: i64, bookings: Vec<Value>) {
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/bookings"))
        .and(matchers::query_param("eventTypeId", event_type.to_string()))
        .and(matchers::header("cal-api-version", "2024-08-13"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"status": "success", "data": bookings})),
        )
        .mount(&w.calcom)
        .await;
}

async fn rows(w: &World, uids: &[&str]) -> Vec<Option<Appointment>> {
    let mut out = Vec::new();
    for uid in uids {
        out.push(appointments::get(&w.store, uid).await.unwrap());
    }
    out
}

on_both_databases!(
    calendar_drift_is_fixed_both_ways_once,
    a_rate_limited_calendar_run_continues_with_the_remaining_branches,
    a_failing_branch_is_counted_and_the_others_reconciled,
    a_run_past_its_budget_leaves_the_rest_to_a_continuation,
    reminders_go_once_per_appointment_and_kind,
    unreported_calls_are_billed_once,
    a_move_done_the_cal_com_way_is_followed_and_foreign_bookings_ignored,
);

/// Cal.com moves a booking by creating a new one (with `rescheduledFromUid`) and cancelling
/// the old; with the webhook lost, reconciliation must see one move, not a cancellation and
/// an unrelated booking. Bookings the listing should not have returned are not imported.
async fn a_move_done_the_cal_com_way_is_followed_and_foreign_bookings_ignored(dialect: &str) {
    let w = world(dialect).await;
    let base = now() + Span::days(2);
    appointments::upsert(&w.store, &appointment(&w, "bk_old", base, "booked"))
        .await
        .unwrap();
    let mut moved = booking("bk_new", base + Span::hours(4), "accepted");
    moved["rescheduledFromUid"] = json!("bk_old");
    let mut foreign = booking("bk_foreign", base + Span::hours(2), "accepted");
    foreign["eventTypeId"] = json!(EVENT_TYPE + 1);
    let listed = vec![
        // The old booking first, as Cal.com's listing by start time has it.
        booking("bk_old", base, "cancelled"),
        moved,
        foreign,
        booking("bk_far", now() + Span::days(30), "accepted"),
    ];
    list_bookings(&w, EVENT_TYPE, listed).await;

    let first = run(&w, &CalendarReconcile::default()).await;
    assert_eq!(
        first,
        json!({"branches": 1, "created": 0, "cancelled": 0, "rescheduled": 1, "unchanged": 1, "failed": 0})
    );
    let [old, new, foreign, far] =
        &rows(&w, &["bk_old", "bk_new", "bk_foreign", "bk_far"]).await[..]
    else {
        unreachable!()
    };
    assert_eq!(old.as_ref().unwrap().status, "rescheduled");
    let new = new.as_ref().unwrap();
    assert_eq!(
        (new.status.as_str(), new.rescheduled_from_uid.as_deref()),
        ("booked", Some("bk_old")),
        "the new booking is linked to the one it replaced"
    );
    assert!(
        foreign.is_none() && far.is_none(),
        "not this branch's bookings"
    );

    // Nothing changes on the next run, and reconciliation told the customer nothing.
    let second = run(&w, &CalendarReconcile::default()).await;
    assert_eq!(
        second,
        json!({"branches": 1, "created": 0, "cancelled": 0, "rescheduled": 0, "unchanged": 2, "failed": 0})
    );
    w.settled("notifications", 0).await;
    assert!(w.sink.messages().is_empty());
    assert!(
        notifications::list(&w.store, "appointment:")
            .await
            .unwrap()
            .is_empty(),
        "no notification for a move reconciliation found"
    );
    w.stop().await;
}

#[allow(clippy::too_many_lines)] // one planted calendar, two runs, every row checked
async fn calendar_drift_is_fixed_both_ways_once(dialect: &str) {
    let w = world(dialect).await;
    let base = now() + Span::days(2);
    let store = &w.store;
    // Booked here and at Cal.com at the same times (stored in another spelling of UTC).
    appointments::upsert(store, &appointment(&w, "bk_same", base, "booked"))
        .await
        .unwrap();
    // Booked here at +1 h, moved at Cal.com to +3 h.
    let moved_to = base + Span::hours(3);
    appointments::upsert(
        store,
        &appointment(&w, "bk_moved", base + Span::hours(1), "booked"),
    )
    .await
    .unwrap();
    // Cancelled at Cal.com, booked here.
    appointments::upsert(
        store,
        &appointment(&w, "bk_cancelled", base + Span::hours(5), "booked"),
    )
    .await
    .unwrap();
    // Booked here, not listed by Cal.com at all.
    appointments::upsert(
        store,
        &appointment(&w, "bk_gone", base + Span::hours(6), "booked"),
    )
    .await
    .unwrap();
    // Cancelled on both sides: nothing to do.
    appointments::upsert(
        store,
        &appointment(&w, "bk_both", base + Span::hours(7), "cancelled"),
    )
    .await
    .unwrap();
    // Booked here beyond the 14-day window: not compared, so not cancelled.
    appointments::upsert(
        store,
        &appointment(&w, "bk_far", now() + Span::days(30), "booked"),
    )
    .await
    .unwrap();
    let listed = vec![
        booking("bk_same", base, "accepted"),
        booking("bk_moved", moved_to, "accepted"),
        booking("bk_cancelled", base + Span::hours(5), "cancelled"),
        booking("bk_both", base + Span::hours(7), "cancelled"),
        // Booked at Cal.com, missing here.
        booking("bk_missing", base + Span::hours(8), "accepted"),
    ];
    list_bookings(&w, EVENT_TYPE, listed).await;
    let customers_before = customers::count(store, w.company_id).await.unwrap();

    let first = run(&w, &CalendarReconcile::default()).await;
    assert_eq!(
        first,
        json!({"branches": 1, "created": 1, "cancelled": 2, "rescheduled": 1, "unchanged": 2, "failed": 0})
    );
    let requests = w.calcom.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one listing for the one branch");
    let query: Vec<(String, String)> = requests[0]
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (after, before) = (param("afterStart").unwrap(), param("beforeEnd").unwrap());
    let instant = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
    assert!(
        (instant(&after) - now()).abs() < Span::minutes(1),
        "{after}"
    );
    assert!(
        (instant(&before) - instant(&after) - Span::days(14)).abs() < Span::seconds(1),
        "a 14-day window: {after} .. {before}"
    );

    let uids = [
        "bk_same",
        "bk_moved",
        "bk_cancelled",
        "bk_gone",
        "bk_both",
        "bk_far",
        "bk_missing",
    ];
    let after_first = rows(&w, &uids).await;
    let status = |i: usize| after_first[i].as_ref().unwrap().status.clone();
    assert_eq!(
        (0..6).map(status).collect::<Vec<_>>(),
        [
            "booked",
            "booked",
            "cancelled",
            "cancelled",
            "cancelled",
            "booked"
        ]
    );
    let same = after_first[0].as_ref().unwrap();
    assert_eq!(
        same.start_at,
        at(base),
        "an unchanged booking is not rewritten"
    );
    let moved = after_first[1].as_ref().unwrap();
    assert_eq!(
        (instant(&moved.start_at), instant(&moved.end_at)),
        (moved_to, moved_to + Span::minutes(30))
    );
    assert!(
        after_first[3]
            .as_ref()
            .unwrap()
            .cancellation_reason
            .as_deref()
            .unwrap()
            .contains("no longer listed")
    );
    let missing = after_first[6]
        .as_ref()
        .expect("the missing booking is created");
    assert_eq!(missing.status, "booked");
    assert_eq!(missing.branch_id, w.branch_id);
    assert_eq!(instant(&missing.start_at), base + Span::hours(8));
    assert_eq!(missing.call_id.as_deref(), Some("call_77"));
    assert_eq!(
        missing.attendee_email.as_deref(),
        Some("lee.park@example.com")
    );
    let customer = missing.customer_id.expect("a customer from the attendee");
    assert_eq!(
        customers::get(store, customer).await.unwrap().unwrap(),
        (
            "+14155550177".to_owned(),
            Some("Lee Park".to_owned()),
            Some("lee.park@example.com".to_owned())
        )
    );
    assert_eq!(
        customers::count(store, w.company_id).await.unwrap(),
        customers_before + 1
    );
    let notes = w.h.stats("notifications").await;
    assert_eq!(
        (notes.pending, notes.delayed, notes.processed),
        (0, 0, 0),
        "reconciliation notifies nobody"
    );

    // The second run (enqueued as the scheduler does) finds nothing to fix and changes no row.
    let second = run_scheduled::<CalendarReconcile>(&w).await;
    assert_eq!(
        second,
        json!({"branches": 1, "created": 0, "cancelled": 0, "rescheduled": 0, "unchanged": 5, "failed": 0})
    );
    assert_eq!(rows(&w, &uids).await, after_first);
    assert_eq!(
        customers::count(store, w.company_id).await.unwrap(),
        customers_before + 1
    );
    w.stop().await;
}

async fn a_rate_limited_calendar_run_continues_with_the_remaining_branches(dialect: &str) {
    let w = world(dialect).await;
    let second_type = EVENT_TYPE + 1;
    let second_branch =
        companies::insert_branch(&w.store, w.company_id, "Dock Rd", Some(second_type), "UTC")
            .await
            .unwrap();
    let base = now() + Span::days(1);
    list_bookings(&w, EVENT_TYPE, vec![booking("bk_first", base, "accepted")]).await;
    // The second branch's listing is refused once with a 429 asking for a second's wait.
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/bookings"))
        .and(matchers::query_param(
            "eventTypeId",
            second_type.to_string(),
        ))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.calcom)
        .await;
    let mut second = booking("bk_second", base + Span::hours(1), "accepted");
    second["eventTypeId"] = second_type.into();
    list_bookings(&w, second_type, vec![second]).await;

    let first = run(&w, &CalendarReconcile::default()).await;
    assert_eq!(
        first,
        json!({"branches": 1, "created": 1, "cancelled": 0, "rescheduled": 0, "unchanged": 0, "failed": 0,
               "continued_after_branch": w.branch_id})
    );
    // The continuation runs after the wait and does only the second branch.
    w.settled("calendar", 2).await;
    let s = w.h.stats("calendar").await;
    assert_eq!((s.processed, s.failed, s.dead), (2, 0, 0));
    let row = appointments::get(&w.store, "bk_second")
        .await
        .unwrap()
        .expect("the second branch was reconciled");
    assert_eq!(row.branch_id, second_branch);
    let listings = w.calcom.received_requests().await.unwrap();
    let of = |t: i64| {
        listings
            .iter()
            .filter(|r| r.url.query().unwrap().contains(&format!("eventTypeId={t}")))
            .count()
    };
    assert_eq!(
        (of(EVENT_TYPE), of(second_type)),
        (1, 2),
        "the first branch is not listed again"
    );
    w.stop().await;
}

async fn a_failing_branch_is_counted_and_the_others_reconciled(dialect: &str) {
    let w = world(dialect).await;
    let refused_type = EVENT_TYPE + 2;
    companies::insert_branch(
        &w.store,
        w.company_id,
        "Old Town",
        Some(refused_type),
        "UTC",
    )
    .await
    .unwrap();
    let base = now() + Span::days(1);
    list_bookings(&w, EVENT_TYPE, vec![booking("bk_ok", base, "accepted")]).await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/bookings"))
        .and(matchers::query_param("eventTypeId", refused_type.to_string()))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!({"status": "error", "error": {"code": "ForbiddenException", "message": "not your event type"}}),
        ))
        .mount(&w.calcom)
        .await;

    let result = run(&w, &CalendarReconcile::default()).await;
    assert_eq!(
        result,
        json!({"branches": 1, "created": 1, "cancelled": 0, "rescheduled": 0, "unchanged": 0, "failed": 1})
    );
    assert!(
        appointments::get(&w.store, "bk_ok")
            .await
            .unwrap()
            .is_some()
    );
    let s = w.h.stats("calendar").await;
    assert_eq!((s.processed, s.failed, s.dead), (1, 0, 0));
    w.stop().await;
}

async fn a_run_past_its_budget_leaves_the_rest_to_a_continuation(dialect: &str) {
    let w = world(dialect).await;
    let second_type = EVENT_TYPE + 3;
    companies::insert_branch(&w.store, w.company_id, "Bay St", Some(second_type), "UTC")
        .await
        .unwrap();
    let base = now() + Span::days(3);
    list_bookings(&w, EVENT_TYPE, vec![booking("bk_one", base, "accepted")]).await;
    let mut other = booking("bk_two", base, "accepted");
    other["eventTypeId"] = second_type.into();
    list_bookings(&w, second_type, vec![other]).await;

    // No time at all: each run does one branch (never none) and hands on the rest.
    let args = CalendarReconcile {
        budget_secs: 0,
        ..CalendarReconcile::default()
    };
    let first = run(&w, &args).await;
    assert_eq!(first["branches"], 1);
    assert_eq!(first["continued_after_branch"], w.branch_id);
    w.settled("calendar", 2).await;
    for uid in ["bk_one", "bk_two"] {
        assert!(
            appointments::get(&w.store, uid).await.unwrap().is_some(),
            "{uid}"
        );
    }
    assert_eq!(
        w.calcom.received_requests().await.unwrap().len(),
        2,
        "each branch listed once"
    );
    w.stop().await;
}

#[allow(clippy::too_many_lines)] // one planted calendar, three runs, every message checked
async fn reminders_go_once_per_appointment_and_kind(dialect: &str) {
    let w = world(dialect).await;
    let store = &w.store;
    let now = now();
    let mut soon = appointment(&w, "ap_1h", now + Span::hours(1), "booked");
    soon.attendee_name = Some("Ana Soto".into());
    soon.attendee_email = Some("ana.soto@example.com".into());
    soon.attendee_phone = Some("+14155550101".into());
    // Reached through its customer record: no attendee details on the booking.
    let customer = customers::upsert(
        store,
        w.company_id,
        "+14155550102",
        Some("Ben Ode"),
        Some("ben.ode@example.com"),
    )
    .await
    .unwrap();
    let mut tomorrow = appointment(&w, "ap_20h", now + Span::hours(20), "booked");
    tomorrow.customer_id = Some(customer);
    let mut later = appointment(&w, "ap_3d", now + Span::days(3), "booked");
    later.attendee_email = Some("later@example.com".into());
    let mut cancelled = appointment(&w, "ap_cancelled", now + Span::hours(1), "cancelled");
    cancelled.attendee_email = Some("gone@example.com".into());
    cancelled.attendee_phone = Some("+14155550103".into());
    let mut past = appointment(&w, "ap_past", now - Span::minutes(30), "booked");
    past.attendee_email = Some("past@example.com".into());
    let unreachable = appointment(&w, "ap_nobody", now + Span::hours(5), "booked");
    for a in [&soon, &tomorrow, &later, &cancelled, &past, &unreachable] {
        appointments::upsert(store, a).await.unwrap();
    }

    // Two runs at once (queued while the queue is paused, so one fetch takes both): between
    // them, each reminder is enqueued once.
    let queues = &w.h.queues;
    queues.pause("notifications").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let job = queues
            .enqueue(&NotifyReminders::default(), EnqueueOptions::default())
            .await
            .unwrap();
        ids.push(job.id);
    }
    queues.resume("notifications").await.unwrap();
    let (a, b) = (
        result(&w, "notifications", &ids[0]).await,
        result(&w, "notifications", &ids[1]).await,
    );
    let total = |k: &str| a[k].as_u64().unwrap() + b[k].as_u64().unwrap();
    assert_eq!(
        (total("reminder_2h"), total("reminder_24h")),
        (1, 1),
        "{a} {b}"
    );
    assert_eq!(a["no_contact"], 1);
    assert_eq!(b["no_contact"], 1);
    w.settled("notifications", 2 + 4).await;

    // A later run in the same window sends nothing more.
    let again = run_scheduled::<NotifyReminders>(&w).await;
    assert_eq!(
        again,
        json!({"reminder_24h": 0, "reminder_2h": 0, "no_contact": 1})
    );
    w.settled("notifications", 3 + 4).await;
    assert_eq!(w.h.stats("notifications").await.dead, 0);

    let outbox = notifications::list(store, "appointment:").await.unwrap();
    let keys: Vec<(&str, &str, &str)> = outbox
        .iter()
        .map(|n| {
            (
                n.unique_key.as_str(),
                n.recipient.as_str(),
                n.status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            (
                "appointment:ap_1h:reminder_2h:email",
                "ana.soto@example.com",
                "sent"
            ),
            ("appointment:ap_1h:reminder_2h:sms", "+14155550101", "sent"),
            (
                "appointment:ap_20h:reminder_24h:email",
                "ben.ode@example.com",
                "sent"
            ),
            (
                "appointment:ap_20h:reminder_24h:sms",
                "+14155550102",
                "sent"
            ),
        ]
    );
    let mails = w.sink.messages();
    assert_eq!(mails.len(), 2, "one reminder email per due appointment");
    for mail in &mails {
        assert!(mail.contains("Subject: Appointment reminder"), "{mail}");
    }
    let recipients: BTreeSet<String> = mails
        .iter()
        .map(|m| m.lines().find(|l| l.starts_with("To:")).unwrap().to_owned())
        .collect();
    assert!(
        recipients
            .iter()
            .any(|l| l.contains("ana.soto@example.com"))
    );
    assert!(recipients.iter().any(|l| l.contains("ben.ode@example.com")));
    let sms: Vec<Vec<(String, String)>> = w
        .sms
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_urlencoded::from_bytes(&r.body).unwrap())
        .collect();
    let numbers: BTreeSet<&str> = sms
        .iter()
        .map(|f| f.iter().find(|(k, _)| k == "To").unwrap().1.as_str())
        .collect();
    assert_eq!(sms.len(), 2, "one reminder SMS per due appointment");
    assert_eq!(numbers, BTreeSet::from(["+14155550101", "+14155550102"]));
    w.stop().await;
}

fn ended_call(w: &World, call_id: &str, ended_ago: Duration, duration_ms: i64) -> Call {
    let ended = now_ms() - ended_ago.as_millis() as i64;
    Call {
        call_id: call_id.into(),
        company_id: w.company_id,
        branch_id: w.branch_id,
        from_number: "+14155550123".into(),
        to_number: world::NUMBER.into(),
        stage: STAGE_ENDED,
        started_at_ms: Some(ended - duration_ms),
        ended_at_ms: Some(ended),
        duration_ms: Some(duration_ms),
        ..Default::default()
    }
}

async fn unreported_calls_are_billed_once(dialect: &str) {
    let w = world(dialect).await;
    let store = &w.store;
    let hour = Duration::from_secs(3600);
    // Ended an hour ago, usage never recorded (95 s: 2 started minutes).
    calls::upsert(store, &ended_call(&w, "call_a", hour, 95_000))
        .await
        .unwrap();
    // Ended an hour ago, usage recorded but never reported (142 s: 3 minutes).
    calls::upsert(store, &ended_call(&w, "call_b", hour, 142_000))
        .await
        .unwrap();
    usage_events::record(store, "call_b", w.company_id, 142)
        .await
        .unwrap();
    // Ended an hour ago and reported.
    calls::upsert(store, &ended_call(&w, "call_c", hour, 60_000))
        .await
        .unwrap();
    usage_events::record(store, "call_c", w.company_id, 60)
        .await
        .unwrap();
    usage_events::mark_reported(store, "call_c").await.unwrap();
    // Still running.
    let mut running = ended_call(&w, "call_d", hour, 1);
    (running.stage, running.ended_at_ms, running.duration_ms) = (STAGE_STARTED, None, None);
    calls::upsert(store, &running).await.unwrap();
    // Ended a minute ago: the webhook's own report is still on its way.
    calls::upsert(
        store,
        &ended_call(&w, "call_e", Duration::from_secs(60), 30_000),
    )
    .await
    .unwrap();
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/billing/meter_events"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"object": "billing.meter_event", "identifier": "x", "created": 1, "livemode": false}),
        ))
        .mount(&w.stripe)
        .await;

    let first = run(&w, &BillingReconcile::default()).await;
    assert_eq!(
        first,
        json!({"enqueued": 2, "already_queued": 0, "recorded": 1, "skipped": 0, "unbillable": 0})
    );
    w.settled("billing", 3).await;
    let events: Vec<(String, String)> = w
        .stripe
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&r.body).unwrap();
            let field = |k: &str| form.iter().find(|(n, _)| n == k).unwrap().1.clone();
            (field("identifier"), field("payload[value]"))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        events,
        [("call_a".into(), "2".into()), ("call_b".into(), "3".into())],
        "one meter event per unreported call"
    );
    assert_eq!(w.stripe.received_requests().await.unwrap().len(), 2);
    for call in ["call_a", "call_b"] {
        let (_, reported) = usage_events::get(store, call).await.unwrap().unwrap();
        assert!(reported.is_some(), "{call} reported");
    }
    assert!(usage_events::get(store, "call_e").await.unwrap().is_none());

    // The second run finds nothing left to report (not merely suppressed duplicates).
    let second = run_scheduled::<BillingReconcile>(&w).await;
    assert_eq!(
        second,
        json!({"enqueued": 0, "already_queued": 0, "recorded": 0, "skipped": 0, "unbillable": 0})
    );
    w.settled("billing", 4).await;
    assert_eq!(w.stripe.received_requests().await.unwrap().len(), 2);
    w.stop().await;
}

#[tokio::test]
async fn a_listing_of_several_pages_takes_a_rate_limit_slot_per_page() {
    let w = world("sqlite").await;
    let base = now() + Span::days(2);
    for (skip, uid, more) in [(0, "bk_page1", true), (1, "bk_page2", false)] {
        Mock::given(matchers::method("GET"))
            .and(matchers::path("/v2/bookings"))
            .and(matchers::query_param("skip", skip.to_string()))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "status": "success",
                "data": [booking(uid, base + Span::hours(skip), "accepted")],
                "pagination": {"hasNextPage": more}
            })))
            .mount(&w.calcom)
            .await;
    }
    let out = run(&w, &CalendarReconcile::default()).await;
    assert_eq!(
        (out["created"].as_u64(), out["failed"].as_u64()),
        (Some(2), Some(0))
    );
    let requests = w.calcom.received_requests().await.unwrap().len();
    assert_eq!(requests, 2, "two pages, two requests");

    // Every request took its own slot of the fleet-wide window.
    let mut conn = w.h.conn();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{{{}:ratelimit}}:*", w.h.prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let slots: usize = redis::cmd("ZCARD")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(slots, requests);
    w.stop().await;
}
