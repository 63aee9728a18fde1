//! The development stand-ins (`/dev/`, `src/dev/`) driven by the real clients over HTTP on
//! port 0: Cal.com bookings created, listed, rescheduled and cancelled the Cal.com way, slots
//! in the requested time zone, Stripe meter events as Stripe records them, and requests the
//! providers' documents refuse refused in the providers' shapes. No Redis, no database.

use serde_json::{Value, json};
use switchboard::dev;
use switchboard_jobs::clients::{
    SendError,
    calcom::{Attendee, BookingQuery, CalcomClient, CalcomSettings, CreateBooking},
    stripe::{MeterEvent, StripeClient, StripeSettings},
};
use tokio::net::TcpListener;

/// The stand-ins on a port of their own; their base URL.
async fn stand_ins() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/dev", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, dev::router(None)).await });
    base
}

fn calcom(base: &str) -> CalcomClient {
    let settings = CalcomSettings {
        base_url: format!("{base}/calcom/v2"),
        timeout_secs: 5,
    };
    CalcomClient::new(&settings, "cal_dev".into())
}

fn booking(start: &str, email: &str) -> CreateBooking {
    CreateBooking {
        start: start.into(),
        event_type_id: 7,
        attendee: Attendee {
            name: "Erika".into(),
            email: email.into(),
            time_zone: "Europe/Berlin".into(),
            phone_number: None,
        },
        metadata: [("call".to_owned(), "c1".to_owned())].into(),
    }
}

