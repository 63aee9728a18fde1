//! `/api/v1/jobs`: enqueue one job or a batch, read a job's state, cancel a job that has not
//! started. Every request is checked whole before anything is queued.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::{ConnectInfo, Path, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;
use switchboard_jobs::{
    EnqueueOptions, KindInfo, Priority,
    trace::{self, Carried},
};
use tracing::Instrument;

use super::{ApiError, ApiState, door, keys::KeyRecord};
use crate::{
    audit::Entry,
    queue::{Enqueued, QueueError, check_tenant, inspect::JobState, job},
};

/// One job to enqueue, as the app sends it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The queue; the kind's own when absent.
    pub queue: Option<String>,
    /// A job kind enabled for the API (`api.kinds`), e.g. `notify.email`.
    pub kind: String,
    /// The kind's arguments.
    #[schemars(with = "serde_json::Value")]
    pub args: Box<RawValue>,
    /// Earliest start, RFC 3339.
    pub run_at: Option<String>,
    /// Earliest start, seconds from now (not with `run_at`).
    pub delay_secs: Option<u64>,
    /// Not started by then (RFC 3339): recorded as expired, never run.
    pub expires_at: Option<String>,
    /// Dedupe key: while it lives, the same key enqueues nothing and answers the first job.
    pub unique_key: Option<String>,
    /// How long the dedupe key lives (default `api.unique_for_secs`).
    pub unique_for_secs: Option<u64>,
    /// Jobs with the same sequence key run one at a time, in order.
    pub sequence_key: Option<String>,
    /// The tenant, e.g. the company id: a queue serves the tenants with ready work in turn,
    /// so one tenant's backlog never holds up another's job. 1 to 64 of letters, digits,
    /// `.`, `_`, `:` and `-`, not `_` alone.
    #[schemars(length(min = 1, max = 64), pattern(r"^[A-Za-z0-9._:-]+$"))]
    pub tenant: Option<String>,
    /// Within the queue and tenant, higher runs first (low work still ages in); the
    /// kind's own when absent (`calendar.cancel` high, reminders and reconciliation low,
    /// the rest normal).
    pub priority: Option<Priority>,
}

/// A batch of jobs, all accepted or none.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub jobs: Vec<JobRequest>,
}

/// What an accepted job became.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct JobAccepted {
    /// The job's id (for a suppressed duplicate, the first job's).
    pub id: String,
    pub queue: String,
    /// `pending`, `delayed`, `waiting` (behind its sequence) or `duplicate`.
    pub state: String,
    /// True when a `unique_key` suppressed it or an `Idempotency-Key` replayed the answer.
    pub duplicate: bool,
}

/// The answer to a batch: one entry per job, in order.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BatchAccepted {
    pub jobs: Vec<JobAccepted>,
}

/// A job as `GET /api/v1/jobs/{id}` shows it.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JobStatus {
    pub id: String,
    pub queue: String,
    pub kind: Option<String>,
    /// `pending`, `delayed`, `running`, `completed`, `dead`, `expired` or `cancelled`.
    pub state: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub enqueued_at: Option<String>,
    pub run_at: Option<String>,
    pub finished_at: Option<String>,
    pub died_at: Option<String>,
    /// What a completed job recorded.
    pub result: Option<serde_json::Value>,
    /// A dead job's last error.
    pub error: Option<String>,
    /// The tenant it was enqueued for, if any.
    pub tenant: Option<String>,
    /// `high`, `normal` or `low` (null once only the completion is remembered).
    pub priority: Option<String>,
}

/// A job checked at the door, ready to queue.
struct Checked {
    kind: &'static str,
    queue: String,
    args: String,
    options: EnqueueOptions,
}

/// The body, or the reason it could not be read as JSON errors say it (413 over the limit).
fn body(read: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    read.map_err(|e| ApiError::new(e.status(), e.body_text()))
}

fn parse<T: DeserializeOwned>(state: &ApiState, body: &[u8]) -> Result<T, ApiError> {
    if door::depth(body) > state.settings.max_json_depth {
        return Err(ApiError::field(
            "",
            format!(
                "the JSON nests deeper than {} levels",
                state.settings.max_json_depth
            ),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {inner}"),
            )
        } else {
            let field = if field == "." { String::new() } else { field };
            ApiError::field(field, without_position(&inner))
        }
    })
}

