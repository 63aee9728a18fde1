//! The operator dashboard: server-rendered pages under `/dashboard` and the same data as JSON
//! under `/api/`, in the spirit of Laravel Horizon.
//!
//! * Pages ([`pages`]): overview (throughput, failures, fleet status, longest wait, workload
//!   per queue with pause/continue, supervisors), workers, failed jobs (retry, forget, retry
//!   all) and a job by id. askama templates in `templates/dashboard/` escape everything they
//!   show; the one script (`assets/dashboard.js`, no build step) refreshes the page's `<main>`
//!   every `dashboard.refresh_secs`.
//! * API ([`api`]): `GET /api/overview`, `/api/queues`, `/api/workers`, `/api/failed`,
//!   `/api/jobs/{id}`, `/api/jobs/{queue}/{id}`; `POST /api/failed/{queue}/{id}/retry` and
//!   `/forget`, `/api/failed/retry-all`, `/api/queues/{queue}/pause` and `/continue`.
//! * Access ([`auth`], `csrf`, `session`): every route but the login page and the static assets is
//!   behind the guard; changes need a same-origin request and, with a browser session, its
//!   CSRF token. Payloads are shown only after [`redact`] hid their secrets.
//!
//! Everything is read from Redis through [`Queues`] on each request; the dashboard keeps no
//! state of its own besides browser sessions.

mod access;
mod actions;
mod api;
mod assets;
pub mod auth;
mod csrf;
mod login;
mod pages;
pub mod redact;
mod session;
mod views;

use std::sync::Arc;

use axum::{
    Router, middleware,
    routing::{get, post},
};

pub use auth::{Credentials, check_exposure};

use crate::{
    config::{DashboardSettings, Settings},
    queue::{
        QueueError, Queues,
        admin::{DeadJob, Selection},
        inspect::JobView,
        overview,
    },
};

/// Most dead jobs one list shows.
const MAX_LIST: usize = 500;

/// What every dashboard handler shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Dash {
    queues: Queues,
    settings: Arc<DashboardSettings>,
    credentials: Arc<Credentials>,
    /// Queue names from the fleet configuration, shown even before anything registered them.
    configured: Arc<Vec<String>>,
    sessions: session::Sessions,
}

/// The dashboard's routes for the HTTP listener (none with `dashboard.enabled = false`).
pub fn router(queues: Queues, settings: &Settings, credentials: Credentials) -> Router {
    if !settings.dashboard.enabled {
        return Router::new();
    }
    if !credentials.is_set() {
        tracing::warn!(
            "dashboard without credentials (SWITCHBOARD_DASHBOARD_TOKEN / SWITCHBOARD_DASHBOARD_PASSWORD): open to loopback requests only"
        );
    }
    let configured = settings
        .fleet
        .supervisors
        .iter()
        .flat_map(|s| s.queues.clone())
        .collect();
    let settings = settings.dashboard.clone();
    let sessions = session::Sessions::new(
        queues.clone(),
        settings.session_ttl_secs,
        settings.secure_cookie,
    );
    let dash = Dash {
        queues,
        settings: Arc::new(settings),
        credentials: Arc::new(credentials),
        configured: Arc::new(configured),
        sessions,
    };
    let guarded = Router::new()
        .route("/dashboard", get(pages::overview))
        .route("/dashboard/workers", get(pages::workers))
        .route("/dashboard/failed", get(pages::failed))
        .route("/dashboard/failed/retry-all", post(actions::retry_all))
        .route("/dashboard/failed/{queue}/{id}/retry", post(actions::retry))
        .route(
            "/dashboard/failed/{queue}/{id}/forget",
            post(actions::forget),
        )
        .route("/dashboard/jobs", get(pages::lookup))
        .route("/dashboard/jobs/{queue}/{id}", get(pages::job))
        .route("/dashboard/queues/{queue}/pause", post(actions::pause))
        .route("/dashboard/queues/{queue}/continue", post(actions::resume))
        .route("/dashboard/logout", post(login::logout))
        .route("/api/overview", get(api::overview))
        .route("/api/queues", get(api::queues))
        .route("/api/workers", get(api::workers))
        .route("/api/failed", get(api::failed))
        .route("/api/failed/retry-all", post(api::retry_all))
        .route("/api/failed/{queue}/{id}/retry", post(api::retry))
        .route("/api/failed/{queue}/{id}/forget", post(api::forget))
        .route("/api/jobs/{id}", get(api::lookup))
        .route("/api/jobs/{queue}/{id}", get(api::job))
        .route("/api/queues/{queue}/pause", post(api::pause))
        .route("/api/queues/{queue}/continue", post(api::resume))
        .route_layer(middleware::from_fn_with_state(dash.clone(), auth::guard));
    let open = Router::new()
        .route("/dashboard/login", get(login::form).post(login::submit))
        .route("/dashboard/assets/dashboard.js", get(assets::script))
        .route("/dashboard/assets/dashboard.css", get(assets::style));
    guarded
        .merge(open)
        .layer(middleware::from_fn(auth::security_headers))
        .with_state(dash)
}

