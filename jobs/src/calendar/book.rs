//! `calendar.book`: the free slot nearest the caller's preferred start, booked once.
//!
//! Idempotency: the booking carries `switchboard_request = book:<call id>` in its metadata.
//! Before creating, the job lists the attendee's bookings of the event type in the search
//! window and reuses one carrying its request id, so a retry after a lost response (the
//! booking exists, the job never learned it) books nothing twice.

use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};

use super::rate_limited::RateLimited;
use crate::{
    EnqueueOptions, JobArgs, JobContext, JobError,
    clients::calcom::{Attendee, Booking, BookingQuery, CreateBooking},
    notify::{
        email, local_time, reminders,
        send::Message,
        sms,
        templates::{Locale, MessageVars, Template},
    },
    services::Services,
    store::{
        appointments::{self, Appointment},
        companies::{self, Company},
    },
};

/// How far ahead of the preferred start free slots are searched.
const SEARCH_DAYS: i64 = 7;

/// Arguments of `calendar.book`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CalendarBook {
    /// The Retell call that asked for it (also the idempotency key: one booking per call).
    pub call_id: String,
    pub company_id: i64,
    pub branch_id: i64,
    pub customer_id: Option<i64>,
    pub service: Option<String>,
    /// ISO 8601 as the agent captured it.
    pub preferred_start: Option<String>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
}

impl JobArgs for CalendarBook {
    const KIND: &'static str = "calendar.book";
    const QUEUE: &'static str = "calendar";
    const POLICY: crate::Policy = crate::Policy::OUTAGE_PROOF.circuit("calcom");
}

/// Handler of `calendar.book`.
pub async fn handle(
    services: Arc<Services>,
    args: CalendarBook,
    ctx: JobContext,
) -> Result<(), JobError> {
    let store = &services.store;
    let company = companies::get(store, args.company_id)
        .await
        .map_err(JobError::retry)?
        .ok_or_else(|| {
            JobError::permanent(format!("company {} does not exist", args.company_id))
        })?;
    let branch = companies::branch(store, args.branch_id)
        .await
        .map_err(JobError::retry)?
        .ok_or_else(|| JobError::permanent(format!("branch {} does not exist", args.branch_id)))?;
    let event_type = branch.calcom_event_type_id.ok_or_else(|| {
        JobError::permanent(format!(
            "branch {} ({}) has no Cal.com event type",
            branch.id, branch.name
        ))
    })?;
    let (client, limit_name) = services.calendar.client_for(&company).ok_or_else(|| {
        JobError::permanent(format!(
            "no Cal.com API key for company {} (set one or CALCOM_API_KEY)",
            company.id
        ))
    })?;
    let request_id = format!("book:{}", args.call_id);
    let email = attendee_email(&args)?;
    let (from, to) = window(args.preferred_start.as_deref())?;
    let cal = RateLimited {
        services: &services,
        limit_name: &limit_name,
    };

    let query = BookingQuery {
        event_type_id: Some(event_type),
        attendee_email: Some(email.clone()),
        after_start: Some(from.clone()),
        before_end: Some(to.clone()),
        status: None,
    };
    let existing = cal.list_bookings(&client, &query).await?;
    let booking = if let Some(b) = existing.into_iter().find(|b| carries(b, &request_id)) {
        tracing::info!(call = %args.call_id, uid = %b.uid, "booking already exists: an earlier attempt created it");
        b
    } else {
        let slots = cal
            .call(client.free_slots(event_type, &from, &to, &branch.timezone))
            .await?;
        let start = nearest(&slots, args.preferred_start.as_deref()).ok_or_else(|| {
            JobError::permanent(format!(
                "no free slot for event type {event_type} between {from} and {to}"
            ))
        })?;
        let request = CreateBooking {
            start,
            event_type_id: event_type,
            attendee: Attendee {
                name: args
                    .customer_name
                    .clone()
                    .unwrap_or_else(|| "Caller".into()),
                email: email.clone(),
                time_zone: branch.timezone.clone(),
                phone_number: args.customer_phone.clone(),
            },
            metadata: BTreeMap::from([
                ("switchboard_request".to_owned(), request_id.clone()),
                ("retell_call_id".to_owned(), args.call_id.clone()),
            ]),
        };
        cal.call(client.create_booking(&request)).await?
    };
    store_and_confirm(&services, &ctx, &args, &company, &booking, &email).await
}

/// Cal.com requires an attendee email; callers often give none, so one is derived from the
/// phone number in a reserved domain (no mail is sent there).
fn attendee_email(args: &CalendarBook) -> Result<String, JobError> {
    if let Some(email) = args.customer_email.clone().filter(|e| e.contains('@')) {
        return Ok(email);
    }
    let digits: String = args
        .customer_phone
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        return Err(JobError::permanent(format!(
            "call {} gave neither an email nor a phone number to book with",
            args.call_id
        )));
    }
    Ok(format!("{digits}@phone.askproai.invalid"))
}

