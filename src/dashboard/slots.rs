//! Slots per queue over time: for each balanced supervisor (`balance = "auto"`), the page
//! `/dashboard/slots` draws the slots each queue held over the last hour (an inline SVG step
//! chart, drawn here, no script) with the current split and the recent samples, and
//! `GET /api/supervisors/slots[?minutes=N]` returns the same samples as JSON.
//!
//! Everything comes from the history the balancers write to Redis ([`crate::fleet::slots`]),
//! so a dashboard on a host that runs no workers shows it too. A supervisor run by several
//! fleet instances is shown summed over the live ones; the JSON keeps every instance's own
//! samples and latest split.

use std::collections::BTreeMap;

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
    views::{Layout, when},
};
use crate::{
    fleet::slots::{self, Sample},
    queue::{QueueError, job::now_ms},
};

/// The longest window shown (what the streams keep).
const MAX_MINUTES: u64 = 60;
/// Samples the page lists per supervisor (the chart uses all of them).
const TABLE_ROWS: usize = 20;
/// The chart's drawing area in SVG units: x from `LEFT` to `RIGHT`, y from `TOP` to `BOTTOM`.
const LEFT: f64 = 40.0;
const RIGHT: f64 = 710.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 150.0;
/// One colour per queue, in the order of the queue names (then again from the start).
const COLORS: [&str; 6] = [
    "#2f6fde", "#c52727", "#1f8a4c", "#b7791f", "#7b4fd6", "#0f8a8a",
];

#[derive(Debug, Deserialize)]
pub(crate) struct SlotsQuery {
    /// How far back, in minutes (1 to 60; 60 when not given).
    minutes: Option<u64>,
}

impl SlotsQuery {
    fn minutes(&self) -> u64 {
        self.minutes.unwrap_or(MAX_MINUTES).clamp(1, MAX_MINUTES)
    }
}

/// One balanced supervisor's slots, as the API returns them.
#[derive(Debug, Serialize)]
pub(crate) struct SupervisorSlots {
    supervisor: String,
    /// Every queue named in the samples, sorted.
    queues: Vec<String>,
    /// Slots per queue now, summed over the live fleet instances.
    current: BTreeMap<String, usize>,
    /// The latest sample of each live fleet instance.
    instances: Vec<Sample>,
    /// Every sample in the window, oldest first (an empty `slots`: that instance stopped).
    samples: Vec<Sample>,
}

async fn load(dash: &Dash, minutes: u64, now: u64) -> Result<Vec<SupervisorSlots>, QueueError> {
    let since = now.saturating_sub(minutes * 60_000);
    Ok(slots::read(&dash.queues, since)
        .await?
        .into_iter()
        .map(|h| {
            let mut queues: Vec<String> = h
                .samples
                .iter()
                .flat_map(|s| s.slots.keys().cloned())
                .collect();
            queues.sort();
            queues.dedup();
            SupervisorSlots {
                current: slots::total_at(&h.samples, now),
                instances: slots::live_at(&h.samples, now)
                    .into_iter()
                    .cloned()
                    .collect(),
                supervisor: h.supervisor,
                queues,
                samples: h.samples,
            }
        })
        .collect())
}

/// `GET /api/supervisors/slots?minutes=`: every balanced supervisor's samples.
pub(crate) async fn api(
    State(dash): State<Dash>,
    Query(q): Query<SlotsQuery>,
) -> Result<Json<Vec<SupervisorSlots>>, Failure> {
    Ok(Json(load(&dash, q.minutes(), now_ms()).await?))
}

#[derive(Template)]
#[template(path = "dashboard/slots.html")]
pub(crate) struct SlotsPage {
    pub l: Layout,
    pub minutes: u64,
    pub sups: Vec<SupView>,
}

