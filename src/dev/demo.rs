//! What `switchboard demo` reads and writes on the server, so it never opens a database
//! itself and works from any directory and against any `database.url`: `POST /dev/demo/seed`
//! seeds the demo business (idempotent: once per number), and `GET /dev/demo/calls/{call_id}`
//! shows what the server's own database holds for one call (stage, usage and its report, the
//! appointment booked for it, the notifications sent about that appointment). Read-only apart
//! from the seed; served only with the stand-ins (`dev.stand_ins`).
//!
//! A database error is answered 500 with the error's text (a missing table says `no such
//! table` or `doesn't exist`), so the demo can tell the operator to run `switchboard migrate`.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use serde_json::{Value, json};
use switchboard_jobs::store::{
    Store, StoreError, appointments, calls, companies, notifications, usage_events,
};

/// The number the demo's calls dial: the demo business's line.
pub const NUMBER: &str = "+14155550987";

type Answer = (StatusCode, Json<Value>);

/// The `/dev/demo` routes over the server's database; without one (a `serve` built with a
/// handler registry of its own) every route answers 503.
pub fn router(store: Option<Store>) -> Router {
    Router::new()
        .route("/dev/demo/seed", post(seed))
        .route("/dev/demo/calls/{call_id}", get(call))
        .with_state(store)
}

fn failed(what: &str, e: &StoreError) -> Answer {
    tracing::error!(error = %e, "dev demo: {what} failed");
    let body = json!({ "error": format!("{what}: {e}") });
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body))
}

fn no_database() -> Answer {
    let error = "this server runs without the domain's database (a custom handler registry)";
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": error })),
    )
}

async fn seed(State(store): State<Option<Store>>) -> Answer {
    let Some(store) = store else {
        return no_database();
    };
    match seed_business(&store).await {
        Ok((company, seeded)) => (
            StatusCode::OK,
            Json(json!({ "company": company, "number": NUMBER, "seeded": seeded })),
        ),
        Err(e) => failed("seeding the demo business", &e),
    }
}

/// The demo business: the number the sample call dials, the sample Cal.com event type and
/// the sample Stripe customer. Returns the company and whether it was created now.
async fn seed_business(store: &Store) -> Result<(i64, bool), StoreError> {
    if let Some(b) = companies::by_phone_number(store, NUMBER).await? {
        return Ok((b.company.id, false));
    }
    let company = companies::insert_company(
        store,
        &companies::NewCompany {
            name: "Harbor Dental (demo)".into(),
            locale: "en".into(),
            timezone: "America/Los_Angeles".into(),
            admin_email: Some("owner@harbordental.example".into()),
            admin_phone: None,
            stripe_customer_id: Some("cus_T8xHarborDental".into()),
            calcom_api_key: None,
        },
    )
    .await?;
    let branch = companies::insert_branch(
        store,
        company,
        "Pier St",
        Some(90211),
        "America/Los_Angeles",
    )
    .await?;
    companies::insert_phone_number(store, branch, NUMBER).await?;
    tracing::info!(
        company,
        number = NUMBER,
        "dev demo: seeded the demo business"
    );
    Ok((company, true))
}

async fn call(State(store): State<Option<Store>>, Path(call_id): Path<String>) -> Answer {
    let Some(store) = store else {
        return no_database();
    };
    match call_view(&store, &call_id).await {
        Ok(view) => (StatusCode::OK, Json(view)),
        Err(e) => failed(&format!("reading call {call_id}"), &e),
    }
}

/// Everything the database holds for `call_id`; `null` for what is not there (yet).
async fn call_view(store: &Store, call_id: &str) -> Result<Value, StoreError> {
    let call = calls::get(store, call_id).await?.map(|c| {
        let stage = match c.stage {
            calls::STAGE_STARTED => "started",
            calls::STAGE_ENDED => "ended",
            calls::STAGE_ANALYZED => "analyzed",
            _ => "unknown",
        };
        json!({ "stage": stage, "duration_ms": c.duration_ms, "summary": c.summary })
    });
    let usage = match usage_events::get(store, call_id).await? {
        Some((seconds, reported_at_ms)) => {
            let unbillable = usage_events::unbillable_reason(store, call_id).await?;
            json!({
                "seconds": seconds,
                "reported": reported_at_ms.is_some(),
                "unbillable": unbillable.map(|(_, reason)| reason),
            })
        }
        None => Value::Null,
    };
    let appointment = appointments::find_by_call(store, call_id).await?;
    let notifications = match &appointment {
        Some(a) => notifications::list(store, &format!("appointment:{}:confirmation", a.uid))
            .await?
            .into_iter()
            .map(|n| {
                json!({
                    "channel": n.channel, "recipient": n.recipient, "status": n.status,
                    "error": n.last_error,
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let appointment =
        appointment.map(|a| json!({ "uid": a.uid, "start": a.start_at, "status": a.status }));
    Ok(json!({
        "call_id": call_id,
        "call": call,
        "usage": usage,
        "appointment": appointment,
        "notifications": notifications,
    }))
}
