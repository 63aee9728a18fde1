//! The Stripe usage client against a mock Stripe API (wiremock): what goes over the wire, and
//! how each kind of answer is classified. Every test has its own mock server, so they run in
//! parallel; nothing sleeps.

use std::time::Duration;

use switchboard_jobs::clients::{
    SendError,
    stripe::{MeterEvent, MeterEventReceipt, StripeClient, StripeSettings, usage_idempotency_key},
};
use switchboard_jobs::contract::{Provider, mocks};
use wiremock::{Mock, MockServer, Request, ResponseTemplate, matchers};

const PATH: &str = "/v1/billing/meter_events";
const KEY: &str = "sk_test_51switchboardSECRET";

/// A mock Stripe API; every request its `OpenAPI` document refuses gets the
/// provider's refusal and fails the test when the server drops (`contract::mocks::guard`).
async fn guarded() -> MockServer {
    let server = MockServer::start().await;
    mocks::guard(&server, Provider::Stripe).await;
    server
}

fn settings(server: &MockServer) -> StripeSettings {
    StripeSettings {
        base_url: server.uri(),
        meter_event_name: "call_minutes".into(),
        timeout_secs: 5,
    }
}

fn client(server: &MockServer) -> StripeClient {
    StripeClient::new(&settings(server), KEY.into())
}

fn event() -> MeterEvent {
    MeterEvent {
        stripe_customer_id: "cus_Q1x2y3".into(),
        value: 7,
        identifier: "call_8f2a".into(),
        timestamp: an_hour_ago(),
        call_ended_at: None,
        idempotency_key: usage_idempotency_key("call_8f2a"),
    }
}

/// Stripe takes events from the past 35 days only, so the event is recent.
fn an_hour_ago() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_secs() as i64 - 3600
}

/// A `billing.meter_event` as Stripe returns it.
fn recorded() -> serde_json::Value {
    serde_json::json!({
        "object": "billing.meter_event",
        "created": 1_767_225_612,
        "event_name": "call_minutes",
        "identifier": "call_8f2a",
        "livemode": false,
        "payload": {"stripe_customer_id": "cus_Q1x2y3", "value": "7"},
        "timestamp": 1_767_225_600
    })
}

fn stripe_error(kind: &str, code: Option<&str>, message: &str) -> serde_json::Value {
    let mut error = serde_json::json!({"type": kind, "message": message});
    if let Some(code) = code {
        error["code"] = code.into();
    }
    serde_json::json!({ "error": error })
}

/// A mock server that answers every meter event with `answer`.
async fn stripe_answering(answer: ResponseTemplate) -> MockServer {
    let server = guarded().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(PATH))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

fn form(request: &Request) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(&request.body).expect("a form body")
}

fn header<'a>(request: &'a Request, name: &str) -> &'a str {
    request.headers.get(name).unwrap().to_str().unwrap()
}

#[tokio::test]
async fn an_event_goes_out_as_stripe_documents_it() {
    let server = guarded().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(PATH))
        .and(matchers::header(
            "authorization",
            format!("Bearer {KEY}").as_str(),
        ))
        .and(matchers::header(
            "idempotency-key",
            "switchboard-usage-call_8f2a",
        ))
        .and(matchers::header(
            "content-type",
            "application/x-www-form-urlencoded",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(recorded()))
        .expect(1)
        .mount(&server)
        .await;

    client(&server).report_meter_event(&event()).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    };
    assert_eq!(
        form(&requests[0]),
        pairs(&[
            ("event_name", "call_minutes"),
            ("payload[stripe_customer_id]", "cus_Q1x2y3"),
            ("payload[value]", "7"),
            ("identifier", "call_8f2a"),
            ("timestamp", &event().timestamp.to_string()),
        ])
    );
}

#[tokio::test]
async fn a_recorded_event_returns_stripes_receipt() {
    let server = stripe_answering(ResponseTemplate::new(200).set_body_json(recorded())).await;
    let receipt = client(&server).report_meter_event(&event()).await.unwrap();
    assert_eq!(
        receipt,
        MeterEventReceipt {
            identifier: "call_8f2a".into(),
            created: Some(1_767_225_612),
            livemode: Some(false),
        }
    );
}

