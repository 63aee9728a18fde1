//! The HTTP role's base routes: liveness, readiness and `/metrics`.
//!
//! A scrape of `/metrics` first reads the queue gauges from Redis ([`Gauges`]), so any
//! process with the HTTP role (an `ingest` alone too) exports the fleet's queue depths and
//! waits as of the scrape. When Redis does not answer in time, the scrape still answers with
//! everything else and counts a Redis error.

use std::time::Duration;

use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{
    queue::{QueueError, Queues},
    telemetry::metric,
};

/// Longest a scrape waits for the queue gauges (Prometheus' default scrape timeout is 10 s).
const GAUGES_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct HttpState {
    queues: Queues,
    metrics: Option<PrometheusHandle>,
}

/// `/healthz`, `/readyz`, `/metrics`; `/` sends a browser to the dashboard.
pub fn router(queues: Queues, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/dashboard") }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(HttpState { queues, metrics })
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.queues.ping(Duration::from_millis(100)).await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "redis does not answer")
    }
}

async fn render_metrics(State(state): State<HttpState>) -> (StatusCode, String) {
    let Some(handle) = state.metrics else {
        return (
            StatusCode::NOT_FOUND,
            "metrics recorder not installed\n".into(),
        );
    };
    let gauges = Gauges::new(state.queues);
    match tokio::time::timeout(GAUGES_TIMEOUT, gauges.run_once()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            metric::redis_error("gauges");
            tracing::warn!(error = %e, "reading queue stats for /metrics failed");
        }
        Err(_) => {
            metric::redis_error("gauges");
            tracing::warn!(
                timeout_ms = GAUGES_TIMEOUT.as_millis() as u64,
                "reading queue stats for /metrics timed out"
            );
        }
    }
    (StatusCode::OK, handle.render())
}

/// Publishes every registered queue's stats as the queue gauges. Redis is the truth for the
/// whole fleet, so every instance that runs this exports the same values (dashboards take
/// `max`, see [`crate::telemetry`]); each queue costs one pipelined round trip of O(1)
/// commands ([`Queues::stats`]).
struct Gauges {
    queues: Queues,
}

impl Gauges {
    /// Gauges over the queues registered in `queues`' Redis.
    fn new(queues: Queues) -> Self {
        Self { queues }
    }

    /// Read every registered queue's stats once and set the gauges; returns the queue count.
    async fn run_once(&self) -> Result<usize, QueueError> {
        let names = self.queues.queue_names().await?;
        for name in &names {
            let s = self.queues.stats(name).await?;
            for (state, v) in [
                ("pending", s.pending),
                ("delayed", s.delayed),
                ("running", s.running),
                ("dead", s.dead),
                ("waiting", s.waiting),
            ] {
                metrics::gauge!(metric::QUEUE_JOBS, "queue" => name.clone(), "state" => state)
                    .set(v as f64);
            }
            metrics::gauge!(metric::QUEUE_OLDEST_PENDING, "queue" => name.clone())
                .set(s.oldest_pending_secs);
        }
        for c in self.queues.circuits().await? {
            metrics::gauge!(metric::CIRCUIT_OPEN, "provider" => c.name).set(if c.open {
                1.0
            } else {
                0.0
            });
        }
        Ok(names.len())
    }
}
