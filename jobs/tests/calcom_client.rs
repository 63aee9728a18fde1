//! The Cal.com client against a mock Cal.com API v2 (wiremock): what each call sends
//! (method, path, query, headers, body), how answers are read, and how refusals are classified.
//!
//! Every test has its own mock server, so they run in parallel. Mocks with `.expect(n)` are
//! verified when the server drops; a request no mock matches gets a 404, which the client
//! reports as a permanent failure, so a wrong path, query or header fails the test.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};
use switchboard_jobs::clients::{
    SendError,
    calcom::{Attendee, Booking, BookingQuery, CalcomClient, CalcomSettings, CreateBooking, utc},
};
use switchboard_jobs::contract::{Provider, mocks};
use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

const KEY: &str = "cal_test_s3cret0123456789";

/// A mock Cal.com API; every request its `OpenAPI` document refuses gets the
/// provider's refusal and fails the test when the server drops (`contract::mocks::guard`).
async fn guarded() -> MockServer {
    let server = MockServer::start().await;
    mocks::guard(&server, Provider::Calcom).await;
    server
}

async fn calcom() -> (MockServer, CalcomClient) {
    let server = guarded().await;
    let client = CalcomClient::new(&settings(&server, 5), KEY.into());
    (server, client)
}

fn settings(server: &MockServer, timeout_secs: u64) -> CalcomSettings {
    CalcomSettings {
        // A trailing slash must not double up in the paths.
        base_url: format!("{}/v2/", server.uri()),
        timeout_secs,
    }
}

/// Matches requests with our key, the given `cal-api-version` and our `User-Agent`.
fn authed(method: &str, path: &str, version: &str) -> wiremock::MockBuilder {
    Mock::given(matchers::method(method))
        .and(matchers::path(path))
        .and(matchers::bearer_token(KEY))
        .and(matchers::header("cal-api-version", version))
        .and(matchers::header(
            "user-agent",
            concat!("switchboard/", env!("CARGO_PKG_VERSION")),
        ))
}

fn success(status: u16, data: Value) -> ResponseTemplate {
    let mut body = json!({"status": "success"});
    body["data"] = data;
    ResponseTemplate::new(status).set_body_json(body)
}

fn booking_json(id: i64, start: &str) -> Value {
    json!({
        "id": id,
        "uid": format!("uid-{id}"),
        "title": "Cleaning between Harbor Dental and Erika",
        "status": "accepted",
        "start": start,
        "end": "2026-09-29T17:00:00.000Z",
        "duration": 30,
        "eventTypeId": 4711,
        "hosts": [{"id": 1, "name": "Dr. Berg", "email": "berg@example.com"}],
        "attendees": [{
            "name": "Erika Mustermann",
            "email": "erika@example.com",
            "timeZone": "Europe/Berlin",
            "phoneNumber": "+4915112345678",
            "language": "de",
            "absent": false
        }],
        "metadata": {"switchboard_request": "book:call_1", "attempt": 2, "vip": true},
        "createdAt": "2026-09-20T10:00:00.000Z"
    })
}

/// The JSON body of the only request the server received.
async fn only_body(server: &MockServer) -> Value {
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one request");
    serde_json::from_slice(&requests[0].body).unwrap()
}

#[tokio::test]
async fn free_slots_are_read_as_sorted_utc_starts_within_the_window() {
    let (server, client) = calcom().await;
    let slots = json!({
        "2026-09-30": [{"start": "2026-09-30T09:00:00.000+02:00"}],
        "2026-09-29": [
            {"start": "2026-09-29T18:30:00.000+02:00"},
            {"start": "2026-09-29T17:00:00.000+02:00", "attendeesCount": 1, "bookingUid": "x"},
            // Cal.com's `end` is inclusive; the client's window is not.
            {"start": "2026-09-30T10:00:00.000+02:00"}
        ]
    });
    authed("GET", "/v2/slots", "2024-09-04")
        .and(matchers::query_param("eventTypeId", "4711"))
        // Sent in UTC, as Cal.com requires.
        .and(matchers::query_param("start", "2026-09-29T00:00:00.000Z"))
        .and(matchers::query_param("end", "2026-09-30T08:00:00.000Z"))
        .and(matchers::query_param("timeZone", "Europe/Berlin"))
        .respond_with(success(200, slots))
        .expect(1)
        .mount(&server)
        .await;

    let free = client
        .free_slots(
            4711,
            "2026-09-29T02:00:00+02:00",
            "2026-09-30T08:00:00Z",
            "Europe/Berlin",
        )
        .await
        .unwrap();
    assert_eq!(
        free,
        [
            "2026-09-29T15:00:00.000Z",
            "2026-09-29T16:30:00.000Z",
            "2026-09-30T07:00:00.000Z"
        ]
    );
}

