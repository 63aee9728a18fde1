//! Outbound message transports, email ([`mail`]) and SMS ([`sms`]), usage reports to
//! Stripe ([`stripe`]) and bookings in Cal.com ([`calcom`]). The three HTTP clients share one
//! layer (`http`): how they are built (timeouts, `User-Agent`), how a refusal is classified,
//! how `Retry-After` is read and how credentials are kept out of errors.
//!
//! All answer with the same [`SendError`], split by what a retry can achieve: a transient
//! failure (the provider is down, slow, rate-limiting or said "try later") may succeed on a
//! later attempt; a permanent one (bad address, rejected message, bad credentials) never
//! will, so the job goes to the dead set at once. Credentials are handed to each client as
//! [`Secret`](crate::Secret)s by the runtime (which reads them once, at start-up) and never
//! appear in settings, errors or logs. Settings that cannot work are an [`InvalidSettings`].

use std::time::Duration;

use crate::JobError;

pub mod calcom;
mod http;
pub mod mail;
pub mod sms;
pub mod stripe;

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// May succeed later; `retry_after` is the provider's requested wait, if it gave one.
    #[error("{reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Will never succeed as it is.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    /// A transient failure without a requested wait.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

impl From<SendError> for JobError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Transient {
                reason,
                retry_after: Some(after),
            } => JobError::RetryAfter(reason, after),
            SendError::Transient {
                reason,
                retry_after: None,
            } => JobError::Retry(reason),
            SendError::Permanent(reason) => JobError::Permanent(reason),
        }
    }
}

/// A client's settings or credentials that cannot work; reported at start-up. (The runtime's
/// own `config::ConfigError` lists every problem of the whole configuration.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSettings(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_become_job_outcomes() {
        let wait = Duration::from_secs(7);
        let e = SendError::Transient {
            reason: "429".into(),
            retry_after: Some(wait),
        };
        assert!(matches!(JobError::from(e), JobError::RetryAfter(r, d) if r == "429" && d == wait));
        let e = SendError::transient("timed out");
        assert!(matches!(JobError::from(e), JobError::Retry(r) if r == "timed out"));
        let e = SendError::Permanent("550 no such user".into());
        assert!(matches!(JobError::from(e), JobError::Permanent(r) if r == "550 no such user"));
    }
}
