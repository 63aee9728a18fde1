//! `billing.reconcile` (hourly, from the scheduler): ended calls whose usage was never
//! recorded or never reported get a `billing.report_usage` job, at most one per call per
//! `unique_secs` however many runs see them. Calls that ended within `min_age_secs` are left
//! to the Retell webhook's own follow-up.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};

use super::ReportUsage;
use crate::{
    EnqueueOptions, JobArgs, JobContext, JobError, Priority,
    services::Services,
    store::{
        now_ms,
        usage_events::{self, Unreported},
    },
};

/// Arguments of `billing.reconcile`; every field has a default, so `{}` is a whole job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
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
    /// A catch-up sweep: the reports of fresh calls go first.
    const PRIORITY: crate::Priority = crate::Priority::Low;
}

/// Handler of `billing.reconcile`. Result: `enqueued` (new report jobs), `already_queued`
/// (suppressed: a report of this call was enqueued here within `unique_secs`), `recorded`
/// (usage rows written from the call's own times), `skipped` (calls without a duration) and
/// `unbillable` (calls whose report Stripe refused for good, in all).
pub async fn handle(
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
        // Catch-up work: in the company's turn, behind the reports of fresh calls.
        let options = EnqueueOptions::default()
            .with_id(id.clone())
            .tenant(call.company_id.to_string())
            .priority(Priority::Low)
            .unique(
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
    // Calls Stripe refused for good are not offered again (see `report_usage`); their count
    // is in every run's result for finance.
    let unbillable = usage_events::unbillable(store)
        .await
        .map_err(JobError::retry)?;
    tracing::info!(
        candidates = calls.len(),
        unbillable,
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
        "unbillable": unbillable,
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
