//! Sending a notification once, for `notify.email` ([`super::email`]) and `notify.sms`
//! ([`super::sms`]): the [`Message`] both carry and the delivery they share.
//!
//! The outbox row (see [`crate::store::notifications`]) is claimed before the message leaves
//! and marked sent after the provider accepted it. A retry of a sent notification sends
//! nothing. One that finds a claim without a mark (the process died between claim and mark)
//! resolves the doubt instead of dropping the message ([`super::doubt`]): an SMS is looked up
//! at the gateway by the reference it carries and sent only if it is not there; an email is
//! sent again with the same Message-ID (derived from the notification key), which mail
//! servers and clients collapse. So the customer gets the message once, and never zero times;
//! only a death after the SMTP accept and before the mark delivers an email twice, both with
//! one Message-ID.
//!
//! A message about an appointment (key `appointment:{uid}:{template}:{channel}`, as the
//! Cal.com webhook, `calendar.book` and the reminders write it) is checked against the
//! appointment just before it is claimed: a confirmation, reschedule or reminder for a
//! cancelled booking, or a confirmation or reminder for one rescheduled away, is recorded
//! `dropped` and not sent.
//!
//! [`Services::faults`] (tests only) can end an attempt right after the claim or right after
//! the provider's accept, as a crash there would.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    doubt,
    faults::FaultPoint,
    templates::{Locale, MessageVars, Rendered, Template, render},
};
use crate::{
    JobError, Priority,
    clients::{SendError, mail::OutgoingEmail},
    services::Services,
    store::{
        appointments,
        notifications::{self, Claim, NewNotification},
    },
};

/// One message to one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Message {
    /// Unique key: the same key is never sent twice. An appointment's messages use
    /// `appointment:{uid}:{template}:{channel}`; the send reads the booking's status by it.
    pub key: String,
    /// Email address or phone number.
    pub to: String,
    pub to_name: Option<String>,
    pub template: Template,
    /// `de` or `en`.
    pub locale: String,
    pub vars: MessageVars,
}

/// How long the queue suppresses a second enqueue of the same notification key.
pub(super) const UNIQUE_FOR: Duration = Duration::from_secs(72 * 3600);

/// How urgent a message is, by its template, unless the producer says otherwise: the
/// customer waits for a confirmation or cancellation (a reschedule confirms the new time),
/// while a reminder is due hours ahead and may wait behind them.
pub fn priority(template: Template) -> Priority {
    match template {
        Template::Confirmation | Template::Reschedule | Template::Cancellation => Priority::High,
        Template::Reminder => Priority::Low,
        Template::PaymentFailed => Priority::Normal,
    }
}

/// Enqueue one notification job (`notify.email` or `notify.sms`) carrying the message keyed
/// `key`, with `options` (at the template's [`priority`] unless they name one); the queue's
/// dedupe key (`notify:<key>`) makes a second enqueue of the same notification a no-op for
/// [`UNIQUE_FOR`].
pub(super) async fn enqueue_job<A: crate::JobArgs>(
    ctx: &crate::JobContext,
    job: &A,
    (key, template): (&str, Template),
    mut options: crate::EnqueueOptions,
) -> Result<(), JobError> {
    options.priority.get_or_insert(priority(template));
    let options = options.unique(format!("notify:{key}"), UNIQUE_FOR);
    ctx.enqueue(job, options)
        .await
        .map(drop)
        .map_err(JobError::retry)
}

/// The Message-ID of a notification: stable across attempts, so a duplicate is detectable
/// (and collapsed by mail clients).
pub fn message_id(key: &str) -> String {
    // The key's hash keeps the id short and free of characters an address cannot hold.
    format!(
        "<notify.{:016x}@switchboard.askproai>",
        doubt::key_hash(key)
    )
}

