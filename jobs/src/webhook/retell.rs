//! `webhook.retell`: `call_started`, `call_ended` and `call_analyzed` merge into one `calls`
//! row (in any order); an ended call's minutes go to `usage_events` and `billing.report_usage`;
//! an analysis asking for an appointment not booked in-call enqueues `calendar.book`. The
//! rows are written on the store's batch path ([`call_events`]): the event's row, the caller,
//! the call and its usage in one transaction shared with other handlers' events; then the
//! follow-ups are enqueued; then how the event ended is written, again batched.
//!
//! Fault points: dying before the batch commits leaves nothing (the job runs again); after it
//! commits but before the follow-ups are enqueued, the retry writes the same rows again (each
//! statement merges or ignores) and enqueues them (unique keys `usage:<call>`, `book:<call>`);
//! after they are enqueued but before the finish, the retry finds them enqueued and finishes.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::Value;

use super::{Handled, WebhookEvent, db_retry, event_row, finish_batched, invalid, with_event_row};
use crate::{
    EnqueueOptions, JobContext, JobError,
    billing::ReportUsage,
    calendar::CalendarBook,
    services::Services,
    store::{
        call_events::{self, CallEvent, Recorded},
        calls::{Call, STAGE_ANALYZED, STAGE_ENDED, STAGE_STARTED},
    },
};

webhook_kind!(RetellWebhook, "webhook.retell");

#[derive(Deserialize)]
struct Body {
    event: String,
    call: RetellCall,
}

#[derive(Deserialize)]
#[allow(clippy::struct_field_names)] // Retell's own field names
/// The call as Retell describes it (the row it becomes is a [`Call`]).
struct RetellCall {
    call_id: String,
    from_number: Option<String>,
    to_number: Option<String>,
    start_timestamp: Option<i64>,
    end_timestamp: Option<i64>,
    duration_ms: Option<i64>,
    disconnection_reason: Option<String>,
    call_analysis: Option<Analysis>,
}

#[derive(Deserialize, serde::Serialize)]
#[allow(clippy::struct_field_names)] // Retell's own field names
struct Analysis {
    call_summary: Option<String>,
    user_sentiment: Option<String>,
    call_successful: Option<bool>,
    #[serde(default)]
    custom_analysis_data: Option<Value>,
}

/// How long follow-ups stay deduplicated on the queue.
const FOLLOW_UP_UNIQUE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Handler of `webhook.retell`. A call event is written on the store's batch path
/// ([`call_events`]) with other handlers' events; anything else (a body that cannot be
/// processed, an event type Switchboard does not act on, a call without a called number) is
/// recorded alone.
pub async fn handle(
    services: Arc<Services>,
    args: RetellWebhook,
    ctx: JobContext,
) -> Result<(), JobError> {
    let event = args.0;
    let (body, stage) = match parse(&event.body) {
        Ok(parsed) => parsed,
        Err(outcome) => return with_event_row(&services, &event, async { outcome }).await,
    };
    let call = body.call;
    let outcome = process(&services, &event, &call, stage, &ctx).await;
    finish_batched(&services, &event, outcome).await
}

/// The body and the stage it reports; or how the event ends without touching a call.
fn parse(body: &str) -> Result<(Body, i64), Result<Handled, JobError>> {
    let body: Body = serde_json::from_str(body).map_err(|e| Err(invalid("retell", &e)))?;
    let stage = match body.event.as_str() {
        "call_started" => STAGE_STARTED,
        "call_ended" => STAGE_ENDED,
        "call_analyzed" => STAGE_ANALYZED,
        _ => return Err(Ok(Handled::Ignored)),
    };
    if call_to(&body.call).is_none() {
        return Err(Err(JobError::permanent(format!(
            "retell call {} has no to_number, so no business can be found",
            body.call.call_id
        ))));
    }
    Ok((body, stage))
}

fn call_to(call: &RetellCall) -> Option<&str> {
    call.to_number.as_deref().filter(|n| !n.is_empty())
}

