//! The ingest role: `POST /webhooks/{retell,calcom,stripe}`.
//!
//! A delivery is verified over its raw bytes, identified, deduplicated and enqueued on the
//! `webhooks` queue in one atomic Redis step, then answered. Nothing else happens on this
//! path: no provider call, no database. Answers: 202 with the job id; 200 `duplicate` for an
//! event already accepted within `ingest.dedupe_ttl_secs`; 400 malformed or unidentifiable
//! body; 401 bad or stale signature; 404 provider not configured; 413 body too large (not
//! read past the limit); 503 with `Retry-After` when Redis does not take the job.
//! Bodies and secrets are never logged.

pub mod providers;
pub mod secrets;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use serde_json::json;
use switchboard_jobs::{
    EnqueueOptions,
    trace::{self, Carried},
    webhook::{CalcomWebhook, RetellWebhook, StripeWebhook, WebhookEvent},
};
use tracing::Instrument;

pub use providers::{EventId, IdentifyError, SignatureError};
pub use secrets::{SecretList, WebhookSecrets};

use crate::{
    config::IngestSettings,
    queue::{Enqueued, Producer},
    telemetry::metric,
};

/// Source of "now" in ms since the epoch; tests fix it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}

/// The providers ingest knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Retell,
    Calcom,
    Stripe,
}

impl Provider {
    /// Lower-case name, as in routes, job kinds and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Retell => "retell",
            Self::Calcom => "calcom",
            Self::Stripe => "stripe",
        }
    }

    /// The name of an ingest request's span.
    fn span_name(self) -> &'static str {
        match self {
            Self::Retell => "ingest retell",
            Self::Calcom => "ingest calcom",
            Self::Stripe => "ingest stripe",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Self::Retell => "RETELL_WEBHOOK_KEY",
            Self::Calcom => "CALCOM_WEBHOOK_SECRET",
            Self::Stripe => "STRIPE_WEBHOOK_SECRET",
        }
    }

    fn verify(
        self,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &SecretList,
        now_ms: u64,
    ) -> Result<(), SignatureError> {
        let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        match self {
            Self::Retell => {
                providers::retell::verify(header(providers::retell::HEADER), body, secrets, now_ms)
            }
            Self::Calcom => {
                providers::calcom::verify(header(providers::calcom::HEADER), body, secrets)
            }
            Self::Stripe => providers::stripe::verify(
                header(providers::stripe::HEADER),
                body,
                secrets,
                now_ms / 1000,
            ),
        }
    }

    fn identify(self, body: &[u8]) -> Result<EventId, IdentifyError> {
        match self {
            Self::Retell => providers::retell::identify(body),
            Self::Calcom => providers::calcom::identify(body),
            Self::Stripe => providers::stripe::identify(body),
        }
    }
}

#[derive(Clone)]
struct IngestState {
    producer: Producer,
    secrets: Arc<WebhookSecrets>,
    settings: Arc<IngestSettings>,
    clock: Clock,
}

impl IngestState {
    fn secrets(&self, provider: Provider) -> Option<&SecretList> {
        match provider {
            Provider::Retell => self.secrets.retell.as_ref(),
            Provider::Calcom => self.secrets.calcom.as_ref(),
            Provider::Stripe => self.secrets.stripe.as_ref(),
        }
    }
}