#[tokio::test]
async fn a_server_error_is_transient_and_every_attempt_is_the_same_event() {
    let server = guarded().await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path(PATH))
        .respond_with(ResponseTemplate::new(500).set_body_json(stripe_error(
            "api_error",
            None,
            "An unknown error occurred",
        )))
        .expect(2)
        .mount(&server)
        .await;
    let client = client(&server);

    for _ in 0..2 {
        let e = client.report_meter_event(&event()).await.unwrap_err();
        assert!(
            matches!(&e, SendError::Transient { reason, retry_after: None }
                if reason.contains("500") && reason.contains("An unknown error occurred")),
            "{e:?}"
        );
    }

    let requests = server.received_requests().await.unwrap();
    let (first, second) = (&requests[0], &requests[1]);
    assert_eq!(form(first), form(second));
    assert!(
        form(first).contains(&("identifier".into(), "call_8f2a".into())),
        "{:?}",
        form(first)
    );
    assert_eq!(
        header(first, "idempotency-key"),
        header(second, "idempotency-key")
    );
    assert_eq!(
        header(first, "user-agent"),
        concat!("switchboard/", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn a_rate_limit_is_transient_with_stripes_wait() {
    let server = stripe_answering(
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "2")
            .set_body_json(stripe_error(
                "invalid_request_error",
                Some("rate_limit"),
                "Too many requests hit the API too quickly.",
            )),
    )
    .await;
    let e = client(&server)
        .report_meter_event(&event())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SendError::Transient { retry_after: Some(d), .. } if *d == Duration::from_secs(2)),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_unknown_customer_is_permanent_with_stripes_message() {
    let message = "No such customer: 'cus_Q1x2y3'";
    let server = stripe_answering(ResponseTemplate::new(400).set_body_json(stripe_error(
        "invalid_request_error",
        Some("resource_missing"),
        message,
    )))
    .await;
    let e = client(&server)
        .report_meter_event(&event())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SendError::Permanent(reason) if reason.contains(message)),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_identifier_stripe_already_has_counts_as_reported() {
    // Stripe's refusal of a second event with the same identifier (under a new key).
    let server = stripe_answering(ResponseTemplate::new(400).set_body_json(stripe_error(
        "invalid_request_error",
        None,
        "An event already exists with identifier call_8f2a.",
    )))
    .await;
    let receipt = client(&server).report_meter_event(&event()).await.unwrap();
    assert_eq!(
        receipt,
        MeterEventReceipt {
            identifier: "call_8f2a".into(),
            created: None,
            livemode: None,
        }
    );
}

#[tokio::test]
async fn a_key_in_use_by_a_running_request_is_transient() {
    let server = stripe_answering(ResponseTemplate::new(409).set_body_json(stripe_error(
        "idempotency_error",
        Some("idempotency_key_in_use"),
        "There is currently another in-progress request using this Idempotent Key.",
    )))
    .await;
    let e = client(&server)
        .report_meter_event(&event())
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Transient { .. }), "{e:?}");
}

#[tokio::test]
async fn no_connection_is_transient() {
    // A port nothing listens on (it was free a moment ago).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = StripeSettings {
        base_url: format!("http://127.0.0.1:{port}"),
        ..StripeSettings::default()
    };
    let e = StripeClient::new(&closed, KEY.into())
        .report_meter_event(&event())
        .await
        .unwrap_err();
    assert!(matches!(e, SendError::Transient { .. }), "{e:?}");
}

#[tokio::test]
async fn a_late_answer_is_transient() {
    // Later than the timeout (1 s, the least there is); the client gives up, nothing sleeps.
    let server = stripe_answering(
        ResponseTemplate::new(200)
            .set_body_json(recorded())
            .set_delay(Duration::from_secs(30)),
    )
    .await;
    let impatient = StripeSettings {
        timeout_secs: 1,
        ..settings(&server)
    };
    let e = StripeClient::new(&impatient, KEY.into())
        .report_meter_event(&event())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, SendError::Transient { reason, .. } if reason.contains("timed out")),
        "{e:?}"
    );
}