#[tokio::test]
async fn no_free_slots_is_an_empty_list() {
    let (server, client) = calcom().await;
    authed("GET", "/v2/slots", "2024-09-04")
        .respond_with(success(200, json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let free = client
        .free_slots(1, "2026-09-29", "2026-09-30", "")
        .await
        .unwrap();
    assert!(free.is_empty());
    let requests = server.received_requests().await.unwrap();
    let query = requests[0].url.query().unwrap_or_default();
    assert_eq!(
        query, "eventTypeId=1&start=2026-09-29&end=2026-09-30",
        "dates pass as given"
    );
}

#[tokio::test]
async fn create_booking_posts_camel_case_json_and_reads_the_booking() {
    let (server, client) = calcom().await;
    authed("POST", "/v2/bookings", "2024-08-13")
        .and(matchers::header("content-type", "application/json"))
        .respond_with(success(201, booking_json(9001, "2026-09-29T16:30:00.000Z")))
        .expect(1)
        .mount(&server)
        .await;

    let request = CreateBooking {
        start: "2026-09-29T18:30:00+02:00".into(),
        event_type_id: 4711,
        attendee: Attendee {
            name: "Erika Mustermann".into(),
            email: "erika@example.com".into(),
            time_zone: "Europe/Berlin".into(),
            phone_number: Some("+4915112345678".into()),
        },
        metadata: BTreeMap::from([("switchboard_request".into(), "book:call_1".into())]),
    };
    let booking = client.create_booking(&request).await.unwrap();

    assert_eq!(
        only_body(&server).await,
        json!({
            "start": "2026-09-29T16:30:00.000Z",
            "eventTypeId": 4711,
            "attendee": {
                "name": "Erika Mustermann",
                "email": "erika@example.com",
                "timeZone": "Europe/Berlin",
                "phoneNumber": "+4915112345678"
            },
            "metadata": {"switchboard_request": "book:call_1"}
        })
    );
    let expected = Booking {
        id: 9001,
        uid: "uid-9001".into(),
        title: Some("Cleaning between Harbor Dental and Erika".into()),
        start: "2026-09-29T16:30:00.000Z".into(),
        end: "2026-09-29T17:00:00.000Z".into(),
        status: "accepted".into(),
        event_type_id: Some(4711),
        attendees: vec![request.attendee.clone()],
        metadata: BTreeMap::from([
            ("attempt".into(), "2".into()),
            ("switchboard_request".into(), "book:call_1".into()),
            ("vip".into(), "true".into()),
        ]),
        rescheduled_from_uid: None,
    };
    assert_eq!(booking, expected);
}

#[tokio::test]
async fn sparse_bookings_are_read_leniently() {
    let (server, client) = calcom().await;
    let sparse = json!({
        "id": 5, "uid": "u5", "status": "accepted",
        "start": "2026-09-29T18:30:00+02:00", "end": "2026-09-29T19:00:00+02:00",
        "attendees": [{"name": "Erika", "email": null}], "metadata": null
    });
    authed("POST", "/v2/bookings", "2024-08-13")
        // A recurring event type answers with all occurrences.
        .respond_with(success(201, json!([sparse])))
        .mount(&server)
        .await;
    let request = CreateBooking {
        start: "2026-09-29T16:30:00Z".into(),
        event_type_id: 1,
        attendee: Attendee::default(),
        metadata: BTreeMap::new(),
    };
    let booking = client.create_booking(&request).await.unwrap();
    assert_eq!(
        booking.start, "2026-09-29T16:30:00.000Z",
        "booking times are UTC"
    );
    assert_eq!(booking.title, None);
    assert_eq!(booking.event_type_id, None);
    assert!(booking.metadata.is_empty());
    let erika = Attendee {
        name: "Erika".into(),
        ..Attendee::default()
    };
    assert_eq!(booking.attendees, [erika]);
    let body = only_body(&server).await;
    assert_eq!(
        body["attendee"],
        json!({"name": "", "email": "", "timeZone": ""})
    );
}

#[tokio::test]
async fn an_unreadable_answer_to_a_create_is_permanent() {
    let (server, client) = calcom().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(201).set_body_string("<html>ok</html>"))
        .mount(&server)
        .await;
    let request = CreateBooking {
        start: "2026-09-29T16:30:00Z".into(),
        event_type_id: 1,
        attendee: Attendee::default(),
        metadata: BTreeMap::new(),
    };
    match client.create_booking(&request).await {
        Err(SendError::Permanent(reason)) => {
            assert!(reason.contains("check before retrying"), "{reason}");
        }
        other => panic!("a retry could book twice, got {other:?}"),
    }
}

#[tokio::test]
async fn reschedule_posts_the_new_start_and_reason() {
    let (server, client) = calcom().await;
    authed("POST", "/v2/bookings/uid-1/reschedule", "2024-08-13")
        .respond_with(success(201, booking_json(2, "2026-10-01T08:00:00.000Z")))
        .expect(1)
        .mount(&server)
        .await;
    let booking = client
        .reschedule("uid-1", "2026-10-01T10:00:00+02:00", Some("caller asked"))
        .await
        .unwrap();
    assert_eq!((booking.uid.as_str(), booking.id), ("uid-2", 2));
    assert_eq!(booking.start, "2026-10-01T08:00:00.000Z");
    assert_eq!(
        only_body(&server).await,
        json!({"start": "2026-10-01T08:00:00.000Z", "reschedulingReason": "caller asked"})
    );
}

#[tokio::test]
async fn cancel_posts_the_reason_only_when_given() {
    let (server, client) = calcom().await;
    authed("POST", "/v2/bookings/uid%201/cancel", "2024-08-13")
        .respond_with(success(200, booking_json(1, "2026-09-29T16:30:00.000Z")))
        .expect(2)
        .mount(&server)
        .await;
    // The uid is one path segment, whatever it holds.
    client
        .cancel("uid 1", Some("no longer needed"))
        .await
        .unwrap();
    client.cancel("uid 1", None).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    let bodies: Vec<Value> = requests
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(
        bodies,
        [json!({"cancellationReason": "no longer needed"}), json!({})]
    );
    let e = client.cancel(" ", None).await.unwrap_err();
    assert!(matches!(e, SendError::Permanent(_)), "{e:?}");
}

fn page(first_id: i64, n: i64) -> Value {
    (first_id..first_id + n)
        .map(|id| booking_json(id, "2026-09-29T16:30:00.000Z"))
        .collect()
}

#[tokio::test]
async fn list_bookings_sends_the_filters_and_pages_until_a_short_page() {
    let (server, client) = calcom().await;
    let filtered = || {
        authed("GET", "/v2/bookings", "2024-08-13")
            .and(matchers::query_param("eventTypeId", "4711"))
            .and(matchers::query_param(
                "attendeeEmail",
                "erika+1@example.com",
            ))
            // Sent in UTC, whatever offset they were given with.
            .and(matchers::query_param(
                "afterStart",
                "2026-09-29T00:00:00.000Z",
            ))
            .and(matchers::query_param(
                "beforeEnd",
                "2026-10-06T00:00:00.000Z",
            ))
            .and(matchers::query_param("status", "upcoming"))
            .and(matchers::query_param("sortStart", "asc"))
            .and(matchers::query_param("take", "100"))
    };
    filtered()
        .and(matchers::query_param("skip", "0"))
        .respond_with(success(200, page(1, 100)))
        .expect(1)
        .mount(&server)
        .await;
    filtered()
        .and(matchers::query_param("skip", "100"))
        .respond_with(success(200, page(101, 1)))
        .expect(1)
        .mount(&server)
        .await;

    let query = BookingQuery {
        event_type_id: Some(4711),
        attendee_email: Some("erika+1@example.com".into()),
        after_start: Some("2026-09-29T02:00:00+02:00".into()),
        before_end: Some("2026-10-06T00:00:00Z".into()),
        status: Some("upcoming".into()),
    };
    let bookings = client.list_bookings(&query).await.unwrap();
    let ids: Vec<i64> = bookings.iter().map(|b| b.id).collect();
    assert_eq!(ids, (1..=101).collect::<Vec<_>>());
}

#[tokio::test]
async fn list_bookings_follows_has_next_page_and_leaves_out_unset_filters() {
    let (server, client) = calcom().await;
    let answer = |data: Value, more: bool| {
        ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": data,
            "pagination": {"returnedItems": 2, "hasNextPage": more}
        }))
    };
    // Cal.com capped the page at 2: `hasNextPage` says there is more.
    authed("GET", "/v2/bookings", "2024-08-13")
        .and(matchers::query_param("skip", "0"))
        .respond_with(answer(page(1, 2), true))
        .expect(1)
        .mount(&server)
        .await;
    // The second page repeats booking 2 (the list shifted): it is kept once.
    authed("GET", "/v2/bookings", "2024-08-13")
        .and(matchers::query_param("skip", "2"))
        .respond_with(answer(page(2, 2), false))
        .expect(1)
        .mount(&server)
        .await;
    let bookings = client
        .list_bookings(&BookingQuery::default())
        .await
        .unwrap();
    let ids: Vec<i64> = bookings.iter().map(|b| b.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    let requests = server.received_requests().await.unwrap();
    let query = requests[0].url.query().unwrap_or_default();
    assert_eq!(query, "sortStart=asc&take=100&skip=0");
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let (server, client) = calcom().await;
    let limited = ResponseTemplate::new(429)
        .insert_header("Retry-After", "30")
        .set_body_json(json!({
            "status": "error",
            "error": {"code": "ThrottlerException", "message": "Too many requests. Please try again later."}
        }));
    Mock::given(matchers::any())
        .respond_with(limited)
        .mount(&server)
        .await;
    match client.list_bookings(&BookingQuery::default()).await {
        Err(SendError::Transient {
            reason,
            retry_after,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(30)));
            assert!(
                reason.contains("429") && reason.contains("Too many requests"),
                "{reason}"
            );
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limit_without_retry_after_uses_the_reset_header() {
    let (server, client) = calcom().await;
    let limited = ResponseTemplate::new(429)
        .insert_header("X-RateLimit-Limit-Default", "120")
        .insert_header("X-RateLimit-Remaining-Default", "0")
        .insert_header("X-RateLimit-Reset-Default", "60");
    Mock::given(matchers::any())
        .respond_with(limited)
        .mount(&server)
        .await;
    let e = client.cancel("uid-1", None).await.unwrap_err();
    let wait = matches!(e, SendError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(60));
    assert!(wait, "{e:?}");
}

#[tokio::test]
async fn server_error_is_transient() {
    let (server, client) = calcom().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream exploded"))
        .mount(&server)
        .await;
    match client
        .free_slots(1, "2026-09-29", "2026-09-30", "UTC")
        .await
    {
        Err(SendError::Transient {
            reason,
            retry_after: None,
        }) => {
            assert!(
                reason.contains("500") && reason.contains("upstream exploded"),
                "{reason}"
            );
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

#[tokio::test]
async fn refusal_is_permanent_with_the_api_message() {
    let (server, client) = calcom().await;
    let refusal = ResponseTemplate::new(400).set_body_json(json!({
        "status": "error",
        "timestamp": "2026-09-20T10:00:00.000Z",
        "path": "/v2/bookings",
        "error": {
            "code": "BadRequestException",
            "message": "User either already has booking at this time or is not available"
        }
    }));
    Mock::given(matchers::any())
        .respond_with(refusal)
        .mount(&server)
        .await;
    match client
        .reschedule("uid-1", "2026-10-01T08:00:00Z", None)
        .await
    {
        Err(SendError::Permanent(reason)) => {
            assert!(
                reason.contains("User either already has booking at this time"),
                "{reason}"
            );
            assert!(
                reason.contains("400") && reason.contains("BadRequestException"),
                "{reason}"
            );
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn slow_answer_is_transient() {
    let server = guarded().await;
    let client = CalcomClient::new(&settings(&server, 1), KEY.into());
    Mock::given(matchers::any())
        .respond_with(success(200, json!({})).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let result = client
        .free_slots(1, "2026-09-29", "2026-09-30", "UTC")
        .await;
    assert!(
        matches!(&result, Err(SendError::Transient { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout cut it short"
    );
}

#[tokio::test]
async fn api_down_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let settings = CalcomSettings {
        base_url: format!("http://127.0.0.1:{port}/v2"),
        timeout_secs: 5,
    };
    let client = CalcomClient::new(&settings, KEY.into());
    let query = BookingQuery {
        attendee_email: Some("erika@example.com".into()),
        ..BookingQuery::default()
    };
    let result = client.list_bookings(&query).await;
    assert!(
        matches!(&result, Err(SendError::Transient { .. })),
        "{result:?}"
    );
    let reason = result.unwrap_err().to_string();
    assert!(
        !reason.contains("erika"),
        "no URL (it holds emails): {reason}"
    );
}

#[tokio::test]
async fn the_key_never_shows() {
    let (server, client) = calcom().await;
    // An answer that echoes the key back.
    let echo = ResponseTemplate::new(401).set_body_json(json!({
        "status": "error",
        "error": {"code": "UnauthorizedException", "message": format!("Invalid API key {KEY}")}
    }));
    Mock::given(matchers::any())
        .respond_with(echo)
        .mount(&server)
        .await;
    let e = client.cancel("uid-1", None).await.unwrap_err();
    assert!(matches!(&e, SendError::Permanent(_)), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("s3cret"), "{e:?}");
    assert!(!format!("{client:?}").contains("s3cret"));
    let other = client.with_api_key("cal_live_0ther-k3y-0123456789".into());
    assert!(!format!("{other:?}").contains("k3y"));

    // A key that cannot be a header value fails before anything is sent, and quietly.
    let broken = client.with_api_key("cal_test_line\nbreak-s3cret".into());
    let e = broken.cancel("uid-1", None).await.unwrap_err();
    assert!(matches!(&e, SendError::Permanent(_)), "{e:?}");
    assert!(!format!("{e:?}").contains("s3cret"), "{e:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn answers_are_classified_by_what_a_retry_can_do() {
    let (server, client) = calcom().await;
    let listed = json!({"status": "error", "error": {"code": "BadRequestException", "message": ["start: must be a date", "eventTypeId: required"]}});
    let cases = [
        (408, None, Value::Null, true),
        (502, None, Value::Null, true),
        (503, Some("7"), Value::Null, true),
        (504, None, Value::Null, true),
        (
            401,
            None,
            json!({"status": "error", "error": {"code": "UnauthorizedException", "message": "Invalid API key"}}),
            false,
        ),
        (403, None, Value::Null, false),
        (404, None, Value::Null, false),
        (409, None, Value::Null, false),
        (422, None, listed, false),
    ];
    for (status, retry_after, body, transient) in cases {
        server.reset().await;
        mocks::guard(&server, Provider::Calcom).await;
        let mut answer = ResponseTemplate::new(status);
        if body.is_null() {
            answer = answer.set_body_string("x".repeat(10_000));
        } else {
            answer = answer.set_body_json(&body);
        }
        if let Some(wait) = retry_after {
            answer = answer.insert_header("Retry-After", wait);
        }
        Mock::given(matchers::any())
            .respond_with(answer)
            .mount(&server)
            .await;
        let e = client.cancel("uid-1", None).await.unwrap_err();
        match (&e, transient) {
            (
                SendError::Transient {
                    retry_after: wait, ..
                },
                true,
            ) => {
                let expected = retry_after.map(|s| Duration::from_secs(s.parse().unwrap()));
                assert_eq!(*wait, expected, "{status}");
            }
            (SendError::Permanent(_), false) => {}
            _ => panic!("{status}: {e:?}"),
        }
        let reason = e.to_string();
        assert!(reason.contains(&status.to_string()), "{reason}");
        assert!(
            reason.chars().count() < 400,
            "{status}: bodies are cut to 300 characters"
        );
    }
    let e = client.cancel("uid-1", None).await.unwrap_err();
    assert!(
        e.to_string()
            .ends_with(": start: must be a date; eventTypeId: required (BadRequestException)"),
        "{e}"
    );
}

/// The wait a 429 without `Retry-After` asks for through these headers.
async fn wait_for(headers: &[(&str, String)]) -> Option<Duration> {
    let (server, client) = calcom().await;
    let mut limited = ResponseTemplate::new(429);
    for (name, value) in headers {
        limited = limited.insert_header(*name, value.as_str());
    }
    Mock::given(matchers::any())
        .respond_with(limited)
        .mount(&server)
        .await;
    match client.cancel("uid-1", None).await {
        Err(SendError::Transient { retry_after, .. }) => retry_after,
        other => panic!("a 429 is transient, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limit_resets_are_seconds_or_unix_times() {
    // Several named limits: all are blocked when Cal.com refuses; wait for the longest.
    let named = [
        ("X-RateLimit-Reset-Short", "2".to_owned()),
        ("X-RateLimit-Reset-Long", "45".to_owned()),
    ];
    assert_eq!(wait_for(&named).await, Some(Duration::from_secs(45)));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let unix = [("X-RateLimit-Reset", (now + 30).to_string())];
    let wait = wait_for(&unix).await.unwrap();
    assert!(
        (Duration::from_secs(25)..=Duration::from_secs(30)).contains(&wait),
        "{wait:?}"
    );
    let absurd = [("X-RateLimit-Reset-Default", "999999999".to_owned())];
    assert_eq!(
        wait_for(&absurd).await,
        Some(Duration::from_secs(3600)),
        "capped"
    );
    assert_eq!(wait_for(&[]).await, None);
}

#[test]
fn settings_are_checked() {
    let ok = CalcomSettings::default();
    assert_eq!(ok.base_url, "https://api.cal.com/v2");
    assert_eq!(ok.validate(), Ok(()));
    for base_url in [
        "api.cal.com/v2",
        "ftp://api.cal.com",
        "https://x/v2?k=1",
        "",
    ] {
        let bad = CalcomSettings {
            base_url: base_url.into(),
            ..ok.clone()
        };
        assert!(bad.validate().is_err(), "{base_url}");
    }
    let bad = CalcomSettings {
        timeout_secs: 0,
        ..ok.clone()
    };
    assert!(bad.validate().is_err());
    let parsed: CalcomSettings = serde_json::from_str(r#"{"timeout_secs": 3}"#).unwrap();
    assert_eq!(
        parsed.base_url, ok.base_url,
        "missing keys take their defaults"
    );
    let unknown = serde_json::from_str::<CalcomSettings>(r#"{"api_key": "k"}"#);
    assert!(unknown.is_err(), "no key in settings");
}

#[test]
fn times_have_one_utc_form() {
    let cases = [
        ("2026-09-29T18:30:00+02:00", "2026-09-29T16:30:00.000Z"),
        ("2026-09-29T16:30:00Z", "2026-09-29T16:30:00.000Z"),
        ("2026-09-29T16:30:00.5Z", "2026-09-29T16:30:00.500Z"),
        (
            " 2026-09-29T16:30:00.123456789Z ",
            "2026-09-29T16:30:00.123Z",
        ),
        ("2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00.000Z"),
        ("2024-02-28T23:00:00-05:00", "2024-02-29T04:00:00.000Z"),
    ];
    for (given, expected) in cases {
        assert_eq!(utc(given).as_deref(), Some(expected), "{given}");
    }
    for bad in [
        "2026-09-29",
        "2026-02-29T10:00:00Z",
        "2026-09-29T10:00:00",
        "soon",
    ] {
        assert_eq!(utc(bad), None, "{bad}");
    }
}
