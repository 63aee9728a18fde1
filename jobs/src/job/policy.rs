//! A job kind's own execution policy: attempts, timeout, backoff and retry budget.
//!
//! Every field is optional: `None` leaves the decision to the supervisor that runs the job
//! (its `max_attempts`, `timeout_secs` and `backoff` settings), so a kind states only what
//! it knows better than the fleet's defaults. The runtime reads a kind's policy through
//! [`crate::Registry::policy`]; a kind declares it as [`crate::JobArgs::POLICY`] beside its
//! argument struct, e.g.
//!
//! ```
//! use std::time::Duration;
//! use switchboard_jobs::Policy;
//!
//! const POLICY: Policy = Policy::DEFAULT.max_attempts(3).timeout(Duration::from_secs(20));
//! assert_eq!(POLICY.max_attempts, Some(3));
//! assert_eq!(POLICY.backoff, None);
//! ```

use std::time::Duration;

/// Exponential backoff between attempts: the wait starts at `base` and doubles per attempt
/// up to `cap` (the runtime adds jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait before the first retry.
    pub base: Duration,
    /// No wait is longer than this.
    pub cap: Duration,
}

/// How the engine runs one kind; [`Policy::DEFAULT`] defers everything to the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Attempts before the job goes to the dead set; `None`: the supervisor's setting.
    pub max_attempts: Option<u32>,
    /// Limit on one attempt; `None`: the supervisor's `timeout_secs`.
    pub timeout: Option<Duration>,
    /// Waits between attempts; `None`: the supervisor's backoff.
    pub backoff: Option<Backoff>,
    /// `None`: no time budget, attempts alone decide. `Some(d)`: keep retrying until `d` has
    /// passed since the first failure.
    pub retry_budget: Option<Duration>,
    /// The provider whose fleet-wide circuit guards this kind (`smtp`, `sms`, `calcom`,
    /// `stripe`, `database`): while it is open, the kind's jobs wait without running.
    pub circuit: Option<&'static str>,
}

impl Policy {
    /// Everything from the supervisor.
    pub const DEFAULT: Policy = Policy {
        max_attempts: None,
        timeout: None,
        backoff: None,
        retry_budget: None,
        circuit: None,
    };

    /// The same policy with `n` attempts.
    #[must_use]
    pub const fn max_attempts(self, n: u32) -> Policy {
        Policy {
            max_attempts: Some(n),
            ..self
        }
    }

    /// The same policy with a limit of `limit` per attempt.
    #[must_use]
    pub const fn timeout(self, limit: Duration) -> Policy {
        Policy {
            timeout: Some(limit),
            ..self
        }
    }

    /// The same policy with backoff from `base` doubling up to `cap`.
    #[must_use]
    pub const fn backoff(self, base: Duration, cap: Duration) -> Policy {
        Policy {
            backoff: Some(Backoff { base, cap }),
            ..self
        }
    }

    /// Work a customer or the books depend on (webhook processing, bookings, usage reports,
    /// messages): retried for a day from its first failure instead of a few attempts, with
    /// the supervisor's backoff (capped at minutes), so an outage of SMTP, the SMS gateway,
    /// Cal.com, Stripe or the database of minutes to hours loses nothing and needs no
    /// operator. Permanent failures are still dead at once.
    pub const OUTAGE_PROOF: Policy = Policy::DEFAULT.retry_budget(Duration::from_secs(24 * 3600));

    /// The same policy retrying until `budget` has passed since the first failure.
    #[must_use]
    pub const fn retry_budget(self, budget: Duration) -> Policy {
        Policy {
            retry_budget: Some(budget),
            ..self
        }
    }

    /// The same policy guarded by `provider`'s circuit.
    #[must_use]
    pub const fn circuit(self, provider: &'static str) -> Policy {
        Policy {
            circuit: Some(provider),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_defers_everything_and_builders_set_one_field_each() {
        assert_eq!(Policy::DEFAULT, Policy::default());
        let secs = Duration::from_secs;
        let p = Policy::DEFAULT
            .max_attempts(5)
            .timeout(secs(20))
            .backoff(secs(1), secs(60))
            .retry_budget(secs(3600));
        assert_eq!(
            p,
            Policy {
                max_attempts: Some(5),
                timeout: Some(secs(20)),
                backoff: Some(Backoff {
                    base: secs(1),
                    cap: secs(60)
                }),
                retry_budget: Some(secs(3600)),
                circuit: None,
            }
        );
        assert_eq!(
            Policy::DEFAULT.timeout(secs(3)),
            Policy {
                timeout: Some(secs(3)),
                ..Policy::DEFAULT
            }
        );
    }
}