/// How `answer` is classified, as `Ok(None)` for a receipt without details, `Ok(Some(_))` for
/// a full one, or the error.
async fn outcome(answer: ResponseTemplate) -> Result<Option<i64>, SendError> {
    let server = stripe_answering(answer).await;
    let receipt = client(&server).report_meter_event(&event()).await?;
    Ok(receipt.created)
}

#[tokio::test]
async fn answers_are_classified_by_what_a_retry_can_do() {
    let wait = Some(Duration::from_secs(3));
    let plain = |status: u16| ResponseTemplate::new(status).set_body_string("nope");
    for status in [408, 409, 429, 500, 502, 503, 504] {
        let e = outcome(plain(status).insert_header("Retry-After", "3")).await;
        assert!(
            matches!(&e, Err(SendError::Transient { retry_after, .. }) if *retry_after == wait),
            "{status}: {e:?}"
        );
    }
    for status in [400, 401, 402, 403, 404] {
        let e = outcome(plain(status)).await;
        assert!(
            matches!(&e, Err(SendError::Permanent(r)) if r.contains("nope")),
            "{status}: {e:?}"
        );
    }
    // Busy, whatever the status: Stripe's own libraries retry these.
    for code in ["lock_timeout", "idempotency_key_in_use"] {
        let body = stripe_error("invalid_request_error", Some(code), "busy");
        let e = outcome(ResponseTemplate::new(400).set_body_json(body)).await;
        assert!(
            matches!(e, Err(SendError::Transient { .. })),
            "{code}: {e:?}"
        );
    }
    // Stripe's `Stripe-Should-Retry` advice wins over the guess from a 4xx status.
    let advised =
        |status: u16, retry: &str| plain(status).insert_header("Stripe-Should-Retry", retry);
    let e = outcome(advised(409, "false")).await;
    assert!(matches!(e, Err(SendError::Permanent(_))), "{e:?}");
    let e = outcome(advised(400, "true")).await;
    assert!(matches!(e, Err(SendError::Transient { .. })), "{e:?}");
    // Long bodies are cut.
    let e = outcome(ResponseTemplate::new(400).set_body_string("x".repeat(10_000))).await;
    assert!(e.unwrap_err().to_string().len() < 300);
}

#[tokio::test]
async fn only_an_identifier_refusal_counts_as_reported() {
    let refused = |code: Option<&str>, message: &str| {
        ResponseTemplate::new(400).set_body_json(stripe_error(
            "invalid_request_error",
            code,
            message,
        ))
    };
    let e = outcome(refused(Some("duplicate_meter_event"), "Duplicate event.")).await;
    assert!(matches!(e, Ok(None)), "{e:?}");
    for message in [
        "No such customer: 'cus_x'",
        "Timestamp must be within the past 35 days.",
    ] {
        let e = outcome(refused(None, message)).await;
        assert!(
            matches!(e, Err(SendError::Permanent(_))),
            "{message}: {e:?}"
        );
    }
    // The same words on a server error are not Stripe's duplicate refusal.
    let body = stripe_error(
        "api_error",
        None,
        "An event already exists with identifier x.",
    );
    let e = outcome(ResponseTemplate::new(500).set_body_json(body)).await;
    assert!(matches!(e, Err(SendError::Transient { .. })), "{e:?}");
    // A success whose body does not parse still means Stripe has the event.
    let e = outcome(ResponseTemplate::new(200).set_body_string("{}")).await;
    assert!(matches!(e, Ok(None)), "{e:?}");
}