/// serde's message without its " at line 1 column 9".
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    text.split(" at line ").next().unwrap_or(&text).to_owned()
}

fn time(field: &str, text: &str) -> Result<std::time::SystemTime, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).into())
        .map_err(|e| ApiError::field(field, format!("not an RFC 3339 time ({e})")))
}

fn rfc3339(ms: Option<u64>) -> Option<String> {
    ms.and_then(|ms| DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).ok()?))
        .map(|t| t.to_rfc3339())
}

/// Whether `kind` matches one of `patterns` (`api.kinds`): a name, or a prefix ending in `*`.
pub(crate) fn kind_enabled(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(family) => kind.starts_with(family),
        None => p == kind,
    })
}

fn plain_key(field: &str, key: &str) -> Result<(), ApiError> {
    if crate::queue::producer::is_plain_key(key) {
        Ok(())
    } else {
        Err(ApiError::field(
            field,
            "use 1 to 200 of letters, digits, '.', '_', ':' and '-'",
        ))
    }
}

/// Check `req` (its fields named under `at`, e.g. `jobs[3].`) for `key`.
fn check(
    state: &ApiState,
    key: &KeyRecord,
    req: JobRequest,
    at: &str,
) -> Result<Checked, ApiError> {
    let f = |name: &str| format!("{at}{name}");
    let info = *state
        .kinds
        .iter()
        .find(|k| k.kind == req.kind)
        .ok_or_else(|| {
            ApiError::field(
                f("kind"),
                format!("{:?} is not a job kind enabled for the API", req.kind),
            )
        })?;
    let queue = req.queue.unwrap_or_else(|| info.queue.to_owned());
    if !state.known_queues.contains(&queue) {
        return Err(ApiError::field(
            f("queue"),
            format!("no worker serves queue {queue:?}"),
        ));
    }
    if !key.allows(info.kind, &queue) {
        return Err(ApiError {
            field: Some(f("kind")),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "key {} may not enqueue {} on {queue} (its scopes: {})",
                    key.name,
                    info.kind,
                    key.scopes.join(" ")
                ),
            )
        });
    }
    info.check(req.args.get())
        .map_err(|e| ApiError::field(format!("{at}{}", e.field), e.message))?;
    if !req.args.get().trim_start().starts_with('{') {
        return Err(ApiError::field(f("args"), "args must be a JSON object"));
    }
    checked_kind(&[info], info.kind, req.args.get())
        .map_err(|e| ApiError::field(format!("{at}{}", e.field), e.message))?;
    let mut options = EnqueueOptions::default().on_queue(queue.clone());
    match (req.run_at, req.delay_secs) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                f("delay_secs"),
                "give run_at or delay_secs, not both",
            ));
        }
        (Some(at_text), None) => options = options.run_at(time(&f("run_at"), &at_text)?),
        (None, Some(secs)) => options = options.run_in(Duration::from_secs(secs)),
        (None, None) => {}
    }
    if let Some(text) = req.expires_at {
        options = options.expires_at(time(&f("expires_at"), &text)?);
    }
    if let Some(unique) = req.unique_key {
        plain_key(&f("unique_key"), &unique)?;
        let secs = req
            .unique_for_secs
            .unwrap_or(state.settings.unique_for_secs);
        options = options.unique(unique, Duration::from_secs(secs.max(1)));
    } else if req.unique_for_secs.is_some() {
        return Err(ApiError::field(f("unique_for_secs"), "needs a unique_key"));
    }
    if let Some(seq) = req.sequence_key {
        plain_key(&f("sequence_key"), &seq)?;
        options = options.sequence(seq);
    }
    if let Some(tenant) = req.tenant {
        check_tenant(&tenant).map_err(|e| ApiError::field(f("tenant"), e.to_string()))?;
        options = options.tenant(tenant);
    }
    options = options.priority(req.priority.unwrap_or(info.priority));
    options = options.with_id(format!("{queue}~{}", job::new_id()));
    Ok(Checked {
        kind: info.kind,
        queue,
        args: req.args.get().to_owned(),
        options,
    })
}

