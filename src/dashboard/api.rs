//! The JSON API: the dashboard's data for scripts and the refreshing pages. Errors answer
//! `{"error": ...}`: 400 for a bad queue name or id, 404 for a job that is not there, 500
//! (logged with its cause, plain message to the caller) when Redis fails.

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Actor, Dash, FailedJob, valid_id};
use crate::queue::{
    QueueError,
    inspect::JobView,
    overview::{self, FleetView, Overview, QueueRow},
};

/// A failure of an API call.
#[derive(Debug)]
pub(crate) enum Failure {
    BadRequest(String),
    NotFound(String),
    Internal(QueueError),
    /// A template failed to render (logged where it happened).
    Render,
}

impl From<QueueError> for Failure {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::InvalidQueue(_) => Self::BadRequest(e.to_string()),
            e => Self::Internal(e),
        }
    }
}

impl Failure {
    pub(crate) fn parts(self) -> (StatusCode, String) {
        match self {
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::Internal(e) => {
                tracing::error!(error = %e, "dashboard request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error: the queue store failed (see the server log)".into(),
                )
            }
            Self::Render => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error: the page could not be rendered (see the server log)".into(),
            ),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, message) = self.parts();
        (status, Json(json!({ "error": message }))).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, Failure>;

pub(crate) fn check_id(id: &str) -> Result<(), Failure> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(Failure::BadRequest(format!("invalid job id {id:?}")))
    }
}

pub(crate) async fn overview(State(dash): State<Dash>) -> ApiResult<Overview> {
    Ok(Json(dash.overview().await?))
}

#[derive(Debug, Deserialize)]
pub(crate) struct QueuesQuery {
    /// Also list each partition of a partitioned queue.
    #[serde(default)]
    partitions: bool,
}

pub(crate) async fn queues(
    State(dash): State<Dash>,
    Query(q): Query<QueuesQuery>,
) -> ApiResult<Vec<QueueRow>> {
    if q.partitions {
        let names = dash.queues.with_partitions(&dash.names().await?);
        return Ok(Json(overview::overview(&dash.queues, &names).await?.queues));
    }
    Ok(Json(dash.overview().await?.queues))
}

pub(crate) async fn workers(State(dash): State<Dash>) -> ApiResult<FleetView> {
    let workers = overview::workers(&dash.queues, &dash.names().await?).await?;
    Ok(Json(FleetView {
        supervisors: overview::supervisors(&workers),
        workers,
    }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct FailedQuery {
    queue: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn failed(
    State(dash): State<Dash>,
    actor: Actor,
    Query(q): Query<FailedQuery>,
) -> ApiResult<Vec<FailedJob>> {
    Ok(Json(
        dash.failed(q.queue.as_deref(), q.limit.unwrap_or(50), actor.who.role)
            .await?,
    ))
}

pub(crate) async fn retry(
    State(dash): State<Dash>,
    actor: Actor,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult<Value> {
    check_id(&id)?;
    match dash.retry(&actor, &queue, &id).await? {
        0 => Err(Failure::NotFound(format!("no dead job {id} on {queue}"))),
        n => Ok(Json(json!({ "retried": n }))),
    }
}

pub(crate) async fn forget(
    State(dash): State<Dash>,
    actor: Actor,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult<Value> {
    check_id(&id)?;
    match dash.forget(&actor, &queue, &id).await? {
        0 => Err(Failure::NotFound(format!("no dead job {id} on {queue}"))),
        n => Ok(Json(json!({ "forgotten": n }))),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct QueueQuery {
    queue: Option<String>,
}

pub(crate) async fn retry_all(
    State(dash): State<Dash>,
    actor: Actor,
    Query(q): Query<QueueQuery>,
) -> ApiResult<Value> {
    let n = dash.retry_all(&actor, q.queue.as_deref()).await?;
    Ok(Json(json!({ "retried": n })))
}

pub(crate) async fn lookup(
    State(dash): State<Dash>,
    actor: Actor,
    Path(id): Path<String>,
) -> ApiResult<JobView> {
    check_id(&id)?;
    dash.lookup(&id, actor.who.role)
        .await?
        .map(Json)
        .ok_or_else(|| Failure::NotFound(format!("no job {id} found on any queue")))
}

pub(crate) async fn job(
    State(dash): State<Dash>,
    actor: Actor,
    Path((queue, id)): Path<(String, String)>,
) -> ApiResult<JobView> {
    check_id(&id)?;
    dash.job(&queue, &id, actor.who.role).await?.map(Json).ok_or_else(|| {
        Failure::NotFound(format!(
            "no job {id} on {queue} (not waiting, running, completed within the window, dead, expired or cancelled)"
        ))
    })
}

pub(crate) async fn pause(
    State(dash): State<Dash>,
    actor: Actor,
    Path(queue): Path<String>,
) -> ApiResult<Value> {
    dash.set_paused(&actor, &queue, true).await?;
    Ok(Json(json!({ "queue": queue, "paused": true })))
}

pub(crate) async fn resume(
    State(dash): State<Dash>,
    actor: Actor,
    Path(queue): Path<String>,
) -> ApiResult<Value> {
    dash.set_paused(&actor, &queue, false).await?;
    Ok(Json(json!({ "queue": queue, "paused": false })))
}

/// A Redis stream id (`<ms>-<seq>`), as the audit pages use for paging.
pub(crate) fn valid_stream_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(ms, seq)| {
        !ms.is_empty()
            && !seq.is_empty()
            && ms.len() <= 20
            && seq.len() <= 20
            && ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuditQuery {
    limit: Option<usize>,
    before: Option<String>,
}

/// `GET /api/audit?limit=&before=`: audit entries, newest first, each with its stream id
/// (pass the last one as `before` for the next page).
pub(crate) async fn audit(
    State(dash): State<Dash>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Vec<Value>> {
    if let Some(b) = q.before.as_deref().filter(|b| !valid_stream_id(b)) {
        return Err(Failure::BadRequest(format!("invalid audit id {b:?}")));
    }
    let entries = dash
        .audit
        .recent(q.limit.unwrap_or(100), q.before.as_deref())
        .await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|(id, e)| {
                let mut v = serde_json::to_value(e).unwrap_or_default();
                v["id"] = Value::String(id);
                v
            })
            .collect(),
    ))
}