pub(crate) struct SupView {
    pub name: String,
    /// (queue, colour, slots now).
    pub queues: Vec<(String, &'static str, usize)>,
    pub instances: usize,
    /// The chart's top value.
    pub y_max: usize,
    /// (queue, colour, SVG polyline points).
    pub lines: Vec<(String, &'static str, String)>,
    pub rows: Vec<SampleLine>,
}

pub(crate) struct SampleLine {
    pub when: String,
    pub host: String,
    pub fleet: String,
    /// Slots per queue, in the order of `SupView::queues`; empty when the instance stopped.
    pub slots: Vec<usize>,
}

/// `/dashboard/slots?minutes=`.
pub(crate) async fn page(
    State(dash): State<Dash>,
    actor: Actor,
    Query(q): Query<SlotsQuery>,
) -> Page {
    let now = now_ms();
    let minutes = q.minutes();
    let sups = load(&dash, minutes, now)
        .await?
        .into_iter()
        .map(|s| view(s, now.saturating_sub(minutes * 60_000), now))
        .collect();
    let page = SlotsPage {
        l: layout(&dash, &actor, "Slots".into(), "slots", &Notice::default()),
        minutes,
        sups,
    };
    render(&page)
}

fn view(s: SupervisorSlots, from_ms: u64, now: u64) -> SupView {
    let color = |i: usize| COLORS[i % COLORS.len()];
    let totals = slots::totals(&s.samples);
    let y_max = totals
        .iter()
        .flat_map(|(_, split)| split.values().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let lines = s
        .queues
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let series: Vec<(u64, usize)> = totals
                .iter()
                .map(|(at, split)| (*at, split.get(q).copied().unwrap_or(0)))
                .collect();
            let end = s.current.get(q).copied().unwrap_or(0);
            (
                q.clone(),
                color(i),
                step_points(&series, end, from_ms, now, y_max),
            )
        })
        .collect();
    let rows = s
        .samples
        .iter()
        .rev()
        .take(TABLE_ROWS)
        .map(|x| SampleLine {
            when: when(x.at_ms, now),
            host: x.host.clone(),
            fleet: x.fleet.rsplit(':').next().unwrap_or_default().to_owned(),
            slots: if x.slots.is_empty() {
                Vec::new()
            } else {
                s.queues
                    .iter()
                    .map(|q| x.slots.get(q).copied().unwrap_or(0))
                    .collect()
            },
        })
        .collect();
    SupView {
        queues: s
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.clone(), color(i), s.current.get(q).copied().unwrap_or(0)))
            .collect(),
        instances: s.instances.len(),
        name: s.supervisor,
        y_max,
        lines,
        rows,
    }
}

/// The polyline of a step series `(ms, value)` over `from_ms..=now`, holding each value
/// until the next point and ending at `end` (the value now, which differs from the last
/// point's when the instances behind it have gone quiet since).
fn step_points(
    series: &[(u64, usize)],
    end: usize,
    from_ms: u64,
    now: u64,
    y_max: usize,
) -> String {
    let span = now.saturating_sub(from_ms).max(1) as f64;
    let x = |ms: u64| LEFT + (RIGHT - LEFT) * (ms.clamp(from_ms, now) - from_ms) as f64 / span;
    let y = |v: usize| BOTTOM - (BOTTOM - TOP) * v as f64 / y_max as f64;
    let mut points: Vec<(f64, f64)> = Vec::with_capacity(series.len() * 2 + 2);
    for &(at, v) in series {
        if let Some(&(_, last_y)) = points.last() {
            points.push((x(at), last_y));
        }
        points.push((x(at), y(v)));
    }
    if let Some(&(_, last_y)) = points.last() {
        points.push((x(now), last_y));
        if (y(end) - last_y).abs() > f64::EPSILON {
            points.push((x(now), y(end)));
        }
    }
    points
        .iter()
        .map(|(px, py)| format!("{px:.1},{py:.1}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_series_holds_each_value_until_the_next() {
        // 0..=1000 ms maps to x 40..710; 0..=8 slots to y 150..10.
        let points = step_points(&[(0, 4), (500, 6)], 6, 0, 1000, 8);
        assert_eq!(points, "40.0,80.0 375.0,80.0 375.0,45.0 710.0,45.0");
        let quiet = step_points(&[(500, 8)], 0, 0, 1000, 8);
        assert_eq!(quiet, "375.0,10.0 710.0,10.0 710.0,150.0");
        assert_eq!(step_points(&[], 0, 0, 1000, 1), "");
    }
}
