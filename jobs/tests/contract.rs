//! The provider contracts (`switchboard_jobs::contract`) on hand-made requests: what each
//! document and each rule outside the schemas accepts and refuses, and the refusal shapes.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use switchboard_jobs::contract::{Contract, Provider, Refusal, Request};

const NOW: i64 = 1_790_000_000;
const SID: &str = "AC0123456789abcdef0123456789abcdef";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            )
        })
        .collect()
}

fn check(
    provider: Provider,
    method: &str,
    target: &str,
    h: &[(&str, &str)],
    body: &str,
) -> Result<(), Refusal> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Contract::of(provider).check(
        &Request {
            method,
            path,
            query,
            headers: &headers(h),
            body: body.as_bytes(),
        },
        NOW,
    )
}

const CAL: &[(&str, &str)] = &[
    ("authorization", "Bearer cal_test"),
    ("cal-api-version", "2024-08-13"),
    ("content-type", "application/json"),
];

const BOOKING: &str = r#"{"start":"2026-09-29T16:30:00.000Z","eventTypeId":4711,
    "attendee":{"name":"Erika","email":"erika@example.com","timeZone":"Europe/Berlin"},
    "metadata":{"k":"v"}}"#;

#[test]
fn calcom_takes_a_booking_as_the_document_describes_it() {
    check(Provider::Calcom, "POST", "/v2/bookings", CAL, BOOKING).unwrap();
    let renamed = BOOKING.replace("\"timeZone\"", "\"time_zone\"");
    let e = check(Provider::Calcom, "POST", "/v2/bookings", CAL, &renamed).unwrap_err();
    assert_eq!(e.status, 400);
    assert_eq!(e.body["status"], "error");
    assert_eq!(e.body["error"]["code"], "BadRequestException");
    let typed = BOOKING.replace("4711", "\"4711\"");
    assert!(check(Provider::Calcom, "POST", "/v2/bookings", CAL, &typed).is_err());
    let unnamed = BOOKING.replace("eventTypeId", "eventType");
    let e = check(Provider::Calcom, "POST", "/v2/bookings", CAL, &unnamed).unwrap_err();
    assert!(e.reason.contains("eventTypeId is required"), "{e}");
    let local = BOOKING.replace("16:30:00.000Z", "18:30:00.000+02:00");
    let e = check(Provider::Calcom, "POST", "/v2/bookings", CAL, &local).unwrap_err();
    assert!(e.reason.contains("UTC"), "{e}");
}

#[test]
fn calcom_wants_its_key_and_the_declared_version() {
    let e = check(Provider::Calcom, "POST", "/v2/bookings", &CAL[1..], BOOKING).unwrap_err();
    assert_eq!(
        (e.status, e.body["error"]["code"].as_str()),
        (401, Some("UnauthorizedException"))
    );
    let no_version = [CAL[0], CAL[2]];
    let e = check(
        Provider::Calcom,
        "POST",
        "/v2/bookings",
        &no_version,
        BOOKING,
    )
    .unwrap_err();
    assert!(e.reason.contains("cal-api-version"), "{e}");
    // Slots are 2024-09-04; the bookings version is refused there.
    let e = check(
        Provider::Calcom,
        "GET",
        "/v2/slots?start=2026-09-29&end=2026-09-30&eventTypeId=1",
        CAL,
        "",
    )
    .unwrap_err();
    assert!(e.reason.contains("2024-09-04"), "{e}");
}

#[test]
fn calcom_queries_are_declared_and_typed() {
    let list = |q: &str| {
        check(
            Provider::Calcom,
            "GET",
            &format!("/v2/bookings?{q}"),
            CAL,
            "",
        )
    };
    list("eventTypeId=1&afterStart=2026-09-29T00:00:00.000Z&status=upcoming,past&take=100&skip=0")
        .unwrap();
    assert!(list("status=upcoming,sometime").is_err(), "enum");
    assert!(list("take=many").is_err(), "number");
    assert!(list("attendee=erika").is_err(), "undeclared");
    let slots = [
        ("authorization", "Bearer k"),
        ("cal-api-version", "2024-09-04"),
    ];
    let e = check(
        Provider::Calcom,
        "GET",
        "/v2/slots?start=2026-09-29",
        &slots,
        "",
    )
    .unwrap_err();
    assert!(e.reason.contains("end is required"), "{e}");
    let cancel = check(
        Provider::Calcom,
        "POST",
        "/v2/bookings/uid-1/cancel",
        CAL,
        "{}",
    );
    cancel.unwrap();
    let e = check(
        Provider::Calcom,
        "POST",
        "/v2/bookings/uid-1/move",
        CAL,
        "{}",
    )
    .unwrap_err();
    assert_eq!(e.status, 404);
}

