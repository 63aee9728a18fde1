//! When a failed job runs again: exponential backoff with jitter, within the attempts its
//! kind (or the supervisor, by default) allows.

use std::time::Duration;

use rand::Rng;

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
