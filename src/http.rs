//! The HTTP role's base routes: liveness, readiness and `/metrics`.

use std::time::Duration;

use axum::{Router, extract::State, http::StatusCode, routing::get};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::queue::Queues;

#[derive(Clone)]
struct HttpState {
    queues: Queues,
    metrics: Option<PrometheusHandle>,
}

/// `/healthz`, `/readyz`, `/metrics`.
pub fn router(queues: Queues, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
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
    match state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()),
        None => (
            StatusCode::NOT_FOUND,
            "metrics recorder not installed\n".into(),
        ),
    }
}
