//! `billing.report_usage`: an ended call's minutes to Stripe as a meter event. It never bills
//! twice: the event's `identifier` is the call id (Stripe deduplicates it) and its
//! `Idempotency-Key` is derived from it, so every retry sends the same request;
//! `usage_events.reported_at_ms` records the outcome and a reported call is not sent again.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    JobArgs, JobContext, JobError,
    clients::stripe::{MeterEvent, usage_idempotency_key},
    services::Services,
    store::{companies, now_ms, usage_events},
};

/// Arguments of `billing.report_usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    // Every attempt must send the same parameters under its Idempotency-Key, so the time is
    // the recording time of the usage, not "now".
    let recorded_ms = usage_events::recorded_at(store, &args.call_id)
        .await
        .map_err(JobError::retry)?
        .unwrap_or_else(now_ms);
    let event = MeterEvent {
        stripe_customer_id: customer,
        // Billable minutes, started minutes count.
        value: (seconds + 59) / 60,
        identifier: args.call_id.clone(),
        timestamp: recorded_ms / 1000,
        idempotency_key: usage_idempotency_key(&args.call_id),
    };
    stripe
        .report_meter_event(&event)
        .await
        .map_err(JobError::from)?;
    usage_events::mark_reported(store, &args.call_id)
        .await
        .map_err(JobError::retry)?;
    Ok(())
}
