//! `webhook.calcom`: `BOOKING_CREATED`, `BOOKING_CANCELLED` and `BOOKING_RESCHEDULED` write
//! `appointments` (a reschedule links the old uid and marks it `rescheduled`) and notify the
//! customer by email and, when a phone number is known, by SMS.
//!
//! Events of one booking may arrive in any order. Each carries Cal.com's `createdAt`; a write
//! lands only if no newer event wrote the row, and a `BOOKING_CREATED` never books a row
//! that is cancelled or moved away (see [`appointments`]). Only an event whose write landed
//! notifies; one that lost is recorded as stale and sends nothing, so the customer never
//! hears "confirmed" after "cancelled".

use std::sync::Arc;

use serde::Deserialize;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use super::{Handled, db_retry, invalid, with_event_row};
use crate::{
    EnqueueOptions, JobContext, JobError,
    notify::{
        email, local_time, reminders,
        send::Message,
        sms,
        templates::{Locale, MessageVars, Template},
    },
    services::Services,
    store::{
        appointments::{self, Appointment},
        companies::{self, Business},
        customers,
    },
};

webhook_kind!(CalcomWebhook, "webhook.calcom");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    trigger_event: String,
    /// When Cal.com raised the event (RFC 3339): orders the events of one booking.
    created_at: Option<String>,
    payload: Payload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    uid: String,
    event_type_id: Option<i64>,
    title: Option<String>,
    event_title: Option<String>,
    start_time: String,
    end_time: String,
    location: Option<String>,
    #[serde(default)]
    attendees: Vec<Attendee>,
    cancellation_reason: Option<String>,
    reschedule_uid: Option<String>,
    reschedule_start_time: Option<String>,
    reschedule_end_time: Option<String>,
    metadata: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attendee {
    name: Option<String>,
    email: Option<String>,
    phone_number: Option<String>,
}

/// Handler of `webhook.calcom`.
pub async fn handle(
    services: Arc<Services>,
    args: CalcomWebhook,
    ctx: JobContext,
) -> Result<(), JobError> {
    let event = args.0;
    with_event_row(&services, &event, process(&services, &event.body, &ctx)).await
}

async fn process(services: &Services, body: &str, ctx: &JobContext) -> Result<Handled, JobError> {
    let body: Body = serde_json::from_str(body).map_err(|e| invalid("calcom", &e))?;
    let (status, template) = match body.trigger_event.as_str() {
        "BOOKING_CREATED" => ("booked", Template::Confirmation),
        "BOOKING_CANCELLED" => ("cancelled", Template::Cancellation),
        "BOOKING_RESCHEDULED" => ("booked", Template::Reschedule),
        _ => return Ok(Handled::Ignored),
    };
    let event_at_ms = event_time(body.created_at.as_deref(), &body.payload.uid)?;
    let p = body.payload;
    let store = &services.store;
    let event_type = p.event_type_id.ok_or_else(|| {
        JobError::permanent(format!(
            "calcom booking {} has no eventTypeId, so no branch can be found",
            p.uid
        ))
    })?;
    let business = companies::by_calcom_event_type(store, event_type)
        .await
        .map_err(db_retry)?
        .ok_or_else(|| {
            JobError::permanent(format!(
                "no branch books through Cal.com event type {event_type} (booking {})",
                p.uid
            ))
        })?;
    let attendee = p.attendees.first();
    let phone = attendee
        .and_then(|a| a.phone_number.clone())
        .filter(|s| !s.is_empty());
    let email = attendee
        .and_then(|a| a.email.clone())
        .filter(|s| !s.is_empty());
    let name = attendee.and_then(|a| a.name.clone());
    let customer_id = match &phone {
        Some(phone) => Some(
            customers::upsert(
                store,
                business.company.id,
                phone,
                name.as_deref(),
                email.as_deref(),
            )
            .await
            .map_err(db_retry)?,
        ),
        None => None,
    };
    let call_id = p
        .metadata
        .as_ref()
        .and_then(|m| m.get("retell_call_id"))
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    let appointment = Appointment {
        uid: p.uid.clone(),
        company_id: business.company.id,
        branch_id: business.branch_id,
        customer_id,
        status: status.to_owned(),
        title: p.title.clone(),
        start_at: p.start_time.clone(),
        end_at: p.end_time.clone(),
        location: p.location.clone(),
        attendee_name: name.clone(),
        attendee_email: email.clone(),
        attendee_phone: phone.clone(),
        rescheduled_from_uid: p
            .reschedule_uid
            .clone()
            .filter(|_| template == Template::Reschedule),
        cancellation_reason: p.cancellation_reason.clone(),
        call_id,
    };
    // Fault points: dying before this write leaves nothing done, and the retry does it all.
    // Dying after it (before the notifications below) leaves the row at this event's time;
    // the retry's write lands again (an equal time does) unless a newer event landed
    // meanwhile, and then enqueues the notifications, whose keys make a repeat a no-op.
    let landed = appointments::record_event(store, &appointment, event_at_ms)
        .await
        .map_err(db_retry)?;
    if template == Template::Reschedule {
        mark_moved_away(store, &p, &appointment, event_at_ms).await?;
    }
    if !landed {
        return Ok(Handled::Stale);
    }

    if matches!(template, Template::Confirmation | Template::Reschedule) {
        reminders::skip_day_reminder_if_soon(
            store,
            &p.uid,
            &p.start_time,
            OffsetDateTime::now_utc(),
        )
        .await
        .map_err(db_retry)?;
    }
    let vars = message_vars(store, &business, &p, name.clone()).await?;
    notify_customer(ctx, &business, &p.uid, template, email, phone, name, vars).await?;
    Ok(Handled::Processed)
}

