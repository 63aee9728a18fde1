//! The metrics pages: `/dashboard/metrics` (every queue's hour and the slowest kinds),
//! `/dashboard/metrics/queues/{queue}` and `/dashboard/metrics/kinds/{kind}` (jobs per
//! minute and mean run time per minute as inline SVG bar charts, drawn here with
//! presentation attributes only, and the breakdown by kind or queue). The data is
//! [`super::metrics`]'.

use askama::Template;
use axum::extract::{Path, State};

use super::{
    Actor, Dash,
    metrics::{self, Point, Series, Summary},
    pages::{Notice, Page, layout, render},
    views::{Layout, seg},
};

/// Kinds the overview lists under "Slowest kinds" (the API returns them all).
const SLOWEST: usize = 10;
/// The chart's drawing area in SVG units, as the slots chart's.
const LEFT: f64 = 40.0;
const RIGHT: f64 = 710.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 150.0;

/// A queue or kind as a table row, numbers formatted.
pub(crate) struct Row {
    pub name: String,
    pub link: String,
    pub completed: u64,
    pub per_minute: String,
    pub mean: String,
    pub max: String,
    /// Where else it ran (the kinds' queues), comma-separated.
    pub queues: String,
}

impl Row {
    fn new(s: &Summary, link: String, minutes: u64) -> Self {
        Self {
            name: s.name.clone(),
            link,
            completed: s.completed,
            per_minute: format!("{:.1}", s.completed as f64 / minutes.max(1) as f64),
            mean: ms(s.mean_ms),
            max: ms(s.max_ms),
            queues: String::new(),
        }
    }
}

/// One bar of a chart: its rectangle and its tooltip.
pub(crate) struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub title: String,
}

/// A bar chart of one value per minute.
pub(crate) struct Chart {
    pub label: String,
    /// The value at the top of the scale, formatted.
    pub top: String,
    pub bars: Vec<Bar>,
}

#[derive(Template)]
#[template(path = "dashboard/metrics.html")]
pub(crate) struct MetricsPage {
    pub l: Layout,
    pub minutes: u64,
    pub queues: Vec<Row>,
    pub slowest: Vec<Row>,
}

#[derive(Template)]
#[template(path = "dashboard/metrics_detail.html")]
pub(crate) struct DetailPage {
    pub l: Layout,
    /// `queue` or `kind`.
    pub what: &'static str,
    pub minutes: u64,
    pub total: Row,
    /// Jobs per minute, then mean run time per minute, each under its heading.
    pub charts: Vec<(&'static str, Chart)>,
    /// A queue's kinds, or a kind's queues.
    pub breakdown: Vec<Row>,
    pub json: String,
}

/// A time in ms for people: `-` when nothing was recorded.
fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
        Some(v) if v < 10_000.0 => format!("{v:.1} ms"),
        Some(v) => format!("{:.1} s", v / 1000.0),
    }
}

fn queue_link(name: &str) -> String {
    format!("/dashboard/metrics/queues/{}", seg(name))
}

fn kind_link(name: &str) -> String {
    format!("/dashboard/metrics/kinds/{}", seg(name))
}

/// Bars for `values` (one per minute, oldest first; `None`: nothing to draw), each titled by
/// `title`, scaled to the largest value.
fn chart(
    label: String,
    values: &[Option<f64>],
    title: impl Fn(usize, f64) -> String,
    top: impl Fn(f64) -> String,
) -> Chart {
    let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let width = (RIGHT - LEFT) / values.len().max(1) as f64;
    let bars = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|v| *v > 0.0).map(|v| (i, v)))
        .map(|(i, v)| {
            let h = (BOTTOM - TOP) * v / scale;
            Bar {
                x: format!("{:.1}", LEFT + width * i as f64),
                y: format!("{:.1}", BOTTOM - h),
                w: format!("{:.1}", (width - 1.0).max(1.0)),
                h: format!("{h:.1}"),
                title: title(i, v),
            }
        })
        .collect();
    Chart {
        label,
        top: top(max),
        bars,
    }
}

/// The minute `i` of the window, as "n min ago".
fn ago(points: &[Point], i: usize) -> String {
    match points.len().saturating_sub(i + 1) {
        0 => "this minute".into(),
        n => format!("{n} min ago"),
    }
}

