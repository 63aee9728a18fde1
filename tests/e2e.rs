//! The whole path through a running `serve` (every role in one process), on `MariaDB` and on
//! `SQLite`: a signed Retell `call_analyzed` asking for an appointment -> the call row -> a
//! Cal.com booking (stand-in) -> the appointment row -> the confirmation email in a real SMTP
//! sink and the SMS at the gateway stand-in -> a Stripe meter event for the call's minutes.

mod common;
#[path = "common/world.rs"]
mod world;

use std::{net::SocketAddr, time::Duration};

use hmac::Mac;
use serde_json::json;
use switchboard::{
    app::{self, Hooks, Roles},
    ingest::{SecretList, WebhookSecrets},
};
use switchboard_jobs::store::{appointments, calls};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::sync::oneshot;
use wiremock::{Mock, ResponseTemplate, matchers};
use world::{EVENT_TYPE, Options, World};

const RETELL_KEY: &str = "key_e2e_secret";
const CALL: &str = "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa";

fn signed_call_analyzed(preferred: &str) -> (Vec<u8>, String) {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks/retell_call_analyzed.json"
    ))
    .unwrap();
    let body = fixture.replace(
        r#""appointment_booked": true"#,
        &format!(
            r#""appointment_booked": false, "appointment_requested": true, "preferred_start": "{preferred}", "customer_name": "Dana Ruiz", "customer_email": "dana.ruiz@example.com""#
        ),
    );
    assert!(body.contains("appointment_requested"));
    let ts = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(RETELL_KEY.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    mac.update(ts.to_string().as_bytes());
    (
        body.into_bytes(),
        format!("v={ts},d={}", hex::encode(mac.finalize().into_bytes())),
    )
}

async fn stand_ins(w: &World, slot: &str) {
    let end = (OffsetDateTime::parse(slot, &Rfc3339).unwrap() + Span::minutes(30))
        .format(&Rfc3339)
        .unwrap();
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/bookings"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "success", "data": []})),
        )
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/slots"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"status": "success", "data": {slot[..10].to_owned(): [{"start": slot}]}}),
        ))
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"status": "success", "data": {
            "id": 1, "uid": "bk_e2e", "title": "Cleaning", "start": slot, "end": end, "status": "accepted",
            "eventTypeId": EVENT_TYPE, "attendees": [], "metadata": {"switchboard_request": format!("book:{CALL}")}
        }})))
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/billing/meter_events"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"object": "billing.meter_event", "identifier": CALL})),
        )
        .mount(&w.stripe)
        .await;
}

#[allow(clippy::too_many_lines)] // one walk down the whole path
async fn the_whole_path(dialect: &str) {
    let w = World::with(
        dialect,
        Options {
            fleet: false,
            ..Options::default()
        },
    )
    .await;
    let slot = (OffsetDateTime::now_utc() + Span::days(2))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap();
    stand_ins(&w, &slot).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let hooks = Hooks {
        listener: Some(listener),
        services: Some(w.services.clone()),
        secrets: Some(WebhookSecrets {
            retell: Some(SecretList::parse(RETELL_KEY)),
            ..WebhookSecrets::default()
        }),
        ..Hooks::default()
    };
    let roles = Roles {
        embedded_redis: false,
        ..Roles::serve(&w.h.settings)
    };
    let serve = tokio::spawn(app::run(w.h.settings.clone(), roles, hooks, async {
        let _ = stopped.await;
    }));

    let (body, signature) = signed_call_analyzed(&slot);
    let client = reqwest::Client::new();
    let mut answer = None;
    for _ in 0..200 {
        if let Ok(r) = client
            .post(format!("http://{addr}/webhooks/retell"))
            .header("x-retell-signature", &signature)
            .body(body.clone())
            .send()
            .await
        {
            answer = Some(r.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(answer, Some(reqwest::StatusCode::ACCEPTED));

    let store = w.store.clone();
    let (sms, stripe) = (&w.sms, &w.stripe);
    w.h.wait_for(
        "call, booking, email, SMS and meter event",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            let sink_count = w.sink.messages().len();
            async move {
                let call = calls::get(&store, CALL).await.unwrap();
                let appointment = appointments::get(&store, "bk_e2e").await.unwrap();
                let texts = sms.received_requests().await.unwrap().len();
                let meters = stripe.received_requests().await.unwrap().len();
                call.is_some()
                    && appointment.is_some()
                    && sink_count == 1
                    && texts == 1
                    && meters == 1
            }
        },
    )
    .await;

    let call = calls::get(&w.store, CALL).await.unwrap().unwrap();
    assert_eq!(
        (call.stage, call.duration_ms),
        (calls::STAGE_ANALYZED, Some(142_000))
    );
    let appointment = appointments::get(&w.store, "bk_e2e")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (appointment.status.as_str(), appointment.call_id.as_deref()),
        ("booked", Some(CALL))
    );
    let mail = &w.sink.messages()[0];
    assert!(
        mail.contains("dana.ruiz@example.com") && mail.contains("text/html"),
        "{mail}"
    );
    let meter = &w.stripe.received_requests().await.unwrap()[0];
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&meter.body).unwrap();
    assert!(
        form.contains(&("identifier".into(), CALL.into())),
        "{form:?}"
    );
    assert!(
        form.contains(&("payload[value]".into(), "3".into())),
        "142 s bill as 3 minutes: {form:?}"
    );

    let _ = stop.send(());
    serve.await.unwrap().unwrap();
    w.stop().await;
}

#[tokio::test]
async fn the_whole_path_on_sqlite() {
    the_whole_path("sqlite").await;
}

#[tokio::test]
async fn the_whole_path_on_mariadb() {
    the_whole_path("mysql").await;
}
