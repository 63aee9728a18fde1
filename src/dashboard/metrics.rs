//! Metrics over the last hour, Horizon-style: throughput and run time per queue and per job
//! kind, and the slowest kinds. The data behind `/dashboard/metrics` and its pages
//! ([`super::metrics_pages`]) and the JSON API:
//!
//! * `GET /api/metrics`: every queue's hour summed, and every kind that completed a job in
//!   the hour, slowest (by mean run time) first;
//! * `GET /api/metrics/queues/{queue}`: the queue's minutes and its kinds;
//! * `GET /api/metrics/kinds/{kind}`: the kind's minutes (over every queue) and its queues.
//!
//! Throughput per queue is the ack script's per-minute counter (`throughput`); run times and
//! per-kind counts are the figures workers add per ack batch ([`crate::queue::kind_metrics`]).
//! Everything is read from Redis on each request: one round trip per queue partition.

use std::collections::{BTreeMap, BTreeSet};

use axum::{
    Json,
    extract::{Path, State},
};
use serde::Serialize;

use super::{Dash, api::Failure};
use crate::queue::{
    QueueError,
    job::now_ms,
    kind_metrics::{MINUTES, Minute, Runs},
};

/// One queue, kind or minute, summed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// The queue or kind.
    pub name: String,
    /// Jobs completed: a queue's from the ack script's counter, a kind's its recorded runs.
    pub completed: u64,
    /// Mean and longest run time of the completed jobs (ms); `None` when none was recorded.
    pub mean_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// The recorded runs the times come from.
    pub runs: Runs,
}

impl Summary {
    fn new(name: String, completed: u64, runs: Runs) -> Self {
        Self {
            name,
            completed,
            mean_ms: runs.mean_ms(),
            max_ms: (runs.count > 0).then(|| runs.max_us as f64 / 1000.0),
            runs,
        }
    }
}

/// One minute of a series.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Point {
    /// The minute's start, ms since the epoch.
    pub at_ms: u64,
    pub completed: u64,
    pub mean_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Point {
    fn new(at_ms: u64, completed: u64, runs: Runs) -> Self {
        let s = Summary::new(String::new(), completed, runs);
        Self {
            at_ms,
            completed,
            mean_ms: s.mean_ms,
            max_ms: s.max_ms,
        }
    }
}

/// `GET /api/metrics`.
#[derive(Debug, Serialize)]
pub(crate) struct MetricsOverview {
    /// The window: this minute and the ones before it.
    pub minutes: u64,
    pub queues: Vec<Summary>,
    /// Every kind that completed a job in the window, slowest mean run time first, with the
    /// queues it ran on.
    pub slowest_kinds: Vec<KindSummary>,
}

/// A kind over the window, with the queues it ran on.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct KindSummary {
    #[serde(flatten)]
    pub summary: Summary,
    pub queues: Vec<String>,
}

/// `GET /api/metrics/queues/{queue}` and `/api/metrics/kinds/{kind}`.
#[derive(Debug, Serialize)]
pub(crate) struct Series {
    pub minutes: u64,
    #[serde(flatten)]
    pub summary: Summary,
    /// Oldest first, one per minute of the window.
    pub points: Vec<Point>,
    /// A queue's kinds, or the queues a kind ran on.
    pub breakdown: Vec<Summary>,
}

/// Every queue's hour, by name.
async fn hours(dash: &Dash, now: u64) -> Result<Vec<(String, Vec<Minute>)>, QueueError> {
    let mut out = Vec::new();
    for name in dash.names().await? {
        let hour = dash.queues.queue_hour(&name, now).await?;
        out.push((name, hour));
    }
    Ok(out)
}

fn runs_of(minutes: &[Minute]) -> Runs {
    let mut all = Runs::default();
    for m in minutes {
        all.add(m.runs());
    }
    all
}

/// Per kind over `hours`: its runs and the queues it ran on.
fn kinds_of(hours: &[(String, Vec<Minute>)]) -> BTreeMap<String, (Runs, BTreeSet<String>)> {
    let mut kinds: BTreeMap<String, (Runs, BTreeSet<String>)> = BTreeMap::new();
    for (queue, minutes) in hours {
        for m in minutes {
            for (kind, runs) in &m.kinds {
                let entry = kinds.entry(kind.clone()).or_default();
                entry.0.add(*runs);
                entry.1.insert(queue.clone());
            }
        }
    }
    kinds
}

