//! `calendar.cancel`: cancel a booking at Cal.com, then here. Safe to repeat: an appointment
//! already `cancelled` here is left alone.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::rate_limited::{RateLimited, appointment_and_client};
use crate::{JobArgs, JobContext, JobError, services::Services, store::appointments};

/// Arguments of `calendar.cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CalendarCancel {
    /// The booking to cancel.
    pub uid: String,
    pub reason: Option<String>,
}

impl JobArgs for CalendarCancel {
    const KIND: &'static str = "calendar.cancel";
    const QUEUE: &'static str = "calendar";
    const POLICY: crate::Policy = crate::Policy::OUTAGE_PROOF.circuit("calcom");
    /// A freed slot and the customer's cancellation go ahead of routine work.
    const PRIORITY: crate::Priority = crate::Priority::High;
}

/// Handler of `calendar.cancel`.
pub async fn handle(
    services: Arc<Services>,
    args: CalendarCancel,
    _ctx: JobContext,
) -> Result<(), JobError> {
    let Some((_, client, limit_name)) =
        appointment_and_client(&services, &args.uid, "cancelled").await?
    else {
        return Ok(());
    };
    let cal = RateLimited {
        services: &services,
        limit_name: &limit_name,
    };
    cal.call(client.cancel(&args.uid, args.reason.as_deref()))
        .await?;
    appointments::set_status(&services.store, &args.uid, "cancelled")
        .await
        .map_err(JobError::retry)?;
    Ok(())
}
