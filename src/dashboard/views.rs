//! What the page templates show: one struct per template (askama checks them at compile
//! time) and the rows they list, with every number already formatted for people. Templates
//! escape every value; URLs built here percent-encode their path segments.

use std::fmt::Write as _;

use askama::Template;

use crate::queue::{admin::QueueStats, overview::Supervisor};

/// The frame every page shares.
pub(crate) struct Layout {
    pub title: String,
    /// Which navigation entry is current: `overview`, `workers`, `failed`, `metrics`,
    /// `slots`, `waits`, `audit`, `job`.
    pub nav: &'static str,
    /// The session's CSRF token for the page's forms (empty with bearer or basic access).
    pub csrf: String,
    pub refresh_secs: u64,
    /// Show the log-out button (a credentialed browser session).
    pub logout: bool,
    /// A one-line confirmation of the action that led here.
    pub notice: Option<String>,
    /// Who is logged in, and their role.
    pub who: String,
    pub role: &'static str,
    /// Whether the page offers changes (retry, forget, pause, continue).
    pub may_change: bool,
}

#[derive(Template)]
#[template(path = "dashboard/audit.html")]
pub(crate) struct AuditPage {
    pub l: Layout,
    pub rows: Vec<AuditLine>,
    /// The next (older) page, when there is one.
    pub next: Option<String>,
}

pub(crate) struct AuditLine {
    pub when: String,
    pub who: String,
    pub from: String,
    pub via: String,
    pub action: String,
    pub queues: String,
    pub jobs: String,
    pub count: u64,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "dashboard/overview.html")]
pub(crate) struct OverviewPage {
    pub l: Layout,
    pub status: &'static str,
    pub per_minute: u64,
    pub past_hour: String,
    pub failed_week: u64,
    pub workers: usize,
    pub processes: usize,
    pub longest: Option<(String, String)>,
    /// Queues of `[waits]` over their threshold now: (queue, wait, threshold).
    pub long_waits: Vec<(String, String, String)>,
    /// Open circuits: (provider, seconds to the next probe, failures, last error).
    pub circuits: Vec<(String, u64, u64, String)>,
    pub rows: Vec<QueueLine>,
    pub sups: Vec<SupLine>,
}

pub(crate) struct QueueLine {
    pub name: String,
    pub pending: u64,
    pub delayed: u64,
    pub running: u64,
    pub dead: u64,
    /// Jobs waiting behind an earlier job of their sequence key.
    pub waiting: u64,
    /// Jobs that expired before they started, ever.
    pub expired: u64,
    pub per_minute: u64,
    pub past_hour: u64,
    pub wait: String,
    pub workers: usize,
    pub paused: bool,
    pub pause_url: String,
    pub continue_url: String,
}

pub(crate) struct SupLine {
    pub name: String,
    pub host: String,
    pub pid: String,
    pub queues: String,
    pub workers: usize,
    pub leased: u64,
    pub state: &'static str,
}

impl From<&Supervisor> for SupLine {
    fn from(s: &Supervisor) -> Self {
        Self {
            name: s.name.clone(),
            host: s.host.clone(),
            pid: s.pid.clone(),
            queues: s.queues.join(", "),
            workers: s.workers,
            leased: s.leased,
            state: if s.expired == 0 {
                "running"
            } else if s.expired < s.workers {
                "degraded"
            } else {
                "gone"
            },
        }
    }
}

#[derive(Template)]
#[template(path = "dashboard/workers.html")]
pub(crate) struct WorkersPage {
    pub l: Layout,
    pub sups: Vec<SupLine>,
    pub workers: Vec<WorkerLine>,
}

pub(crate) struct WorkerLine {
    pub id: String,
    pub queue: String,
    pub leased: u64,
    pub lease: String,
    pub alive: bool,
}

#[derive(Template)]
#[template(path = "dashboard/failed.html")]
pub(crate) struct FailedPage {
    pub l: Layout,
    pub filter: Option<String>,
    pub queues: Vec<String>,
    pub rows: Vec<FailedLine>,
    pub back: String,
}

pub(crate) struct FailedLine {
    pub id: String,
    pub queue: String,
    pub kind: String,
    pub error: String,
    pub attempts: u32,
    pub died: String,
    pub link: String,
    pub retry_url: String,
    pub forget_url: String,
}

#[derive(Template)]
#[template(path = "dashboard/job.html")]
pub(crate) struct JobPage {
    pub l: Layout,
    pub id: String,
    pub queue: String,
    pub state: &'static str,
    pub kind: String,
    pub error: Option<String>,
    pub facts: Vec<(&'static str, String)>,
    pub payload: Option<String>,
    pub result: Option<String>,
    pub dead: bool,
    pub retry_url: String,
    pub forget_url: String,
    pub back: String,
}

#[derive(Template)]
#[template(path = "dashboard/error.html")]
pub(crate) struct ErrorPage {
    pub l: Layout,
    pub status: u16,
    pub message: String,
}

#[derive(Template)]
#[template(path = "dashboard/login.html")]
pub(crate) struct LoginPage {
    pub next: String,
    pub username: String,
    pub error: Option<String>,
    pub password_label: &'static str,
}

/// The queues of `thresholds` whose wait in `rows` is over their threshold now: (queue,
/// wait, threshold), for the overview.
pub(crate) fn over_now<'a>(
    thresholds: &std::collections::BTreeMap<String, u64>,
    rows: impl IntoIterator<Item = &'a QueueStats>,
) -> Vec<(String, String, String)> {
    use crate::maintenance::waits::{is_over, wait_of};
    rows.into_iter()
        .filter_map(|stats| {
            let queue = stats.name.as_str();
            let threshold = *thresholds.get(queue)?;
            let wait = wait_of(stats);
            is_over(wait, threshold).then(|| {
                (
                    queue.to_owned(),
                    span(wait),
                    crate::maintenance::waits::human(threshold as f64),
                )
            })
        })
        .collect()
}

/// `s` as one URL path segment.
pub(crate) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A time in ms since the epoch, in UTC, with how long ago it was.
pub(crate) fn when(ms: u64, now_ms: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if ms <= now_ms {
        format!("{stamp} ({} ago)", span((now_ms - ms) as f64 / 1000.0))
    } else {
        format!("{stamp} (in {})", span((ms - now_ms) as f64 / 1000.0))
    }
}

/// A duration in seconds, short: `0.4 s`, `12 s`, `3 m 4 s`, `2 h 5 m`, `3 d 4 h`.
pub(crate) fn span(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 10.0 {
        return format!("{s:.1} s");
    }
    let whole = s as u64;
    match whole {
        0..60 => format!("{whole} s"),
        60..3600 => format!("{} m {} s", whole / 60, whole % 60),
        3600..86_400 => format!("{} h {} m", whole / 3600, whole % 3600 / 60),
        _ => format!("{} d {} h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// The first line of `text`, at most `max` characters.
pub(crate) fn short(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max && line.len() == text.len() {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(seg("01AB"), "01AB");
        assert_eq!(seg("a b/<c>"), "a%20b%2F%3Cc%3E");
        assert_eq!(span(0.24), "0.2 s");
        assert_eq!(span(75.0), "1 m 15 s");
        assert_eq!(span(7300.0), "2 h 1 m");
        assert_eq!(
            when(1_700_000_000_000, 1_700_000_012_000),
            "2023-11-14 22:13:20 UTC (12 s ago)"
        );
        assert_eq!(short("boom", 10), "boom");
        assert_eq!(short("boom\nmore", 10), "boom…");
        assert_eq!(short("abcdef", 3), "abc…");
    }
}
