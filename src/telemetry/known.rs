//! The series a process exports from its start, at zero, for every label value it knows
//! then: the queues and schedules of its configuration, the job kinds of its registry, the
//! providers and HTTP statuses of ingest, the provider circuits of the catalogue.
//!
//! Why: a counter born at its first increment has no earlier sample, so `rate()` and
//! `increase()` miss that increment and an alert on it has nothing to read on a fresh
//! process. Counters start at 0 and histograms are registered (their `_bucket`, `_sum` and
//! `_count` series exist at 0) before any job runs or any delivery arrives.
//!
//! Each role exports its own families, so a split deployment does not export job series
//! from an `ingest` host: the fleet its job counters and histograms per (queue, kind), the
//! scheduler its fires per schedule, ingest its requests per provider and status, the
//! maintenance role its long-wait notices per watched queue and channel, and the HTTP role
//! the circuit gauges it reads from Redis. Label values stay what the code and
//! configuration name (see the cardinality note in [`super::metric`]).

use std::collections::BTreeSet;

use switchboard_jobs::{KindInfo, Registry};

use super::metric::{
    CIRCUIT_OPEN, INGEST_PROVIDERS, INGEST_REQUESTS, INGEST_SECONDS, INGEST_STATUSES, JOB_OUTCOMES,
    JOB_RUN, JOB_WAIT, JOBS, JOBS_RESCUED, SCHEDULER_FIRES, SCHEDULER_OUTCOMES, WAIT_KINDS,
    WAIT_NOTICES, WAIT_OUTCOMES,
};
use crate::config::Settings;

/// The (queue, kind) pairs a fleet over `settings`' supervisors may run: each registered
/// kind on its default queue when a supervisor works that queue, and each schedule's kind
/// on its queue when a supervisor works that. Sorted, without repeats.
pub fn job_pairs(settings: &Settings, registry: &Registry) -> Vec<(String, String)> {
    let worked: BTreeSet<&str> = settings
        .fleet
        .supervisors
        .iter()
        .flat_map(|s| s.queues.iter().map(String::as_str))
        .collect();
    let mut pairs = BTreeSet::new();
    for kind in registry.kinds() {
        if let Some(queue) = registry.queue(kind).filter(|q| worked.contains(q)) {
            pairs.insert((queue.to_owned(), kind.to_owned()));
        }
    }
    for s in &settings.schedule {
        if worked.contains(s.queue.as_str()) && registry.get(&s.kind).is_some() {
            pairs.insert((s.queue.clone(), s.kind.clone()));
        }
    }
    pairs.into_iter().collect()
}

/// The fleet's series at zero: per (queue, kind) every outcome of `switchboard_jobs_total`
/// and the run time histogram; per queue the wait histogram and the rescued counter.
pub fn jobs(pairs: &[(String, String)]) {
    let mut queues = BTreeSet::new();
    for (queue, kind) in pairs {
        for outcome in JOB_OUTCOMES {
            metrics::counter!(JOBS, "queue" => queue.clone(), "kind" => kind.clone(), "outcome" => outcome)
                .increment(0);
        }
        // Registering is enough: the recorder renders a histogram with no samples at 0.
        let _ = metrics::histogram!(JOB_RUN, "queue" => queue.clone(), "kind" => kind.clone());
        queues.insert(queue.as_str());
    }
    for queue in queues {
        let _ = metrics::histogram!(JOB_WAIT, "queue" => queue.to_owned());
        metrics::counter!(JOBS_RESCUED, "queue" => queue.to_owned()).increment(0);
    }
}

/// The scheduler's series at zero: every outcome of every schedule in `names`.
pub fn scheduler<'a>(names: impl IntoIterator<Item = &'a str>) {
    for name in names {
        for outcome in SCHEDULER_OUTCOMES {
            metrics::counter!(SCHEDULER_FIRES, "schedule" => name.to_owned(), "outcome" => outcome)
                .increment(0);
        }
    }
}

/// The wait watch's series at zero: every kind and outcome of the long-wait notices, per
/// watched queue and configured channel (`webhook`, `email`).
pub fn waits<'a>(queues: impl IntoIterator<Item = &'a str>, channels: &[&'static str]) {
    for queue in queues {
        for &channel in channels {
            for kind in WAIT_KINDS {
                for outcome in WAIT_OUTCOMES {
                    metrics::counter!(WAIT_NOTICES, "queue" => queue.to_owned(), "channel" => channel, "kind" => kind, "outcome" => outcome)
                        .increment(0);
                }
            }
        }
    }
}

/// Ingest's series at zero: every status it answers, per provider, and the time histogram.
pub fn ingest() {
    for provider in INGEST_PROVIDERS {
        for status in INGEST_STATUSES {
            metrics::counter!(INGEST_REQUESTS, "provider" => provider, "status" => status.to_string())
                .increment(0);
        }
        let _ = metrics::histogram!(INGEST_SECONDS, "provider" => provider);
    }
}

/// The circuit gauges of every provider a kind of `catalogue` guards with a circuit, at 0
/// (closed) until a scrape reads otherwise from Redis. An increment by 0 leaves a value a
/// scrape already set.
pub fn circuits(catalogue: &[KindInfo]) {
    let providers: BTreeSet<&str> = catalogue.iter().filter_map(|k| k.policy.circuit).collect();
    for provider in providers {
        metrics::gauge!(CIRCUIT_OPEN, "provider" => provider).increment(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ScheduleSettings;

    #[test]
    fn pairs_are_the_registered_kinds_on_worked_queues_and_the_scheduled_ones() {
        let mut settings = Settings::defaults();
        settings
            .fleet
            .supervisors
            .retain(|s| s.name == "maintenance");
        settings.schedule = vec![ScheduleSettings {
            name: "tick".into(),
            cron: "0 * * * * *".into(),
            timezone: "UTC".into(),
            kind: "noop".into(),
            args: serde_json::json!({}),
            queue: "elsewhere".into(),
            catch_up: crate::config::CatchUp::Skip,
        }];
        let registry = switchboard_jobs::registry();
        assert_eq!(
            job_pairs(&settings, &registry),
            [("maintenance".to_owned(), "noop".to_owned())],
            "noop's default queue is worked; the schedule's queue is not"
        );
        settings.fleet.supervisors[0]
            .queues
            .push("elsewhere".into());
        assert_eq!(job_pairs(&settings, &registry).len(), 2);
    }
}
