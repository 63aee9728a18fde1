//! The HTML pages (their form actions are in `actions`). Every value reaches the templates
//! as data; the templates escape it.

use askama::Template;
use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use super::{
    Actor, Dash,
    access::Access,
    api::{Failure, check_id},
    overview,
    views::{
        AuditLine, AuditPage, ErrorPage, FailedLine, FailedPage, JobPage, Layout, OverviewPage,
        QueueLine, SupLine, WorkerLine, WorkersPage, over_now, seg, short, span, when,
    },
};
use crate::queue::{QueueError, inspect::JobState, job::now_ms, validate_name};

/// A page that could not be shown: an error page with the right status.
#[derive(Debug)]
pub(crate) struct PageError(Failure);

impl From<QueueError> for PageError {
    fn from(e: QueueError) -> Self {
        Self(e.into())
    }
}

impl From<Failure> for PageError {
    fn from(f: Failure) -> Self {
        Self(f)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = self.0.parts();
        error_page(status, message)
    }
}

pub(crate) fn error_page(status: StatusCode, message: String) -> Response {
    let page = ErrorPage {
        l: Layout {
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            nav: "",
            csrf: String::new(),
            refresh_secs: 0,
            logout: false,
            notice: None,
            who: String::new(),
            role: "",
            may_change: false,
        },
        status: status.as_u16(),
        message,
    };
    match page.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(_) => (status, "error\n").into_response(),
    }
}

pub(crate) type Page = Result<Html<String>, PageError>;

pub(crate) fn render(page: &impl Template) -> Page {
    page.render().map(Html).map_err(|e| {
        tracing::error!(error = %e, "rendering a dashboard page failed");
        PageError(Failure::Render)
    })
}

/// What an action did, carried in the redirect's query so the next page can say so.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Notice {
    done: Option<String>,
    n: Option<u64>,
    q: Option<String>,
    /// The failed list's queue filter.
    queue: Option<String>,
}

impl Notice {
    fn message(&self) -> Option<String> {
        let n = self.n.unwrap_or(0);
        let q = self.q.as_deref().filter(|q| validate_name(q).is_ok());
        match (self.done.as_deref()?, q) {
            ("retried", _) => Some(format!("Retried {n} job(s).")),
            ("forgot", _) => Some(format!("Forgot {n} job(s).")),
            ("paused", Some(q)) => Some(format!(
                "Paused {q}: running jobs finish, nothing new starts."
            )),
            ("continued", Some(q)) => Some(format!("Continued {q}.")),
            _ => None,
        }
    }
}

pub(crate) fn layout(
    dash: &Dash,
    actor: &Actor,
    title: String,
    nav: &'static str,
    notice: &Notice,
) -> Layout {
    Layout {
        title,
        nav,
        csrf: actor.access.csrf().to_owned(),
        refresh_secs: dash.settings.refresh_secs,
        logout: matches!(actor.access, Access::Session(_)) && dash.credentials.is_set(),
        notice: notice.message(),
        who: actor.who.name.clone(),
        role: actor.who.role.as_str(),
        may_change: actor.who.role.may_change(),
    }
}

