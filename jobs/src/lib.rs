//! Switchboard's domain: what a job is, what it carries and what it does.
//!
//! Every job kind is one typed, versioned argument struct implementing [`JobArgs`] with its
//! [`Policy`] (attempts, timeout, backoff, retry budget) beside it, and one handler registered
//! in a [`Registry`]. This crate never names Redis or HTTP servers: handlers that create
//! follow-up work use the [`Enqueuer`] capability carried by their [`JobContext`], which the
//! runtime implements.
//!
//! **One kind, one module.** The kind `family.name` lives in the module `family::name`: its
//! argument struct (re-exported from `family`), its [`JobArgs`] impl and its handler
//! `pub async fn handle(services: Arc<Services>, args, ctx: JobContext) -> Result<(), JobError>`.
//! So `calendar.reschedule` is [`calendar::reschedule::handle`] and `notify.sms` is
//! [`notify::sms::handle`]; `noop` ([`noop::handle`]) alone takes no services. What several
//! kinds of a family share sits beside them in that family (`calendar::rate_limited`,
//! `notify::send`, the `webhook` module itself).
//!
//! Layout:
//! - `job/`: the contract the queue needs: [`JobArgs`] and [`EnqueueOptions`], [`Policy`] and
//!   [`Backoff`], [`JobContext`] with the [`Enqueuer`] and [`RateLimiter`] capabilities,
//!   [`JobError`] (the outcomes other than success) and the [`Registry`]. Re-exported here.
//! - `noop.rs`: the `noop` kind, for benchmarks and queue tests ([`registry`]).
//! - `webhook/`: `webhook.retell`, `webhook.calcom`, `webhook.stripe`: one verified delivery
//!   each, recorded in `webhook_events` and turned into rows and follow-up jobs.
//! - `calendar/`: `calendar.book`, `.reschedule`, `.cancel` and `.reconcile` against Cal.com,
//!   every request behind the key's fleet-wide rate limit (`rate_limited.rs`).
//! - `billing/`: `billing.report_usage` (call minutes to Stripe, exactly once) and
//!   `billing.reconcile` (the reports the webhook path missed).
//! - `notify/`: `notify.email`, `notify.sms` (once through the outbox, `send.rs`, doubts
//!   after a crash resolved in `doubt.rs`, test-only fault points in `faults.rs`),
//!   `notify.reminders`, and what messages say (`templates.rs`, `templates/`).
//! - `clients/`: the outbound transports: Cal.com (`calcom/`), Stripe and SMS over one HTTP
//!   layer (`http.rs`), mail over SMTP or files; all fail with one `SendError`.
//! - `store/`: the database (sqlx, MariaDB/MySQL and `SQLite`), one repository module per
//!   table; errors name the operation that failed.
//! - `services.rs`: what handlers share (store, clients, limiter), built once by the runtime;
//!   [`domain_registry`] wires every kind to it.
//! - `contract/` (feature `contract`): requests checked against the providers' `OpenAPI`
//!   documents, for the development stand-ins and the client tests; never in production.
//! - `trace.rs`: what a job carries of its trace (W3C `traceparent`) and its ingest request
//!   id, and how a span adopts it.
//! - `secret.rs`: [`Secret`], a credential that never prints; the runtime loads them, this
//!   crate never reads the environment.

#![forbid(unsafe_code)]

use std::sync::Arc;

use services::Services;

pub mod billing;
pub mod calendar;
pub mod clients;
#[cfg(feature = "contract")]
pub mod contract;
mod job;
pub mod names;
pub mod noop;
pub mod notify;
pub mod secret;
pub mod services;
pub mod store;
pub mod trace;
pub mod webhook;

pub use secret::Secret;

pub use job::{
    ArgsError, Backoff, EnqueueError, EnqueueOptions, Enqueuer, Handler, JobArgs, JobContext,
    JobError, JobMeta, KindInfo, Policy, Priority, RateLimiter, Registry,
};

/// The built-in kinds that need no services (`noop`): benchmarks and queue tests use these.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register::<noop::Noop, _, _>(noop::handle);
    registry
}