/// The check every way in shares (this API and `switchboard enqueue`): `kind` is one of
/// `kinds`, and `args` deserialize into its argument type; else the field at fault (`kind`,
/// `args.<path>`) and what is wrong.
pub(crate) fn checked_kind(
    kinds: &[KindInfo],
    kind: &str,
    args: &str,
) -> Result<KindInfo, switchboard_jobs::ArgsError> {
    let info = kinds
        .iter()
        .find(|k| k.kind == kind)
        .copied()
        .ok_or_else(|| {
            let names: Vec<&str> = kinds.iter().map(|k| k.kind).collect();
            switchboard_jobs::ArgsError {
                field: "kind".to_owned(),
                message: format!(
                    "unknown job kind {kind:?}: known kinds are {}",
                    names.join(", ")
                ),
            }
        })?;
    info.check(args)?;
    Ok(info)
}

fn accepted(queue: &str, e: Enqueued) -> JobAccepted {
    JobAccepted {
        id: e.id,
        queue: queue.to_owned(),
        duplicate: e.duplicate || e.replayed,
        state: e.state,
    }
}

fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::InvalidSequence(_) => ApiError::field("sequence_key", e.to_string()),
        QueueError::InvalidTenant(_) => ApiError::field("tenant", e.to_string()),
        other => ApiError::unavailable(other),
    }
}

fn from(addr: Option<&ConnectInfo<SocketAddr>>) -> String {
    addr.map_or_else(|| "unknown".to_owned(), |a| a.0.to_string())
}

async fn enqueue(state: &ApiState, job: Checked) -> Result<JobAccepted, ApiError> {
    let queue = job.queue.clone();
    let done = state
        .queues
        .enqueue_json_acked(job.kind, 1, job.args, &queue, job.options, state.acked)
        .await
        .map_err(queue_error)?;
    Ok(accepted(&queue, done))
}

/// Run `enqueue` in a span of its own that starts the trace of the jobs it creates, or
/// continues the app's `traceparent`; the app's `x-request-id` goes with the jobs.
async fn traced<T>(name: &'static str, headers: &HeaderMap, enqueue: impl Future<Output = T>) -> T {
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()));
    let span = tracing::info_span!(
        "api",
        otel.name = name,
        otel.kind = "server",
        request_id,
        trace_id = tracing::field::Empty,
    );
    let incoming = crate::telemetry::trace::incoming(headers);
    trace::adopt(&span, incoming);
    let carried = Carried {
        traceparent: incoming.map(str::to_owned),
        request_id: request_id.map(str::to_owned),
    };
    trace::scope(carried, enqueue).instrument(span).await
}

/// `POST /api/v1/jobs`.
pub async fn create(
    State(state): State<ApiState>,
    addr: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = state.door.admit(&headers).await?;
    let req: JobRequest = parse(&state, &body(read)?)?;
    let mut job = check(&state, &key, req, "")?;
    if let Some(idem) = headers.get("idempotency-key") {
        let idem = idem
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::field("Idempotency-Key", "use 1 to 200 visible ASCII characters")
            })?;
        let ttl = Duration::from_secs(state.settings.idempotency_ttl_secs);
        job.options = job.options.idempotency(format!("{}:{idem}", key.id), ttl);
    }
    let answer = traced("api enqueue", &headers, enqueue(&state, job)).await?;
    if !answer.duplicate {
        let entry = Entry::new(&key.name, from(addr.as_deref()), "api", "enqueue")
            .queues([answer.queue.clone()])
            .jobs([answer.id.clone()])
            .count(1);
        state.audit.record_or_warn(&entry).await;
    }
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// `POST /api/v1/jobs/batch`: every job checked first; one bad job and nothing is queued.
pub async fn batch(
    State(state): State<ApiState>,
    addr: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    read: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = state.door.admit(&headers).await?;
    if headers.contains_key("idempotency-key") {
        return Err(ApiError::field(
            "Idempotency-Key",
            "a batch takes no Idempotency-Key: give each job a unique_key",
        ));
    }
    let req: BatchRequest = parse(&state, &body(read)?)?;
    if req.jobs.is_empty() || req.jobs.len() > state.settings.max_batch {
        return Err(ApiError::field(
            "jobs",
            format!("send 1 to {} jobs", state.settings.max_batch),
        ));
    }
    let checked = req
        .jobs
        .into_iter()
        .enumerate()
        .map(|(i, job)| check(&state, &key, job, &format!("jobs[{i}].")))
        .collect::<Result<Vec<_>, _>>()?;
    let answers = traced(
        "api enqueue batch",
        &headers,
        state.queues.enqueue_checked_batch(
            checked
                .into_iter()
                .map(|c| (c.kind, c.args, c.queue, c.options))
                .collect(),
            state.acked,
        ),
    )
    .await
    .map_err(queue_error)?;
    let jobs: Vec<JobAccepted> = answers
        .into_iter()
        .map(|(queue, e)| accepted(&queue, e))
        .collect();
    let mut queues: Vec<String> = jobs.iter().map(|j| j.queue.clone()).collect();
    queues.sort();
    queues.dedup();
    let entry = Entry::new(&key.name, from(addr.as_deref()), "api", "enqueue_batch")
        .queues(queues)
        .count(jobs.iter().filter(|j| !j.duplicate).count() as u64);
    state.audit.record_or_warn(&entry).await;
    Ok((StatusCode::ACCEPTED, Json(BatchAccepted { jobs })).into_response())
}

