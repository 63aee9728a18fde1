//! Provider circuits and the snooze cap against a real Redis: when a provider keeps failing,
//! its jobs wait (snooze, no attempt used) until a probe succeeds, fleet-wide; a job that
//! keeps snoozing fails after `queue.max_snooze_secs` with a clear error.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::Harness;
use serde::{Deserialize, Serialize};
use switchboard_jobs::{EnqueueOptions, JobArgs, JobError, Policy, Registry};

const SECS: Duration = Duration::from_secs(30);

/// Calls a provider that is down while `Provider::down` is set.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Call {}

impl JobArgs for Call {
    const KIND: &'static str = "test.call";
    const QUEUE: &'static str = "calls";
    const POLICY: Policy = Policy::OUTAGE_PROOF.circuit("testprovider");
}

/// Always asks to wait a little (a limit that never frees).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Sleepy {}

impl JobArgs for Sleepy {
    const KIND: &'static str = "test.sleepy";
    const QUEUE: &'static str = "sleepy";
}

#[derive(Default)]
struct Provider {
    down: AtomicBool,
    calls: AtomicUsize,
}

fn registry(provider: &Arc<Provider>) -> Registry {
    let mut registry = switchboard_jobs::registry();
    let p = Arc::clone(provider);
    registry.register::<Call, _, _>(move |_, _| {
        let p = Arc::clone(&p);
        async move {
            p.calls.fetch_add(1, Ordering::SeqCst);
            if p.down.load(Ordering::SeqCst) {
                Err(JobError::retry("provider answered 503"))
            } else {
                Ok(())
            }
        }
    });
    registry.register::<Sleepy, _, _>(|_, _| async {
        Err(JobError::Snooze(Duration::from_millis(20)))
    });
    registry
}

#[tokio::test]
async fn a_failing_provider_opens_its_circuit_and_its_jobs_wait_instead_of_burning_attempts() {
    const JOBS: usize = 40;
    let h = Harness::with(|s| {
        s.queue.circuit_failures = 3;
        s.queue.circuit_open_secs = 1;
    })
    .await;
    let provider = Arc::new(Provider::default());
    provider.down.store(true, Ordering::SeqCst);
    for _ in 0..JOBS {
        h.queues
            .enqueue(&Call::default(), EnqueueOptions::default())
            .await
            .unwrap();
    }
    let promoter = h.start_promoter("calls");
    let fleet = h
        .fleet(
            &h.fleet_settings("calls", 4, 4, 2),
            registry(&provider),
            None,
        )
        .await;
    let queues = h.queues.clone();
    h.wait_for("the circuit to open", SECS, || {
        let queues = queues.clone();
        async move {
            queues
                .circuits()
                .await
                .is_ok_and(|c| c.iter().any(|c| c.name == "testprovider" && c.open))
        }
    })
    .await;
    // While it is open, the provider is not called: the jobs snooze. At most the attempts
    // already running when it opened still reach it.
    let at_open = provider.calls.load(Ordering::SeqCst);
    let circuits = h.queues.circuits().await.unwrap();
    assert!(circuits[0].failures >= 3, "{circuits:?}");
    assert!(
        circuits[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("503")),
        "{circuits:?}"
    );
    h.wait_for("jobs to snooze on the open circuit", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("calls").await.is_ok_and(|s| s.delayed >= 30) }
    })
    .await;
    assert!(
        provider.calls.load(Ordering::SeqCst) <= at_open + 4,
        "an open circuit holds the provider's jobs"
    );

    // The provider comes back: the next probe succeeds, the circuit closes, everything runs.
    provider.down.store(false, Ordering::SeqCst);
    h.wait_processed("calls", JOBS as u64, SECS).await;
    fleet.stop().await;
    promoter.cancel();
    let s = h.stats("calls").await;
    assert_eq!((s.dead, s.processed), (0, JOBS as u64));
    let circuits = h.queues.circuits().await.unwrap();
    assert!(
        circuits.iter().all(|c| !c.open),
        "closed again: {circuits:?}"
    );
    // Without the circuit each of the 40 jobs would have failed on its own until the
    // provider returned; with it, only the failures that opened it, and probes, did.
    let calls = provider.calls.load(Ordering::SeqCst);
    assert!(
        calls < JOBS + 20,
        "{calls} calls for {JOBS} jobs: failures were not spread over every job"
    );
}

#[tokio::test]
async fn a_job_that_keeps_snoozing_fails_after_the_cap_with_a_clear_error() {
    let h = Harness::with(|s| s.queue.max_snooze_secs = 1).await;
    let provider = Arc::new(Provider::default());
    h.queues
        .enqueue(&Sleepy::default(), EnqueueOptions::default())
        .await
        .unwrap();
    let promoter = h.start_promoter("sleepy");
    let fleet = h
        .fleet(
            &h.fleet_settings("sleepy", 1, 1, 3),
            registry(&provider),
            None,
        )
        .await;
    let queues = h.queues.clone();
    h.wait_for("the snoozing job to be dead", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("sleepy").await.is_ok_and(|s| s.dead == 1) }
    })
    .await;
    fleet.stop().await;
    promoter.cancel();
    let dead = h.queues.dead_list("sleepy", 10).await.unwrap();
    let error = dead[0].error.clone().unwrap();
    assert!(
        error.contains("gave up after snoozing") && error.contains("max_snooze_secs"),
        "{error}"
    );
    // Snoozes are not attempts.
    assert_eq!(dead[0].attempts, 0, "{:?}", dead[0]);
}