/// A dead job with the queue it sits on.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct FailedJob {
    queue: String,
    #[serde(flatten)]
    job: DeadJob,
}

impl Dash {
    async fn names(&self) -> Result<Vec<String>, QueueError> {
        overview::queue_names(&self.queues, &self.configured).await
    }

    async fn overview(&self) -> Result<overview::Overview, QueueError> {
        overview::overview(&self.queues, &self.names().await?).await
    }

    /// Dead jobs of `queue` (or all queues), newest first, payloads redacted.
    async fn failed(
        &self,
        queue: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FailedJob>, QueueError> {
        let limit = limit.clamp(1, MAX_LIST);
        let names = match queue {
            Some(q) => vec![q.to_owned()],
            None => self.names().await?,
        };
        let mut all = Vec::new();
        for q in names {
            for mut job in self.queues.dead_list(&q, limit).await? {
                redact::redact(&mut job.args);
                all.push(FailedJob {
                    queue: q.clone(),
                    job,
                });
            }
        }
        all.sort_by_key(|f| std::cmp::Reverse(f.job.died_at_ms));
        all.truncate(limit);
        Ok(all)
    }

    /// Job `id` on `queue`, payload redacted.
    async fn job(&self, queue: &str, id: &str) -> Result<Option<JobView>, QueueError> {
        let mut found = self.queues.find_job(queue, id).await?;
        if let Some(view) = found.as_mut() {
            view.args.as_mut().map(redact::redact);
            view.result.as_mut().map(redact::redact);
        }
        Ok(found)
    }

    /// Job `id` on whichever queue holds it.
    async fn lookup(&self, id: &str) -> Result<Option<JobView>, QueueError> {
        for q in self.names().await? {
            if let Some(view) = self.job(&q, id).await? {
                return Ok(Some(view));
            }
        }
        Ok(None)
    }

    async fn retry(&self, queue: &str, id: &str) -> Result<u64, QueueError> {
        let n = self
            .queues
            .dead_retry(queue, Selection::Ids(vec![id.to_owned()]))
            .await?;
        tracing::info!(queue, job = id, retried = n, "dashboard: retry");
        Ok(n)
    }

    async fn forget(&self, queue: &str, id: &str) -> Result<u64, QueueError> {
        let n = self
            .queues
            .dead_forget(queue, Selection::Ids(vec![id.to_owned()]))
            .await?;
        tracing::info!(queue, job = id, forgotten = n, "dashboard: forget");
        Ok(n)
    }

    async fn retry_all(&self, queue: Option<&str>) -> Result<u64, QueueError> {
        let names = match queue {
            Some(q) => vec![q.to_owned()],
            None => self.names().await?,
        };
        let mut n = 0;
        for q in &names {
            n += self.queues.dead_retry(q, Selection::All).await?;
        }
        tracing::info!(queues = names.len(), retried = n, "dashboard: retry all");
        Ok(n)
    }

    async fn set_paused(&self, queue: &str, paused: bool) -> Result<(), QueueError> {
        if paused {
            self.queues.pause(queue).await?;
        } else {
            self.queues.resume(queue).await?;
        }
        tracing::info!(queue, paused, "dashboard: pause/continue");
        Ok(())
    }
}

/// A job id from a URL: no whitespace (an item is `<id> <json>`), not absurdly long.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_whitespace)
}

/// Request headers from `(name, value)` pairs, for the unit tests of the access rules.
#[cfg(test)]
fn test_headers(pairs: &[(&'static str, &'static str)]) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, axum::http::HeaderValue::from_static(v));
    }
    h
}
