//! Calendar and billing jobs against stand-ins of Cal.com and Stripe (wiremock), on `MariaDB`
//! and `SQLite`: booking the nearest slot once even when the first response is lost, the
//! fleet-wide Cal.com rate limit, 429 snoozes, 4xx to the dead set, and meter events that
//! never bill twice.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use serde_json::{Value, json};
use switchboard_jobs::{
    EnqueueOptions,
    billing::ReportUsage,
    calendar::{CalendarBook, CalendarCancel, CalendarReschedule},
    store::{appointments, notifications, usage_events},
};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};
use wiremock::{Mock, Request, Respond, ResponseTemplate, matchers};
use world::{EVENT_TYPE, Options, World};

const QUEUES: &[&str] = &["calendar", "notifications", "billing"];

fn at(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// A preferred start two days ahead (whole minutes) and the Cal.com free slots around it.
fn times() -> (OffsetDateTime, Vec<String>) {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .replace_second(0)
        .unwrap();
    let preferred = now + Span::days(2);
    let slots = vec![
        at(preferred - Span::hours(3)),
        at(preferred + Span::minutes(30)),
        at(preferred + Span::hours(5)),
    ];
    (preferred, slots)
}

fn booking(uid: &str, start: &str, request: &str) -> Value {
    let end = at(OffsetDateTime::parse(start, &Rfc3339).unwrap() + Span::minutes(30));
    json!({
        "id": 480_999, "uid": uid, "title": "Cleaning", "start": start, "end": end, "status": "accepted",
        "eventTypeId": EVENT_TYPE,
        "attendees": [{"name": "Dana Ruiz", "email": "dana.ruiz@example.com", "timeZone": "America/Los_Angeles", "phoneNumber": "+14155550123"}],
        "metadata": {"switchboard_request": request, "retell_call_id": "call_1"}
    })
}

fn book_args(w: &World, preferred: OffsetDateTime) -> CalendarBook {
    CalendarBook {
        call_id: "call_1".into(),
        company_id: w.company_id,
        branch_id: w.branch_id,
        customer_id: None,
        service: Some("Cleaning".into()),
        preferred_start: Some(at(preferred)),
        customer_name: Some("Dana Ruiz".into()),
        customer_email: Some("dana.ruiz@example.com".into()),
        customer_phone: Some("+14155550123".into()),
    }
}

/// The Cal.com stand-in: free slots, bookings listed from what was created, and a create
/// that can answer too slowly (the booking exists, the caller never hears of it).
struct Calcom {
    created: Arc<std::sync::Mutex<Option<Value>>>,
}

struct CreateResponder {
    created: Arc<std::sync::Mutex<Option<Value>>>,
    slow_first: Arc<AtomicBool>,
}

impl Respond for CreateResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let start = body["start"].as_str().unwrap().to_owned();
        let request_id = body["metadata"]["switchboard_request"]
            .as_str()
            .unwrap()
            .to_owned();
        let b = booking("bk_new_1", &start, &request_id);
        *self.created.lock().unwrap() = Some(b.clone());
        let answer =
            ResponseTemplate::new(201).set_body_json(json!({"status": "success", "data": b}));
        if self.slow_first.swap(false, Ordering::SeqCst) {
            // Longer than the client's 1 s timeout: the booking exists, the answer is lost.
            answer.set_delay(std::time::Duration::from_secs(3))
        } else {
            answer
        }
    }
}

struct ListResponder {
    created: Arc<std::sync::Mutex<Option<Value>>>,
}

impl Respond for ListResponder {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let data: Vec<Value> = self.created.lock().unwrap().iter().cloned().collect();
        ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": data}))
    }
}

