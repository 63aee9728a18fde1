//! Billing jobs. `billing.report_usage` reports an ended call's minutes to Stripe as a meter
//! event. It never bills twice: the event's `identifier` is the call id (Stripe deduplicates
//! it) and its `Idempotency-Key` is derived from it, so every retry sends the same request;
//! `usage_events.reported_at_ms` records the outcome and a reported call is not sent again.
//!
//! `billing.reconcile` (hourly, from the scheduler) catches what the Retell webhook's own
//! follow-up missed: ended calls whose usage was never recorded or never reported get a
//! `billing.report_usage` job, at most one per call per `unique_secs` however many runs see
//! them. Calls that ended within `min_age_secs` are left to the webhook's follow-up.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{
    EnqueueOptions, JobArgs, JobContext, JobError,
    clients::stripe::{MeterEvent, usage_idempotency_key},
    services::Services,
    store::{
        companies, now_ms,
        usage_events::{self, Unreported},
    },
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
}

/// Handler of `billing.report_usage`.
pub async fn run_report_usage(services: Arc<Services>, args: ReportUsage) -> Result<(), JobError> {
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

/// Arguments of `billing.reconcile`; every field has a default, so `{}` is a whole job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BillingReconcile {
    /// Calls looked at per run (oldest first); the next run takes the rest.
    pub limit: u32,
    /// Calls that ended less than this long ago are left to the webhook's own report.
    pub min_age_secs: u64,
    /// How long enqueueing a call's report here suppresses enqueueing it again: long enough
    /// for a report and its retries to finish, after which a still unreported call is tried
    /// anew.
    pub unique_secs: u64,
}

impl Default for BillingReconcile {
    fn default() -> Self {
        Self {
            limit: 500,
            min_age_secs: 600,
            unique_secs: 6 * 3600,
        }
    }
}

impl JobArgs for BillingReconcile {
    const KIND: &'static str = "billing.reconcile";
    const QUEUE: &'static str = "billing";
}

/// Handler of `billing.reconcile`. Result: `enqueued` (new report jobs), `already_queued`
/// (suppressed: a report of this call was enqueued here within `unique_secs`), `recorded`
/// (usage rows written from the call's own times) and `skipped` (calls without a duration).
pub async fn run_reconcile(
    services: Arc<Services>,
    args: BillingReconcile,
    ctx: JobContext,
) -> Result<(), JobError> {
    let store = &services.store;
    let min_age_ms = i64::try_from(args.min_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let calls = usage_events::unreported(
        store,
        now_ms().saturating_sub(min_age_ms),
        args.limit.into(),
    )
    .await
    .map_err(JobError::retry)?;
    let (mut enqueued, mut already_queued, mut recorded, mut skipped) = (0u64, 0u64, 0u64, 0u64);
    for (i, call) in calls.iter().enumerate() {
        if call.seconds.is_none() {
            let Some(seconds) = billable_seconds(call) else {
                tracing::warn!(call = %call.call_id, "call ended without a duration or start time: no usage to report");
                skipped += 1;
                continue;
            };
            if usage_events::record(store, &call.call_id, call.company_id, seconds)
                .await
                .map_err(JobError::retry)?
            {
                recorded += 1;
            }
        }
        // A caller-chosen id tells a fresh enqueue from one the unique key suppressed.
        let id = format!("{}-{i}", ctx.meta.id);
        let options = EnqueueOptions::default().with_id(id.clone()).unique(
            format!("reconcile:usage:{}", call.call_id),
            Duration::from_secs(args.unique_secs.max(1)),
        );
        let job = ReportUsage {
            call_id: call.call_id.clone(),
            company_id: call.company_id,
        };
        let got = ctx.enqueue(&job, options).await.map_err(JobError::retry)?;
        if got == id {
            enqueued += 1;
        } else {
            already_queued += 1;
        }
    }
    tracing::info!(
        candidates = calls.len(),
        enqueued,
        already_queued,
        recorded,
        skipped,
        "billing reconciled"
    );
    ctx.set_result(serde_json::json!({
        "enqueued": enqueued,
        "already_queued": already_queued,
        "recorded": recorded,
        "skipped": skipped,
    }));
    Ok(())
}

/// A call's billable seconds from its duration (or its start and end), rounded up as the
/// Retell webhook does.
fn billable_seconds(call: &Unreported) -> Option<i64> {
    let ms = call
        .duration_ms
        .or_else(|| Some(call.ended_at_ms? - call.started_at_ms?))?;
    Some((ms.max(0) + 999) / 1000)
}
