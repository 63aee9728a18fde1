//! The operator dashboard: server-rendered pages under `/dashboard` and the same data as JSON
//! under `/api/`, in the spirit of Laravel Horizon.
//!
//! * Pages ([`pages`]): overview (throughput, failures, fleet status, longest wait, workload
//!   per queue with pause/continue, supervisors), workers, failed jobs (retry, forget, retry
//!   all), a job by id, and a queue's jobs with its purge form ([`jobs_view`]). askama
//!   templates in `templates/dashboard/` escape everything they show; the one script
//!   (`assets/dashboard.js`, no build step) refreshes the page's `<main>` every
//!   `dashboard.refresh_secs`. [`slots`]: each balanced supervisor's slots per queue
//!   over the last hour (`/dashboard/slots`, `GET /api/supervisors/slots`).
//!   [`metrics_pages`] and [`metrics`]: throughput and run time per queue and per kind over
//!   the last hour and the slowest kinds (`/dashboard/metrics`, `GET /api/metrics`).
//! * API ([`api`]): `GET /api/overview`, `/api/queues`, `/api/workers`, `/api/failed`,
//!   `/api/jobs/{id}`, `/api/jobs/{queue}/{id}`, `/api/queues/{queue}/jobs`;
//!   `POST /api/failed/{queue}/{id}/retry` and `/forget`, `/api/failed/retry-all`,
//!   `/api/queues/{queue}/pause`, `/continue` and `/purge`.
//! * `waits`: the long-wait watch (`/dashboard/waits`, `GET /api/waits`): each queue of
//!   `[waits]` against its threshold and the newest wait events.
//! * Access ([`auth`], `csrf`, `session`): every route but the login page and the static assets is
//!   behind the guard; changes need a same-origin request and, with a browser session, its
//!   CSRF token. Payloads are shown only after [`redact`] hid their secrets.
//!
//! Everything is read from Redis through [`Queues`] on each request; the dashboard keeps no
//! state of its own besides browser sessions.

pub mod access;
mod actions;
mod api;
mod assets;
pub mod auth;
mod csrf;
mod jobs_view;
mod login;
mod metrics;
mod metrics_pages;
pub mod operators;
mod pages;
pub mod redact;
mod session;
mod slots;
mod throttle;
mod views;
mod waits;

use std::{net::IpAddr, sync::Arc};

use axum::{
    Router,
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
    middleware,
    routing::{get, post},
};

pub use access::{Role, Who};
pub use auth::{Credentials, check_exposure};

use crate::{
    audit::{AuditLog, Entry},
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
    throttle: throttle::AuthThrottle,
    trusted_proxies: Arc<Vec<IpAddr>>,
    audit: AuditLog,
    /// The long-wait thresholds and the watch's record.
    waits: waits::Watched,
}

/// Who makes a request, from where, through which door (`dashboard` pages or the `api`):
/// what the permission checks, the masking and the audit trail go by. Set by the guard.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub who: Who,
    pub from: String,
    pub via: &'static str,
    pub access: access::Access,
}

impl Actor {
    /// An audit entry for `action` by this actor.
    fn entry(&self, action: &str) -> Entry {
        Entry::new(self.who.name.clone(), self.from.clone(), self.via, action)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let access = parts
            .extensions
            .get::<access::Access>()
            .cloned()
            .ok_or(StatusCode::INTERNAL_SERVER_ERROR)?;
        let client = parts
            .extensions
            .get::<access::Client>()
            .copied()
            .unwrap_or(access::Client(None));
        Ok(Self {
            who: access.who(),
            from: client.audit(),
            via: if parts.uri.path().starts_with("/api/") {
                "api"
            } else {
                "dashboard"
            },
            access,
        })
    }
}

