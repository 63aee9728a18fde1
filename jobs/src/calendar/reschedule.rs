//! `calendar.reschedule`: move a booking at Cal.com, then record the moved booking here.
//! Safe to repeat: an appointment already `rescheduled` here is left alone, and a booking
//! already moved at Cal.com is found rather than moved twice.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::rate_limited::{RateLimited, appointment_and_client};
use crate::{
    JobArgs, JobContext, JobError,
    clients::calcom::{self, BookingQuery},
    services::Services,
    store::appointments::{self, Appointment},
};

/// Arguments of `calendar.reschedule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CalendarReschedule {
    /// The booking to move.
    pub uid: String,
    /// New start, RFC 3339.
    pub start: String,
    pub reason: Option<String>,
}

impl JobArgs for CalendarReschedule {
    const KIND: &'static str = "calendar.reschedule";
    const QUEUE: &'static str = "calendar";
    const POLICY: crate::Policy = crate::Policy::OUTAGE_PROOF.circuit("calcom");
}

/// Handler of `calendar.reschedule`. Cal.com gives the moved booking a new uid; a repeat
/// finds it (same attendee, same start, not the old uid) and only records it.
pub async fn handle(
    services: Arc<Services>,
    args: CalendarReschedule,
    _ctx: JobContext,
) -> Result<(), JobError> {
    let Some((appointment, client, limit_name)) =
        appointment_and_client(&services, &args.uid, "rescheduled").await?
    else {
        return Ok(());
    };
    let cal = RateLimited {
        services: &services,
        limit_name: &limit_name,
    };
    let query = BookingQuery {
        event_type_id: None,
        attendee_email: appointment.attendee_email.clone(),
        after_start: Some(args.start.clone()),
        before_end: None,
        status: None,
    };
    let moved = match appointment.attendee_email {
        Some(_) => cal
            .list_bookings(&client, &query)
            .await?
            .into_iter()
            .find(|b| {
                Some(&b.start) == calcom::utc(&args.start).as_ref()
                    && b.uid != args.uid
                    && !b.status.eq_ignore_ascii_case("cancelled")
            }),
        None => None,
    };
    let booking = match moved {
        Some(b) => b,
        None => {
            cal.call(client.reschedule(&args.uid, &args.start, args.reason.as_deref()))
                .await?
        }
    };
    let new = Appointment {
        uid: booking.uid.clone(),
        status: "booked".into(),
        start_at: booking.start.clone(),
        end_at: booking.end.clone(),
        rescheduled_from_uid: Some(args.uid.clone()),
        ..appointment
    };
    // Fault points: dying before or between these writes, the retry finds the moved booking
    // at Cal.com and writes both again. The new booking is written without an event time and
    // only while not cancelled, so its own webhooks, earlier or later, keep their say.
    appointments::record_booked(&services.store, &new)
        .await
        .map_err(JobError::retry)?;
    appointments::set_status(&services.store, &args.uid, "rescheduled")
        .await
        .map_err(JobError::retry)?;
    Ok(())
}
