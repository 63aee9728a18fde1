//! Webhook jobs: what ingest enqueues for each verified provider event, and their handlers
//! (one module per provider). Every run records the event in `webhook_events`: `processed`,
//! `ignored` (an event type Switchboard does not act on) or `failed` (with the reason, and
//! the job goes to the dead set).

pub mod calcom;
pub mod retell;
pub mod stripe;

use serde::{Deserialize, Serialize};

use crate::{
    JobArgs, JobError,
    services::Services,
    store::{StoreError, webhook_events},
};

/// A verified webhook delivery, exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

macro_rules! webhook_kind {
    ($name:ident, $kind:literal) => {
        #[doc = concat!("Arguments of `", $kind, "`.")]
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub WebhookEvent);

        impl JobArgs for $name {
            const KIND: &'static str = $kind;
            const QUEUE: &'static str = "webhooks";
        }
    };
}

webhook_kind!(RetellWebhook, "webhook.retell");
webhook_kind!(CalcomWebhook, "webhook.calcom");
webhook_kind!(StripeWebhook, "webhook.stripe");

/// How processing of an event ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Records written, follow-ups enqueued.
    Processed,
    /// An event type Switchboard does not act on.
    Ignored,
}

/// Run `work` for `event`, bracketed by its `webhook_events` row.
pub(crate) async fn record<F>(
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
    .map_err(transient)?;
    let outcome = work.await;
    let (status, error) = match &outcome {
        Ok(Handled::Processed) => ("processed", None),
        Ok(Handled::Ignored) => ("ignored", None),
        Err(JobError::Permanent(reason)) => ("failed", Some(reason.as_str())),
        // A transient failure will be retried: the row stays `received` with the error.
        Err(e) => {
            let text = e.to_string();
            webhook_events::finish(store, provider, id, "received", Some(&text))
                .await
                .map_err(transient)?;
            return outcome.map(|_| ());
        }
    };
    webhook_events::finish(store, provider, id, status, error)
        .await
        .map_err(transient)?;
    if let Ok(Handled::Ignored) = outcome {
        tracing::info!(provider, event_type = %event.event_type, "webhook event ignored");
    }
    outcome.map(|_| ())
}

/// A database failure is worth retrying.
pub(crate) fn transient(e: StoreError) -> JobError {
    JobError::retry(e)
}

/// A body that passed ingest but does not have the shape processing needs.
pub(crate) fn invalid(provider: &str, e: &serde_json::Error) -> JobError {
    JobError::permanent(format!("{provider} payload cannot be processed: {e}"))
}