pub(crate) async fn overview(
    State(dash): State<Dash>,
    actor: Actor,
    Query(notice): Query<Notice>,
) -> Page {
    let o = dash.overview().await?;
    let workers = overview::workers(&dash.queues, &dash.names().await?).await?;
    let rows = o
        .queues
        .iter()
        .map(|r| QueueLine {
            name: r.stats.name.clone(),
            pending: r.stats.pending,
            delayed: r.stats.delayed,
            running: r.stats.running,
            dead: r.stats.dead,
            waiting: r.stats.waiting,
            expired: r.stats.expired,
            per_minute: r.jobs_per_minute,
            past_hour: r.jobs_past_hour,
            wait: if r.stats.pending > 0 {
                span(r.stats.oldest_pending_secs)
            } else {
                "-".into()
            },
            workers: r.workers,
            paused: r.stats.paused,
            pause_url: format!("/dashboard/queues/{}/pause", seg(&r.stats.name)),
            continue_url: format!("/dashboard/queues/{}/continue", seg(&r.stats.name)),
        })
        .collect();
    let page = OverviewPage {
        l: layout(&dash, &actor, "Overview".into(), "overview", &notice),
        status: o.status,
        per_minute: o.jobs_per_minute,
        past_hour: o.jobs_past_hour.to_string(),
        failed_week: o.failed_past_7_days,
        workers: o.workers,
        processes: o.processes,
        longest: o.longest_wait.map(|w| (w.queue, span(w.secs))),
        long_waits: over_now(dash.waits.thresholds(), o.queues.iter().map(|r| &r.stats)),
        circuits: o
            .circuits
            .into_iter()
            .filter(|c| c.open)
            .map(|c| {
                let error = c.last_error.unwrap_or_default();
                (c.name, c.open_for_secs, c.failures, error)
            })
            .collect(),
        rows,
        sups: overview::supervisors(&workers)
            .iter()
            .map(SupLine::from)
            .collect(),
    };
    render(&page)
}

pub(crate) async fn workers(State(dash): State<Dash>, actor: Actor) -> Page {
    let workers = overview::workers(&dash.queues, &dash.names().await?).await?;
    let page = WorkersPage {
        l: layout(
            &dash,
            &actor,
            "Workers".into(),
            "workers",
            &Notice::default(),
        ),
        sups: overview::supervisors(&workers)
            .iter()
            .map(SupLine::from)
            .collect(),
        workers: workers
            .iter()
            .map(|w| WorkerLine {
                id: w.id.clone(),
                queue: w.queue.clone(),
                leased: w.leased,
                lease: if w.lease_left_secs > 0.0 {
                    format!("{} left", span(w.lease_left_secs))
                } else {
                    format!("expired {} ago", span(-w.lease_left_secs))
                },
                alive: w.lease_left_secs > 0.0,
            })
            .collect(),
    };
    render(&page)
}

pub(crate) async fn failed(
    State(dash): State<Dash>,
    actor: Actor,
    Query(notice): Query<Notice>,
) -> Page {
    let filter = notice.queue.clone().filter(|s| !s.is_empty());
    let now = now_ms();
    let rows = dash
        .failed(filter.as_deref(), 200, actor.who.role)
        .await?
        .into_iter()
        .map(|f| {
            let (queue, id) = (seg(&f.queue), seg(&f.job.id));
            FailedLine {
                link: format!("/dashboard/jobs/{queue}/{id}"),
                retry_url: format!("/dashboard/failed/{queue}/{id}/retry"),
                forget_url: format!("/dashboard/failed/{queue}/{id}/forget"),
                id: f.job.id,
                queue: f.queue,
                kind: f.job.kind,
                error: short(f.job.error.as_deref().unwrap_or("-"), 160),
                attempts: f.job.attempts,
                died: when(f.job.died_at_ms, now),
            }
        })
        .collect();
    let back = match &filter {
        Some(q) => format!("/dashboard/failed?queue={}", seg(q)),
        None => "/dashboard/failed".into(),
    };
    let page = FailedPage {
        l: layout(&dash, &actor, "Failed jobs".into(), "failed", &notice),
        queues: dash.names().await?,
        filter,
        rows,
        back,
    };
    render(&page)
}

#[derive(Debug, Deserialize)]
pub(crate) struct LookupQuery {
    id: String,
}

pub(crate) async fn lookup(
    State(dash): State<Dash>,
    actor: Actor,
    Query(q): Query<LookupQuery>,
) -> Result<Response, PageError> {
    let id = q.id.trim();
    check_id(id)?;
    match dash.lookup(id, actor.who.role).await? {
        Some(view) => Ok(Redirect::to(&format!(
            "/dashboard/jobs/{}/{}",
            seg(&view.queue),
            seg(&view.id)
        ))
        .into_response()),
        None => Err(Failure::NotFound(format!("No job {id} was found on any queue.")).into()),
    }
}

