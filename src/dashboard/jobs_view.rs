//! A queue's jobs, browsed and purged: the page `/dashboard/queues/{queue}/jobs` (tabs
//! pending / delayed / completed, filters by kind and tenant, paging, each row linking to the
//! job's page, and the purge form), `GET /api/queues/{queue}/jobs` and
//! `POST /api/queues/{queue}/purge`.
//!
//! A purge withdraws jobs for good, so it needs the queue's name typed as confirmation (a
//! mismatch purges nothing and records nothing) and is written to the audit trail with who,
//! the queue, the filters and the count. The guard has already checked role, origin and CSRF
//! token before a purge handler runs.

use std::fmt::Write as _;

use askama::Template;
use axum::{
    Form, Json,
    extract::{Path, Query, State, rejection::JsonRejection},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Actor, Dash,
    access::Role,
    api::Failure,
    pages::{Notice, PageError, layout, render},
    redact,
    views::{Layout, seg, short, when},
};
use crate::queue::{
    QueueError,
    browse::{BrowsePage, BrowseQuery, BrowseState, Listed, PurgeFilter},
    check_tenant,
    job::now_ms,
};

/// Jobs a page shows unless asked otherwise.
const PAGE: usize = 50;
/// Longest kind name a filter accepts.
const KIND_MAX: usize = 200;

/// The query of the page and of `GET /api/queues/{queue}/jobs`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct JobsQuery {
    state: Option<String>,
    kind: Option<String>,
    tenant: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    /// What the purge form did (`purged`, `refused`), and how many.
    done: Option<String>,
    n: Option<u64>,
}