/// Claim the outbox row of `m`, send it on `channel` (`email` or `sms`) and record the outcome.
pub(super) async fn deliver(
    services: &Services,
    m: &Message,
    channel: &str,
) -> Result<(), JobError> {
    let store = &services.store;
    let row = NewNotification {
        unique_key: &m.key,
        channel,
        recipient: &m.to,
        template: m.template.as_str(),
        locale: &m.locale,
    };
    if let Some(reason) = unwanted(services, m).await? {
        // Fault points: a death before this write leaves the row as it was (the retry checks
        // again); after it, the row says `dropped` and every retry does nothing.
        if notifications::drop_unsent(store, &row, &reason)
            .await
            .map_err(JobError::retry)?
        {
            tracing::info!(key = %m.key, %reason, "notification dropped");
        }
        return Ok(());
    }
    // Fault points: a death before the claim leaves the row `pending`/`retry` (the retry
    // claims it); after it, the row is `sending` and the retry resolves the doubt.
    let in_doubt_since = match notifications::claim(store, &row)
        .await
        .map_err(JobError::retry)?
    {
        Claim::Send { .. } => None,
        Claim::Resolve { created_at_ms, .. } => Some(created_at_ms),
        Claim::AlreadySent | Claim::Dropped => return Ok(()),
        Claim::Busy => {
            return Err(JobError::retry(format!(
                "notification {} is being resolved by another attempt",
                m.key
            )));
        }
        Claim::Failed => {
            return Err(JobError::permanent(format!(
                "notification {} failed for good earlier",
                m.key
            )));
        }
    };
    if fault(services, FaultPoint::BeforeSend, m) {
        return Err(JobError::retry(format!(
            "fault injected after claiming {}: the attempt ends as if it died there",
            m.key
        )));
    }
    let rendered = render(m.template, Locale::from_tag(&m.locale), &m.vars);
    let sent = match channel {
        "email" => send_email(services, m, rendered, in_doubt_since.is_some()).await,
        _ => send_sms(services, m, &rendered.sms, in_doubt_since).await,
    };
    record(services, m, sent).await
}

/// What a send found or did.
enum Sent {
    /// The provider accepted it now, with this id.
    Now(String),
    /// An in-doubt earlier attempt got through: the gateway lists it with this id.
    Earlier(String),
}

/// Why `m` is not wanted any more, if it is not: its appointment was cancelled, or moved
/// away from the booking a confirmation or reminder is about.
async fn unwanted(services: &Services, m: &Message) -> Result<Option<String>, JobError> {
    let Some(uid) = appointment_uid(&m.key) else {
        return Ok(None);
    };
    let stale: &[Template] = &[
        Template::Confirmation,
        Template::Reschedule,
        Template::Reminder,
    ];
    if !stale.contains(&m.template) {
        return Ok(None);
    }
    let Some(appointment) = appointments::get(&services.store, uid)
        .await
        .map_err(JobError::retry)?
    else {
        return Ok(None);
    };
    Ok(match appointment.status.as_str() {
        "cancelled" => Some(format!("appointment {uid} was cancelled")),
        "rescheduled" if m.template != Template::Reschedule => {
            Some(format!("appointment {uid} was rescheduled"))
        }
        _ => None,
    })
}

/// The booking uid in an appointment message's key `appointment:{uid}:{template}:{channel}`.
fn appointment_uid(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("appointment:")?;
    let mut parts = rest.rsplitn(3, ':');
    let (_channel, _template, uid) = (parts.next()?, parts.next()?, parts.next()?);
    (!uid.is_empty()).then_some(uid)
}

/// Whether a test armed a fault at `point` for `m`.
fn fault(services: &Services, point: FaultPoint, m: &Message) -> bool {
    services
        .faults
        .as_ref()
        .is_some_and(|f| f.fires(point, &m.key))
}

/// Send `m` by email. In doubt, it goes again with the same Message-ID.
async fn send_email(
    services: &Services,
    m: &Message,
    rendered: Rendered,
    in_doubt: bool,
) -> Result<Sent, Failed> {
    let id = message_id(&m.key);
    if in_doubt {
        tracing::warn!(key = %m.key, message_id = %id,
            "email in doubt after an attempt died: sending again with the same Message-ID");
    }
    let email = OutgoingEmail {
        to: m.to.clone(),
        to_name: m.to_name.clone(),
        subject: rendered.subject,
        text: rendered.text,
        html: rendered.html,
        message_id: id.clone(),
    };
    // Fault points: a death before the SMTP accept leaves `sending` and the retry sends
    // again; one after it (before the mark) makes the retry send a second copy with the same
    // Message-ID.
    match services.mailer.send(&email).await {
        Ok(()) => Ok(Sent::Now(id)),
        Err(e) => Err(Failed::Send(e)),
    }
}