/// After a `BOOKING_RESCHEDULED`: mark the old booking (`rescheduleUid`) moved away, under
/// its own time rule (a newer event of the old booking stands). Fault points as for the new
/// booking's write: the mark is idempotent at an equal time.
async fn mark_moved_away(
    store: &crate::store::Store,
    p: &Payload,
    new: &Appointment,
    event_at_ms: i64,
) -> Result<(), JobError> {
    let Some(old) = &p.reschedule_uid else {
        return Ok(());
    };
    let moved_away = Appointment {
        uid: old.clone(),
        start_at: p
            .reschedule_start_time
            .clone()
            .unwrap_or(p.start_time.clone()),
        end_at: p.reschedule_end_time.clone().unwrap_or(p.end_time.clone()),
        rescheduled_from_uid: None,
        cancellation_reason: None,
        ..new.clone()
    };
    if !appointments::mark_rescheduled(store, &moved_away, event_at_ms)
        .await
        .map_err(db_retry)?
    {
        tracing::info!(uid = %old, new = %p.uid, "old booking has a newer state: not marked rescheduled");
    }
    Ok(())
}

/// Cal.com's `createdAt` in ms since the epoch; an event without one cannot be ordered.
fn event_time(created_at: Option<&str>, uid: &str) -> Result<i64, JobError> {
    let created_at = created_at.unwrap_or_default();
    let at = OffsetDateTime::parse(created_at.trim(), &Rfc3339).map_err(|e| {
        JobError::permanent(format!(
            "calcom booking {uid}: createdAt {created_at:?} is not RFC 3339 ({e}), so the event cannot be ordered"
        ))
    })?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(JobError::permanent)
}

/// What the customer's message says, with times in the business's zone and language.
async fn message_vars(
    store: &crate::store::Store,
    business: &Business,
    p: &Payload,
    name: Option<String>,
) -> Result<MessageVars, JobError> {
    let zone = local_time::business_zone(store, &business.company, business.branch_id)
        .await
        .map_err(db_retry)?;
    let locale = Locale::from_tag(&business.company.locale);
    let local = |t: &str| local_time::format(t, &zone, locale);
    Ok(MessageVars {
        recipient_name: name.unwrap_or_default(),
        company_name: business.company.name.clone(),
        service: p.event_title.clone().or(p.title.clone()),
        start: Some(local(&p.start_time)),
        previous_start: p.reschedule_start_time.as_deref().map(local),
        location: p.location.clone(),
        amount: None,
        invoice_url: None,
    })
}

/// Enqueue the customer's notifications, keyed by booking and template so each goes once.
#[allow(clippy::too_many_arguments)]
async fn notify_customer(
    ctx: &JobContext,
    business: &Business,
    uid: &str,
    template: Template,
    email: Option<String>,
    phone: Option<String>,
    name: Option<String>,
    vars: MessageVars,
) -> Result<(), JobError> {
    let message = |to: String, channel: &str| Message {
        key: format!("appointment:{uid}:{}:{channel}", template.as_str()),
        to,
        to_name: name.clone(),
        template,
        locale: business.company.locale.clone(),
        vars: vars.clone(),
    };
    // The company is the tenant: one business's burst never holds up another's messages.
    let options = || EnqueueOptions::default().tenant(business.company.id.to_string());
    if let Some(to) = email {
        email::enqueue_with(ctx, message(to, "email"), options()).await?;
    }
    if let Some(to) = phone {
        sms::enqueue_with(ctx, message(to, "sms"), options()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_orders_events_to_the_millisecond() {
        assert_eq!(
            event_time(Some("2026-09-25T15:40:03.004Z"), "u").unwrap(),
            1_790_350_803_004
        );
        assert_eq!(
            event_time(Some("2026-09-25T17:40:03.004+02:00"), "u").unwrap(),
            1_790_350_803_004,
            "an offset is the same instant"
        );
        for unordered in [None, Some(""), Some("yesterday")] {
            assert!(
                matches!(event_time(unordered, "u"), Err(JobError::Permanent(r)) if r.contains("cannot be ordered")),
                "{unordered:?}"
            );
        }
    }
}