/// The search window around the preferred start: a day before it (not before now) to
/// [`SEARCH_DAYS`] after it. Slots and the idempotency lookup use the same window.
fn window(preferred: Option<&str>) -> Result<(String, String), JobError> {
    let now = OffsetDateTime::now_utc();
    let target = match preferred {
        Some(p) => OffsetDateTime::parse(p, &Rfc3339)
            .map_err(|e| {
                JobError::permanent(format!("preferred_start {p:?} is not RFC 3339: {e}"))
            })?
            .max(now),
        None => now,
    };
    let start = (target - Span::days(1)).max(now);
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339).map_err(JobError::permanent);
    Ok((fmt(start)?, fmt(target + Span::days(SEARCH_DAYS))?))
}

/// The slot closest to `preferred` (the earliest when there is no preference).
fn nearest(slots: &[String], preferred: Option<&str>) -> Option<String> {
    let target = preferred.and_then(|p| OffsetDateTime::parse(p, &Rfc3339).ok());
    let parsed = slots
        .iter()
        .filter_map(|s| OffsetDateTime::parse(s, &Rfc3339).ok().map(|t| (t, s)));
    match target {
        Some(t) => parsed
            .min_by_key(|(s, _)| (*s - t).abs())
            .map(|(_, s)| s.clone()),
        None => parsed.min_by_key(|(s, _)| *s).map(|(_, s)| s.clone()),
    }
}

fn carries(b: &Booking, request_id: &str) -> bool {
    b.metadata
        .get("switchboard_request")
        .is_some_and(|r| r == request_id)
        && !b.status.eq_ignore_ascii_case("cancelled")
}

async fn store_and_confirm(
    services: &Services,
    ctx: &JobContext,
    args: &CalendarBook,
    company: &Company,
    booking: &Booking,
    email: &str,
) -> Result<(), JobError> {
    let appointment = Appointment {
        uid: booking.uid.clone(),
        company_id: company.id,
        branch_id: args.branch_id,
        customer_id: args.customer_id,
        status: "booked".into(),
        title: booking.title.clone(),
        start_at: booking.start.clone(),
        end_at: booking.end.clone(),
        location: None,
        attendee_name: args.customer_name.clone(),
        attendee_email: Some(email.to_owned()).filter(|e| !e.ends_with(".invalid")),
        attendee_phone: args.customer_phone.clone(),
        rescheduled_from_uid: None,
        cancellation_reason: None,
        call_id: Some(args.call_id.clone()),
    };
    // Fault points: dying before this write, the retry finds the booking at Cal.com by its
    // request id and writes it then. Dying after it (before the confirmation), the retry
    // writes it again and enqueues the confirmation under keys that make a repeat a no-op.
    if !appointments::record_booked(&services.store, &appointment)
        .await
        .map_err(JobError::retry)?
    {
        // A cancellation (or move) got there first: it stands, and confirming now would
        // tell the customer "confirmed" after "cancelled".
        tracing::info!(call = %args.call_id, uid = %booking.uid, "booking already cancelled or moved here: not confirmed");
        return Ok(());
    }
    reminders::skip_day_reminder_if_soon(
        &services.store,
        &booking.uid,
        &booking.start,
        OffsetDateTime::now_utc(),
    )
    .await
    .map_err(JobError::retry)?;
    let vars = MessageVars {
        recipient_name: args.customer_name.clone().unwrap_or_default(),
        company_name: company.name.clone(),
        service: args.service.clone().or_else(|| booking.title.clone()),
        start: Some(local_time::format(
            &booking.start,
            &local_time::business_zone(&services.store, company, args.branch_id)
                .await
                .map_err(JobError::retry)?,
            Locale::from_tag(&company.locale),
        )),
        ..MessageVars::default()
    };
    // The same keys as the BOOKING_CREATED webhook uses, so the customer hears it once.
    let message = |to: String, channel: &str| Message {
        key: format!(
            "appointment:{}:{}:{channel}",
            booking.uid,
            Template::Confirmation.as_str()
        ),
        to,
        to_name: args.customer_name.clone(),
        template: Template::Confirmation,
        locale: company.locale.clone(),
        vars: vars.clone(),
    };
    let options = || EnqueueOptions::default().tenant(company.id.to_string());
    if let Some(to) = appointment.attendee_email.clone() {
        email::enqueue_with(ctx, message(to, "email"), options()).await?;
    }
    if let Some(to) = args.customer_phone.clone() {
        sms::enqueue_with(ctx, message(to, "sms"), options()).await?;
    }
    Ok(())
}
