//! Metric names and the helpers that record them. Names and labels are stable: the Grafana
//! dashboard and the alert rules under `dashboards/` use exactly these.
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | `switchboard_queue_jobs` | gauge | queue, state | jobs `pending`, `delayed`, `running`, `dead` (from Redis) |
//! | `switchboard_queue_oldest_pending_seconds` | gauge | queue | age of the oldest job ready to run (from Redis) |
//! | `switchboard_circuit_open` | gauge | provider | 1 while a provider's circuit is open (from Redis) |
//! | `switchboard_jobs_total` | counter | queue, kind, outcome | finished attempts, see below |
//! | `switchboard_job_wait_seconds` | histogram | queue | ready (enqueue or due time) to start |
//! | `switchboard_job_run_seconds` | histogram | queue, kind | run time of an attempt, any outcome |
//! | `switchboard_workers` | gauge | supervisor, state | worker slots `busy` (running a job) and `idle` |
//! | `switchboard_supervisor_slots` | gauge | supervisor, queue | slots a supervisor gives each queue: fixed (`concurrency` x `workers`) or, balanced, as they move |
//! | `switchboard_jobs_rescued_total` | counter | queue | jobs returned from workers whose lease expired |
//! | `switchboard_scheduler_fires_total` | counter | schedule, outcome | scheduler ticks |
//! | `switchboard_ingest_requests_total` | counter | provider, status | webhook deliveries by HTTP status |
//! | `switchboard_ingest_seconds` | histogram | provider | verify + dedupe + enqueue of a delivery |
//! | `switchboard_redis_errors_total` | counter | component | failed Redis calls |
//! | `switchboard_wait_notices_total` | counter | queue, channel, kind, outcome | long-wait notices (`[waits]`): channel `webhook` or `email`, kind `long_wait` or `recovered`, outcome `sent` or `failed` |
//! | `switchboard_http_connections_open` | gauge | | connections the HTTP listener holds |
//! | `switchboard_http_connections_shed_total` | counter | reason | connections closed by an edge limit, see below |
//! | `switchboard_database_errors_total` | counter | | failed database calls (the job crate's store) |
//! | `switchboard_usage_unbillable_total` | counter | | calls whose usage Stripe refused for good |
//! | `switchboard_usage_reported_late_total` | counter | | calls reported after Stripe's meter-event window |
//!
//! **From zero.** Every family exists from the start of the process that records it, for
//! every label value known then ([`super::known`]): counters at 0, histograms with empty
//! buckets, so `rate()` and the alert rules read a fresh process too.
//!
//! **Outcomes** of `switchboard_jobs_total`, counted like Sidekiq counts failures (one per
//! failed attempt): `completed`; `failed` for every failed attempt, plus `retried` when it
//! will run again or `dead` when it went to the dead set (out of attempts, or permanent); and
//! `snoozed` for a job that asked to run later (no attempt used, not a failure); `expired`
//! for a job past its expiry before it started (never run, not a failure). So
//! `failed = retried + dead`, finished attempts are `completed + failed + snoozed`, and the
//! failure rate is `failed / (completed + failed)`.
//!
//! **Shed reasons** of `switchboard_http_connections_shed_total` (see `[http]` in
//! `config/default.toml`): `cap` (an idle connection closed to make room, or a new one
//! refused, at `max_connections`), `per_ip` (over `max_connections_per_ip`), `accept_error`
//! (a failed accept, e.g. out of descriptors, and each idle connection closed to recover), `header_timeout`, `body_timeout`,
//! `request_timeout` and `idle` (keep-alive idle).
//!
//! **Cardinality.** Labels take values from configuration and code only (queue, job kind,
//! supervisor, schedule, provider, HTTP status, component), never from payloads or ids; the
//! wait histogram has no `kind` label since waiting is the queue's property.

use std::{cell::RefCell, time::Duration};

use switchboard_jobs::names::NameMap;