/// Every job kind with a handler in this build, wired to `services`.
pub fn domain_registry(services: &Arc<Services>) -> Registry {
    let mut registry = registry();
    let r = &mut registry;
    with_services(r, services, webhook::retell::handle);
    with_services(r, services, webhook::calcom::handle);
    with_services(r, services, webhook::stripe::handle);
    with_services(r, services, calendar::book::handle);
    with_services(r, services, calendar::reschedule::handle);
    with_services(r, services, calendar::cancel::handle);
    with_services(r, services, calendar::reconcile::handle);
    with_services(r, services, billing::report_usage::handle);
    with_services(r, services, billing::reconcile::handle);
    with_services(r, services, notify::reminders::handle);
    with_services(r, services, notify::email::handle);
    with_services(r, services, notify::sms::handle);
    debug_assert_eq!(
        registry.kinds(),
        {
            let mut kinds: Vec<_> = catalogue().iter().map(|k| k.kind).collect();
            kinds.sort_unstable();
            kinds
        },
        "catalogue() lists exactly the kinds domain_registry registers"
    );
    registry
}

/// Every kind [`domain_registry`] registers, as the doors that enqueue by name see them.
pub fn catalogue() -> Vec<KindInfo> {
    vec![
        KindInfo::of::<noop::Noop>(),
        KindInfo::of::<webhook::RetellWebhook>(),
        KindInfo::of::<webhook::CalcomWebhook>(),
        KindInfo::of::<webhook::StripeWebhook>(),
        KindInfo::of::<calendar::book::CalendarBook>(),
        KindInfo::of::<calendar::reschedule::CalendarReschedule>(),
        KindInfo::of::<calendar::cancel::CalendarCancel>(),
        KindInfo::of::<calendar::reconcile::CalendarReconcile>(),
        KindInfo::of::<billing::report_usage::ReportUsage>(),
        KindInfo::of::<billing::reconcile::BillingReconcile>(),
        KindInfo::of::<notify::reminders::NotifyReminders>(),
        KindInfo::of::<notify::email::NotifyEmail>(),
        KindInfo::of::<notify::sms::NotifySms>(),
    ]
}

/// Register `handle` for its kind `A`, each run getting its own handle on `services`.
fn with_services<A, H, Fut>(registry: &mut Registry, services: &Arc<Services>, handle: H)
where
    A: JobArgs,
    H: Fn(Arc<Services>, A, JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), JobError>> + Send + 'static,
{
    let services = Arc::clone(services);
    registry.register::<A, _, _>(move |args, ctx| handle(Arc::clone(&services), args, ctx));
}

#[cfg(test)]
mod tests {
    use super::{JobArgs, Policy, Priority, billing, calendar, notify, webhook};
    use crate::notify::{send::priority, templates::Template};

    #[test]
    fn work_customers_and_the_books_depend_on_survives_outages() {
        for (policy, provider) in [
            (webhook::RetellWebhook::POLICY, "database"),
            (webhook::CalcomWebhook::POLICY, "database"),
            (webhook::StripeWebhook::POLICY, "database"),
            (calendar::book::CalendarBook::POLICY, "calcom"),
            (calendar::reschedule::CalendarReschedule::POLICY, "calcom"),
            (calendar::cancel::CalendarCancel::POLICY, "calcom"),
            (billing::report_usage::ReportUsage::POLICY, "stripe"),
            (notify::email::NotifyEmail::POLICY, "smtp"),
            (notify::sms::NotifySms::POLICY, "sms"),
        ] {
            assert_eq!(policy, Policy::OUTAGE_PROOF.circuit(provider));
            assert!(policy.retry_budget.unwrap().as_secs() >= 3600);
        }
        // Recurring runs keep attempts: the next run does the work again anyway.
        assert_eq!(
            calendar::reconcile::CalendarReconcile::POLICY,
            Policy::DEFAULT
        );
    }

    /// Issue 17's defaults: cancellations (and confirmations, by template) ahead, the sweeps
    /// and reminders behind; everything else normal.
    #[test]
    fn urgent_work_goes_first_and_sweeps_last() {
        for info in super::catalogue() {
            let expected = match info.kind {
                "calendar.cancel" => Priority::High,
                "calendar.reconcile" | "billing.reconcile" | "notify.reminders" => Priority::Low,
                _ => Priority::Normal,
            };
            assert_eq!(info.priority, expected, "{}", info.kind);
        }
        assert_eq!(
            calendar::cancel::CalendarCancel::PRIORITY,
            Priority::High,
            "the constant and the catalogue agree"
        );
        assert_eq!(priority(Template::Confirmation), Priority::High);
        assert_eq!(priority(Template::Cancellation), Priority::High);
        assert_eq!(priority(Template::Reschedule), Priority::High);
        assert_eq!(priority(Template::Reminder), Priority::Low);
        assert_eq!(priority(Template::PaymentFailed), Priority::Normal);
    }
}