/// Kind and tenant as given (blank means no filter); a tenant must be one a job could carry.
fn filter(kind: Option<&str>, tenant: Option<&str>) -> Result<PurgeFilter, Failure> {
    let given = |s: Option<&str>| {
        s.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let (kind, tenant) = (given(kind), given(tenant));
    if let Some(k) = kind.as_deref().filter(|k| k.len() > KIND_MAX) {
        return Err(Failure::BadRequest(format!("kind {k:?} is too long")));
    }
    if let Some(t) = tenant.as_deref() {
        check_tenant(t).map_err(|e| Failure::BadRequest(e.to_string()))?;
    }
    Ok(PurgeFilter { kind, tenant })
}

impl JobsQuery {
    fn browse(&self) -> Result<BrowseQuery, Failure> {
        let f = filter(self.kind.as_deref(), self.tenant.as_deref())?;
        let state = match self.state.as_deref().filter(|s| !s.is_empty()) {
            None => BrowseState::default(),
            Some(s) => BrowseState::parse(s).ok_or_else(|| {
                Failure::BadRequest(format!(
                    "state must be pending, delayed or completed, not {s:?}"
                ))
            })?,
        };
        Ok(BrowseQuery {
            state,
            kind: f.kind,
            tenant: f.tenant,
            offset: self.offset.unwrap_or(0),
            limit: self.limit.unwrap_or(PAGE),
        })
    }
}

/// The body of `POST /api/queues/{queue}/purge`, and the purge form's fields.
#[derive(Debug, Deserialize)]
pub(crate) struct PurgeRequest {
    /// The queue's name, typed by the operator.
    #[serde(default)]
    confirm: String,
    kind: Option<String>,
    tenant: Option<String>,
}

impl Dash {
    /// One page of `queue`'s jobs, payloads redacted (and masked unless `role` sees personal
    /// data).
    async fn browse(
        &self,
        queue: &str,
        q: &BrowseQuery,
        role: Role,
    ) -> Result<BrowsePage, QueueError> {
        let mut page = self.queues.browse(queue, q).await?;
        for listed in &mut page.jobs {
            let job = &mut listed.job;
            if let Some(args) = job.args.as_mut() {
                redact::redact(args);
                if !role.sees_personal() {
                    redact::mask_personal(args);
                }
            }
            if !role.sees_personal() {
                job.error = job.error.as_deref().map(redact::mask_text);
            }
        }
        Ok(page)
    }

    /// Purge `queue`'s waiting jobs matching `req` once `req.confirm` names the queue; the
    /// count, or `None` when the confirmation does not match (nothing purged or recorded).
    async fn purge(
        &self,
        actor: &Actor,
        queue: &str,
        req: &PurgeRequest,
    ) -> Result<Option<u64>, Failure> {
        let f = filter(req.kind.as_deref(), req.tenant.as_deref())?;
        self.queues.keys(queue)?;
        if req.confirm.trim() != queue {
            return Ok(None);
        }
        // Dying before the purge changes nothing; dying after it, before the record, leaves
        // the jobs withdrawn without an entry (recording first could claim a purge that never
        // happened). Repeating the request is safe: it finds nothing more and records that.
        let n = self.queues.purge(queue, &f).await?;
        let entry = actor
            .entry("purge")
            .queues([queue])
            .count(n)
            .detail(f.to_string());
        self.audit.record_or_warn(&entry).await;
        Ok(Some(n))
    }
}

/// `GET /api/queues/{queue}/jobs?state=&kind=&tenant=&offset=&limit=`
pub(crate) async fn api_list(
    State(dash): State<Dash>,
    actor: Actor,
    Path(queue): Path<String>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<BrowsePage>, Failure> {
    let q = q.browse()?;
    Ok(Json(dash.browse(&queue, &q, actor.who.role).await?))
}

/// `POST /api/queues/{queue}/purge` with `{"confirm": "<queue>", "kind"?, "tenant"?}`.
pub(crate) async fn api_purge(
    State(dash): State<Dash>,
    actor: Actor,
    Path(queue): Path<String>,
    body: Result<Json<PurgeRequest>, JsonRejection>,
) -> Result<Json<Value>, Failure> {
    let Json(req) = body.map_err(|e| Failure::BadRequest(e.body_text()))?;
    match dash.purge(&actor, &queue, &req).await? {
        Some(n) => Ok(Json(json!({ "queue": queue, "purged": n }))),
        None => Err(Failure::BadRequest(format!(
            "confirm must be the queue's name ({queue:?}): nothing was purged"
        ))),
    }
}

/// The purge form: back to the page with the same filters and what happened.
pub(crate) async fn purge_form(
    State(dash): State<Dash>,
    actor: Actor,
    Path(queue): Path<String>,
    Form(req): Form<PurgeRequest>,
) -> Result<Response, PageError> {
    let done = match dash.purge(&actor, &queue, &req).await? {
        Some(n) => format!("done=purged&n={n}"),
        None => "done=refused".to_owned(),
    };
    let f = filter(req.kind.as_deref(), req.tenant.as_deref())?;
    let to = page_url(&queue, BrowseState::Pending, &f, 0);
    Ok(Redirect::to(&format!("{to}&{done}")).into_response())
}

/// The page's URL for `state`, filters and offset.
fn page_url(queue: &str, state: BrowseState, f: &PurgeFilter, offset: usize) -> String {
    let mut url = format!(
        "/dashboard/queues/{}/jobs?state={}",
        seg(queue),
        state.as_str()
    );
    for (name, value) in [("kind", &f.kind), ("tenant", &f.tenant)] {
        if let Some(v) = value {
            let _ = write!(url, "&{name}={}", seg(v));
        }
    }
    if offset > 0 {
        let _ = write!(url, "&offset={offset}");
    }
    url
}

#[derive(Template)]
#[template(path = "dashboard/jobs.html")]
pub(crate) struct JobsPage {
    pub l: Layout,
    pub queue: String,
    pub state: &'static str,
    pub tabs: Vec<Tab>,
    pub kind: String,
    pub tenant: String,
    /// Heading of the time column: enqueued, due or finished.
    pub time_label: &'static str,
    pub rows: Vec<JobLine>,
    pub partial: bool,
    pub read_limit: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
    pub purge_url: String,
    pub empty: String,
}

/// A tab of the page: one state.
pub(crate) struct Tab {
    pub label: &'static str,
    pub url: String,
    /// `current` on the tab shown.
    pub class: &'static str,
}

pub(crate) struct JobLine {
    pub id: String,
    pub link: String,
    pub kind: String,
    pub tenant: String,
    pub priority: String,
    pub time: String,
    pub attempts: u32,
    pub error: String,
}

impl JobLine {
    fn new(queue: &str, listed: Listed, state: BrowseState, now: u64) -> Self {
        let j = listed.job;
        let time = match state {
            BrowseState::Pending => j.enqueued_at_ms,
            BrowseState::Delayed => j.run_at_ms,
            BrowseState::Completed => j.finished_at_ms,
        };
        Self {
            link: format!("/dashboard/jobs/{}/{}", seg(queue), seg(&j.id)),
            id: j.id,
            kind: j.kind.unwrap_or_else(|| "-".into()),
            tenant: j.tenant.unwrap_or_else(|| "-".into()),
            priority: j.priority.unwrap_or_else(|| "normal".into()),
            time: time.map_or_else(|| "-".into(), |ms| when(ms, now)),
            attempts: j.attempts,
            error: short(j.error.as_deref().unwrap_or(""), 120),
        }
    }
}

/// `GET /dashboard/queues/{queue}/jobs`
pub(crate) async fn page(
    State(dash): State<Dash>,
    actor: Actor,
    Path(queue): Path<String>,
    Query(q): Query<JobsQuery>,
) -> Result<Response, PageError> {
    let bq = q.browse()?;
    let found = dash.browse(&queue, &bq, actor.who.role).await?;
    let f = PurgeFilter {
        kind: bq.kind.clone(),
        tenant: bq.tenant.clone(),
    };
    let limit = found.jobs.len().max(1);
    let prev = (bq.offset > 0).then(|| {
        let back = bq.offset.saturating_sub(bq.limit.clamp(1, 200));
        page_url(&queue, bq.state, &f, back)
    });
    let next = found
        .has_more
        .then(|| page_url(&queue, bq.state, &f, bq.offset + limit));
    let mut l = layout(
        &dash,
        &actor,
        format!("Jobs on {queue}"),
        "jobs",
        &Notice::default(),
    );
    l.notice = notice(&q, &queue);
    let now = now_ms();
    let page = JobsPage {
        l,
        state: bq.state.as_str(),
        tabs: BrowseState::ALL
            .iter()
            .map(|s| Tab {
                label: s.as_str(),
                url: page_url(&queue, *s, &f, 0),
                class: if *s == bq.state { "current" } else { "" },
            })
            .collect(),
        kind: f.kind.clone().unwrap_or_default(),
        tenant: f.tenant.clone().unwrap_or_default(),
        time_label: match bq.state {
            BrowseState::Pending => "Enqueued",
            BrowseState::Delayed => "Due",
            BrowseState::Completed => "Finished",
        },
        rows: found
            .jobs
            .into_iter()
            .map(|j| JobLine::new(&queue, j, bq.state, now))
            .collect(),
        partial: found.partial,
        read_limit: crate::queue::browse::READ_LIMIT,
        prev,
        next,
        purge_url: format!("/dashboard/queues/{}/purge", seg(&queue)),
        empty: if f == PurgeFilter::default() {
            format!("No {} jobs.", bq.state.as_str())
        } else {
            format!("No {} jobs of {f}.", bq.state.as_str())
        },
        queue,
    };
    Ok(render(&page)?.into_response())
}

/// The line saying what the purge form did.
fn notice(q: &JobsQuery, queue: &str) -> Option<String> {
    match q.done.as_deref()? {
        "purged" => Some(format!(
            "Purged {} waiting job(s) from {queue}.",
            q.n.unwrap_or(0)
        )),
        "refused" => Some(format!(
            "Nothing purged: type the queue's name ({queue}) to confirm."
        )),
        _ => None,
    }
}
