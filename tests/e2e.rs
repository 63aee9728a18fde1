//! The whole path through a running `serve` (every role in one process), on `MariaDB` and on
//! `SQLite`: a signed Retell `call_analyzed` asking for an appointment -> the call row -> a
//! Cal.com booking (stand-in) -> the appointment row -> the confirmation email in a real SMTP
//! sink and the SMS at the gateway stand-in -> a Stripe meter event for the call's minutes.

mod common;
#[path = "common/world.rs"]
mod world;

use std::time::Duration;

use common::running::{self, Running};
use serde_json::json;
use switchboard::{
    app::{Hooks, Roles},
    ingest::{SecretList, WebhookSecrets},
};
use switchboard_jobs::store::{appointments, calls};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};
use wiremock::{Mock, ResponseTemplate, matchers};
use world::{EVENT_TYPE, Options, World};

const RETELL_KEY: &str = "key_e2e_secret";
const CALL: &str = "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa";

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

    let hooks = Hooks {
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
    let serve = Running::start(w.h.settings.clone(), roles, hooks).await;

    let (body, signature) = running::signed_call_analyzed(RETELL_KEY, &slot);
    assert_eq!(serve.post_retell(body, &signature, &[]).await, 202);

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

    serve.stop().await;
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
