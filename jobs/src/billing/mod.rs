//! Billing jobs against Stripe, one kind per module: `billing.report_usage` reports an ended
//! call's minutes as a meter event, exactly once ([`report_usage`]); `billing.reconcile`
//! (hourly, from the scheduler) catches the calls whose report the Retell webhook's own
//! follow-up missed ([`reconcile`]).

pub mod reconcile;
pub mod report_usage;

pub use reconcile::BillingReconcile;
pub use report_usage::ReportUsage;
