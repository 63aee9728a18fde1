//! Provider outages for the outage tests: a switch that makes a wiremock stand-in answer an
//! error status until the outage ends, and a wait that holds an outage until its jobs have
//! failed more often than their attempts alone would survive.
//!
//! What must stay true: an outage ends only after the queue recorded more failed attempts than
//! its jobs' attempts allow together, with the provider's circuit open; a job found dead
//! during the outage fails the test at once (its retry budget was shorter than the outage).

#![allow(dead_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use wiremock::{Match, Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::Harness;

/// A stand-in answering `status` to every request until [`Outage::end`]; afterwards the
/// server's other mocks answer as before.
#[derive(Clone)]
pub struct Outage(Arc<State>);

struct State {
    down: AtomicBool,
    status: u16,
    /// Requests answered with `status`.
    refused: AtomicU64,
}

impl Outage {
    /// Start an outage of `server`: it answers `status` (without a Retry-After) from now on.
    pub async fn begin(server: &MockServer, status: u16) -> Self {
        let outage = Self(Arc::new(State {
            down: AtomicBool::new(true),
            status,
            refused: AtomicU64::new(0),
        }));
        // Priority 1 goes before every mock mounted with the default priority (5).
        Mock::given(outage.clone())
            .respond_with(outage.clone())
            .with_priority(1)
            .named("outage")
            .mount(server)
            .await;
        outage
    }

    /// The provider is back.
    pub fn end(&self) {
        self.0.down.store(false, Ordering::SeqCst);
    }

    /// Requests the outage answered.
    pub fn refused(&self) -> u64 {
        self.0.refused.load(Ordering::SeqCst)
    }
}

impl Match for Outage {
    fn matches(&self, _: &Request) -> bool {
        self.0.down.load(Ordering::SeqCst)
    }
}

impl Respond for Outage {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.0.refused.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(self.0.status)
    }
}

/// Wait until `queue` has recorded more than `failures` failed attempts while `circuit` (the
/// provider's circuit) is open, then return the failed attempts. Panics at once when a job of
/// `queue` is dead.
///
/// With `failures` the attempts all of the queue's jobs allow together, at least one job is
/// then past its own attempts: without its kind's retry budget it would be dead. The circuit
/// being open shows the outage held the jobs as production would (snoozing, with one probe
/// per stretch), not only by their backoff.
pub async fn outlast(h: &Harness, queue: &str, circuit: &str, failures: u64) -> u64 {
    let queues = &h.queues;
    h.wait_for(
        &format!(
            "more than {failures} failed attempts on {queue} behind the open {circuit} circuit"
        ),
        Duration::from_secs(20),
        || async move {
            let s = queues.stats(queue).await.unwrap();
            if s.dead > 0 {
                let dead = queues.dead_list(queue, 10).await.unwrap();
                panic!(
                    "dead during the outage after {} failed attempts: {dead:?}",
                    s.failed
                );
            }
            let open = queues
                .circuits()
                .await
                .unwrap()
                .iter()
                .any(|c| c.name == circuit && c.open);
            open && s.failed > failures
        },
    )
    .await;
    h.stats(queue).await.failed
}
