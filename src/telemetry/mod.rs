//! Logging, trace export ([`trace`]) and metrics set-up; the metric names and the helpers that record them are in
//! [`metric`] (stable names: `dashboards/` uses exactly these).
//!
//! Metrics go to one process-wide Prometheus recorder, rendered at `GET /metrics` by the HTTP
//! role. Two kinds of series, aggregated differently when several instances are scraped:
//!
//! * **Queue gauges** (`switchboard_queue_jobs`, `switchboard_queue_oldest_pending_seconds`)
//!   are read from Redis, the truth for the whole fleet, at each scrape (O(1) per queue, see
//!   the HTTP role's gauges in `http.rs`). Every instance therefore exports the same numbers:
//!   dashboards and alerts take `max by (queue, state)`, never `sum`.
//! * **Per-process series** (every counter, the histograms and `switchboard_workers`) count
//!   what this process did: dashboards `sum` them over instances.
//!
//! `dashboards/grafana/switchboard.json` and `dashboards/prometheus/alerts.yml` follow this
//! rule; `tests/prometheus.rs` evaluates all of their expressions in a real Prometheus.

pub mod known;
pub mod metric;
pub mod trace;

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::TelemetrySettings;
pub use trace::Traces;

/// Install the tracing subscriber (JSON or human lines) once per process, with the OTLP
/// trace export when `otlp_endpoint` is set (call it inside the tokio runtime then: the
/// export runs on it). Fails only on an unusable endpoint.
pub fn init_logging(settings: &TelemetrySettings) -> Result<Traces, String> {
    // The worker runtime announces every worker loop at info; its warnings are what matter.
    let filter = EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{},apalis_core=warn", settings.log_level)));
    let provider = trace::provider(settings)?;
    let registry = tracing_subscriber::registry().with(provider.as_ref().map(trace::layer));
    let result = if settings.log_format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init()
    } else {
        // Colour only for a person at a terminal: a file or a log shipper gets plain text,
        // its fields written as the default format writes them uncoloured, but in one step
        // each (a job's span formats its fields when it opens, once per job).
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            registry
                .with(
                    fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_filter(filter),
                )
                .try_init()
        } else {
            registry
                .with(
                    fmt::layer()
                        .with_ansi(false)
                        .fmt_fields(plain_fields())
                        .with_writer(std::io::stderr)
                        .with_filter(filter),
                )
                .try_init()
        }
    };
    // A second init (tests, embedded use) keeps the first subscriber, and its traces.
    Ok(match result {
        Ok(()) => {
            if provider.is_some() {
                switchboard_jobs::trace::set_exporting();
            }
            Traces::new(provider)
        }
        Err(_) => Traces::default(),
    })
}

/// Fields as `name=value` separated by spaces, the message bare: what the default text
/// format writes without colour, one `write!` per field.
fn plain_fields() -> impl for<'w> fmt::FormatFields<'w> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt;
    fmt::format::debug_fn(|writer, field, value| {
        if field.name() == "message" {
            write!(writer, "{value:?}")
        } else {
            write!(writer, "{field}={value:?}")
        }
    })
    .delimited(" ")
}

/// Buckets of the job wait and run histograms (seconds): sub-millisecond pickup up to
/// jobs that waited minutes.
const JOB_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Buckets of the ingest histogram (seconds): verify + enqueue takes well under a millisecond
/// on a healthy Redis; the top buckets catch the enqueue timeout (2 s by default).
const INGEST_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How often histogram samples are folded into buckets. The recorder keeps each sample until
/// then, so at 200k jobs/s a longer interval costs megabytes (5 s: ~31 MB RSS in
/// `bench drain`; 100 ms: ~25 MB); the fold itself is cheap.
const UPKEEP_EVERY: Duration = Duration::from_millis(100);

/// Install the Prometheus recorder once per process and return its handle (which renders
/// `/metrics`); later calls return the same handle. `None` when another recorder was
/// installed first (an embedding program's own).
pub fn init_metrics() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(install).clone()
}

/// The recorder's configuration: histogram buckets per metric.
pub(crate) fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets(&JOB_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(metric::INGEST_SECONDS.into()),
                &INGEST_BUCKETS,
            )
        })
        .expect("the bucket lists are not empty")
}

fn install() -> Option<PrometheusHandle> {
    let handle = builder().install_recorder().ok()?;
    metric::describe_all();
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "metrics upkeep thread did not start; /metrics scrapes do its work");
    }
    Some(handle)
}
