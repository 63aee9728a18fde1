//! Webhook jobs: what ingest enqueues for each verified provider event.

use serde::{Deserialize, Serialize};

use crate::JobArgs;

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