/// Gauge: jobs by queue and state (pending, delayed, running, dead), read from Redis.
pub const QUEUE_JOBS: &str = "switchboard_queue_jobs";
/// Gauge: age in seconds of the oldest pending job, by queue, read from Redis.
pub const QUEUE_OLDEST_PENDING: &str = "switchboard_queue_oldest_pending_seconds";
/// Gauge: 1 while a provider's circuit is open (its jobs wait), else 0, by provider.
pub const CIRCUIT_OPEN: &str = "switchboard_circuit_open";
/// Counter: finished attempts by queue, kind and outcome (see the module doc).
pub const JOBS: &str = "switchboard_jobs_total";
/// Histogram: seconds from ready (enqueue or due time) to start, by queue.
pub const JOB_WAIT: &str = "switchboard_job_wait_seconds";
/// Histogram: seconds an attempt ran, by queue and kind.
pub const JOB_RUN: &str = "switchboard_job_run_seconds";
/// Gauge: worker slots by supervisor and state (busy, idle).
pub const WORKERS: &str = "switchboard_workers";
/// Gauge: slots a supervisor gives each of its queues: `concurrency` x `workers` when fixed,
/// the moving split of a balanced one (`balance = "auto"`).
pub const SUPERVISOR_SLOTS: &str = "switchboard_supervisor_slots";
/// Counter: jobs returned to the queue from dead workers, by queue.
pub const JOBS_RESCUED: &str = "switchboard_jobs_rescued_total";
/// Counter: scheduler ticks by schedule and outcome: `enqueued` (this instance claimed the
/// tick), `duplicate` (another instance had), `missed` and `caught_up` (after downtime),
/// `failed`, `manual` (run by an operator).
pub const SCHEDULER_FIRES: &str = "switchboard_scheduler_fires_total";
/// Counter: webhook deliveries by provider and HTTP status.
pub const INGEST_REQUESTS: &str = "switchboard_ingest_requests_total";
/// Histogram: seconds to verify, dedupe and enqueue a webhook delivery, by provider.
pub const INGEST_SECONDS: &str = "switchboard_ingest_seconds";
/// Counter: failed Redis calls by component.
pub const REDIS_ERRORS: &str = "switchboard_redis_errors_total";
/// Counter: long-wait notices by queue, channel (`webhook`, `email`), kind (`long_wait`,
/// `recovered`) and outcome (`sent`, `failed`; a failed one is tried again at the next check).
pub const WAIT_NOTICES: &str = "switchboard_wait_notices_total";

/// Gauge: connections the HTTP listener holds (admitted, not yet closed).
pub const HTTP_CONNECTIONS_OPEN: &str = "switchboard_http_connections_open";
/// Counter: connections closed by an edge limit, by reason (see the module doc).
pub const HTTP_CONNECTIONS_SHED: &str = "switchboard_http_connections_shed_total";

/// The `reason` values of [`HTTP_CONNECTIONS_SHED`]; each starts at 0 so the series exists.
pub const SHED_REASONS: [&str; 7] = [
    "cap",
    "per_ip",
    "accept_error",
    "header_timeout",
    "body_timeout",
    "request_timeout",
    "idle",
];

/// The `component` values of [`REDIS_ERRORS`]; each starts at 0 so the series exists.
pub const REDIS_COMPONENTS: [&str; 13] = [
    "fetch",
    "ack",
    "heartbeat",
    "gauges",
    "promote",
    "rescue",
    "prune",
    "leader",
    "scheduler",
    "ingest",
    "replicas",
    "kind_metrics",
    "waits",
];

/// The `outcome` values of [`JOBS`] (every label [`JobOutcome::labels`] gives).
pub const JOB_OUTCOMES: [&str; 6] = [
    "completed",
    "failed",
    "retried",
    "dead",
    "snoozed",
    "expired",
];

/// The `outcome` values of [`SCHEDULER_FIRES`].
pub const SCHEDULER_OUTCOMES: [&str; 6] = [
    "enqueued",
    "duplicate",
    "missed",
    "caught_up",
    "failed",
    "manual",
];

/// The `kind` values of [`WAIT_NOTICES`].
pub const WAIT_KINDS: [&str; 2] = ["long_wait", "recovered"];

