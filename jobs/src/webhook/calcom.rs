//! `webhook.calcom`: `BOOKING_CREATED`, `BOOKING_CANCELLED` and `BOOKING_RESCHEDULED` upsert
//! `appointments` (a reschedule links the old uid) and notify the customer by email and,
//! when a phone number is known, by SMS.

use std::sync::Arc;

use serde::Deserialize;

use super::{Handled, db_retry, invalid, with_event_row};
use crate::{
    JobContext, JobError,
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
    appointments::upsert(store, &appointment)
        .await
        .map_err(db_retry)?;
    if template == Template::Reschedule
        && let Some(old) = &p.reschedule_uid
    {
        appointments::set_status(store, old, "rescheduled")
            .await
            .map_err(db_retry)?;
    }

    if matches!(template, Template::Confirmation | Template::Reschedule) {
        reminders::skip_day_reminder_if_soon(
            store,
            &p.uid,
            &p.start_time,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .map_err(db_retry)?;
    }
    let vars = message_vars(store, &business, &p, name.clone()).await?;
    notify_customer(ctx, &business, &p.uid, template, email, phone, name, vars).await?;
    Ok(Handled::Processed)
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
    if let Some(to) = email {
        email::enqueue(ctx, message(to, "email")).await?;
    }
    if let Some(to) = phone {
        sms::enqueue(ctx, message(to, "sms")).await?;
    }
    Ok(())
}
