//! `billing.report_usage`: an ended call's minutes to Stripe as a meter event, at the time the
//! call ended. It never bills twice: the event's `identifier` is the call id (Stripe
//! deduplicates it) and its `Idempotency-Key` is derived from it, so every retry sends the
//! same request; `usage_events.reported_at_ms` records the outcome and a reported call is not
//! sent again. Usage older than Stripe's 35-day window is billed at the time of the report
//! with the call's end in the payload ([`meter_time`]); a report Stripe refuses for good is
//! recorded (`usage_events.failed_at_ms`, `report_error`), counted
//! (`switchboard_usage_unbillable_total`) and never offered again by `billing.reconcile`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    JobArgs, JobContext, JobError,
    clients::{
        SendError,
        stripe::{MeterEvent, usage_idempotency_key},
    },
    services::Services,
    store::{calls, companies, now_ms, usage_events},
};

/// Arguments of `billing.report_usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReportUsage {
    /// The call whose `usage_events` row to report (Stripe's `identifier`).
    pub call_id: String,
    pub company_id: i64,
}

impl JobArgs for ReportUsage {
    const KIND: &'static str = "billing.report_usage";
    const QUEUE: &'static str = "billing";
    const POLICY: crate::Policy = crate::Policy::OUTAGE_PROOF.circuit("stripe");
}

/// Counter: calls whose usage Stripe refused for good (never billed).
pub const UNBILLABLE: &str = "switchboard_usage_unbillable_total";
/// Counter: calls reported after Stripe's meter-event window, at the time of the report.
pub const REPORTED_LATE: &str = "switchboard_usage_reported_late_total";

/// Stripe takes meter events "within the past 35 calendar days"; a day of margin keeps a
/// report that is retried for a while inside it.
const WINDOW_MS: i64 = 34 * 24 * 3600 * 1000;

/// The meter event time of a call's report, and the call's real end when that is older than
/// Stripe's window. A call that ended within the window is billed at its end (the period it
/// happened in). One that ended before is billed now, in the open period, with its end kept
/// in the event (`payload[call_ended_at]`): usage is never dropped for being late, and never
/// sent in a form Stripe refuses. The time is fixed in `usage_events.billed_at_ms` at the
/// first attempt, so retries send the same event.
async fn meter_time(
    store: &crate::store::Store,
    call_id: &str,
) -> Result<(i64, Option<i64>), JobError> {
    let now = now_ms();
    let call = calls::get(store, call_id).await.map_err(JobError::retry)?;
    let ended_ms = call.as_ref().and_then(|c| {
        c.ended_at_ms
            .or_else(|| Some(c.started_at_ms? + c.duration_ms?))
    });
    let ended_ms = match ended_ms {
        Some(t) => t,
        None => usage_events::recorded_at(store, call_id)
            .await
            .map_err(JobError::retry)?
            .unwrap_or(now),
    };
    let oldest_usable = now - WINDOW_MS;
    let candidate = if ended_ms >= oldest_usable {
        ended_ms.min(now)
    } else {
        now
    };
    let billed = usage_events::fix_billed_at(store, call_id, candidate, oldest_usable)
        .await
        .map_err(JobError::retry)?;
    let late = (ended_ms < billed - 1000 && ended_ms < oldest_usable).then_some(ended_ms / 1000);
    Ok((billed, late))
}

/// Handler of `billing.report_usage`.
pub async fn handle(
    services: Arc<Services>,
    args: ReportUsage,
    _ctx: JobContext,
) -> Result<(), JobError> {
    let store = &services.store;
    let (seconds, reported) = usage_events::get(store, &args.call_id)
        .await
        .map_err(JobError::retry)?
        .ok_or_else(|| {
            JobError::permanent(format!("call {} has no usage recorded", args.call_id))
        })?;
    if reported.is_some() {
        return Ok(());
    }
    let company = companies::get(store, args.company_id)
        .await
        .map_err(JobError::retry)?
        .ok_or_else(|| {
            JobError::permanent(format!("company {} does not exist", args.company_id))
        })?;
    let customer = company.stripe_customer_id.clone().ok_or_else(|| {
        JobError::permanent(format!(
            "company {} ({}) has no Stripe customer",
            company.id, company.name
        ))
    })?;
    let stripe = services.stripe.as_ref().ok_or_else(|| {
        JobError::permanent("STRIPE_SECRET_KEY is not set: usage cannot be reported")
    })?;
    let (timestamp_ms, call_ended_at) = meter_time(store, &args.call_id).await?;
    let event = MeterEvent {
        stripe_customer_id: customer,
        // Billable minutes, started minutes count.
        value: (seconds + 59) / 60,
        identifier: args.call_id.clone(),
        timestamp: timestamp_ms / 1000,
        call_ended_at,
        idempotency_key: match call_ended_at {
            None => usage_idempotency_key(&args.call_id),
            // A late report is a new request at its own time: its own key.
            Some(_) => usage_idempotency_key(&format!("{}@{}", args.call_id, timestamp_ms / 1000)),
        },
    };
    // Dying after Stripe recorded the event and before the mark below sends it again on the
    // next attempt: the same identifier, which Stripe answers as already recorded.
    match stripe.report_meter_event(&event).await {
        Ok(_) => {}
        Err(SendError::Permanent(reason)) => {
            // Never billed: recorded for finance, and reconciliation stops offering it.
            usage_events::mark_unbillable(store, &args.call_id, &reason)
                .await
                .map_err(JobError::retry)?;
            metrics::counter!(UNBILLABLE).increment(1);
            return Err(JobError::permanent(format!(
                "usage of call {} ({} s) cannot be billed: {reason}",
                args.call_id, seconds
            )));
        }
        Err(e) => return Err(e.into()),
    }
    usage_events::mark_reported(store, &args.call_id)
        .await
        .map_err(JobError::retry)?;
    if call_ended_at.is_some() {
        metrics::counter!(REPORTED_LATE).increment(1);
    }
    Ok(())
}