/// The `outcome` values of [`WAIT_NOTICES`].
pub const WAIT_OUTCOMES: [&str; 2] = ["sent", "failed"];

/// The `provider` values of [`INGEST_REQUESTS`] and [`INGEST_SECONDS`].
pub const INGEST_PROVIDERS: [&str; 3] = ["retell", "calcom", "stripe"];

/// The `status` values of [`INGEST_REQUESTS`]: every status ingest answers a delivery with.
pub const INGEST_STATUSES: [u16; 7] = [200, 202, 400, 401, 404, 413, 503];

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Succeeded.
    Completed,
    /// Failed and will run again after a backoff.
    Retried,
    /// Failed for good: in the dead set.
    Dead,
    /// Asked to run later; no attempt used.
    Snoozed,
    /// Past its expiry before it started: never run, not dead.
    Expired,
}

impl JobOutcome {
    /// The `outcome` labels this attempt increments.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Self::Completed => &["completed"],
            Self::Retried => &["failed", "retried"],
            Self::Dead => &["failed", "dead"],
            Self::Snoozed => &["snoozed"],
            Self::Expired => &["expired"],
        }
    }
}

/// Give every metric its help text and start the fixed-label counters at zero.
pub(crate) fn describe_all() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        QUEUE_JOBS,
        "Jobs by queue and state, read from Redis (max over instances)."
    );
    describe_gauge!(
        QUEUE_OLDEST_PENDING,
        Unit::Seconds,
        "Age of the oldest pending job, read from Redis (max over instances)."
    );
    describe_gauge!(
        CIRCUIT_OPEN,
        "1 while a provider's circuit is open and its jobs wait for a probe, else 0."
    );
    describe_counter!(
        JOBS,
        "Finished job attempts; a failed attempt counts as failed and as retried or dead."
    );
    describe_histogram!(
        JOB_WAIT,
        Unit::Seconds,
        "Time from ready (enqueue or due) to start."
    );
    describe_histogram!(JOB_RUN, Unit::Seconds, "Run time of a job attempt.");
    describe_gauge!(
        WORKERS,
        "Worker slots of this process by supervisor and state."
    );
    describe_gauge!(
        SUPERVISOR_SLOTS,
        "Slots a supervisor gives each of its queues (all worker loops together): fixed, or as balanced."
    );
    describe_counter!(
        JOBS_RESCUED,
        "Jobs returned to their queue after their worker's lease expired."
    );
    describe_counter!(SCHEDULER_FIRES, "Scheduler ticks by schedule and outcome.");
    describe_counter!(
        INGEST_REQUESTS,
        "Webhook deliveries by provider and HTTP status."
    );
    describe_histogram!(
        INGEST_SECONDS,
        Unit::Seconds,
        "Time to verify, dedupe and enqueue a webhook delivery."
    );
    describe_counter!(REDIS_ERRORS, "Failed Redis calls by component.");
    describe_counter!(
        WAIT_NOTICES,
        "Long-wait notices by queue, channel, kind (long_wait, recovered) and outcome (sent, failed)."
    );
    for component in REDIS_COMPONENTS {
        metrics::counter!(REDIS_ERRORS, "component" => component).increment(0);
    }
    describe_gauge!(
        HTTP_CONNECTIONS_OPEN,
        "Connections the HTTP listener holds."
    );
    describe_counter!(
        HTTP_CONNECTIONS_SHED,
        "Connections closed by an edge limit (cap, per_ip, timeouts, idle), by reason."
    );
    metrics::gauge!(HTTP_CONNECTIONS_OPEN).increment(0.0);
    for reason in SHED_REASONS {
        metrics::counter!(HTTP_CONNECTIONS_SHED, "reason" => reason).increment(0);
    }
    // Counted by the job crate's store where a database failure becomes a `StoreError`.
    let db = switchboard_jobs::store::DATABASE_ERRORS;
    describe_counter!(
        db,
        "Failed database calls (unreachable, refused or undecodable)."
    );
    metrics::counter!(db).increment(0);
    // Counted by the job crate's usage report where Stripe refuses or takes a late call.
    let (unbillable, late) = (
        switchboard_jobs::billing::report_usage::UNBILLABLE,
        switchboard_jobs::billing::report_usage::REPORTED_LATE,
    );
    describe_counter!(
        unbillable,
        "Calls whose usage Stripe refused for good (never billed)."
    );
    describe_counter!(
        late,
        "Calls reported after Stripe's meter-event window, billed in the open period."
    );
    metrics::counter!(unbillable).increment(0);
    metrics::counter!(late).increment(0);
}

