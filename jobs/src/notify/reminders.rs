//! `notify.reminders` (every few minutes, from the scheduler): a reminder before each booked
//! appointment, by email and SMS as its confirmation went.
//!
//! Two kinds: `reminder_24h` for appointments starting within the next 24 hours and
//! `reminder_2h` for those within the next 2 hours. An appointment that is already inside
//! the 2-hour window when first seen gets only the 2-hour one. Cancelled, rescheduled and
//! past appointments get none.
//!
//! Once per appointment and kind, however many runs overlap: the first run to find a reminder
//! due writes its `appointment_reminders` row, whose unique key lets exactly one run count it
//! as new, and marks the row once the notifications are queued (later runs skip it). Each
//! channel's outbox row (`appointment:<uid>:<kind>:<channel>`) is written before its job is
//! enqueued; a run that finds the reminder unfinished (another run is at it, or one died
//! half-way) enqueues the channels still `pending` again, under the queue's unique key, which
//! suppresses the duplicate. The outbox claim makes each send itself at-most-once.
//!
//! A reminder is worthless once its appointment has begun: each channel's job is enqueued
//! to expire at the appointment's start, so one still waiting then (a backlog, a paused
//! queue, an SMTP outage) is recorded as expired by the queue and never sent.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Arc,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    EnqueueOptions, JobArgs, JobContext, JobError,
    notify::{
        email, local_time,
        send::Message,
        sms,
        templates::{Locale, MessageVars, Template},
    },
    services::Services,
    store::{
        Store,
        appointment_reminders::{self, ReminderClaim},
        appointments::{self, Appointment},
        companies::{self, Company},
        customers,
        notifications::{self, NewNotification, Reserved},
    },
};

/// Arguments of `notify.reminders`: none (the windows are the kinds' names); `{}` is a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct NotifyReminders {}

impl JobArgs for NotifyReminders {
    const KIND: &'static str = "notify.reminders";
    const QUEUE: &'static str = "notifications";
    /// Reminders are due hours ahead: confirmations and cancellations go first.
    const PRIORITY: crate::Priority = crate::Priority::Low;
}

/// Which reminder is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Day,
    TwoHours,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Day => "reminder_24h",
            Self::TwoHours => "reminder_2h",
        }
    }

    /// The reminder due for an appointment starting at `start`, seen at `now`.
    fn due(start: OffsetDateTime, now: OffsetDateTime) -> Option<Self> {
        if start <= now || start > now + Span::hours(24) {
            None
        } else if start <= now + Span::hours(2) {
            Some(Self::TwoHours)
        } else {
            Some(Self::Day)
        }
    }
}

/// Called when a booking is confirmed: an appointment booked less than 24 h ahead gets no
/// `reminder_24h` (the confirmation has just told the customer); its `reminder_2h` still
/// goes. The claim is written as already enqueued, so no reminder run sends it later.
pub async fn skip_day_reminder_if_soon(
    store: &Store,
    uid: &str,
    start_at: &str,
    now: OffsetDateTime,
) -> Result<(), crate::store::StoreError> {
    let Ok(start) = OffsetDateTime::parse(start_at.trim(), &Rfc3339) else {
        return Ok(());
    };
    if start - now >= Span::hours(24) {
        return Ok(());
    }
    let kind = Kind::Day.as_str();
    if appointment_reminders::claim(store, uid, kind).await? != ReminderClaim::Enqueued {
        appointment_reminders::mark_enqueued(store, uid, kind).await?;
    }
    Ok(())
}

/// Handler of `notify.reminders`. Result: reminders newly enqueued per kind, and
/// `no_contact` (due appointments without an email address or phone number).
pub async fn handle(
    services: Arc<Services>,
    _args: NotifyReminders,
    ctx: JobContext,
) -> Result<(), JobError> {
    let store = &services.store;
    let now = OffsetDateTime::now_utc();
    let candidates = appointments::booked_around(store, None, now, now + Span::hours(24))
        .await
        .map_err(JobError::retry)?;
    let mut companies: HashMap<i64, Company> = HashMap::new();
    let (mut day, mut two_hours, mut no_contact) = (0u64, 0u64, 0u64);
    for a in &candidates {
        let Ok(start) = OffsetDateTime::parse(a.start_at.trim(), &Rfc3339) else {
            tracing::warn!(uid = %a.uid, start = %a.start_at, "appointment start is not RFC 3339: no reminder");
            continue;
        };
        let Some(kind) = Kind::due(start, now) else {
            continue;
        };
        let claimed = appointment_reminders::claim(store, &a.uid, kind.as_str())
            .await
            .map_err(JobError::retry)?;
        if claimed == ReminderClaim::Enqueued {
            continue;
        }
        let to = recipients(&services, a).await?;
        if to.email.is_none() && to.phone.is_none() {
            // Left unfinished: a run after the address or number is added still sends it.
            no_contact += 1;
            continue;
        }
        let company = company(store, &mut companies, a.company_id).await?;
        remind(&services, &ctx, a, company, (kind, start), to).await?;
        appointment_reminders::mark_enqueued(store, &a.uid, kind.as_str())
            .await
            .map_err(JobError::retry)?;
        match (claimed, kind) {
            (ReminderClaim::New, Kind::Day) => day += 1,
            (ReminderClaim::New, Kind::TwoHours) => two_hours += 1,
            _ => {}
        }
    }
    tracing::info!(
        reminder_24h = day,
        reminder_2h = two_hours,
        no_contact,
        "appointment reminders enqueued"
    );
    ctx.set_result(serde_json::json!({
        "reminder_24h": day,
        "reminder_2h": two_hours,
        "no_contact": no_contact,
    }));
    Ok(())
}