/// The overview: every queue, and the kinds slowest first.
pub(crate) async fn overview(dash: &Dash) -> Result<MetricsOverview, QueueError> {
    let hours = hours(dash, now_ms()).await?;
    let queues = hours
        .iter()
        .map(|(name, minutes)| {
            let completed = minutes.iter().map(|m| m.completed).sum();
            Summary::new(name.clone(), completed, runs_of(minutes))
        })
        .collect();
    let mut slowest_kinds: Vec<KindSummary> = kinds_of(&hours)
        .into_iter()
        .map(|(kind, (runs, queues))| KindSummary {
            summary: Summary::new(kind, runs.count, runs),
            queues: queues.into_iter().collect(),
        })
        .collect();
    slowest_kinds.sort_by(|a, b| {
        let mean = |k: &KindSummary| k.summary.mean_ms.unwrap_or(0.0);
        mean(b).total_cmp(&mean(a))
    });
    Ok(MetricsOverview {
        minutes: MINUTES,
        queues,
        slowest_kinds,
    })
}

/// One queue's minutes and kinds.
pub(crate) async fn queue(dash: &Dash, queue: &str) -> Result<Series, QueueError> {
    let minutes = dash.queues.queue_hour(queue, now_ms()).await?;
    let points = minutes
        .iter()
        .map(|m| Point::new(m.at_ms, m.completed, m.runs()))
        .collect();
    let hours = [(queue.to_owned(), minutes)];
    let breakdown = kinds_of(&hours)
        .into_iter()
        .map(|(kind, (runs, _))| Summary::new(kind, runs.count, runs))
        .collect();
    let [(_, minutes)] = &hours;
    let completed = minutes.iter().map(|m| m.completed).sum();
    Ok(Series {
        minutes: MINUTES,
        summary: Summary::new(queue.to_owned(), completed, runs_of(minutes)),
        points,
        breakdown,
    })
}

/// One kind's minutes (summed over every queue) and the queues it ran on.
pub(crate) async fn kind(dash: &Dash, kind: &str) -> Result<Series, QueueError> {
    let now = now_ms();
    let hours = hours(dash, now).await?;
    let mut per_minute: Vec<(u64, Runs)> = Vec::new();
    let mut breakdown = Vec::new();
    for (queue, minutes) in &hours {
        if per_minute.is_empty() {
            per_minute = minutes.iter().map(|m| (m.at_ms, Runs::default())).collect();
        }
        let mut on_queue = Runs::default();
        for (m, (_, total)) in minutes.iter().zip(per_minute.iter_mut()) {
            if let Some(runs) = m.kinds.get(kind) {
                total.add(*runs);
                on_queue.add(*runs);
            }
        }
        if on_queue.count > 0 {
            breakdown.push(Summary::new(queue.clone(), on_queue.count, on_queue));
        }
    }
    let mut all = Runs::default();
    for (_, runs) in &per_minute {
        all.add(*runs);
    }
    Ok(Series {
        minutes: MINUTES,
        summary: Summary::new(kind.to_owned(), all.count, all),
        points: per_minute
            .into_iter()
            .map(|(at, runs)| Point::new(at, runs.count, runs))
            .collect(),
        breakdown,
    })
}

/// A kind name from a URL: what job kinds are made of, not absurdly long.
pub(crate) fn check_kind(kind: &str) -> Result<(), Failure> {
    let ok = !kind.is_empty()
        && kind.len() <= 128
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Failure::BadRequest(format!("invalid job kind {kind:?}")))
    }
}

/// `GET /api/metrics`.
pub(crate) async fn api_overview(
    State(dash): State<Dash>,
) -> Result<Json<MetricsOverview>, Failure> {
    Ok(Json(overview(&dash).await?))
}

/// `GET /api/metrics/queues/{queue}`.
pub(crate) async fn api_queue(
    State(dash): State<Dash>,
    Path(name): Path<String>,
) -> Result<Json<Series>, Failure> {
    Ok(Json(queue(&dash, &name).await?))
}

/// `GET /api/metrics/kinds/{kind}`.
pub(crate) async fn api_kind(
    State(dash): State<Dash>,
    Path(name): Path<String>,
) -> Result<Json<Series>, Failure> {
    check_kind(&name)?;
    Ok(Json(kind(&dash, &name).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_from_urls_are_plain() {
        assert!(check_kind("calendar.book").is_ok());
        assert!(check_kind("test.slow-1").is_ok());
        for bad in ["", "a b", "<script>", "a/b", &"k".repeat(129)] {
            assert!(check_kind(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kinds_are_summed_over_queues_and_minutes() {
        let minute = |kind: &str, count, total_us, max_us| Minute {
            at_ms: 0,
            completed: count,
            kinds: BTreeMap::from([(
                kind.to_owned(),
                Runs {
                    count,
                    total_us,
                    max_us,
                },
            )]),
        };
        let hours = vec![
            (
                "a".to_owned(),
                vec![minute("x", 2, 20, 15), minute("y", 1, 5, 5)],
            ),
            ("b".to_owned(), vec![minute("x", 1, 40, 40)]),
        ];
        let kinds = kinds_of(&hours);
        let (x, queues) = &kinds["x"];
        assert_eq!((x.count, x.total_us, x.max_us), (3, 60, 40));
        assert_eq!(queues.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(kinds["y"].0.count, 1);
        assert_eq!(runs_of(&hours[0].1).count, 3);
    }
}
