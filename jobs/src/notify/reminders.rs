//! `notify.reminders` (every few minutes, from the scheduler): a reminder before each booked
//! appointment, by email and SMS as its confirmation went.
//!
//! Two kinds: `reminder_24h` for appointments starting within the next 24 hours and
//! `reminder_2h` for those within the next 2 hours. An appointment that is already inside
//! the 2-hour window when first seen gets only the 2-hour one. Cancelled, rescheduled and
//! past appointments get none.
//!
//! Once per appointment, kind and channel, however many runs overlap: the run writes the
//! notification's outbox row (`appointment:<uid>:<kind>:<channel>`) before it enqueues, and
//! the row's unique key lets exactly one run see it as new. A row still `pending` (its job
//! queued, or an enqueue lost to a crash) is enqueued again under the queue's unique key,
//! which suppresses the duplicate; the outbox claim makes the send itself at-most-once.

use std::{collections::HashMap, sync::Arc};

use serde::{Deserialize, Serialize};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    JobArgs, JobContext, JobError,
    notify::templates::{MessageVars, Template},
    notify_send::{self, Message},
    services::Services,
    store::{
        appointments::{self, Appointment},
        companies::{self, Company},
        customers,
        notifications::{self, NewNotification, Reserved},
    },
};

/// Arguments of `notify.reminders`: none (the windows are the kinds' names); `{}` is a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifyReminders {}

impl JobArgs for NotifyReminders {
    const KIND: &'static str = "notify.reminders";
    const QUEUE: &'static str = "notifications";
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

/// Handler of `notify.reminders`. Result: reminders newly enqueued per kind, and
/// `no_contact` (due appointments without an email address or phone number).
pub async fn run_reminders(
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
        let company = match companies.get(&a.company_id) {
            Some(c) => c.clone(),
            None => {
                let c = companies::get(store, a.company_id)
                    .await
                    .map_err(JobError::retry)?
                    .ok_or_else(|| {
                        JobError::permanent(format!("company {} does not exist", a.company_id))
                    })?;
                companies.insert(a.company_id, c.clone());
                c
            }
        };
        let to = recipients(&services, a).await?;
        if to.email.is_none() && to.phone.is_none() {
            no_contact += 1;
            continue;
        }
        if remind(&services, &ctx, a, &company, kind, to).await? {
            match kind {
                Kind::Day => day += 1,
                Kind::TwoHours => two_hours += 1,
            }
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

/// Enqueue the reminder on each channel the appointment can be reached by; returns whether
/// this run was the first to do so on any of them.
async fn remind(
    services: &Services,
    ctx: &JobContext,
    a: &Appointment,
    company: &Company,
    kind: Kind,
    to: Recipients,
) -> Result<bool, JobError> {
    let vars = MessageVars {
        recipient_name: to.name.clone().unwrap_or_default(),
        company_name: company.name.clone(),
        service: a.title.clone(),
        start: Some(a.start_at.clone()),
        location: a.location.clone(),
        ..MessageVars::default()
    };
    let mut new = false;
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
            Reserved::New => new = true,
            Reserved::Pending => {}
            Reserved::Taken => continue,
        }
        if channel == "email" {
            notify_send::email(ctx, message).await?;
        } else {
            notify_send::sms(ctx, message).await?;
        }
    }
    Ok(new)
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