/// The dashboard's routes for the HTTP listener (none with `dashboard.enabled = false`).
pub fn router(queues: Queues, settings: &Settings, credentials: Credentials) -> Router {
    if !settings.dashboard.enabled {
        return Router::new();
    }
    if !credentials.is_set() {
        // Said once in the start-up block (`banner`).
        tracing::debug!(
            "dashboard without credentials (SWITCHBOARD_DASHBOARD_TOKEN / SWITCHBOARD_DASHBOARD_PASSWORD): open to loopback requests only"
        );
    }
    let configured = settings
        .fleet
        .supervisors
        .iter()
        .flat_map(|s| s.queues.clone())
        .collect();
    let waits = waits::Watched::new(&queues, settings);
    let settings = settings.dashboard.clone();
    let sessions = session::Sessions::new(
        queues.clone(),
        settings.session_ttl_secs,
        settings.secure_cookie,
    );
    let throttle = throttle::AuthThrottle::new(
        queues.clone(),
        settings.auth_failures_per_minute_per_ip,
        settings.auth_failures_per_minute,
    );
    let trusted_proxies = settings
        .trusted_proxies
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    let audit = AuditLog::new(queues.clone(), settings.audit_max_entries);
    let dash = Dash {
        queues,
        settings: Arc::new(settings),
        credentials: Arc::new(credentials),
        configured: Arc::new(configured),
        sessions,
        throttle,
        trusted_proxies: Arc::new(trusted_proxies),
        audit,
        waits,
    };
    let guarded = page_routes()
        .merge(api_routes())
        .route_layer(middleware::from_fn_with_state(dash.clone(), auth::guard));
    let open = Router::new()
        .route("/dashboard/login", get(login::form).post(login::submit))
        .route("/dashboard/assets/dashboard.js", get(assets::script))
        .route("/dashboard/assets/dashboard.css", get(assets::style));
    guarded
        .merge(open)
        .layer(middleware::from_fn_with_state(
            dash.clone(),
            auth::with_client,
        ))
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

    /// Dead jobs of `queue` (or all queues), newest first, payloads redacted (and masked
    /// unless `role` sees personal data).
    async fn failed(
        &self,
        queue: Option<&str>,
        limit: usize,
        role: Role,
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
                if !role.sees_personal() {
                    redact::mask_personal(&mut job.args);
                    job.error = job.error.as_deref().map(redact::mask_text);
                }
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

    /// Job `id` on `queue`, payload redacted (and masked unless `role` sees personal data).
    async fn job(&self, queue: &str, id: &str, role: Role) -> Result<Option<JobView>, QueueError> {
        let mut found = self.queues.find_job(queue, id).await?;
        if let Some(view) = found.as_mut() {
            for v in [view.args.as_mut(), view.result.as_mut()]
                .into_iter()
                .flatten()
            {
                redact::redact(v);
                if !role.sees_personal() {
                    redact::mask_personal(v);
                }
            }
            if !role.sees_personal() {
                view.error = view.error.as_deref().map(redact::mask_text);
            }
        }
        Ok(found)
    }

    /// Job `id` on whichever queue holds it.
    async fn lookup(&self, id: &str, role: Role) -> Result<Option<JobView>, QueueError> {
        for q in self.names().await? {
            if let Some(view) = self.job(&q, id, role).await? {
                return Ok(Some(view));
            }
        }
        Ok(None)
    }

    async fn retry(&self, actor: &Actor, queue: &str, id: &str) -> Result<u64, QueueError> {
        let n = self
            .queues
            .dead_retry(queue, Selection::Ids(vec![id.to_owned()]))
            .await?;
        self.audit
            .record_or_warn(&actor.entry("retry").queues([queue]).jobs([id]).count(n))
            .await;
        Ok(n)
    }

    async fn forget(&self, actor: &Actor, queue: &str, id: &str) -> Result<u64, QueueError> {
        let n = self
            .queues
            .dead_forget(queue, Selection::Ids(vec![id.to_owned()]))
            .await?;
        self.audit
            .record_or_warn(&actor.entry("forget").queues([queue]).jobs([id]).count(n))
            .await;
        Ok(n)
    }

    async fn retry_all(&self, actor: &Actor, queue: Option<&str>) -> Result<u64, QueueError> {
        let names = match queue {
            Some(q) => vec![q.to_owned()],
            None => self.names().await?,
        };
        let mut n = 0;
        for q in &names {
            n += self.queues.dead_retry(q, Selection::All).await?;
        }
        self.audit
            .record_or_warn(&actor.entry("retry_all").queues(names).count(n))
            .await;
        Ok(n)
    }

    async fn set_paused(&self, actor: &Actor, queue: &str, paused: bool) -> Result<(), QueueError> {
        if paused {
            self.queues.pause(queue).await?;
        } else {
            self.queues.resume(queue).await?;
        }
        let action = if paused { "pause" } else { "continue" };
        self.audit
            .record_or_warn(&actor.entry(action).queues([queue]).count(1))
            .await;
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

/// The operator pages behind the login.
fn page_routes() -> Router<Dash> {
    Router::new()
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
        .route("/dashboard/audit", get(pages::audit))
        .route("/dashboard/slots", get(slots::page))
        .route("/dashboard/metrics", get(metrics_pages::overview))
        .route(
            "/dashboard/metrics/queues/{queue}",
            get(metrics_pages::queue),
        )
        .route("/dashboard/metrics/kinds/{kind}", get(metrics_pages::kind))
        .route("/dashboard/waits", get(waits::page))
        .route("/dashboard/jobs/{queue}/{id}", get(pages::job))
        .route("/dashboard/queues/{queue}/pause", post(actions::pause))
        .route("/dashboard/queues/{queue}/continue", post(actions::resume))
        .route("/dashboard/queues/{queue}/jobs", get(jobs_view::page))
        .route(
            "/dashboard/queues/{queue}/purge",
            post(jobs_view::purge_form),
        )
        .route("/dashboard/logout", post(login::logout))
}

/// The JSON API behind the same login.
fn api_routes() -> Router<Dash> {
    Router::new()
        .route("/api/overview", get(api::overview))
        .route("/api/queues", get(api::queues))
        .route("/api/workers", get(api::workers))
        .route("/api/failed", get(api::failed))
        .route("/api/failed/retry-all", post(api::retry_all))
        .route("/api/failed/{queue}/{id}/retry", post(api::retry))
        .route("/api/failed/{queue}/{id}/forget", post(api::forget))
        .route("/api/jobs/{id}", get(api::lookup))
        .route("/api/audit", get(api::audit))
        .route("/api/supervisors/slots", get(slots::api))
        .route("/api/metrics", get(metrics::api_overview))
        .route("/api/metrics/queues/{queue}", get(metrics::api_queue))
        .route("/api/metrics/kinds/{kind}", get(metrics::api_kind))
        .route("/api/waits", get(waits::api))
        .route("/api/jobs/{queue}/{id}", get(api::job))
        .route("/api/queues/{queue}/pause", post(api::pause))
        .route("/api/queues/{queue}/continue", post(api::resume))
        .route("/api/queues/{queue}/jobs", get(jobs_view::api_list))
        .route("/api/queues/{queue}/purge", post(jobs_view::api_purge))
}