/// A Redis call of `component` (one of [`REDIS_COMPONENTS`]) failed.
pub fn redis_error(component: &'static str) {
    debug_assert!(REDIS_COMPONENTS.contains(&component), "{component}");
    metrics::counter!(REDIS_ERRORS, "component" => component).increment(1);
}

/// The scheduler handled a tick of `schedule` with `outcome` (one of [`SCHEDULER_OUTCOMES`]).
pub fn scheduler_fired(schedule: &str, outcome: &'static str, n: u64) {
    debug_assert!(SCHEDULER_OUTCOMES.contains(&outcome), "{outcome}");
    metrics::counter!(SCHEDULER_FIRES, "schedule" => schedule.to_owned(), "outcome" => outcome)
        .increment(n);
}

/// A job of `queue` started after waiting `waited_us`.
pub fn job_started(queue: &str, waited_us: u64) {
    job_series(queue, None, |wait, _| wait.record(waited_us as f64 / 1e6));
}

/// An attempt ended with `outcome` after running `ran`.
pub fn job_finished(queue: &str, kind: &str, outcome: JobOutcome, ran: Duration) {
    job_series(queue, Some(kind), |_, k| {
        let Some(k) = k else { return };
        k.run.record(ran.as_secs_f64());
        for label in outcome.labels() {
            let i = JOB_OUTCOMES.iter().position(|o| o == label).unwrap_or(0);
            k.outcomes[i]
                .get_or_insert_with(|| {
                    metrics::counter!(JOBS, "queue" => queue.to_owned(), "kind" => kind.to_owned(), "outcome" => *label)
                })
                .increment(1);
        }
    });
}

/// The handles of one queue's per-job series.
struct QueueSeries {
    wait: metrics::Histogram,
    kinds: NameMap<Box<str>, KindSeries>,
}

/// The handles of one kind's per-job series; outcome counters by [`JOB_OUTCOMES`] index,
/// made on first use.
struct KindSeries {
    run: metrics::Histogram,
    outcomes: [Option<metrics::Counter>; JOB_OUTCOMES.len()],
}

/// Per-thread handles of the per-job series, and the recorder they belong to.
#[derive(Default)]
struct JobSeries {
    recorder: usize,
    queues: NameMap<Box<str>, QueueSeries>,
}

thread_local! {
    static JOB_SERIES: RefCell<JobSeries> = RefCell::new(JobSeries::default());
}

/// Run `f` with the handles of `queue`'s wait series and, given a kind, its run and outcome
/// series. Every job records three of them; a handle kept per thread costs a map lookup
/// instead of building, hashing and registering a labelled key each time. The handles are
/// dropped when the recorder in force changes (a test's own recorder).
fn job_series(
    queue: &str,
    kind: Option<&str>,
    f: impl FnOnce(&metrics::Histogram, Option<&mut KindSeries>),
) {
    let recorder = metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>() as usize);
    JOB_SERIES.with_borrow_mut(|series| {
        if series.recorder != recorder {
            *series = JobSeries {
                recorder,
                queues: NameMap::default(),
            };
        }
        // Looked up by `&str` first: no key is built for a series seen before.
        if !series.queues.contains_key(queue) {
            let wait = metrics::histogram!(JOB_WAIT, "queue" => queue.to_owned());
            let kinds = NameMap::default();
            series.queues.insert(queue.into(), QueueSeries { wait, kinds });
        }
        let Some(QueueSeries { wait, kinds }) = series.queues.get_mut(queue) else {
            return;
        };
        let Some(kind) = kind else {
            f(wait, None);
            return;
        };
        if !kinds.contains_key(kind) {
            let run = metrics::histogram!(JOB_RUN, "queue" => queue.to_owned(), "kind" => kind.to_owned());
            let outcomes = Default::default();
            kinds.insert(kind.into(), KindSeries { run, outcomes });
        }
        f(wait, kinds.get_mut(kind));
    });
}