/// The queue an API job id names (`<queue>~<ulid>`).
fn queue_of(state: &ApiState, id: &str) -> Result<String, ApiError> {
    id.split_once('~')
        .map(|(queue, _)| queue.to_owned())
        .filter(|q| state.known_queues.contains(q))
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job {id:?}")))
}

/// Job `id` as `key` may see it: its queue and its view; 404 when unknown, 403 when its
/// kind is outside the key's scopes.
async fn job_for(
    state: &ApiState,
    key: &KeyRecord,
    id: &str,
) -> Result<(String, crate::queue::inspect::JobView), ApiError> {
    let queue = queue_of(state, id)?;
    let view = state
        .queues
        .find_job(&queue, id)
        .await
        .map_err(ApiError::unavailable)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job {id:?}")))?;
    if let Some(kind) = &view.kind
        && !key.allows(kind, &queue)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("key {} may not touch {kind} jobs", key.name),
        ));
    }
    Ok((queue, view))
}

/// `GET /api/v1/jobs/{id}`.
pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = state.door.admit(&headers).await?;
    let (_, view) = job_for(&state, &key, &id).await?;
    // A job's record without a priority is a normal one.
    let priority = view.priority.or_else(|| {
        view.kind
            .as_ref()
            .map(|_| Priority::Normal.as_str().to_owned())
    });
    let status = JobStatus {
        id: view.id,
        queue: view.queue,
        kind: view.kind,
        state: view.state.as_str().to_owned(),
        attempts: view.attempts,
        enqueued_at: rfc3339(view.enqueued_at_ms),
        run_at: rfc3339(view.run_at_ms),
        finished_at: rfc3339(view.finished_at_ms),
        died_at: rfc3339(view.died_at_ms),
        result: view.result,
        error: view.error,
        tenant: view.tenant,
        priority,
    };
    Ok(Json(status).into_response())
}

/// `DELETE /api/v1/jobs/{id}`: cancel a job that has not started.
pub async fn cancel(
    State(state): State<ApiState>,
    addr: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = state.door.admit(&headers).await?;
    let (queue, view) = job_for(&state, &key, &id).await?;
    if !matches!(view.state, JobState::Pending | JobState::Delayed) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job {id} is {} and can no longer be cancelled",
                view.state.as_str()
            ),
        ));
    }
    if !state
        .queues
        .cancel(&queue, &id)
        .await
        .map_err(ApiError::unavailable)?
    {
        // It started (or finished) between the look and the cancel.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job {id} started and can no longer be cancelled"),
        ));
    }
    let entry = Entry::new(&key.name, from(addr.as_deref()), "api", "cancel")
        .queues([queue.clone()])
        .jobs([id.clone()])
        .count(1);
    state.audit.record_or_warn(&entry).await;
    let mut response =
        Json(serde_json::json!({"id": id, "queue": queue, "state": "cancelled"})).into_response();
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    Ok(response)
}
