//! `webhook.retell`: `call_started`, `call_ended` and `call_analyzed` merge into one `calls`
//! row (in any order); an ended call's minutes go to `usage_events` and `billing.report_usage`;
//! an analysis asking for an appointment not booked in-call enqueues `calendar.book`.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::Value;

use super::{Handled, db_retry, invalid, with_event_row};
use crate::{
    EnqueueOptions, JobContext, JobError,
    billing::ReportUsage,
    calendar::CalendarBook,
    services::Services,
    store::{
        calls::{self, Call, STAGE_ANALYZED, STAGE_ENDED, STAGE_STARTED},
        companies, customers, usage_events,
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

/// Handler of `webhook.retell`.
pub async fn handle(
    services: Arc<Services>,
    args: RetellWebhook,
    ctx: JobContext,
) -> Result<(), JobError> {
    let event = args.0;
    with_event_row(&services, &event, process(&services, &event.body, &ctx)).await
}

async fn process(services: &Services, body: &str, ctx: &JobContext) -> Result<Handled, JobError> {
    let body: Body = serde_json::from_str(body).map_err(|e| invalid("retell", &e))?;
    let stage = match body.event.as_str() {
        "call_started" => STAGE_STARTED,
        "call_ended" => STAGE_ENDED,
        "call_analyzed" => STAGE_ANALYZED,
        _ => return Ok(Handled::Ignored),
    };
    let call = body.call;
    let store = &services.store;
    let to = call
        .to_number
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            JobError::permanent(format!(
                "retell call {} has no to_number, so no business can be found",
                call.call_id
            ))
        })?;
    let from = call.from_number.clone().unwrap_or_default();
    let business = companies::by_phone_number(store, to)
        .await
        .map_err(db_retry)?
        .ok_or_else(|| {
            JobError::permanent(format!(
                "no business owns the called number {to} (retell call {})",
                call.call_id
            ))
        })?;
    let company_id = business.company.id;
    let custom = call
        .call_analysis
        .as_ref()
        .and_then(|a| a.custom_analysis_data.as_ref());
    let text = |key: &str| {
        custom
            .and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let customer_id = if from.is_empty() {
        None
    } else {
        let name = text("customer_name");
        let email = text("customer_email");
        Some(
            customers::upsert(store, company_id, &from, name.as_deref(), email.as_deref())
                .await
                .map_err(db_retry)?,
        )
    };
    let analysis = call.call_analysis.as_ref();
    calls::upsert(
        store,
        &Call {
            call_id: call.call_id.clone(),
            company_id,
            branch_id: business.branch_id,
            customer_id,
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
        },
    )
    .await
    .map_err(db_retry)?;

    follow_ups(
        services,
        ctx,
        &call,
        stage,
        company_id,
        business.branch_id,
        customer_id,
        &from,
    )
    .await?;
    Ok(Handled::Processed)
}

/// Usage for an ended call; a booking request for an analysis that asks for one.
#[allow(clippy::too_many_arguments)]
async fn follow_ups(
    services: &Services,
    ctx: &JobContext,
    call: &RetellCall,
    stage: i64,
    company_id: i64,
    branch_id: i64,
    customer_id: Option<i64>,
    from: &str,
) -> Result<(), JobError> {
    let store = &services.store;
    let custom = call
        .call_analysis
        .as_ref()
        .and_then(|a| a.custom_analysis_data.as_ref());
    let text = |key: &str| {
        custom
            .and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let flag = |key: &str| {
        custom
            .and_then(|c| c.get(key))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    // `call_ended` must carry the duration; `call_analyzed` (which repeats the whole call)
    // records it too when present, so usage is not lost when `call_ended` never arrives.
    // Both are deduplicated by the call id.
    let duration_ms = call
        .duration_ms
        .or_else(|| Some(call.end_timestamp? - call.start_timestamp?));
    if stage == STAGE_ENDED && duration_ms.is_none() {
        return Err(JobError::permanent(format!(
            "retell call {} ended without a duration",
            call.call_id
        )));
    }
    if let Some(duration_ms) = duration_ms.filter(|_| stage >= STAGE_ENDED) {
        let seconds = (duration_ms.max(0) + 999) / 1000;
        usage_events::record(store, &call.call_id, company_id, seconds)
            .await
            .map_err(db_retry)?;
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
            branch_id,
            customer_id,
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
