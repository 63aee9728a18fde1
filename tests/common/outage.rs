//! Provider outages for the outage tests: a switch that makes a wiremock stand-in answer an
//! error status until the outage ends, and a wait that holds an outage until every job has
//! failed more often than its attempts alone would survive.
//!
//! What must stay true: an outage ends only after each job has been seen failing, still
//! waiting to run again, past the attempts the supervisor allows; a job found dead or done
//! during the outage fails the test at once (its retry budget was shorter than the outage, or
//! the outage was no outage).

#![allow(dead_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use switchboard::queue::inspect::JobState;
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

/// Wait until each of `jobs` on `queue` has failed more than `attempts` times and still waits
/// to run again, then return the failed attempts recorded on `queue`. Panics at once when one
/// of them is dead or completed.
pub async fn outlast(h: &Harness, queue: &str, jobs: &[String], attempts: u32) -> u64 {
    let queues = &h.queues;
    h.wait_for(
        &format!(
            "{} jobs on {queue} past {attempts} failed attempts",
            jobs.len()
        ),
        Duration::from_secs(20),
        || async move {
            let mut past = true;
            for id in jobs {
                // A job moving between places while looked for can be missed; look again.
                let Some(job) = queues.find_job(queue, id).await.unwrap() else {
                    past = false;
                    continue;
                };
                assert!(
                    !matches!(job.state, JobState::Dead | JobState::Completed),
                    "job {id} ({:?}) is {} during the outage after {} attempts: {:?}",
                    job.kind,
                    job.state.as_str(),
                    job.attempts,
                    job.error
                );
                past &= job.attempts > attempts;
            }
            past
        },
    )
    .await;
    h.stats(queue).await.failed
}