impl Calcom {
    async fn mount(w: &World, slots: &[String], slow_first_create: bool) -> Self {
        let created = Arc::new(std::sync::Mutex::new(None));
        let mut days = serde_json::Map::new();
        for s in slots {
            let day = s[..10].to_owned();
            days.entry(day)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .unwrap()
                .push(json!({"start": s}));
        }
        Mock::given(matchers::method("GET"))
            .and(matchers::path("/v2/slots"))
            .and(matchers::header("cal-api-version", "2024-09-04"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"status": "success", "data": days})),
            )
            .mount(&w.calcom)
            .await;
        Mock::given(matchers::method("GET"))
            .and(matchers::path("/v2/bookings"))
            .respond_with(ListResponder {
                created: Arc::clone(&created),
            })
            .mount(&w.calcom)
            .await;
        Mock::given(matchers::method("POST"))
            .and(matchers::path("/v2/bookings"))
            .and(matchers::header(
                "authorization",
                format!("Bearer {}", world::CALCOM_KEY).as_str(),
            ))
            .respond_with(CreateResponder {
                created: Arc::clone(&created),
                slow_first: Arc::new(AtomicBool::new(slow_first_create)),
            })
            .mount(&w.calcom)
            .await;
        Self { created }
    }
}

/// A booked appointment `uid` of the world's business.
fn booked(w: &World, uid: &str) -> appointments::Appointment {
    appointments::Appointment {
        uid: uid.into(),
        company_id: w.company_id,
        branch_id: w.branch_id,
        status: "booked".into(),
        start_at: "2026-12-01T10:00:00Z".into(),
        end_at: "2026-12-01T10:30:00Z".into(),
        attendee_email: Some("dana.ruiz@example.com".into()),
        ..Default::default()
    }
}

async fn creates(w: &World) -> usize {
    w.calcom
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count()
}

on_both_databases!(
    booking_takes_the_nearest_slot_and_confirms_once,
    a_lost_create_response_does_not_book_twice,
    a_full_fleet_wide_limit_and_a_429_snooze_without_failing,
    cal_com_4xx_goes_to_the_dead_set_with_its_message,
    a_lost_reschedule_response_does_not_move_twice,
    usage_is_reported_once_with_a_stable_identifier,
);

