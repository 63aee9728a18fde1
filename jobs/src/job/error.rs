//! Job outcomes other than success, as explicit values.

use std::time::Duration;

/// Why a job did not succeed, and what the engine should do about it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A transient failure: retry with backoff while attempts remain, then dead.
    #[error("{0}")]
    Retry(String),
    /// A transient failure with a server-given wait (HTTP 429/503 `Retry-After`): retry after
    /// that long (counts as an attempt).
    #[error("{0} (retry after {1:?})")]
    RetryAfter(String, Duration),
    /// The job can never succeed (bad payload, unknown business): dead at once.
    #[error("{0}")]
    Permanent(String),
    /// Not a failure: run again after the given delay without using up an attempt.
    #[error("snoozed for {0:?}")]
    Snooze(Duration),
}

impl JobError {
    /// A transient failure carrying `reason`.
    pub fn retry(reason: impl std::fmt::Display) -> Self {
        Self::Retry(reason.to_string())
    }

    /// A permanent failure carrying `reason`.
    pub fn permanent(reason: impl std::fmt::Display) -> Self {
        Self::Permanent(reason.to_string())
    }
}
