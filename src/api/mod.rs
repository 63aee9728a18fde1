//! The app's door: `/api/v1/jobs`, an authenticated enqueue API the Laravel app calls.
//!
//! * [`keys`]: the API keys (`switchboard keys`), their scopes and states;
//! * [`jobs`]: the routes, each request validated at the door (kind enabled for the API,
//!   arguments deserializing into the kind's type, options the engine supports) before
//!   anything is queued;
//! * [`door`]: what every request passes first: its key, the key's rate limit, the body's
//!   size and depth.
//!
//! Errors are JSON `{"error": "...", "field": "..."}`: 400 malformed JSON, 401 a wrong or
//! revoked key, 403 a kind outside the key's scopes, 404 an unknown job, 409 a job that can
//! no longer be cancelled, 413 a body over `api.max_body_bytes`, 422 a request naming the
//! field that is wrong, 429 over the key's rate (with Retry-After), 503 Redis down (with
//! Retry-After).

pub mod door;
pub mod jobs;
pub mod keys;
pub mod openapi;

use std::{collections::HashSet, sync::Arc};

use axum::{
    Json, Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;

use crate::{
    audit::AuditLog,
    config::{ApiSettings, Settings},
    queue::{Queues, producer::Acked},
};

/// What the routes share.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) queues: Queues,
    pub(crate) settings: Arc<ApiSettings>,
    pub(crate) door: door::Door,
    pub(crate) audit: AuditLog,
    /// Queues the fleet's configuration names: the only ones a job may be sent to.
    pub(crate) known_queues: Arc<HashSet<String>>,
    /// The kinds `api.kinds` enables, looked up once.
    pub(crate) kinds: Arc<Vec<switchboard_jobs::KindInfo>>,
    pub(crate) acked: Acked,
}

/// The routes of `/api/v1`, or none when `api.enabled` is false.
pub fn router(queues: Queues, settings: &Settings) -> Router {
    if !settings.api.enabled {
        return Router::new();
    }
    let known_queues: HashSet<String> = settings
        .fleet
        .supervisors
        .iter()
        .flat_map(|s| s.queues.clone())
        .collect();
    let state = ApiState {
        door: door::Door::new(queues.clone(), &settings.api),
        audit: AuditLog::new(queues.clone(), settings.dashboard.audit_max_entries),
        settings: Arc::new(settings.api.clone()),
        known_queues: Arc::new(known_queues),
        kinds: Arc::new(
            switchboard_jobs::catalogue()
                .into_iter()
                .filter(|k| jobs::kind_enabled(&settings.api.kinds, k.kind))
                .collect(),
        ),
        acked: Acked {
            replicas: settings.api.min_replicas_acked,
            timeout: std::time::Duration::from_millis(settings.api.replicas_timeout_ms),
        },
        queues,
    };
    // The contract, built once: the kinds this configuration enables, no key needed.
    let contract = bytes::Bytes::from(
        serde_json::to_vec(&openapi::document(
            &switchboard_jobs::catalogue(),
            &settings.api.kinds,
        ))
        .expect("the OpenAPI document serializes"),
    );
    Router::new()
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let contract = contract.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], contract) }
            }),
        )
        .route("/api/v1/jobs", post(jobs::create))
        .route("/api/v1/jobs/batch", post(jobs::batch))
        .route("/api/v1/jobs/{id}", get(jobs::show).delete(jobs::cancel))
        .layer(DefaultBodyLimit::max(settings.api.max_body_bytes))
        .with_state(state)
}

/// An answer that is not a success: status, message, and the field at fault.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub field: Option<String>,
    /// Seconds for Retry-After (429, 503).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 422 naming `field`.
    pub(crate) fn field(field: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, error)
        }
    }

    /// 503 with Retry-After: Redis did not take the request.
    pub(crate) fn unavailable(error: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %error, "api: redis did not answer");
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("try again: {error}"),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.error,
            field: self.field.as_deref(),
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
