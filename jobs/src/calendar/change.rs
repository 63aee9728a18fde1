//! `calendar.reschedule` and `calendar.cancel`, each safe to repeat: a booking already in
//! the wanted state (in the database or at Cal.com) is left alone.

use std::sync::Arc;

use super::{CalendarCancel, CalendarReschedule, book::Calendar};
use crate::{
    JobContext, JobError,
    clients::calcom::{self, BookingQuery, CalcomClient},
    services::Services,
    store::{
        appointments::{self, Appointment},
        companies,
    },
};

/// The appointment `uid` and a Cal.com client for its company, or `None` when the
/// appointment is already `done` (a repeat has nothing left to do).
async fn load(
    services: &Services,
    uid: &str,
    done: &str,
) -> Result<Option<(Appointment, CalcomClient, String)>, JobError> {
    let appointment = appointments::get(&services.store, uid)
        .await
        .map_err(JobError::retry)?
        .ok_or_else(|| JobError::permanent(format!("no appointment with uid {uid}")))?;
    if appointment.status == done {
        return Ok(None);
    }
    let company = companies::get(&services.store, appointment.company_id)
        .await
        .map_err(JobError::retry)?
        .ok_or_else(|| {
            JobError::permanent(format!("company {} does not exist", appointment.company_id))
        })?;
    let (client, limit_name) = services.calendar.client_for(&company).ok_or_else(|| {
        JobError::permanent(format!("no Cal.com API key for company {}", company.id))
    })?;
    Ok(Some((appointment, client, limit_name)))
}

/// Handler of `calendar.cancel`.
pub async fn run_cancel(
    services: Arc<Services>,
    args: CalendarCancel,
    _ctx: JobContext,
) -> Result<(), JobError> {
    let Some((_, client, limit_name)) = load(&services, &args.uid, "cancelled").await? else {
        return Ok(());
    };
    let cal = Calendar {
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

/// Handler of `calendar.reschedule`. Cal.com gives the moved booking a new uid; a repeat
/// finds it (same attendee, same start, not the old uid) and only records it.
pub async fn run_reschedule(
    services: Arc<Services>,
    args: CalendarReschedule,
    _ctx: JobContext,
) -> Result<(), JobError> {
    let Some((appointment, client, limit_name)) = load(&services, &args.uid, "rescheduled").await?
    else {
        return Ok(());
    };
    let cal = Calendar {
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
    appointments::upsert(&services.store, &new)
        .await
        .map_err(JobError::retry)?;
    appointments::set_status(&services.store, &args.uid, "rescheduled")
        .await
        .map_err(JobError::retry)?;
    Ok(())
}