/// `/dashboard/metrics`.
pub(crate) async fn overview(State(dash): State<Dash>, actor: Actor) -> Page {
    let o = metrics::overview(&dash).await?;
    let queues = o
        .queues
        .iter()
        .map(|q| Row::new(q, queue_link(&q.name), o.minutes))
        .collect();
    let slowest = o
        .slowest_kinds
        .iter()
        .take(SLOWEST)
        .map(|k| Row {
            queues: k.queues.join(", "),
            ..Row::new(&k.summary, kind_link(&k.summary.name), o.minutes)
        })
        .collect();
    render(&MetricsPage {
        l: layout(
            &dash,
            &actor,
            "Metrics".into(),
            "metrics",
            &Notice::default(),
        ),
        minutes: o.minutes,
        queues,
        slowest,
    })
}

/// `/dashboard/metrics/queues/{queue}`.
pub(crate) async fn queue(
    State(dash): State<Dash>,
    actor: Actor,
    Path(name): Path<String>,
) -> Page {
    let series = metrics::queue(&dash, &name).await?;
    let json = format!("/api/metrics/queues/{}", seg(&name));
    detail(&dash, &actor, "queue", &series, kind_link, json)
}

/// `/dashboard/metrics/kinds/{kind}`.
pub(crate) async fn kind(State(dash): State<Dash>, actor: Actor, Path(name): Path<String>) -> Page {
    metrics::check_kind(&name)?;
    let series = metrics::kind(&dash, &name).await?;
    let json = format!("/api/metrics/kinds/{}", seg(&name));
    detail(&dash, &actor, "kind", &series, queue_link, json)
}

fn detail(
    dash: &Dash,
    actor: &Actor,
    what: &'static str,
    s: &Series,
    link: fn(&str) -> String,
    json: String,
) -> Page {
    let name = s.summary.name.clone();
    let counts: Vec<Option<f64>> = s.points.iter().map(|p| Some(p.completed as f64)).collect();
    let means: Vec<Option<f64>> = s.points.iter().map(|p| p.mean_ms).collect();
    let points = &s.points;
    let throughput = chart(
        format!("Jobs per minute of {what} {name}"),
        &counts,
        |i, v| format!("{}: {v} job(s)", ago(points, i)),
        |max| format!("{max}"),
    );
    let runtime = chart(
        format!("Mean run time per minute of {what} {name}"),
        &means,
        |i, v| format!("{}: {}", ago(points, i), ms(Some(v))),
        |max| ms(Some(max)),
    );
    render(&DetailPage {
        l: layout(
            dash,
            actor,
            format!("Metrics of {name}"),
            "metrics",
            &Notice::default(),
        ),
        what,
        minutes: s.minutes,
        total: Row::new(&s.summary, String::new(), s.minutes),
        charts: vec![
            ("Jobs per minute", throughput),
            ("Mean run time per minute", runtime),
        ],
        breakdown: s
            .breakdown
            .iter()
            .map(|b| Row::new(b, link(&b.name), s.minutes))
            .collect(),
        json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value_and_skip_empty_minutes() {
        let c = chart(
            "c".into(),
            &[Some(2.0), None, Some(0.0), Some(4.0)],
            |i, v| format!("{i}:{v}"),
            |m| format!("{m}"),
        );
        assert_eq!(c.top, "4");
        assert_eq!(c.bars.len(), 2);
        // 670 units over 4 minutes: 167.5 each; 4 is the full 140 units high.
        let b = &c.bars[1];
        assert_eq!(
            (b.x.as_str(), b.y.as_str(), b.h.as_str()),
            ("542.5", "10.0", "140.0")
        );
        assert_eq!(
            (c.bars[0].h.as_str(), c.bars[0].title.as_str()),
            ("70.0", "0:2")
        );
    }

    #[test]
    fn times_read_well() {
        assert_eq!(ms(None), "-");
        assert_eq!(ms(Some(0.123)), "0.12 ms");
        assert_eq!(ms(Some(52.34)), "52.3 ms");
        assert_eq!(ms(Some(12_500.0)), "12.5 s");
    }
}
