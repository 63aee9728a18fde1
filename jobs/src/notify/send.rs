//! Sending a notification at most once, for `notify.email` ([`super::email`]) and
//! `notify.sms` ([`super::sms`]): the [`Message`] both carry and the delivery they share.
//!
//! The outbox row (see [`crate::store::notifications`]) is claimed before the message leaves
//! and marked sent after the provider accepted it. A retry of a sent notification sends
//! nothing; one that finds a claim without a mark (the process died between the provider's
//! accept and the mark) does not send either: it goes to the dead set as "in doubt", and
//! the Message-ID (derived from the notification key) lets an operator find out in the mail
//! server's log whether the message left.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    JobError,
    clients::{SendError, mail::OutgoingEmail},
    notify::templates::{Locale, MessageVars, Template, render},
    services::Services,
    store::notifications::{self, Claim, NewNotification},
};

/// One message to one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Unique key: the same key is never sent twice.
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

/// The Message-ID of a notification: stable across attempts, so a duplicate is detectable.
pub fn message_id(key: &str) -> String {
    use std::fmt::Write as _;
    // FNV-1a over the key keeps the id short and free of characters an address cannot hold.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut id = String::from("<notify.");
    let _ = write!(id, "{hash:016x}");
    id.push_str("@switchboard.askproai>");
    id
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
    match notifications::claim(store, &row)
        .await
        .map_err(JobError::retry)?
    {
        Claim::Send { .. } => {}
        Claim::AlreadySent => return Ok(()),
        Claim::Failed => {
            return Err(JobError::permanent(format!(
                "notification {} failed for good earlier",
                m.key
            )));
        }
        Claim::InDoubt => {
            return Err(JobError::permanent(format!(
                "notification {} is in doubt: an earlier attempt died after claiming it; check Message-ID {} before resending",
                m.key,
                message_id(&m.key)
            )));
        }
    }
    let rendered = render(m.template, Locale::from_tag(&m.locale), &m.vars);
    let id = message_id(&m.key);
    let sent = match channel {
        "email" => {
            let email = OutgoingEmail {
                to: m.to.clone(),
                to_name: m.to_name.clone(),
                subject: rendered.subject,
                text: rendered.text,
                html: rendered.html,
                message_id: id.clone(),
            };
            services.mailer.send(&email).await.map(|()| id)
        }
        _ => match &services.sms {
            Some(sms) => sms.send(&m.to, &rendered.sms).await,
            None => Err(SendError::Permanent(
                "no SMS gateway is configured (SMS_ACCOUNT_SID, SMS_AUTH_TOKEN)".into(),
            )),
        },
    };
    match sent {
        Ok(provider_id) => {
            notifications::mark_sent(store, &m.key, &provider_id)
                .await
                .map_err(JobError::retry)?;
            Ok(())
        }
        Err(SendError::Permanent(reason)) => {
            notifications::mark_failed(store, &m.key, &reason)
                .await
                .map_err(JobError::retry)?;
            Err(JobError::Permanent(reason))
        }
        Err(e @ SendError::Transient { .. }) => {
            notifications::mark_retry(store, &m.key, &e.to_string())
                .await
                .map_err(JobError::retry)?;
            Err(e.into())
        }
    }
}
