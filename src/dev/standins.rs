//! Development stand-ins for the outside world, so `serve` shows the whole path on a fresh
//! machine without any provider account: Cal.com (slots, bookings; `calcom.rs`), Stripe
//! (meter events) and an SMS gateway (`sms.rs`), mounted under `/dev/` on the HTTP listener.
//! Every request is first checked against the provider's `OpenAPI` document and refused as
//! the provider would (`contract.rs`). Active only with
//! `dev.stand_ins = true` (the development default; `config/production.toml` turns it off),
//! and then only for providers whose credentials are not in the environment.

use std::collections::HashMap;

use axum::{
    Form, Json, Router,
    extract::State,
    http::StatusCode,
    middleware,
    routing::{get, post},
};
use serde_json::{Value, json};
use switchboard_jobs::store::Store;
use time::OffsetDateTime;

use super::{calcom, contract};

use super::state::Shared;

/// Development webhook secrets, used only with stand-ins on and the variable unset.
pub const RETELL_KEY: &str = "key_dev_switchboard";
pub const CALCOM_SECRET: &str = "cal_dev_switchboard";
pub const STRIPE_SECRET: &str = "whsec_dev_switchboard";
/// The account SID the SMS client uses with the stand-in: `AC` and 32 hex digits, as
/// Twilio's document wants.
pub const SMS_ACCOUNT_SID: &str = super::sms::ACCOUNT_SID;

/// The base URL of the stand-ins on a server listening at `listen`.
pub fn base_url(listen: &str) -> String {
    let port = listen.rsplit_once(':').map_or("8080", |(_, p)| p);
    format!("http://127.0.0.1:{port}/dev")
}

/// The `/dev` routes; the demo's over `store`, the server's database ([`super::demo`]).
pub fn router(store: Option<Store>) -> Router {
    let shared = Shared::default();
    let sms = shared.lock().expect("dev state").sms.clone();
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
        .route("/dev/state", get(state))
        .with_state(shared)
        .merge(super::sms::router(sms))
        .merge(super::demo::router(store))
        .layer(middleware::from_fn(contract::check))
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
    super::window::remember(&mut state.meter_events, event.clone());
    (StatusCode::OK, Json(event))
}

async fn state(State(s): State<Shared>) -> Json<Value> {
    let state = s.lock().expect("dev state");
    Json(
        json!({ "bookings": state.bookings, "meter_events": state.meter_events, "sms": state.sms.messages() }),
    )
}
