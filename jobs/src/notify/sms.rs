//! `notify.sms`: one rendered template to one phone number, at most once (the outbox rules
//! are in [`super::send`]). Producers call [`enqueue`], which deduplicates by the message key.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::send::{self, Message};
use crate::{EnqueueOptions, JobArgs, JobContext, JobError, services::Services};

/// Arguments of `notify.sms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct NotifySms(pub Message);

impl JobArgs for NotifySms {
    const KIND: &'static str = "notify.sms";
    const QUEUE: &'static str = "notifications";
    const POLICY: crate::Policy = crate::Policy::OUTAGE_PROOF.circuit("sms");
}

/// Enqueue `message` by SMS, deduplicated by its key.
pub async fn enqueue(ctx: &JobContext, message: Message) -> Result<(), JobError> {
    enqueue_with(ctx, message, EnqueueOptions::default()).await
}

/// [`enqueue`] with further `options` (e.g. the company as tenant, an expiry); the dedupe
/// key is set here, and the priority follows the template ([`send::priority`]) unless
/// `options` name one.
pub async fn enqueue_with(
    ctx: &JobContext,
    message: Message,
    options: EnqueueOptions,
) -> Result<(), JobError> {
    let key = message.key.clone();
    let template = message.template;
    send::enqueue_job(ctx, &NotifySms(message), (&key, template), options).await
}

/// Handler of `notify.sms`.
pub async fn handle(
    services: Arc<Services>,
    args: NotifySms,
    _ctx: JobContext,
) -> Result<(), JobError> {
    send::deliver(&services, &args.0, "sms").await
}