/// A supervisor now gives `queue` `n` slots (fixed at start, or moved by its balancer).
pub fn supervisor_slots(supervisor: &str, queue: &str, n: usize) {
    metrics::gauge!(SUPERVISOR_SLOTS, "supervisor" => supervisor.to_owned(), "queue" => queue.to_owned())
        .set(n as f64);
}

/// `n` jobs of `queue` were rescued (0 too, so the series exists before the first rescue).
pub fn jobs_rescued(queue: &str, n: u64) {
    metrics::counter!(JOBS_RESCUED, "queue" => queue.to_owned()).increment(n);
}

/// A long-wait notice of `kind` about `queue` through `channel` ended with `outcome`.
pub fn wait_notice(queue: &str, channel: &'static str, kind: &'static str, outcome: &'static str) {
    debug_assert!(WAIT_KINDS.contains(&kind) && WAIT_OUTCOMES.contains(&outcome));
    metrics::counter!(WAIT_NOTICES, "queue" => queue.to_owned(), "channel" => channel, "kind" => kind, "outcome" => outcome)
        .increment(1);
}

/// A webhook delivery for `provider` was answered with `status` after `took`.
pub fn ingest_answered(provider: &'static str, status: u16, took: Duration) {
    debug_assert!(INGEST_PROVIDERS.contains(&provider), "{provider}");
    debug_assert!(INGEST_STATUSES.contains(&status), "{status}");
    metrics::counter!(INGEST_REQUESTS, "provider" => provider, "status" => status.to_string())
        .increment(1);
    metrics::histogram!(INGEST_SECONDS, "provider" => provider).record(took.as_secs_f64());
}

/// `n` connections were closed by an edge limit for `reason` (one of [`SHED_REASONS`]).
pub fn http_shed(reason: &'static str, n: u64) {
    debug_assert!(SHED_REASONS.contains(&reason), "{reason}");
    metrics::counter!(HTTP_CONNECTIONS_SHED, "reason" => reason).increment(n);
}

/// The HTTP listener now holds `delta` more (or, negative, fewer) connections. A delta, so
/// several listeners in one process (tests) add up.
pub fn http_connections(delta: f64) {
    metrics::gauge!(HTTP_CONNECTIONS_OPEN).increment(delta);
}

/// The busy and idle slot gauges of one supervisor. Slots are added and removed as deltas, so
/// several fleets in one process (tests) add up instead of overwriting each other.
#[derive(Clone)]
pub struct WorkerSlots {
    busy: metrics::Gauge,
    idle: metrics::Gauge,
}

impl WorkerSlots {
    /// The gauges of `supervisor`.
    pub fn new(supervisor: &str) -> Self {
        Self {
            busy: metrics::gauge!(WORKERS, "supervisor" => supervisor.to_owned(), "state" => "busy"),
            idle: metrics::gauge!(WORKERS, "supervisor" => supervisor.to_owned(), "state" => "idle"),
        }
    }

    /// `n` slots started (idle) or, with a negative `n`, stopped.
    pub fn add(&self, n: f64) {
        self.idle.increment(n);
        // Touch busy so both states exist from the start.
        self.busy.increment(0.0);
    }

    /// A slot took a job.
    pub fn take(&self) {
        self.idle.decrement(1.0);
        self.busy.increment(1.0);
    }

    /// A slot finished its job.
    pub fn give_back(&self) {
        self.busy.decrement(1.0);
        self.idle.increment(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run `record` against a recorder of its own and return what `/metrics` would render.
    fn rendered(record: impl FnOnce()) -> String {
        let recorder = crate::telemetry::builder().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_all();
            record();
        });
        handle.render()
    }