async fn booking_takes_the_nearest_slot_and_confirms_once(dialect: &str) {
    let w = World::with(
        dialect,
        Options {
            queues: QUEUES,
            inline: true,
            ..Options::default()
        },
    )
    .await;
    let (preferred, slots) = times();
    let cal = Calcom::mount(&w, &slots, false).await;
    w.h.queues
        .enqueue(&book_args(&w, preferred), EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("calendar", 1).await;
    w.settled("notifications", 2).await;

    assert_eq!(creates(&w).await, 1);
    let sent = cal.created.lock().unwrap().clone().unwrap();
    let instant = |s: &str| OffsetDateTime::parse(s, &Rfc3339).unwrap();
    assert_eq!(
        instant(sent["start"].as_str().unwrap()),
        instant(&slots[1]),
        "the slot nearest the preferred start"
    );
    let stored = appointments::get(&w.store, "bk_new_1")
        .await
        .unwrap()
        .expect("appointment row");
    assert_eq!(
        (stored.status.as_str(), stored.call_id.as_deref()),
        ("booked", Some("call_1"))
    );
    assert_eq!(instant(&stored.start_at), instant(&slots[1]));
    assert_eq!(w.sink.messages().len(), 1, "one confirmation email");
    assert_eq!(
        w.sms.received_requests().await.unwrap().len(),
        1,
        "one confirmation SMS"
    );
    let rows = notifications::list(&w.store, "appointment:bk_new_1:confirmation")
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    w.stop().await;
}

async fn a_lost_create_response_does_not_book_twice(dialect: &str) {
    let w = World::with(
        dialect,
        Options {
            queues: QUEUES,
            inline: true,
            ..Options::default()
        },
    )
    .await;
    let (preferred, slots) = times();
    Calcom::mount(&w, &slots, true).await;
    w.h.queues
        .enqueue(&book_args(&w, preferred), EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("calendar", 1).await;
    let s = w.h.stats("calendar").await;
    assert_eq!(
        (s.processed, s.failed, s.dead),
        (1, 1, 0),
        "the first attempt timed out, the retry found the booking"
    );
    assert_eq!(creates(&w).await, 1, "no second booking");
    assert!(
        appointments::get(&w.store, "bk_new_1")
            .await
            .unwrap()
            .is_some()
    );
    w.stop().await;
}

#[allow(clippy::too_many_lines)] // two worlds: the limit, then a 429
async fn a_full_fleet_wide_limit_and_a_429_snooze_without_failing(dialect: &str) {
    // Three worker loops share a limit of 4 Cal.com requests per minute.
    let w = World::with(
        dialect,
        Options {
            queues: QUEUES,
            calcom_per_minute: 4,
            workers: 3,
            ..Options::default()
        },
    )
    .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path_regex("^/v2/bookings/[^/]+/cancel$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": {}})),
        )
        .mount(&w.calcom)
        .await;
    for i in 0..10 {
        let uid = format!("bk_{i}");
        let a = booked(&w, &uid);
        appointments::upsert(&w.store, &a).await.unwrap();
        w.h.queues
            .enqueue(
                &CalendarCancel { uid, reason: None },
                EnqueueOptions::default(),
            )
            .await
            .unwrap();
    }
    let queues = w.h.queues.clone();
    w.h.wait_for(
        "4 cancelled and 6 waiting for the limit",
        std::time::Duration::from_secs(20),
        || {
            let queues = queues.clone();
            async move {
                let s = queues.stats("calendar").await.unwrap();
                s.processed == 4 && s.delayed == 6 && s.running == 0 && s.pending == 0
            }
        },
    )
    .await;
    assert_eq!(
        w.calcom.received_requests().await.unwrap().len(),
        4,
        "the stand-in saw exactly the limit"
    );
    let s = w.h.stats("calendar").await;
    assert_eq!(
        (s.failed, s.dead),
        (0, 0),
        "a full limit snoozes, it does not fail"
    );
    w.stop().await;

    // A 429 with Retry-After snoozes for that long, without counting a failed attempt.
    let w = World::with(
        dialect,
        Options {
            queues: QUEUES,
            ..Options::default()
        },
    )
    .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path_regex("^/v2/bookings/[^/]+/cancel$"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path_regex("^/v2/bookings/[^/]+/cancel$"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": {}})),
        )
        .mount(&w.calcom)
        .await;
    let a = booked(&w, "bk_429");
    appointments::upsert(&w.store, &a).await.unwrap();
    let started = std::time::Instant::now();
    w.h.queues
        .enqueue(
            &CalendarCancel {
                uid: "bk_429".into(),
                reason: None,
            },
            EnqueueOptions::default(),
        )
        .await
        .unwrap();
    w.settled("calendar", 1).await;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "waited for Retry-After"
    );
    let s = w.h.stats("calendar").await;
    assert_eq!((s.processed, s.failed), (1, 0));
    assert_eq!(
        appointments::get(&w.store, "bk_429")
            .await
            .unwrap()
            .unwrap()
            .status,
        "cancelled"
    );
    w.stop().await;
}

async fn cal_com_4xx_goes_to_the_dead_set_with_its_message(dialect: &str) {
    let w = World::with(
        dialect,
        Options {
            queues: QUEUES,
            inline: true,
            ..Options::default()
        },
    )
    .await;
    let (preferred, slots) = times();
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/bookings"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": []})),
        )
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/slots"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": {slots[0][..10].to_owned(): [{"start": slots[0]}]}})))
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"status": "error", "error": {"code": "BadRequestException", "message": "Attendee email is invalid"}})))
        .mount(&w.calcom)
        .await;
    w.h.queues
        .enqueue(&book_args(&w, preferred), EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("calendar", 1).await;
    let dead = w.h.queues.dead_list("calendar", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "dead at once");
    assert!(
        dead[0]
            .error
            .as_deref()
            .unwrap()
            .contains("Attendee email is invalid"),
        "{:?}",
        dead[0].error
    );
    w.stop().await;
}

