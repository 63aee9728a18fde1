//! Webhook jobs: what ingest enqueues for each verified provider event, one kind per provider
//! module (`webhook.retell` is [`retell::RetellWebhook`], handled by [`retell::handle`]); all
//! three carry the same [`WebhookEvent`]. Every run records the event in `webhook_events`:
//! `processed`, `ignored` (an event type Switchboard does not act on; or, with the reason
//! `stale`, an event older than what is stored) or `failed` (with the reason, and the job goes
//! to the dead set).
//!
//! Events of one booking or invoice may run in any order (retries, several workers). The
//! Cal.com and Stripe handlers therefore compare the provider's own event time with the time
//! stored on the row, in the same statement that writes it, and an event that loses changes
//! nothing and notifies nobody.

use serde::{Deserialize, Serialize};

use crate::{
    JobError,
    services::Services,
    store::{StoreError, call_events, webhook_events},
};

/// Declares the argument struct of one webhook kind: a [`WebhookEvent`] on the `webhooks`
/// queue. Defined before the provider modules, which invoke it, so it is in their scope.
macro_rules! webhook_kind {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("Arguments of `", $kind, "`.")]
        #[derive(
            Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub $crate::webhook::WebhookEvent);

        impl $crate::JobArgs for $name {
            const KIND: &'static str = $kind;
            const QUEUE: &'static str = "webhooks";
            const POLICY: $crate::Policy = $crate::Policy::OUTAGE_PROOF.circuit("database");
        }
    };
}

pub mod calcom;
pub mod retell;
pub mod stripe;

pub use calcom::CalcomWebhook;
pub use retell::RetellWebhook;
pub use stripe::StripeWebhook;

/// A verified webhook delivery, exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WebhookEvent {
    /// `retell`, `calcom` or `stripe`.
    pub provider: String,
    /// The provider's event type, e.g. `call_ended`, `BOOKING_CREATED`, `invoice.paid`.
    pub event_type: String,
    /// The key the delivery was deduplicated by.
    pub dedupe_key: String,
    /// When ingest accepted it, ms since the epoch.
    pub received_at_ms: u64,
    /// The ingest request id (also in the logs).
    pub request_id: String,
    /// The exact raw body the signature was verified over.
    pub body: String,
}

/// How processing of an event ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Records written, follow-ups enqueued.
    Processed,
    /// An event type Switchboard does not act on.
    Ignored,
    /// Older than what is stored (a newer event of the same booking or invoice, or a
    /// cancellation, got there first): nothing written, nobody notified.
    Stale,
}

/// The `error` column of an event that lost to a newer one.
pub const STALE: &str = "stale";

/// Run `work` for `event`, bracketed by its `webhook_events` row.
pub(crate) async fn with_event_row<F>(
    services: &Services,
    event: &WebhookEvent,
    work: F,
) -> Result<(), JobError>
where
    F: Future<Output = Result<Handled, JobError>>,
{
    let store = &services.store;
    let (provider, id) = (event.provider.as_str(), event.dedupe_key.as_str());
    webhook_events::begin(
        store,
        provider,
        id,
        &event.event_type,
        event.received_at_ms as i64,
    )
    .await
    .map_err(db_retry)?;
    let outcome = work.await;
    let (status, error) = ending(&outcome);
    webhook_events::finish(store, provider, id, status, error.as_deref())
        .await
        .map_err(db_retry)?;
    settle(event, outcome)
}

/// Write how `event` ended on the store's batch path (its row was begun there with its
/// call's rows), then log it as [`with_event_row`] does.
pub(crate) async fn finish_batched(
    services: &Services,
    event: &WebhookEvent,
    outcome: Result<Handled, JobError>,
) -> Result<(), JobError> {
    let (status, error) = ending(&outcome);
    let done = webhook_events::Finished {
        event: event_row(event),
        status,
        error,
    };
    call_events::finish(&services.store, done)
        .await
        .map_err(db_retry)?;
    settle(event, outcome)
}

/// The row `event` begins with.
pub(crate) fn event_row(event: &WebhookEvent) -> webhook_events::EventRow {
    webhook_events::EventRow {
        provider: event.provider.clone(),
        event_id: event.dedupe_key.clone(),
        event_type: event.event_type.clone(),
        received_at_ms: event.received_at_ms as i64,
    }
}

/// The status and error an outcome leaves on the event's row. A transient failure will be
/// retried: the row stays `received`, with the error.
fn ending(outcome: &Result<Handled, JobError>) -> (&'static str, Option<String>) {
    match outcome {
        Ok(Handled::Processed) => ("processed", None),
        Ok(Handled::Ignored) => ("ignored", None),
        Ok(Handled::Stale) => ("ignored", Some(STALE.to_owned())),
        Err(JobError::Permanent(reason)) => ("failed", Some(reason.clone())),
        Err(e) => ("received", Some(e.to_string())),
    }
}

/// Log an event that changed nothing; the job's result.
fn settle(event: &WebhookEvent, outcome: Result<Handled, JobError>) -> Result<(), JobError> {
    let (provider, id) = (event.provider.as_str(), event.dedupe_key.as_str());
    match outcome {
        Ok(Handled::Ignored) => {
            tracing::info!(provider, event_type = %event.event_type, "webhook event ignored");
        }
        Ok(Handled::Stale) => {
            tracing::info!(provider, event_type = %event.event_type, event = id, "webhook event older than the stored state: ignored");
        }
        _ => {}
    }
    outcome.map(|_| ())
}

/// A database failure is worth retrying.
pub(crate) fn db_retry(e: StoreError) -> JobError {
    JobError::retry(e)
}

/// A body that passed ingest but does not have the shape processing needs.
pub(crate) fn invalid(provider: &str, e: &serde_json::Error) -> JobError {
    JobError::permanent(format!("{provider} payload cannot be processed: {e}"))
}
