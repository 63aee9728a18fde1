//! Development stand-ins for the outside world, so `serve` shows the whole path on a fresh
//! machine without any provider account: Cal.com (slots, bookings), Stripe (meter events)
//! and an SMS gateway ([`super::sms`]), mounted under `/dev/` on the HTTP listener. Active only with
//! `dev.stand_ins = true` (the development default; `config/production.toml` turns it off),
//! and then only for providers whose credentials are not in the environment.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use serde_json::{Value, json};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};

use super::sms::Gateway;

/// Development webhook secrets, used only with stand-ins on and the variable unset.
pub const RETELL_KEY: &str = "key_dev_switchboard";
pub const CALCOM_SECRET: &str = "cal_dev_switchboard";
pub const STRIPE_SECRET: &str = "whsec_dev_switchboard";

/// The base URL of the stand-ins on a server listening at `listen`.
pub fn base_url(listen: &str) -> String {
    let port = listen.rsplit_once(':').map_or("8080", |(_, p)| p);
    format!("http://127.0.0.1:{port}/dev")
}

/// What the stand-ins have been asked to do.
#[derive(Default)]
struct Recorded {
    bookings: Vec<Value>,
    meter_events: Vec<Value>,
    /// The SMS gateway stand-in's messages ([`super::sms`]).
    sms: Gateway,
}

type Shared = Arc<Mutex<Recorded>>;

/// The `/dev` routes.
pub fn router() -> Router {
    let shared = Shared::default();
    let sms = shared.lock().expect("dev state").sms.clone();
    Router::new()
        .route("/dev/calcom/v2/slots", get(slots))
        .route(
            "/dev/calcom/v2/bookings",
            get(list_bookings).post(create_booking),
        )
        .route("/dev/calcom/v2/bookings/{uid}/cancel", post(cancel_booking))
        .route("/dev/stripe/v1/billing/meter_events", post(meter_event))
        .route("/dev/state", get(state))
        .with_state(shared)
        .merge(super::sms::router(sms))
}

fn parse(t: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t, &Rfc3339).ok()
}

fn fmt(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Every full hour from 09:00 to 16:00 UTC in the window, minus booked starts.
async fn slots(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let now = OffsetDateTime::now_utc();
    let start = q.get("start").and_then(|t| parse(t)).unwrap_or(now);
    let end = q
        .get("end")
        .and_then(|t| parse(t))
        .unwrap_or(start + Span::days(7));
    let booked: Vec<String> = s
        .lock()
        .expect("dev state")
        .bookings
        .iter()
        .filter_map(|b| b["start"].as_str().map(str::to_owned))
        .collect();
    let mut days = serde_json::Map::new();
    let mut t = start
        .replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(start)
        + Span::hours(1);
    while t < end
        && days
            .values()
            .map(|v: &Value| v.as_array().map_or(0, Vec::len))
            .sum::<usize>()
            < 200
    {
        if (9..17).contains(&t.hour()) && !booked.contains(&fmt(t)) {
            let day = fmt(t)[..10].to_owned();
            days.entry(day)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("array")
                .push(json!({ "start": fmt(t) }));
        }
        t += Span::hours(1);
    }
    Json(json!({ "status": "success", "data": days }))
}

async fn list_bookings(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let email = q.get("attendeeEmail");
    let data: Vec<Value> = s
        .lock()
        .expect("dev state")
        .bookings
        .iter()
        .filter(|b| email.is_none_or(|e| b["attendees"][0]["email"].as_str() == Some(e)))
        .cloned()
        .collect();
    Json(json!({ "status": "success", "data": data }))
}

async fn create_booking(
    State(s): State<Shared>,
    Json(req): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut state = s.lock().expect("dev state");
    let n = state.bookings.len() + 1;
    let start = req["start"]
        .as_str()
        .and_then(parse)
        .unwrap_or_else(OffsetDateTime::now_utc);
    let booking = json!({
        "id": 900_000 + n, "uid": format!("dev_booking_{n}"), "title": "Appointment (development stand-in)",
        "start": fmt(start), "end": fmt(start + Span::minutes(30)), "status": "accepted",
        "eventTypeId": req["eventTypeId"], "attendees": [req["attendee"].clone()], "metadata": req["metadata"].clone(),
    });
    state.bookings.push(booking.clone());
    tracing::info!(uid = %booking["uid"], "dev stand-in: Cal.com booking created");
    (
        StatusCode::CREATED,
        Json(json!({ "status": "success", "data": booking })),
    )
}

async fn cancel_booking(State(s): State<Shared>, Path(uid): Path<String>) -> Json<Value> {
    for b in &mut s.lock().expect("dev state").bookings {
        if b["uid"] == uid {
            b["status"] = json!("cancelled");
        }
    }
    Json(json!({ "status": "success", "data": {} }))
}

async fn meter_event(
    State(s): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> Json<Value> {
    let event = json!(form);
    tracing::info!(identifier = %event["identifier"], value = %event["payload[value]"], "dev stand-in: Stripe meter event");
    s.lock()
        .expect("dev state")
        .meter_events
        .push(event.clone());
    Json(
        json!({ "object": "billing.meter_event", "identifier": event["identifier"], "livemode": false }),
    )
}

async fn state(State(s): State<Shared>) -> Json<Value> {
    let state = s.lock().expect("dev state");
    Json(
        json!({ "bookings": state.bookings, "meter_events": state.meter_events, "sms": state.sms.messages() }),
    )
}
