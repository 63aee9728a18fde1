//! Billing jobs. `billing.report_usage` reports an ended call's minutes to Stripe (its Stripe
//! side is the billing issue's work); the minutes are in `usage_events`.

use serde::{Deserialize, Serialize};

use crate::JobArgs;

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
