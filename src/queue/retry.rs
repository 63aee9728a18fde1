//! When a failed job runs again: exponential backoff with jitter, within the attempts its
//! kind (or the supervisor, by default) allows.

use std::time::Duration;

use rand::Rng;
use switchboard_jobs::Policy;

/// Retry policy of a supervisor: attempts and exponential backoff with jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before a job is dead, unless the job kind or the job says otherwise.
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub base: Duration,
    /// Longest delay between attempts.
    pub cap: Duration,
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1-based): `base * 2^(attempt-1)` capped, then
    /// "equal jitter" (uniform in the upper half) so failed bursts do not retry in lockstep.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let full = exp.min(self.cap);
        let half = full / 2;
        half + full.mul_f64(rand::rng().random_range(0.0..0.5))
    }

    /// This supervisor policy with a job kind's own values over it: a kind's attempts and
    /// backoff win over the supervisor's.
    #[must_use]
    pub fn for_kind(&self, kind: &Policy) -> Self {
        let (base, cap) = kind
            .backoff
            .map_or((self.base, self.cap), |b| (b.base, b.cap));
        Self {
            max_attempts: kind.max_attempts.unwrap_or(self.max_attempts),
            base,
            cap,
        }
    }
}

/// Whether a job that just failed its attempt number `attempt` (1-based) is done retrying:
/// with a retry budget, when the budget has passed since its first failure; without one,
/// when it has used `max_attempts`.
pub fn exhausted(
    retry: &RetryPolicy,
    budget: Option<Duration>,
    attempt: u32,
    first_failed_ms: u64,
    now_ms: u64,
) -> bool {
    match budget {
        Some(budget) => now_ms.saturating_sub(first_failed_ms) >= budget.as_millis() as u64,
        None => attempt >= retry.max_attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinds_own_values_win_and_a_budget_counts_time_not_attempts() {
        let supervisor = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        let kind = Policy::DEFAULT
            .max_attempts(2)
            .backoff(Duration::from_secs(3), Duration::from_secs(9));
        let p = supervisor.for_kind(&kind);
        assert_eq!(
            (p.max_attempts, p.base, p.cap),
            (2, Duration::from_secs(3), Duration::from_secs(9))
        );
        let p = supervisor.for_kind(&Policy::DEFAULT);
        assert_eq!((p.max_attempts, p.base), (5, Duration::from_millis(100)));
        assert!(!exhausted(&supervisor, None, 4, 0, 0));
        assert!(exhausted(&supervisor, None, 5, 0, 0));
        let hour = Some(Duration::from_secs(3600));
        assert!(!exhausted(&supervisor, hour, 50, 1_000, 1_000 + 3_599_999));
        assert!(exhausted(&supervisor, hour, 2, 1_000, 1_000 + 3_600_000));
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_cap() {
        let p = RetryPolicy {
            max_attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        };
        for _ in 0..200 {
            let first = p.delay(1);
            assert!(
                first >= Duration::from_millis(50) && first <= Duration::from_millis(100),
                "{first:?}"
            );
            let third = p.delay(3);
            assert!(
                third >= Duration::from_millis(200) && third <= Duration::from_millis(400),
                "{third:?}"
            );
            let late = p.delay(30);
            assert!(
                late >= Duration::from_millis(500) && late <= Duration::from_secs(1),
                "{late:?}"
            );
        }
    }
}