pub(crate) async fn job(
    State(dash): State<Dash>,
    actor: Actor,
    Path((queue, id)): Path<(String, String)>,
    Query(notice): Query<Notice>,
) -> Page {
    check_id(&id)?;
    let Some(j) = dash.job(&queue, &id, actor.who.role).await? else {
        return Err(Failure::NotFound(format!(
            "No job {id} on {queue}: it may have completed longer ago than the completed window, been forgotten, or sit deeper in the backlog than a lookup reads."
        ))
        .into());
    };
    let now = now_ms();
    // A completed job's item is gone by design (only its finish time and result stay).
    let mut facts: Vec<(&'static str, String)> = Vec::new();
    if j.kind.is_some() {
        let attempts = match j.max_attempts {
            Some(max) => format!("{} of {max}", j.attempts),
            None => j.attempts.to_string(),
        };
        facts.push(("Attempts", attempts));
    }
    let times = [
        ("Enqueued", j.enqueued_at_ms),
        (
            "Runs at",
            j.run_at_ms.filter(|_| j.state == JobState::Delayed),
        ),
        ("Last failure", j.failed_at_ms),
        ("Died", j.died_at_ms),
        ("Finished", j.finished_at_ms),
    ];
    facts.extend(
        times
            .into_iter()
            .filter_map(|(k, v)| Some((k, when(v?, now)))),
    );
    facts.extend(j.worker.clone().map(|w| ("Worker", w)));
    facts.extend(
        j.position
            .map(|p| ("Position", format!("{p} (1 = next to run)"))),
    );
    facts.extend(j.unique.clone().map(|u| ("Unique key", u)));
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let (q, i) = (seg(&queue), seg(&id));
    let page = JobPage {
        l: layout(&dash, &actor, format!("Job {id}"), "job", &notice),
        state: j.state.as_str(),
        kind: j
            .kind
            .clone()
            .unwrap_or_else(|| "- (not kept once a job completes)".into()),
        error: j.error.clone(),
        facts,
        payload: j.args.as_ref().map(pretty),
        result: j.result.as_ref().map(pretty),
        dead: j.state == JobState::Dead,
        retry_url: format!("/dashboard/failed/{q}/{i}/retry"),
        forget_url: format!("/dashboard/failed/{q}/{i}/forget"),
        back: format!("/dashboard/jobs/{q}/{i}"),
        id,
        queue,
    };
    render(&page)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    /// Show entries older than this stream id (the next page).
    before: Option<String>,
}

/// Entries the audit page lists at once.
const AUDIT_PAGE: usize = 100;

pub(crate) async fn audit(
    State(dash): State<Dash>,
    actor: Actor,
    Query(q): Query<AuditQuery>,
) -> Page {
    let before = q.before.filter(|b| super::api::valid_stream_id(b));
    let entries = dash.audit.recent(AUDIT_PAGE, before.as_deref()).await?;
    let now = now_ms();
    let next = (entries.len() == AUDIT_PAGE)
        .then(|| {
            entries
                .last()
                .map(|(id, _)| format!("/dashboard/audit?before={id}"))
        })
        .flatten();
    let rows = entries
        .into_iter()
        .map(|(_, e)| AuditLine {
            when: when(e.at_ms, now),
            who: e.who,
            from: e.from,
            via: e.via,
            action: e.action,
            queues: e.queues.join(", "),
            jobs: short(&e.jobs.join(", "), 120),
            count: e.count,
            detail: e.detail.unwrap_or_default(),
        })
        .collect();
    let page = AuditPage {
        l: layout(
            &dash,
            &actor,
            "Audit trail".into(),
            "audit",
            &Notice::default(),
        ),
        rows,
        next,
    };
    render(&page)
}