async fn usage_is_reported_once_with_a_stable_identifier(dialect: &str) {
    let w = World::with(
        dialect,
        Options {
            queues: QUEUES,
            inline: true,
            ..Options::default()
        },
    )
    .await;
    usage_events::record(&w.store, "call_7", w.company_id, 142)
        .await
        .unwrap();
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/billing/meter_events"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"error": {"type": "api_error", "message": "boom"}})),
        )
        .up_to_n_times(1)
        .mount(&w.stripe)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/billing/meter_events"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"object": "billing.meter_event", "identifier": "call_7", "created": 1, "livemode": false})))
        .mount(&w.stripe)
        .await;
    let job = ReportUsage {
        call_id: "call_7".into(),
        company_id: w.company_id,
    };
    w.h.queues
        .enqueue(&job, EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("billing", 1).await;
    let requests = w.stripe.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "a 500, then the retry");
    let forms: Vec<Vec<(String, String)>> = requests
        .iter()
        .map(|r| serde_urlencoded::from_bytes(&r.body).unwrap())
        .collect();
    let field = |f: &Vec<(String, String)>, k: &str| {
        f.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    for f in &forms {
        assert_eq!(field(f, "identifier"), "call_7");
        assert_eq!(
            field(f, "payload[value]"),
            "3",
            "142 s are 3 started minutes"
        );
        assert_eq!(
            field(f, "payload[stripe_customer_id]"),
            world::STRIPE_CUSTOMER
        );
    }
    assert_eq!(
        field(&forms[0], "timestamp"),
        field(&forms[1], "timestamp"),
        "the same parameters on the retry"
    );
    let keys: Vec<_> = requests
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(keys[0], keys[1], "the same Idempotency-Key on the retry");
    assert!(
        usage_events::get(&w.store, "call_7")
            .await
            .unwrap()
            .unwrap()
            .1
            .is_some(),
        "reported"
    );

    // Running the job again bills nothing.
    w.h.queues
        .enqueue(&job, EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("billing", 2).await;
    assert_eq!(w.stripe.received_requests().await.unwrap().len(), 2);
    w.stop().await;
}

/// The reschedule stand-in: moves the booking (a new uid at the new start) and answers too
/// slowly the first time, as a lost response would look.
struct RescheduleResponder {
    moved: Arc<std::sync::Mutex<Option<Value>>>,
    slow_first: Arc<AtomicBool>,
}

impl Respond for RescheduleResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let b = booking("bk_moved", body["start"].as_str().unwrap(), "");
        *self.moved.lock().unwrap() = Some(b.clone());
        let answer =
            ResponseTemplate::new(201).set_body_json(json!({"status": "success", "data": b}));
        if self.slow_first.swap(false, Ordering::SeqCst) {
            answer.set_delay(std::time::Duration::from_secs(3))
        } else {
            answer
        }
    }
}

async fn a_lost_reschedule_response_does_not_move_twice(dialect: &str) {
    let w = World::with(
        dialect,
        Options {
            queues: QUEUES,
            inline: true,
            ..Options::default()
        },
    )
    .await;
    let moved = Arc::new(std::sync::Mutex::new(None));
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v2/bookings/bk_old/reschedule"))
        .respond_with(RescheduleResponder {
            moved: Arc::clone(&moved),
            slow_first: Arc::new(AtomicBool::new(true)),
        })
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/bookings"))
        .respond_with(ListResponder {
            created: Arc::clone(&moved),
        })
        .mount(&w.calcom)
        .await;
    let old = booked(&w, "bk_old");
    appointments::upsert(&w.store, &old).await.unwrap();
    let job = CalendarReschedule {
        uid: "bk_old".into(),
        start: "2026-12-02T15:00:00Z".into(),
        reason: Some("caller asked".into()),
    };
    w.h.queues
        .enqueue(&job, EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("calendar", 1).await;
    let posts = w
        .calcom
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(
        posts, 1,
        "the retry found the moved booking instead of moving it again"
    );
    assert_eq!(
        w.h.stats("calendar").await.failed,
        1,
        "the first attempt timed out"
    );
    assert_eq!(
        appointments::get(&w.store, "bk_old")
            .await
            .unwrap()
            .unwrap()
            .status,
        "rescheduled"
    );
    let new = appointments::get(&w.store, "bk_moved")
        .await
        .unwrap()
        .expect("the moved booking is stored");
    assert_eq!(
        (new.status.as_str(), new.rescheduled_from_uid.as_deref()),
        ("booked", Some("bk_old"))
    );
    // Once more: nothing left to do, no request.
    w.h.queues
        .enqueue(&job, EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("calendar", 2).await;
    assert_eq!(
        w.calcom
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == "POST")
            .count(),
        1
    );
    w.stop().await;
}
