//! Logging and metrics set-up, and the metric names (stable: `dashboards/` uses exactly these).

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::TelemetrySettings;

/// Install the tracing subscriber (JSON or human lines) once per process.
pub fn init_logging(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if settings.log_format == "json" {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    // A second init (tests, embedded use) keeps the first subscriber.
    drop(result);
}

/// Install the Prometheus recorder; the handle renders `/metrics`.
pub fn init_metrics() -> Option<PrometheusHandle> {
    let buckets = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        60.0, 300.0,
    ];
    PrometheusBuilder::new()
        .set_buckets(&buckets)
        .ok()?
        .install_recorder()
        .ok()
}

/// Metric names and the helpers that record them.
pub mod metric {
    use super::Duration;

    /// Histogram: seconds from ready (enqueue or due time) to start, by queue and kind.
    pub const JOB_WAIT: &str = "switchboard_job_wait_seconds";
    /// Histogram: seconds a job ran, by queue, kind and outcome.
    pub const JOB_RUN: &str = "switchboard_job_run_seconds";
    /// Counter: finished runs by queue, kind and outcome (completed, retried, dead, snoozed).
    pub const JOBS_FINISHED: &str = "switchboard_jobs_finished_total";
    /// Gauge: jobs by queue and state (pending, delayed, running, dead).
    pub const QUEUE_DEPTH: &str = "switchboard_queue_depth";
    /// Gauge: age in seconds of the oldest pending job, by queue.
    pub const QUEUE_OLDEST: &str = "switchboard_queue_oldest_pending_seconds";
    /// Gauge: configured worker slots by supervisor.
    pub const WORKERS_TOTAL: &str = "switchboard_workers_total";
    /// Gauge: jobs running now by supervisor.
    pub const WORKERS_BUSY: &str = "switchboard_workers_busy";
    /// Counter: jobs returned to the queue from dead workers, by queue.
    pub const JOBS_RESCUED: &str = "switchboard_jobs_rescued_total";
    /// Counter: webhook deliveries by provider and HTTP status.
    pub const INGEST_REQUESTS: &str = "switchboard_ingest_requests_total";
    /// Counter: scheduler ticks by schedule and outcome (enqueued, duplicate, missed, failed).
    pub const SCHEDULER_FIRES: &str = "switchboard_scheduler_fires_total";
    /// Counter: Redis errors by component.
    pub const REDIS_ERRORS: &str = "switchboard_redis_errors_total";

    /// A Redis call of `component` failed.
    pub fn redis_error(component: &'static str) {
        metrics::counter!(REDIS_ERRORS, "component" => component).increment(1);
    }

    /// The scheduler handled a tick of `schedule` with `outcome`.
    pub fn scheduler_fired(schedule: &str, outcome: &'static str, n: u64) {
        metrics::counter!(SCHEDULER_FIRES, "schedule" => schedule.to_owned(), "outcome" => outcome)
            .increment(n);
    }

    /// A job started after waiting `waited_us`.
    pub fn job_started(queue: &str, kind: &str, waited_us: u64) {
        metrics::histogram!(JOB_WAIT, "queue" => queue.to_owned(), "kind" => kind.to_owned())
            .record(waited_us as f64 / 1e6);
    }

    /// A job run ended with `outcome` after `ran`.
    pub fn job_finished(queue: &str, kind: &str, outcome: &'static str, ran: Duration) {
        metrics::histogram!(JOB_RUN, "queue" => queue.to_owned(), "kind" => kind.to_owned(), "outcome" => outcome)
            .record(ran.as_secs_f64());
        metrics::counter!(JOBS_FINISHED, "queue" => queue.to_owned(), "kind" => kind.to_owned(), "outcome" => outcome)
            .increment(1);
    }
}