/// The call's rows (event, caller, call, usage) on the batch path, then its follow-ups.
async fn process(
    services: &Services,
    event: &WebhookEvent,
    call: &RetellCall,
    stage: i64,
    ctx: &JobContext,
) -> Result<Handled, JobError> {
    let to = call_to(call).unwrap_or_default();
    let from = call.from_number.clone().unwrap_or_default();
    let text = |key: &str| custom_text(call, key);
    let duration_ms = billable_duration(call, stage);
    let analysis = call.call_analysis.as_ref();
    let written = call_events::record(
        &services.store,
        CallEvent {
            event: event_row(event),
            to_number: to.to_owned(),
            caller: (!from.is_empty())
                .then(|| (from.clone(), text("customer_name"), text("customer_email"))),
            call: Call {
                call_id: call.call_id.clone(),
                from_number: from.clone(),
                to_number: to.to_owned(),
                stage,
                started_at_ms: call.start_timestamp,
                ended_at_ms: call.end_timestamp,
                duration_ms: call.duration_ms,
                disconnection_reason: call.disconnection_reason.clone(),
                summary: analysis.and_then(|a| a.call_summary.clone()),
                sentiment: analysis.and_then(|a| a.user_sentiment.clone()),
                successful: analysis.and_then(|a| a.call_successful),
                analysis_json: analysis.map(|a| serde_json::to_string(a).unwrap_or_default()),
                ..Call::default()
            },
            usage_seconds: duration_ms.map(|ms| (ms.max(0) + 999) / 1000),
        },
    )
    .await
    .map_err(db_retry)?;
    let Recorded::Stored {
        company_id,
        branch_id,
        customer_id,
    } = written
    else {
        return Err(JobError::permanent(format!(
            "no business owns the called number {to} (retell call {})",
            call.call_id
        )));
    };
    if stage == STAGE_ENDED && duration_ms.is_none() {
        return Err(JobError::permanent(format!(
            "retell call {} ended without a duration",
            call.call_id
        )));
    }
    let ids = Ids {
        company_id,
        branch_id,
        customer_id,
    };
    follow_ups(ctx, call, stage, ids, &from, duration_ms.is_some()).await?;
    Ok(Handled::Processed)
}

/// The duration to bill, for an ended or analysed call that has one. `call_ended` must carry
/// it; `call_analyzed` (which repeats the whole call) records it too when present, so usage
/// is not lost when `call_ended` never arrives. Both are deduplicated by the call id.
fn billable_duration(call: &RetellCall, stage: i64) -> Option<i64> {
    let duration_ms = call
        .duration_ms
        .or_else(|| Some(call.end_timestamp? - call.start_timestamp?));
    duration_ms.filter(|_| stage >= STAGE_ENDED)
}

fn custom(call: &RetellCall) -> Option<&Value> {
    call.call_analysis
        .as_ref()
        .and_then(|a| a.custom_analysis_data.as_ref())
}

fn custom_text(call: &RetellCall, key: &str) -> Option<String> {
    custom(call)
        .and_then(|c| c.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Where the call was stored (named as the columns are).
#[derive(Clone, Copy)]
#[allow(clippy::struct_field_names)]
struct Ids {
    company_id: i64,
    branch_id: i64,
    customer_id: Option<i64>,
}

/// The usage report for an ended call (its usage row is written with the call); a booking
/// request for an analysis that asks for one.
async fn follow_ups(
    ctx: &JobContext,
    call: &RetellCall,
    stage: i64,
    ids: Ids,
    from: &str,
    billable: bool,
) -> Result<(), JobError> {
    let text = |key: &str| custom_text(call, key);
    let flag = |key: &str| {
        custom(call)
            .and_then(|c| c.get(key))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let company_id = ids.company_id;
    if billable {
        let options = EnqueueOptions::default()
            .tenant(company_id.to_string())
            .unique(format!("usage:{}", call.call_id), FOLLOW_UP_UNIQUE);
        ctx.enqueue(
            &ReportUsage {
                call_id: call.call_id.clone(),
                company_id,
            },
            options,
        )
        .await
        .map_err(JobError::retry)?;
    }
    if stage == STAGE_ANALYZED && flag("appointment_requested") && !flag("appointment_booked") {
        let book = CalendarBook {
            call_id: call.call_id.clone(),
            company_id,
            branch_id: ids.branch_id,
            customer_id: ids.customer_id,
            service: text("service"),
            preferred_start: text("preferred_start"),
            customer_name: text("customer_name"),
            customer_email: text("customer_email"),
            customer_phone: Some(from.to_owned()).filter(|f| !f.is_empty()),
        };
        let options = EnqueueOptions::default()
            .tenant(company_id.to_string())
            .unique(format!("book:{}", call.call_id), FOLLOW_UP_UNIQUE);
        ctx.enqueue(&book, options).await.map_err(JobError::retry)?;
    }
    Ok(())
}