    /// The (whole) value of the line that starts with `series ` (labels as rendered).
    fn value(text: &str, series: &str) -> u64 {
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn a_failed_attempt_counts_as_failed_and_as_retried_or_dead() {
        let ms = Duration::from_millis(3);
        let text = rendered(|| {
            for outcome in [
                JobOutcome::Completed,
                JobOutcome::Completed,
                JobOutcome::Completed,
                JobOutcome::Retried,
                JobOutcome::Retried,
                JobOutcome::Dead,
                JobOutcome::Snoozed,
            ] {
                job_finished("calendar", "calendar.book", outcome, ms);
            }
            job_started("calendar", 1_500);
        });
        let jobs = |outcome: &str| {
            value(
                &text,
                &format!(
                    r#"switchboard_jobs_total{{queue="calendar",kind="calendar.book",outcome="{outcome}"}}"#
                ),
            )
        };
        assert_eq!(jobs("completed"), 3);
        assert_eq!(jobs("failed"), 3);
        assert_eq!(jobs("retried"), 2);
        assert_eq!(jobs("dead"), 1);
        assert_eq!(jobs("snoozed"), 1);
        assert_eq!(
            value(
                &text,
                r#"switchboard_job_run_seconds_count{queue="calendar",kind="calendar.book"}"#
            ),
            7,
            "every attempt is timed"
        );
        assert_eq!(
            value(
                &text,
                r#"switchboard_job_wait_seconds_bucket{queue="calendar",le="0.0025"}"#
            ),
            1
        );
        assert_eq!(
            value(
                &text,
                r#"switchboard_job_wait_seconds_bucket{queue="calendar",le="0.001"}"#
            ),
            0,
            "1.5 ms is above the 1 ms bucket"
        );
    }

    #[test]
    fn every_outcome_label_is_one_exported_from_zero() {
        for outcome in [
            JobOutcome::Completed,
            JobOutcome::Retried,
            JobOutcome::Dead,
            JobOutcome::Snoozed,
            JobOutcome::Expired,
        ] {
            for label in outcome.labels() {
                assert!(JOB_OUTCOMES.contains(label), "{label}");
            }
        }
    }

    #[test]
    fn worker_slots_move_between_idle_and_busy() {
        let text = rendered(|| {
            let slots = WorkerSlots::new("calendar");
            slots.add(4.0);
            slots.take();
            slots.take();
            slots.give_back();
        });
        let busy = r#"switchboard_workers{supervisor="calendar",state="busy"}"#;
        let idle = r#"switchboard_workers{supervisor="calendar",state="idle"}"#;
        assert_eq!((value(&text, busy), value(&text, idle)), (1, 3));
        let text = rendered(|| {
            let slots = WorkerSlots::new("calendar");
            slots.add(2.0);
            slots.add(-2.0);
        });
        assert_eq!((value(&text, busy), value(&text, idle)), (0, 0));
    }

    #[test]
    fn ingest_time_has_sub_millisecond_buckets_and_redis_errors_start_at_zero() {
        let text = rendered(|| {
            ingest_answered("stripe", 202, Duration::from_micros(200));
            ingest_answered("stripe", 401, Duration::from_micros(80));
            redis_error("ack");
        });
        let requests = |status: &str| {
            value(
                &text,
                &format!(
                    r#"switchboard_ingest_requests_total{{provider="stripe",status="{status}"}}"#
                ),
            )
        };
        assert_eq!((requests("202"), requests("401")), (1, 1));
        assert_eq!(
            value(
                &text,
                r#"switchboard_ingest_seconds_bucket{provider="stripe",le="0.0001"}"#
            ),
            1
        );
        assert_eq!(
            value(
                &text,
                r#"switchboard_ingest_seconds_bucket{provider="stripe",le="0.00025"}"#
            ),
            2
        );
        for component in REDIS_COMPONENTS {
            let expected = u64::from(component == "ack");
            let series = format!(r#"switchboard_redis_errors_total{{component="{component}"}}"#);
            assert_eq!(value(&text, &series), expected, "{component}");
        }
        assert!(
            text.contains("# HELP switchboard_ingest_requests_total "),
            "metrics carry help text"
        );
    }
}
