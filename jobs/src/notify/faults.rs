//! Test-only fault injection for the delivery path ([`super::send`]): a [`Faults`] value in
//! [`Services::faults`](crate::services::Services::faults) makes chosen attempts end at a
//! chosen point as if the process died there. Production wiring leaves it `None`, and an
//! unarmed `Faults` never fires.
//!
//! What must stay true: a fired fault writes nothing. The outbox row stays as the dead
//! process would have left it (`sending`), and the attempt ends with a retryable error, so
//! the test sees the retry resolve the doubt exactly as after a real crash.

use std::sync::Mutex;

/// Where in a delivery a fault can fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// After the outbox row was claimed (`sending`), before the provider was called.
    BeforeSend,
    /// After the provider accepted the message, before the row was marked `sent`.
    BeforeMark,
}

/// Armed faults: each fires once, for the first delivery whose key starts with its prefix.
#[derive(Debug, Default)]
pub struct Faults {
    armed: Mutex<Vec<(FaultPoint, String)>>,
}

impl Faults {
    /// Fire once at `point` for the next delivery whose notification key starts with `prefix`.
    pub fn arm(&self, point: FaultPoint, prefix: &str) {
        self.lock().push((point, prefix.to_owned()));
    }

    /// Whether a fault armed for `point` and `key` fires now (it is then used up).
    pub fn fires(&self, point: FaultPoint, key: &str) -> bool {
        let mut armed = self.lock();
        match armed
            .iter()
            .position(|(p, prefix)| *p == point && key.starts_with(prefix.as_str()))
        {
            Some(i) => {
                armed.remove(i);
                true
            }
            None => false,
        }
    }

    /// Faults armed and not fired yet.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(FaultPoint, String)>> {
        // A test that panicked while holding the lock left a usable list behind.
        self.armed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_fires_once_for_its_point_and_key() {
        let faults = Faults::default();
        assert!(!faults.fires(FaultPoint::BeforeSend, "appointment:a:confirmation:sms"));
        faults.arm(FaultPoint::BeforeSend, "appointment:a:confirmation:sms");
        assert!(!faults.fires(FaultPoint::BeforeMark, "appointment:a:confirmation:sms"));
        assert!(!faults.fires(FaultPoint::BeforeSend, "appointment:a:confirmation:email"));
        assert!(faults.fires(FaultPoint::BeforeSend, "appointment:a:confirmation:sms"));
        assert!(!faults.fires(FaultPoint::BeforeSend, "appointment:a:confirmation:sms"));
        assert_eq!(faults.pending(), 0);
    }
}