#[tokio::test]
async fn the_secret_key_is_never_shown() {
    // Stripe may quote the key back; the error must not.
    let server = stripe_answering(ResponseTemplate::new(401).set_body_json(stripe_error(
        "invalid_request_error",
        None,
        &format!("Invalid API Key provided: {KEY}"),
    )))
    .await;
    let client = client(&server);
    let e = client.report_meter_event(&event()).await.unwrap_err();
    assert!(matches!(&e, SendError::Permanent(_)), "{e:?}");
    for shown in [e.to_string(), format!("{e:?}"), format!("{client:?}")] {
        assert!(!shown.contains(KEY), "{shown}");
    }
}

#[tokio::test]
async fn an_event_stripe_could_not_deduplicate_is_not_sent() {
    let server = guarded().await;
    Mock::given(matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(recorded()))
        .expect(0)
        .mount(&server)
        .await;
    let client = client(&server);
    let bad = [
        MeterEvent {
            identifier: String::new(),
            ..event()
        },
        MeterEvent {
            identifier: "c".repeat(101),
            ..event()
        },
        MeterEvent {
            idempotency_key: "k".repeat(256),
            ..event()
        },
        MeterEvent {
            stripe_customer_id: " ".into(),
            ..event()
        },
    ];
    for event in bad {
        let e = client.report_meter_event(&event).await.unwrap_err();
        assert!(matches!(e, SendError::Permanent(_)), "{event:?}: {e:?}");
    }
}

#[test]
fn usage_keys_are_stable_and_fit_stripes_limit() {
    assert_eq!(
        usage_idempotency_key("call_8f2a"),
        "switchboard-usage-call_8f2a"
    );
    let long = "c".repeat(1_000);
    let key = usage_idempotency_key(&long);
    assert!(key.len() <= 255, "{key}");
    assert!(key.starts_with("switchboard-usage-"), "{key}");
    assert_eq!(key, usage_idempotency_key(&long), "stable");
    assert_ne!(key, usage_idempotency_key(&"c".repeat(1_001)));
    // Pinned: a key that changed between releases would let a retry after a deploy bill twice
    // (FNV-1a 128 of the id, computed independently).
    assert_eq!(
        key,
        "switchboard-usage-fnv128-1f23cae0c4ed9b0d10aa65b9c54ce335"
    );
    assert_eq!(
        usage_idempotency_key("anruf-müller"),
        "switchboard-usage-fnv128-ffb101ed43e5434cefdf04b1b2c34c71"
    );
    // The longest id kept as it is, and the first one hashed.
    let fits = "c".repeat(255 - "switchboard-usage-".len());
    assert_eq!(usage_idempotency_key(&fits).len(), 255);
    assert!(usage_idempotency_key(&format!("{fits}c")).contains("fnv128-"));
    // Header values are printable ASCII; anything else is hashed.
    for id in ["anruf-müller", "call 1", "call\n1"] {
        let key = usage_idempotency_key(id);
        assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key}");
    }
    // A plain key never looks like a hashed one.
    let hashed = usage_idempotency_key(&long);
    let tail = hashed.strip_prefix("switchboard-usage-").unwrap();
    assert_ne!(usage_idempotency_key(tail), hashed);
}

#[test]
fn settings_are_checked() {
    let ok = StripeSettings::default();
    assert_eq!(ok.base_url, "https://api.stripe.com");
    assert_eq!(ok.meter_event_name, "call_minutes");
    assert_eq!(ok.validate(), Ok(()));
    let bad = [
        StripeSettings {
            base_url: "api.stripe.com".into(),
            ..ok.clone()
        },
        StripeSettings {
            meter_event_name: " ".into(),
            ..ok.clone()
        },
        StripeSettings {
            meter_event_name: "m".repeat(101),
            ..ok.clone()
        },
        StripeSettings {
            timeout_secs: 0,
            ..ok.clone()
        },
    ];
    for s in bad {
        assert!(s.validate().is_err(), "{s:?}");
    }
    let unknown = serde_json::json!({
        "base_url": "https://api.stripe.com",
        "meter_event_name": "call_minutes",
        "timeout_secs": 10,
        "secret_key": "sk_live_x"
    });
    assert!(serde_json::from_value::<StripeSettings>(unknown).is_err());
}