fn stripe_headers(key: &str) -> Vec<(&str, &str)> {
    vec![
        ("authorization", "Bearer sk_test_1"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("idempotency-key", key),
    ]
}

fn meter_event(timestamp: i64) -> String {
    format!(
        "event_name=call_minutes&payload%5Bstripe_customer_id%5D=cus_1&payload%5Bvalue%5D=3\
         &identifier=call_1&timestamp={timestamp}"
    )
}

#[test]
fn stripe_meter_events_follow_the_form_schema_and_the_rules() {
    let post = |h: &[(&str, &str)], body: &str| {
        check(
            Provider::Stripe,
            "POST",
            "/v1/billing/meter_events",
            h,
            body,
        )
    };
    post(&stripe_headers("k1"), &meter_event(NOW - 3600)).unwrap();
    let e = post(&stripe_headers(""), &meter_event(NOW)).unwrap_err();
    assert_eq!(e.body["error"]["type"], "invalid_request_error");
    assert_eq!(e.body["error"]["param"], "Idempotency-Key");
    let long = "k".repeat(256);
    assert!(post(&stripe_headers(&long), &meter_event(NOW)).is_err());
    let e = post(&stripe_headers("k"), &meter_event(NOW - 36 * 86_400)).unwrap_err();
    assert_eq!(e.body["error"]["param"], "timestamp");
    assert!(post(&stripe_headers("k"), &meter_event(NOW + 301)).is_err());
    post(&stripe_headers("k"), &meter_event(NOW + 299)).unwrap();
    let e = post(
        &stripe_headers("k"),
        &meter_event(NOW).replace("identifier", "ident"),
    )
    .unwrap_err();
    assert_eq!(e.status, 400, "additionalProperties is false");
    let e = post(&stripe_headers("k"), "payload%5Bvalue%5D=3").unwrap_err();
    assert!(e.reason.contains("event_name"), "{e}");
    let e = post(&stripe_headers("k")[1..], &meter_event(NOW)).unwrap_err();
    assert_eq!(e.status, 401);
    let _: &Value = &e.body["error"]["message"];
}

#[test]
fn twilio_messages_need_the_account_and_the_one_ofs() {
    let basic = format!("Basic {}", base64_of(&format!("{SID}:token")));
    let form = [
        ("authorization", basic.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    let path = format!("/2010-04-01/Accounts/{SID}/Messages.json");
    let post =
        |h: &[(&str, &str)], p: &str, body: &str| check(Provider::Twilio, "POST", p, h, body);
    post(&form, &path, "From=%2B4930555&To=%2B4915112345678&Body=Hi").unwrap();
    let e = post(&form, &path, "To=%2B4915112345678&Body=Hi").unwrap_err();
    assert_eq!(
        (e.body["code"].as_i64(), e.body["status"].as_i64()),
        (Some(21603), Some(400))
    );
    assert_eq!(
        e.body["more_info"],
        "https://www.twilio.com/docs/errors/21603"
    );
    let e = post(&form, &path, "From=%2B4930555&To=%2B4915112345678").unwrap_err();
    assert_eq!(e.body["code"], 21602);
    let e = post(&form, &path, "From=x&Body=Hi").unwrap_err();
    assert_eq!(e.body["code"], 21604, "To is required");
    let other = "/2010-04-01/Accounts/AC11111111111111111111111111111111/Messages.json";
    assert_eq!(
        post(&form, other, "From=x&To=y&Body=z").unwrap_err().status,
        401
    );
    let short = "/2010-04-01/Accounts/ACtest/Messages.json";
    let auth = format!("Basic {}", base64_of("ACtest:token"));
    let e = post(
        &[("authorization", &auth), form[1]],
        short,
        "From=x&To=y&Body=z",
    )
    .unwrap_err();
    assert!(e.reason.contains("AccountSid"), "{e}");
}

fn base64_of(text: &str) -> String {
    use std::fmt::Write;
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = write!(out, "{}", ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The guard on a mock server answers a refused request with the provider's refusal ahead of
/// a mock written to accept it, and lists it (the server would fail the test when it drops;
/// `reset` clears that expectation here, where the refusal is the point).
#[tokio::test]
async fn the_guard_refuses_ahead_of_a_mock_that_accepts() {
    use switchboard_jobs::contract::mocks;
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers};

    let server = MockServer::start().await;
    mocks::guard(&server, Provider::Calcom).await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(201))
        .mount(&server)
        .await;
    let http = reqwest::Client::new();
    let post = |version: &'static str| {
        http.post(format!("{}/v2/bookings", server.uri()))
            .bearer_auth("cal_test")
            .header("cal-api-version", version)
            .header("content-type", "application/json")
            .body(BOOKING)
    };
    assert_eq!(post("2024-08-13").send().await.unwrap().status(), 201);
    let refused = post("2024-09-04").send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BadRequestException");
    let reasons = mocks::refused(&server, Provider::Calcom).await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("must be 2024-08-13"), "{reasons:?}");
    server.reset().await;
}