/// Send `m` by SMS with its reference. In doubt since the row was written at
/// `in_doubt_since`, ask the gateway first and send only if it lists no message with it.
async fn send_sms(
    services: &Services,
    m: &Message,
    text: &str,
    in_doubt_since: Option<i64>,
) -> Result<Sent, Failed> {
    let Some(sms) = &services.sms else {
        return Err(Failed::Send(SendError::Permanent(
            "no SMS gateway is configured (SMS_ACCOUNT_SID, SMS_AUTH_TOKEN)".into(),
        )));
    };
    if let Some(created_at_ms) = in_doubt_since {
        // A failed lookup must not lead to a blind send: `record` leaves the row in doubt.
        if let Some(sid) = doubt::find_sent(sms, &m.to, &m.key, created_at_ms)
            .await
            .map_err(Failed::Lookup)?
        {
            return Ok(Sent::Earlier(sid));
        }
        tracing::info!(key = %m.key, "SMS in doubt is not at the gateway: sending it");
    }
    // Fault points: a death before the gateway's accept leaves `sending` and the retry finds
    // nothing and sends; one after it leaves `sending` and the retry finds it by reference.
    sms.send(&m.to, &doubt::sms_body(text, &m.key))
        .await
        .map(Sent::Now)
        .map_err(Failed::Send)
}

/// Why a send did not happen.
enum Failed {
    /// The provider refused or did not answer.
    Send(SendError),
    /// The in-doubt lookup failed: nothing was sent, and the row must stay in doubt.
    Lookup(SendError),
}

/// Write what the send did to the outbox row and turn it into the job's outcome.
async fn record(
    services: &Services,
    m: &Message,
    sent: Result<Sent, Failed>,
) -> Result<(), JobError> {
    let store = &services.store;
    match sent {
        Ok(Sent::Earlier(sid)) => {
            tracing::info!(key = %m.key, %sid, "SMS in doubt was accepted earlier: not sending again");
            // Fault points: a death before this write leaves `sending` and the retry looks it
            // up again (and finds it again); after it, every retry finds `sent`.
            notifications::mark_sent(store, &m.key, &sid)
                .await
                .map_err(JobError::retry)
        }
        Ok(Sent::Now(provider_id)) => {
            if fault(services, FaultPoint::BeforeMark, m) {
                return Err(JobError::retry(format!(
                    "fault injected after sending {}: the attempt ends as if it died there",
                    m.key
                )));
            }
            // Fault points: a death before this write leaves `sending`, and the retry resolves
            // the doubt (see the module doc); after it, every retry finds `sent`.
            notifications::mark_sent(store, &m.key, &provider_id)
                .await
                .map_err(JobError::retry)
        }
        // The row stays `sending`: the next attempt (or an operator's retry from the dead
        // set) looks again, and nothing is sent before an answer.
        Err(Failed::Lookup(e)) => Err(JobError::from(e)),
        // Fault points of both marks below: a death before the write leaves `sending`, and the
        // retry resolves the doubt (nothing was accepted, so it sends); after it, the row says
        // what happened.
        Err(Failed::Send(SendError::Permanent(reason))) => {
            notifications::mark_failed(store, &m.key, &reason)
                .await
                .map_err(JobError::retry)?;
            Err(JobError::Permanent(reason))
        }
        Err(Failed::Send(e @ SendError::Transient { .. })) => {
            notifications::mark_retry(store, &m.key, &e.to_string())
                .await
                .map_err(JobError::retry)?;
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appointment_uids_come_from_the_key() {
        assert_eq!(
            appointment_uid("appointment:bK3v9Qp2LmX7tRz1Yc8WnA:confirmation:sms"),
            Some("bK3v9Qp2LmX7tRz1Yc8WnA")
        );
        assert_eq!(
            appointment_uid("appointment:a:b:reminder_2h:email"),
            Some("a:b")
        );
        assert_eq!(appointment_uid("appointment::confirmation:sms"), None);
        assert_eq!(appointment_uid("appointment:x:sms"), None);
        assert_eq!(appointment_uid("invoice:in_1:payment_failed:evt_1"), None);
    }

    #[test]
    fn message_ids_are_stable_per_key() {
        let id = message_id("appointment:x:confirmation:email");
        assert_eq!(id, message_id("appointment:x:confirmation:email"));
        assert_ne!(id, message_id("appointment:x:confirmation:sms"));
        assert!(id.starts_with("<notify.") && id.ends_with("@switchboard.askproai>"));
        assert_eq!(id.len(), "<notify.@switchboard.askproai>".len() + 16);
    }
}
