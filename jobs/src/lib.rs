//! Switchboard's domain: what a job is, what it carries and what it does.
//!
//! Every job kind is one typed, versioned argument struct implementing [`JobArgs`] with its
//! policy (queue, attempts, timeout) beside it, and one handler registered in a [`Registry`].
//! This crate never names Redis or HTTP servers: handlers that create follow-up work use the
//! [`Enqueuer`] capability carried by their [`JobContext`], which the runtime implements.

#![forbid(unsafe_code)]

pub mod billing;
pub mod calendar;
pub mod clients;
mod job;
pub mod noop;
pub mod notify;
pub mod services;
pub mod store;
pub mod webhook;

pub use job::{
    Backoff, EnqueueError, EnqueueOptions, Enqueuer, Handler, JobArgs, JobContext, JobError,
    JobMeta, Policy, RateLimiter, Registry,
};

/// The built-in kinds that need no services (`noop`): benchmarks and queue tests use these.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register::<noop::Noop, _, _>(noop::run);
    registry
}

/// Every job kind with a handler in this build, wired to `services`.
pub fn domain_registry(services: &std::sync::Arc<services::Services>) -> Registry {
    use std::sync::Arc;

    let mut registry = registry();
    let s = Arc::clone(services);
    registry.register::<webhook::RetellWebhook, _, _>(move |args, ctx| {
        webhook::retell::run(Arc::clone(&s), args, ctx)
    });
    let s = Arc::clone(services);
    registry.register::<webhook::CalcomWebhook, _, _>(move |args, ctx| {
        webhook::calcom::run(Arc::clone(&s), args, ctx)
    });
    let s = Arc::clone(services);
    registry.register::<webhook::StripeWebhook, _, _>(move |args, ctx| {
        webhook::stripe::run(Arc::clone(&s), args, ctx)
    });
    let s = Arc::clone(services);
    registry.register::<calendar::CalendarBook, _, _>(move |args, ctx| {
        calendar::run_book(Arc::clone(&s), args, ctx)
    });
    let s = Arc::clone(services);
    registry.register::<calendar::CalendarReschedule, _, _>(move |args, ctx| {
        calendar::run_reschedule(Arc::clone(&s), args, ctx)
    });
    let s = Arc::clone(services);
    registry.register::<calendar::CalendarCancel, _, _>(move |args, ctx| {
        calendar::run_cancel(Arc::clone(&s), args, ctx)
    });
    let s = Arc::clone(services);
    registry.register::<calendar::CalendarReconcile, _, _>(move |args, ctx| {
        calendar::run_reconcile(Arc::clone(&s), args, ctx)
    });
    let s = Arc::clone(services);
    registry.register::<billing::ReportUsage, _, _>(move |args, _| {
        billing::run_report_usage(Arc::clone(&s), args)
    });
    let s = Arc::clone(services);
    registry.register::<billing::BillingReconcile, _, _>(move |args, ctx| {
        billing::run_reconcile(Arc::clone(&s), args, ctx)
    });
    let s = Arc::clone(services);
    registry.register::<notify::reminders::NotifyReminders, _, _>(move |args, ctx| {
        notify::reminders::run_reminders(Arc::clone(&s), args, ctx)
    });
    let s = Arc::clone(services);
    registry.register::<notify::send::NotifyEmail, _, _>(move |args, _| {
        notify::send::run_email(Arc::clone(&s), args)
    });
    let s = Arc::clone(services);
    registry.register::<notify::send::NotifySms, _, _>(move |args, _| {
        notify::send::run_sms(Arc::clone(&s), args)
    });
    registry
}
