//! Development stand-ins for the outside world, so `serve` shows the whole path on a fresh
//! machine without any provider account: Cal.com (slots, bookings; `calcom.rs`), Stripe
//! (meter events) and an SMS gateway, mounted under `/dev/` on the HTTP listener. Every
//! request is first checked against the provider's `OpenAPI` document and refused as the
//! provider would (`contract.rs`). Active only with
//! `dev.stand_ins = true` (the development default; `config/production.toml` turns it off),
//! and then only for providers whose credentials are not in the environment.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Path, State},
    http::StatusCode,
    middleware,
    routing::{get, post},
};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{calcom, contract};

/// Development webhook secrets, used only with stand-ins on and the variable unset.
pub const RETELL_KEY: &str = "key_dev_switchboard";
pub const CALCOM_SECRET: &str = "cal_dev_switchboard";
pub const STRIPE_SECRET: &str = "whsec_dev_switchboard";
/// The account SID the SMS client uses with the stand-in: `AC` and 32 hex digits, as
/// Twilio's document wants.
pub const SMS_ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

/// The base URL of the stand-ins on a server listening at `listen`.
pub fn base_url(listen: &str) -> String {
    let port = listen.rsplit_once(':').map_or("8080", |(_, p)| p);
    format!("http://127.0.0.1:{port}/dev")
}

/// What the stand-ins have been asked to do.
#[derive(Default)]
pub(super) struct Recorded {
    pub(super) bookings: Vec<Value>,
    meter_events: Vec<Value>,
    sms: Vec<Value>,
}

pub(super) type Shared = Arc<Mutex<Recorded>>;

/// The `/dev` routes.
pub fn router() -> Router {
    Router::new()
        .route("/dev/calcom/v2/slots", get(calcom::slots))
        .route(
            "/dev/calcom/v2/bookings",
            get(calcom::list).post(calcom::create),
        )
        .route(
            "/dev/calcom/v2/bookings/{uid}/reschedule",
            post(calcom::reschedule),
        )
        .route("/dev/calcom/v2/bookings/{uid}/cancel", post(calcom::cancel))
        .route("/dev/stripe/v1/billing/meter_events", post(meter_event))
        .route(
            "/dev/sms/2010-04-01/Accounts/{sid}/Messages.json",
            post(send_sms),
        )
        .route("/dev/state", get(state))
        .layer(middleware::from_fn(contract::check))
        .with_state(Shared::default())
}

/// A meter event as Stripe records it (every field its `billing.meter_event` requires); a
/// second event with an `identifier` already recorded is refused as Stripe refuses it.
async fn meter_event(
    State(s): State<Shared>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut state = s.lock().expect("dev state");
    let identifier = form
        .get("identifier")
        .cloned()
        .unwrap_or_else(|| format!("dev_meter_event_{}", state.meter_events.len() + 1));
    if state
        .meter_events
        .iter()
        .any(|e| e["identifier"] == identifier.as_str())
    {
        let message = format!("An event already exists with identifier {identifier}.");
        let error = json!({ "type": "invalid_request_error", "message": message });
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": error })));
    }
    let payload: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix("payload[")?.strip_suffix(']')?;
            Some((key.to_owned(), Value::from(v.as_str())))
        })
        .collect();
    let timestamp = form
        .get("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(now);
    let event = json!({
        "object": "billing.meter_event", "created": now, "event_name": form.get("event_name"),
        "identifier": identifier, "livemode": false, "payload": payload, "timestamp": timestamp,
    });
    tracing::info!(identifier = %event["identifier"], value = %event["payload"]["value"], "dev stand-in: Stripe meter event");
    state.meter_events.push(event.clone());
    (StatusCode::OK, Json(event))
}

async fn send_sms(
    State(s): State<Shared>,
    Path(_sid): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut state = s.lock().expect("dev state");
    let sid = format!("SM{:032x}", state.sms.len() + 1);
    tracing::info!(
        to = form.get("To").map_or("", String::as_str),
        "dev stand-in: SMS accepted"
    );
    state.sms.push(json!(form));
    (
        StatusCode::CREATED,
        Json(json!({ "sid": sid, "status": "queued" })),
    )
}

async fn state(State(s): State<Shared>) -> Json<Value> {
    let state = s.lock().expect("dev state");
    Json(
        json!({ "bookings": state.bookings, "meter_events": state.meter_events, "sms": state.sms }),
    )
}