#[tokio::test]
async fn bookings_are_rescheduled_and_cancelled_the_calcom_way() {
    let base = stand_ins().await;
    let cal = calcom(&base);
    let first = cal
        .create_booking(&booking("2030-03-04T10:00:00+01:00", "erika@example.com"))
        .await
        .unwrap();
    assert_eq!(first.start, "2030-03-04T09:00:00.000Z");
    let moved = cal
        .reschedule(&first.uid, "2030-03-05T09:00:00Z", Some("asked"))
        .await
        .unwrap();
    assert_ne!(moved.uid, first.uid, "a new booking");
    assert_eq!(moved.status, "accepted");

    let state: Value = reqwest::get(format!("{base}/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bookings = state["bookings"].as_array().unwrap();
    assert_eq!(bookings[0]["status"], "cancelled");
    assert_eq!(bookings[0]["rescheduledToUid"], moved.uid.as_str());
    assert_eq!(bookings[1]["rescheduledFromUid"], first.uid.as_str());
    assert_eq!(bookings[1]["reschedulingReason"], "asked");

    let e = cal.cancel(&first.uid, None).await.unwrap_err();
    assert!(
        matches!(&e, SendError::Permanent(r) if r.contains("400") && r.contains("already been cancelled")),
        "{e}"
    );
    let e = cal.cancel("no_such_booking", None).await.unwrap_err();
    assert!(
        matches!(&e, SendError::Permanent(r) if r.contains("404")),
        "{e}"
    );
    cal.cancel(&moved.uid, Some("ill")).await.unwrap();
}

#[tokio::test]
async fn the_listing_filters_and_pages() {
    let base = stand_ins().await;
    let cal = calcom(&base);
    for day in 1..=5 {
        let start = format!("2030-04-0{day}T09:00:00Z");
        cal.create_booking(&booking(&start, "p@example.com"))
            .await
            .unwrap();
    }
    let query = BookingQuery {
        event_type_id: Some(7),
        after_start: Some("2030-04-02T00:00:00Z".into()),
        before_end: Some("2030-04-04T23:00:00Z".into()),
        ..BookingQuery::default()
    };
    let found = cal.list_bookings(&query).await.unwrap();
    let starts: Vec<&str> = found.iter().map(|b| b.start.as_str()).collect();
    assert_eq!(
        starts,
        [
            "2030-04-02T09:00:00.000Z",
            "2030-04-03T09:00:00.000Z",
            "2030-04-04T09:00:00.000Z"
        ]
    );
    let other = BookingQuery {
        event_type_id: Some(8),
        ..BookingQuery::default()
    };
    assert!(cal.list_bookings(&other).await.unwrap().is_empty());

    let page: Value = get(&base, "/calcom/v2/bookings?take=2&skip=2", "2024-08-13")
        .await
        .1;
    assert_eq!(page["data"].as_array().unwrap().len(), 2);
    assert_eq!(page["data"][0]["start"], "2030-04-03T09:00:00.000Z");
    let p = &page["pagination"];
    assert_eq!(
        (p["totalItems"].as_u64(), p["hasNextPage"].as_bool()),
        (Some(5), Some(true))
    );
    assert_eq!(
        (p["currentPage"].as_u64(), p["totalPages"].as_u64()),
        (Some(2), Some(3))
    );
    for field in [
        "id",
        "uid",
        "title",
        "hosts",
        "duration",
        "eventType",
        "attendees",
        "bookingFieldsResponses",
    ] {
        assert!(!page["data"][0][field].is_null(), "{field}");
    }
}

async fn get(base: &str, path: &str, version: &str) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth("cal_dev")
        .header("cal-api-version", version)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

#[tokio::test]
async fn slots_come_in_the_requested_time_zone() {
    let base = stand_ins().await;
    // Both sides of the DST change: Berlin is two hours ahead in summer, one in winter.
    for (day, next, first_local, first_utc, count) in [
        (
            "2030-07-01",
            "2030-07-02",
            "2030-07-01T11:00:00.000+02:00",
            "2030-07-01T09:00:00.000Z",
            Some(8),
        ),
        (
            "2030-01-07",
            "2030-01-08",
            "2030-01-07T10:00:00.000+01:00",
            "2030-01-07T09:00:00.000Z",
            None,
        ),
    ] {
        let path =
            format!("/calcom/v2/slots?eventTypeId=7&start={day}&end={day}&timeZone=Europe/Berlin");
        let (status, body) = get(&base, &path, "2024-09-04").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"][day][0]["start"], first_local);
        let free = calcom(&base)
            .free_slots(
                7,
                &format!("{day}T00:00:00Z"),
                &format!("{next}T00:00:00Z"),
                "Europe/Berlin",
            )
            .await
            .unwrap();
        assert_eq!(free.first().map(String::as_str), Some(first_utc));
        if let Some(n) = count {
            assert_eq!(free.len(), n);
        }
    }
}

#[tokio::test]
async fn requests_the_documents_refuse_are_refused_as_the_providers_do() {
    let base = stand_ins().await;
    let (status, body) = get(
        &base,
        "/calcom/v2/slots?start=2030-07-01&end=2030-07-02",
        "2024-08-13",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2024-09-04"),
        "{body}"
    );
    let answer = reqwest::Client::new()
        .post(format!("{base}/stripe/v1/billing/meter_events"))
        .bearer_auth("sk_dev")
        .form(&[("event_name", "call_minutes"), ("payload[value]", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["param"], "Idempotency-Key");
    let answer = reqwest::Client::new()
        .post(format!(
            "{base}/sms/2010-04-01/Accounts/{}/Messages.json",
            dev::SMS_ACCOUNT_SID
        ))
        .basic_auth(dev::SMS_ACCOUNT_SID, Some("dev"))
        .form(&[("To", "+4915112345678"), ("Body", "hi")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body,
        json!({"code": 21603, "message": "A 'From' phone number is required.",
        "more_info": "https://www.twilio.com/docs/errors/21603", "status": 400})
    );
}

#[tokio::test]
async fn meter_events_are_recorded_as_stripe_records_them() {
    let base = stand_ins().await;
    let settings = StripeSettings {
        base_url: format!("{base}/stripe"),
        ..StripeSettings::default()
    };
    let stripe = StripeClient::new(&settings, "sk_dev".into());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let event = MeterEvent {
        stripe_customer_id: "cus_1".into(),
        value: 4,
        identifier: "call_1".into(),
        timestamp: now - 60,
        call_ended_at: None,
        idempotency_key: "switchboard-usage-call_1".into(),
    };
    let receipt = stripe.report_meter_event(&event).await.unwrap();
    assert!(
        receipt.created.is_some() && receipt.livemode == Some(false),
        "{receipt:?}"
    );
    let again = stripe.report_meter_event(&event).await.unwrap();
    assert_eq!(again.created, None, "Stripe already had it");
    let old = MeterEvent {
        timestamp: now - 40 * 86_400,
        identifier: "call_2".into(),
        ..event
    };
    let e = stripe.report_meter_event(&old).await.unwrap_err();
    assert!(
        matches!(&e, SendError::Permanent(r) if r.contains("35 calendar days")),
        "{e}"
    );

    let state: Value = reqwest::get(format!("{base}/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recorded = &state["meter_events"][0];
    assert_eq!(
        recorded["payload"],
        json!({"stripe_customer_id": "cus_1", "value": "4"})
    );
    for field in [
        "created",
        "event_name",
        "identifier",
        "livemode",
        "object",
        "timestamp",
    ] {
        assert!(!recorded[field].is_null(), "{field}");
    }
}