/// Company `id`, read once per run.
async fn company<'a>(
    store: &Store,
    cache: &'a mut HashMap<i64, Company>,
    id: i64,
) -> Result<&'a Company, JobError> {
    Ok(match cache.entry(id) {
        Entry::Occupied(known) => known.into_mut(),
        Entry::Vacant(slot) => {
            let company = companies::get(store, id)
                .await
                .map_err(JobError::retry)?
                .ok_or_else(|| JobError::permanent(format!("company {id} does not exist")))?;
            slot.insert(company)
        }
    })
}

/// Whom to remind: the attendee's address and number, else the customer's.
struct Recipients {
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

async fn recipients(services: &Services, a: &Appointment) -> Result<Recipients, JobError> {
    // Addresses under `.invalid` stand in for callers who gave none (see `calendar.book`).
    let usable = |e: &String| e.contains('@') && !e.ends_with(".invalid");
    let mut to = Recipients {
        name: a.attendee_name.clone().filter(|n| !n.is_empty()),
        email: a.attendee_email.clone().filter(usable),
        phone: a.attendee_phone.clone().filter(|p| !p.is_empty()),
    };
    let complete = to.name.is_some() && to.email.is_some() && to.phone.is_some();
    if let (false, Some(id)) = (complete, a.customer_id)
        && let Some((phone, name, email)) = customers::get(&services.store, id)
            .await
            .map_err(JobError::retry)?
    {
        to.name = to.name.or(name);
        to.email = to.email.or(email.filter(usable));
        to.phone = to.phone.or(Some(phone).filter(|p| !p.is_empty()));
    }
    Ok(to)
}

/// Enqueue the reminder `kind` of the appointment starting at `start` on each channel it can
/// be reached by (a channel whose send was claimed already is left alone), each job expiring
/// at `start`.
async fn remind(
    services: &Services,
    ctx: &JobContext,
    a: &Appointment,
    company: &Company,
    (kind, start): (Kind, OffsetDateTime),
    to: Recipients,
) -> Result<(), JobError> {
    let zone = local_time::business_zone(&services.store, company, a.branch_id)
        .await
        .map_err(JobError::retry)?;
    let vars = MessageVars {
        recipient_name: to.name.clone().unwrap_or_default(),
        company_name: company.name.clone(),
        service: a.title.clone(),
        start: Some(local_time::format(
            &a.start_at,
            &zone,
            Locale::from_tag(&company.locale),
        )),
        location: a.location.clone(),
        ..MessageVars::default()
    };
    for (channel, address) in [("email", to.email), ("sms", to.phone)] {
        let Some(address) = address else { continue };
        let message = Message {
            key: format!("appointment:{}:{}:{channel}", a.uid, kind.as_str()),
            to: address,
            to_name: to.name.clone(),
            template: Template::Reminder,
            locale: company.locale.clone(),
            vars: vars.clone(),
        };
        let row = NewNotification {
            unique_key: &message.key,
            channel,
            recipient: &message.to,
            template: Template::Reminder.as_str(),
            locale: &message.locale,
        };
        match notifications::reserve(&services.store, &row)
            .await
            .map_err(JobError::retry)?
        {
            Reserved::New | Reserved::Pending => {}
            Reserved::Taken => continue,
        }
        // Fault points: dying before this enqueue leaves the outbox row `pending` and the
        // reminder unfinished, so the next run enqueues it; dying after it, the next run's
        // enqueue is suppressed by the message's unique key. Past `start` it expires unsent.
        let options = EnqueueOptions::default()
            .tenant(company.id.to_string())
            .expires_at(SystemTime::from(start));
        if channel == "email" {
            email::enqueue_with(ctx, message, options).await?;
        } else {
            sms::enqueue_with(ctx, message, options).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_decides_the_kind() {
        let now = OffsetDateTime::now_utc();
        let due = |minutes: i64| Kind::due(now + Span::minutes(minutes), now);
        assert_eq!(due(-5), None, "already started");
        assert_eq!(due(0), None, "starting now");
        assert_eq!(due(60), Some(Kind::TwoHours), "1 h ahead: only the 2 h one");
        assert_eq!(due(120), Some(Kind::TwoHours));
        assert_eq!(due(121), Some(Kind::Day));
        assert_eq!(due(20 * 60), Some(Kind::Day));
        assert_eq!(due(24 * 60), Some(Kind::Day));
        assert_eq!(due(24 * 60 + 1), None, "more than a day ahead");
    }
}