/// The webhook routes. Says once, here, which providers are not configured.
pub fn router(
    producer: Producer,
    secrets: WebhookSecrets,
    settings: IngestSettings,
    clock: Clock,
) -> Router {
    let state = IngestState {
        producer,
        secrets: Arc::new(secrets),
        settings: Arc::new(settings),
        clock,
    };
    for provider in [Provider::Retell, Provider::Calcom, Provider::Stripe] {
        if state.secrets(provider).is_none() {
            tracing::warn!(
                provider = provider.name(),
                "{} is not set: /webhooks/{} answers 404",
                provider.env_var(),
                provider.name()
            );
        }
    }
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route(
            "/webhooks/retell",
            post(|s, h, b| handle(Provider::Retell, s, h, b)),
        )
        .route(
            "/webhooks/calcom",
            post(|s, h, b| handle(Provider::Calcom, s, h, b)),
        )
        .route(
            "/webhooks/stripe",
            post(|s, h, b| handle(Provider::Stripe, s, h, b)),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// How a delivery was answered.
enum Answer {
    Accepted(String),
    Duplicate(String),
    Rejected(StatusCode, String),
    Unavailable(String),
}

async fn handle(
    provider: Provider,
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let request_id = request_id(&headers);
    // The trace starts here, or continues the caller's `traceparent`; the job carries it on.
    let span = tracing::info_span!(
        "ingest",
        otel.name = provider.span_name(),
        otel.kind = "server",
        provider = provider.name(),
        request_id = request_id.as_str(),
        trace_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let incoming = crate::telemetry::trace::incoming(&headers);
    trace::adopt(&span, incoming);
    let carried = Carried {
        traceparent: incoming.map(str::to_owned),
        request_id: Some(request_id.clone()),
    };
    let outcome = trace::scope(
        carried,
        accept(provider, &state, &headers, body, &request_id),
    )
    .instrument(span.clone())
    .await;
    let _in_span = span.enter();
    let (status, payload) = match &outcome {
        Answer::Accepted(id) => (StatusCode::ACCEPTED, json!({ "id": id })),
        Answer::Duplicate(id) => (StatusCode::OK, json!({ "duplicate": true, "id": id })),
        Answer::Rejected(status, error) => (*status, json!({ "error": error })),
        Answer::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "error": "the queue is unavailable; retry later" }),
        ),
    };
    span.record("http.response.status_code", status.as_u16());
    let took = started.elapsed();
    metric::ingest_answered(provider.name(), status.as_u16(), took);
    let micros = took.as_micros() as u64;
    match &outcome {
        Answer::Accepted(id) | Answer::Duplicate(id) => {
            tracing::debug!(provider = provider.name(), request_id, status = status.as_u16(), job = %id, micros, "webhook accepted");
        }
        Answer::Rejected(_, error) => {
            tracing::info!(
                provider = provider.name(),
                request_id,
                status = status.as_u16(),
                error,
                micros,
                "webhook rejected"
            );
        }
        Answer::Unavailable(error) => {
            metric::redis_error("ingest");
            tracing::error!(
                provider = provider.name(),
                request_id,
                error,
                micros,
                "webhook not enqueued: redis unavailable"
            );
        }
    }
    let mut response = (status, Json(payload)).into_response();
    if matches!(outcome, Answer::Unavailable(_)) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn accept(
    provider: Provider,
    state: &IngestState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    request_id: &str,
) -> Answer {
    let Some(secrets) = state.secrets(provider) else {
        return Answer::Rejected(
            StatusCode::NOT_FOUND,
            format!("{} webhooks are not configured", provider.name()),
        );
    };
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let limit = state.settings.max_body_bytes;
            return Answer::Rejected(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds {limit} bytes"),
            );
        }
        Err(e) => {
            return Answer::Rejected(
                StatusCode::BAD_REQUEST,
                format!("body could not be read: {e}"),
            );
        }
    };
    let now_ms = (state.clock)();
    if let Err(e) = provider.verify(headers, &body, secrets, now_ms) {
        return Answer::Rejected(StatusCode::UNAUTHORIZED, e.to_string());
    }
    let envelope = match provider.identify(&body) {
        Ok(e) => e,
        Err(e) => return Answer::Rejected(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Ok(text) = String::from_utf8(body.into()) else {
        return Answer::Rejected(StatusCode::BAD_REQUEST, "body is not UTF-8".into());
    };
    let unique_key = format!("{}:{}", provider.name(), envelope.dedupe_key);
    let event = WebhookEvent {
        provider: provider.name().to_owned(),
        event_type: envelope.event_type,
        dedupe_key: envelope.dedupe_key,
        received_at_ms: now_ms,
        request_id: request_id.to_owned(),
        body: text,
    };
    let s = &state.settings;
    let options = EnqueueOptions::default()
        .on_queue(s.queue.clone())
        .unique(unique_key, Duration::from_secs(s.dedupe_ttl_secs))
        .sequence(envelope.sequence);
    let enqueue = async {
        match provider {
            Provider::Retell => state.producer.enqueue(&RetellWebhook(event), options).await,
            Provider::Calcom => state.producer.enqueue(&CalcomWebhook(event), options).await,
            Provider::Stripe => state.producer.enqueue(&StripeWebhook(event), options).await,
        }
    };
    match tokio::time::timeout(Duration::from_millis(s.enqueue_timeout_ms), enqueue).await {
        Ok(Ok(Enqueued {
            id,
            duplicate: false,
            ..
        })) => Answer::Accepted(id),
        Ok(Ok(Enqueued {
            id,
            duplicate: true,
            ..
        })) => Answer::Duplicate(id),
        Ok(Err(e)) => Answer::Unavailable(e.to_string()),
        Err(_) => Answer::Unavailable(format!("no answer within {} ms", s.enqueue_timeout_ms)),
    }
}

/// The caller's `x-request-id` when it is short and printable, else a new ULID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| ulid::Ulid::new().to_string(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_is_one_exported_from_zero() {
        let names = [Provider::Retell, Provider::Calcom, Provider::Stripe].map(Provider::name);
        assert_eq!(names, metric::INGEST_PROVIDERS);
    }
}
