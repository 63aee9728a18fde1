//! Job kinds used only by tests, with shared state the test controls.

#![allow(dead_code)]

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use serde::{Deserialize, Serialize};
use switchboard_jobs::{JobArgs, JobError, Policy, Registry};
use tokio::sync::Semaphore;

/// Fails with "boom" while `Switches::failing` is set.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Flaky {}

impl JobArgs for Flaky {
    const KIND: &'static str = "test.flaky";
    const QUEUE: &'static str = "flaky";
}

/// Counts its start, then waits for a permit of `Switches::gate` before finishing.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Gated {}

impl JobArgs for Gated {
    const KIND: &'static str = "test.gated";
    const QUEUE: &'static str = "gated";
}

/// Fails permanently (a poisoned job).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Poison {}

impl JobArgs for Poison {
    const KIND: &'static str = "test.poison";
    const QUEUE: &'static str = "poison";
}

/// Fails asking to be retried after a minute (as an HTTP 429 with Retry-After would).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Throttled {}

impl JobArgs for Throttled {
    const KIND: &'static str = "test.throttled";
    const QUEUE: &'static str = "throttled";
}

/// Always fails; its kind allows one attempt, whatever the supervisor says.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct OneShot {}

impl JobArgs for OneShot {
    const KIND: &'static str = "test.one_shot";
    const QUEUE: &'static str = "policy";
    const POLICY: Policy = Policy::DEFAULT.max_attempts(1);
}

/// Never finishes; its kind allows 100 ms per attempt and one attempt.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Hung {}

impl JobArgs for Hung {
    const KIND: &'static str = "test.hung";
    const QUEUE: &'static str = "policy";
    const POLICY: Policy = Policy::DEFAULT
        .max_attempts(1)
        .timeout(std::time::Duration::from_millis(100));
}

/// Always fails; its kind waits an hour between attempts.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Patient {}

impl JobArgs for Patient {
    const KIND: &'static str = "test.patient";
    const QUEUE: &'static str = "policy";
    const POLICY: Policy = Policy::DEFAULT.max_attempts(3).backoff(
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(3600),
    );
}

/// Always fails; its kind retries for 300 ms from the first failure, however many attempts
/// that takes.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Budgeted {}

impl JobArgs for Budgeted {
    const KIND: &'static str = "test.budgeted";
    const QUEUE: &'static str = "budget";
    const POLICY: Policy = Policy::DEFAULT.retry_budget(std::time::Duration::from_millis(300));
}

/// What the test jobs read and report.
#[derive(Debug)]
pub struct Switches {
    pub failing: AtomicBool,
    pub started: AtomicUsize,
    pub finished: AtomicUsize,
    pub gate: Semaphore,
}

impl Switches {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            failing: AtomicBool::new(true),
            started: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        })
    }

    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }
}

/// The built-in registry plus the test kinds, wired to `switches`.
pub fn registry(switches: &Arc<Switches>) -> Registry {
    let mut registry = switchboard_jobs::registry();
    let s = Arc::clone(switches);
    registry.register::<Flaky, _, _>(move |_, _| {
        let s = Arc::clone(&s);
        async move {
            s.started.fetch_add(1, Ordering::SeqCst);
            if s.failing.load(Ordering::SeqCst) {
                Err(JobError::retry("boom"))
            } else {
                Ok(())
            }
        }
    });
    let s = Arc::clone(switches);
    registry.register::<Gated, _, _>(move |_, _| {
        let s = Arc::clone(&s);
        async move {
            s.started.fetch_add(1, Ordering::SeqCst);
            s.gate.acquire().await.expect("gate open").forget();
            s.finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    registry.register::<Throttled, _, _>(|_, _| async {
        Err(JobError::RetryAfter(
            "rate limited".into(),
            std::time::Duration::from_secs(60),
        ))
    });
    registry.register::<OneShot, _, _>(|_, _| async { Err(JobError::retry("boom")) });
    registry.register::<Patient, _, _>(|_, _| async { Err(JobError::retry("boom")) });
    registry.register::<Hung, _, _>(|_, _| futures::future::pending());
    registry.register::<Budgeted, _, _>(|_, _| async { Err(JobError::retry("down")) });
    registry.register::<Poison, _, _>(|_, _| async {
        Err(JobError::permanent("payload can never work"))
    });
    registry
}
