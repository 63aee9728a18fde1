//! Long waits: the page `/dashboard/waits` and `GET /api/waits[?limit=N]` show each queue of
//! `[waits]` against its threshold now, which destinations were told of a long wait on it,
//! when the leader last checked, and the newest wait events (`crate::maintenance::waits`).
//!
//! Everything is read from Redis on each request (the watch's state and capped event list,
//! and `Queues::stats` of each watched queue), so a dashboard on a host that runs no
//! maintenance shows it too. Email addresses are masked for roles that do not see personal
//! data.

use std::{collections::BTreeMap, sync::Arc};

use askama::Template;
use axum::{
    Json,
    extract::{Query, State},
};
use serde::{Deserialize, Serialize};

use super::{
    Actor, Dash,
    api::Failure,
    pages::{Notice, Page, layout, render},
    redact,
    views::{Layout, span, when},
};
use crate::{
    config::Settings,
    maintenance::waits::{Checks, WaitEvent, WaitLog, human, is_over, wait_of},
    queue::{QueueError, Queues, job::now_ms},
};

/// Events the page lists.
const PAGE_EVENTS: usize = 100;

/// What the page and the API need of the configuration, built once, and the watch's record.
/// Cheap to clone.
#[derive(Clone)]
pub(crate) struct Watched {
    /// `[waits]`.
    thresholds: Arc<BTreeMap<String, u64>>,
    /// Where notices go, printable (the webhook as scheme and host only).
    destinations: Arc<str>,
    cooldown_secs: u64,
    log: WaitLog,
}

impl Watched {
    pub(crate) fn new(queues: &Queues, settings: &Settings) -> Self {
        Self {
            thresholds: Arc::new(settings.waits.clone()),
            destinations: settings.alerts.destinations().into(),
            cooldown_secs: settings.alerts.cooldown_secs,
            log: WaitLog::new(queues.clone()),
        }
    }

    /// Queue -> threshold, seconds.
    pub(crate) fn thresholds(&self) -> &BTreeMap<String, u64> {
        &self.thresholds
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct WaitsQuery {
    /// Newest events returned (1 to 1000; 100 when not given).
    limit: Option<usize>,
}

/// One watched queue now.
#[derive(Debug, Serialize)]
pub(crate) struct WatchedQueue {
    queue: String,
    threshold_secs: u64,
    /// The oldest pending job's wait now (0 with nothing pending).
    wait_secs: f64,
    paused: bool,
    /// Since when (ms) the watch has seen it over its threshold.
    over_since_ms: Option<u64>,
    /// Destinations told "long wait" and not yet "recovered".
    told: Vec<String>,
}

/// What the API returns.
#[derive(Debug, Serialize)]
pub(crate) struct WaitsView {
    queues: Vec<WatchedQueue>,
    checks: Checks,
    events: Vec<WaitEvent>,
}

async fn load(dash: &Dash, limit: usize, personal: bool) -> Result<WaitsView, QueueError> {
    let w = &dash.waits;
    let mut watches = w.log.watches().await?;
    let mut queues = Vec::with_capacity(w.thresholds.len());
    for (queue, &threshold_secs) in w.thresholds.iter() {
        let stats = dash.queues.stats(queue).await?;
        let watch = watches.remove(queue).unwrap_or_default();
        queues.push(WatchedQueue {
            queue: queue.clone(),
            threshold_secs,
            wait_secs: wait_of(&stats),
            paused: stats.paused,
            over_since_ms: watch.over_since_ms,
            told: watch.told.into_iter().collect(),
        });
    }
    let mut events = w.log.recent(limit).await?;
    if !personal {
        for q in &mut queues {
            mask(&mut q.told);
        }
        for e in &mut events {
            mask(&mut e.notified);
            mask(&mut e.failed);
        }
    }
    Ok(WaitsView {
        queues,
        checks: w.log.checks().await?,
        events,
    })
}

fn mask(destinations: &mut [String]) {
    for d in destinations {
        *d = redact::mask_text(d);
    }
}

/// `GET /api/waits?limit=`.
pub(crate) async fn api(
    State(dash): State<Dash>,
    actor: Actor,
    Query(q): Query<WaitsQuery>,
) -> Result<Json<WaitsView>, Failure> {
    let limit = q.limit.unwrap_or(PAGE_EVENTS);
    Ok(Json(
        load(&dash, limit, actor.who.role.sees_personal()).await?,
    ))
}

#[derive(Template)]
#[template(path = "dashboard/waits.html")]
pub(crate) struct WaitsPage {
    pub l: Layout,
    pub destinations: String,
    pub cooldown: String,
    /// When the leader last checked, and how many checks so far; `None`: never.
    pub checked: Option<(String, u64)>,
    pub queues: Vec<QueueLine>,
    pub events: Vec<EventLine>,
}

pub(crate) struct QueueLine {
    pub queue: String,
    pub threshold: String,
    pub wait: String,
    /// `over` or `ok`.
    pub state: &'static str,
    pub since: String,
    pub paused: bool,
    pub told: String,
}

pub(crate) struct EventLine {
    pub when: String,
    pub queue: String,
    pub kind: String,
    pub wait: String,
    pub threshold: String,
    pub notified: String,
    pub failed: String,
    pub note: String,
}

/// `/dashboard/waits`.
pub(crate) async fn page(State(dash): State<Dash>, actor: Actor) -> Page {
    let personal = actor.who.role.sees_personal();
    let view = load(&dash, PAGE_EVENTS, personal).await?;
    let now = now_ms();
    let queues = view
        .queues
        .into_iter()
        .map(|q| {
            let over = is_over(q.wait_secs, q.threshold_secs);
            QueueLine {
                threshold: human(q.threshold_secs as f64),
                wait: if q.wait_secs > 0.0 {
                    span(q.wait_secs)
                } else {
                    "-".into()
                },
                state: if over { "over" } else { "ok" },
                since: q.over_since_ms.map(|t| when(t, now)).unwrap_or_default(),
                paused: q.paused,
                told: q.told.join(", "),
                queue: q.queue,
            }
        })
        .collect();
    let events = view
        .events
        .into_iter()
        .map(|e| EventLine {
            when: when(e.at_ms, now),
            kind: e.kind.replace('_', " "),
            wait: span(e.wait_secs),
            threshold: human(e.threshold_secs as f64),
            notified: e.notified.join(", "),
            failed: e.failed.join(", "),
            note: e.note.unwrap_or_default(),
            queue: e.queue,
        })
        .collect();
    let destinations = if personal {
        dash.waits.destinations.to_string()
    } else {
        redact::mask_text(&dash.waits.destinations)
    };
    let page = WaitsPage {
        l: layout(
            &dash,
            &actor,
            "Long waits".into(),
            "waits",
            &Notice::default(),
        ),
        destinations,
        cooldown: span(dash.waits.cooldown_secs as f64),
        checked: (view.checks.rounds > 0)
            .then(|| (when(view.checks.at_ms, now), view.checks.rounds)),
        queues,
        events,
    };
    render(&page)
}
