//! Outbound message transports, email ([`mail`]) and SMS ([`sms`]), usage reports to
//! Stripe ([`stripe`]) and bookings in Cal.com ([`calcom`]).
//!
//! All answer with the same [`SendError`], split by what a retry can achieve: a transient
//! failure (the provider is down, slow, rate-limiting or said "try later") may succeed on a
//! later attempt; a permanent one (bad address, rejected message, bad credentials) never
//! will, so the job goes to the dead set at once. Credentials come from the environment and
//! never appear in settings, errors or logs.

use std::time::Duration;

use crate::JobError;

pub mod calcom;
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

/// Settings or credentials that cannot work; reported at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// `name` from the environment; unset and empty are the same.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `e` and its sources, joined: transport errors keep the useful detail in the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Some errors already repeat their source in their own message.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

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
