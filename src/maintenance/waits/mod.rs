//! The wait watch (Horizon's `waits` and its `LongWaitDetected` notice): every
//! `alerts.check_interval_ms` the maintenance leader compares each queue named in `[waits]`
//! with its threshold, by the age of its oldest pending job (`Queues::stats`, the number
//! behind `switchboard_queue_oldest_pending_seconds`), and tells the configured destinations
//! ([`notify`]) once per episode:
//!
//! * one "long wait" notice when the queue goes over its threshold, none while it stays over;
//! * one "recovered" notice when it is back under, to exactly the destinations that got the
//!   "long wait" (`Watch::told`), so every notice people see has its pair;
//! * the cooldown (`alerts.cooldown_secs`, counted from the last "long wait") keeps a queue
//!   that flaps around its threshold quiet: an episode that begins inside it is not told,
//!   unless it is still going on when the cooldown ends (then it is told then).
//!
//! Each episode, and each notice that went out later than its episode began, is an event
//! ([`WaitEvent`]) the dashboard lists. A destination that fails (webhook down, SMTP refusing)
//! is logged and counted (`switchboard_wait_notices_total{outcome="failed"}`) and tried again
//! at the next check; the round itself succeeds, so the loop never backs off for it.
//!
//! Leader only, with its state in Redis ([`store`]): a new leader carries on from the last
//! recorded state instead of telling everyone again. Fault points of a round: it sends first
//! and records after, so a leader that dies between the two has its notices sent again by the
//! next leader (at least once: a duplicate notice is better than a missing one; the email's
//! Message-ID is the same both times). A leader that dies before sending leaves nothing to
//! undo.

mod notify;
mod store;

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};

pub use self::{
    notify::{Kind, Notice, Notifier, human},
    store::{Checks, EVENTS_KEPT, WaitEvent, WaitLog, Watch},
};
use super::{Service, ms};
use crate::{
    config::Settings,
    queue::{Queues, admin::QueueStats},
    telemetry::metric,
};

/// How the watch runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitsConfig {
    /// Queue -> seconds its oldest pending job may wait (`[waits]`).
    pub thresholds: BTreeMap<String, u64>,
    /// No new "long wait" notice for a queue within this long of its last (`alerts.cooldown_secs`).
    pub cooldown: Duration,
    /// How often the leader looks (`alerts.check_interval_ms`).
    pub interval: Duration,
}

impl WaitsConfig {
    /// The first problem that would stop the watch from working well.
    pub fn validate(&self) -> Result<(), String> {
        if self.interval < Duration::from_millis(100) {
            return Err("the wait watch's interval must be at least 100 ms".into());
        }
        if let Some((q, _)) = self.thresholds.iter().find(|(_, s)| **s == 0) {
            return Err(format!("the wait threshold of {q} must be at least 1 s"));
        }
        Ok(())
    }
}

impl From<&Settings> for WaitsConfig {
    fn from(s: &Settings) -> Self {
        Self {
            thresholds: s.waits.clone(),
            cooldown: Duration::from_secs(s.alerts.cooldown_secs),
            interval: Duration::from_millis(s.alerts.check_interval_ms),
        }
    }
}

/// Watches the waits and sends the notices.
pub struct WaitWatch {
    queues: Queues,
    keys: store::Keys,
    config: WaitsConfig,
    notifier: Notifier,
    destinations: Vec<String>,
}

/// What a round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WaitOutcome {
    /// Queues over their threshold now.
    pub over: u64,
    /// Notices delivered.
    pub sent: u64,
    /// Deliveries that failed (tried again next round).
    pub failed: u64,
    /// Events recorded.
    pub events: u64,
}

impl WaitWatch {
    /// A watch over `config.thresholds` telling `notifier`'s destinations.
    pub fn new(queues: Queues, config: WaitsConfig, notifier: Notifier) -> Result<Self, String> {
        config.validate()?;
        let keys = store::Keys::new(&queues.settings().prefix);
        let destinations = notifier.destinations();
        Ok(Self {
            queues,
            keys,
            config,
            notifier,
            destinations,
        })
    }

    /// Send what `queue`'s plan owes; the destinations reached and those that failed.
    async fn deliver(
        &self,
        watch: &mut Watch,
        owed: &[(String, Kind)],
        notice: &Notice<'_>,
    ) -> (Vec<String>, Vec<String>) {
        let (mut notified, mut failed) = (Vec::new(), Vec::new());
        for (dest, kind) in owed {
            let notice = Notice {
                kind: *kind,
                ..notice.clone()
            };
            let channel = if dest == notify::WEBHOOK {
                "webhook"
            } else {
                "email"
            };
            match self.notifier.send(dest, &notice).await {
                Ok(()) => {
                    metric::wait_notice(notice.queue, channel, kind.as_str(), "sent");
                    if *kind == Kind::LongWait {
                        watch.told.insert(dest.clone());
                    } else {
                        watch.told.remove(dest);
                    }
                    notified.push(dest.clone());
                }
                Err(error) => {
                    metric::wait_notice(notice.queue, channel, kind.as_str(), "failed");
                    tracing::warn!(queue = notice.queue, notice = kind.as_str(), %error, "a long-wait notice failed; tried again at the next check");
                    failed.push(dest.clone());
                }
            }
        }
        (notified, failed)
    }
}

impl Service for WaitWatch {
    const NAME: &'static str = "waits";
    type Outcome = WaitOutcome;

    /// Compare every watched queue's oldest wait with its threshold at `now` and send what
    /// is owed.
    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<WaitOutcome> {
        let now_ms = ms(now);
        let mut watches = store::load(&self.queues, &self.keys).await?;
        let mut out = WaitOutcome::default();
        let mut changed = Vec::new();
        let mut events = Vec::new();
        // A queue whose stats fail is skipped, so what the others sent is still recorded
        // (not sent again next round); the round then fails with the first such error.
        let mut skipped = None;
        for (queue, &threshold) in &self.config.thresholds {
            let stats = match self.queues.stats(queue).await {
                Ok(stats) => stats,
                Err(e) => {
                    skipped.get_or_insert(e);
                    continue;
                }
            };
            let wait = wait_of(&stats);
            let before = watches.remove(queue).unwrap_or_default();
            let mut watch = before.clone();
            let cooldown_ms = self.config.cooldown.as_millis() as u64;
            let plan = plan(
                &mut watch,
                wait,
                threshold,
                now_ms,
                cooldown_ms,
                &self.destinations,
            );
            let notice = Notice {
                kind: Kind::LongWait,
                deployment: &self.queues.settings().prefix,
                queue,
                wait_secs: wait,
                threshold_secs: threshold,
                paused: stats.paused,
                since_ms: watch.episode_since_ms,
                lasted_secs: plan.lasted_secs,
                peak_secs: watch.peak_secs,
            };
            let (notified, failed) = self.deliver(&mut watch, &plan.owed, &notice).await;
            out.over += u64::from(watch.over_since_ms.is_some());
            out.sent += notified.len() as u64;
            out.failed += failed.len() as u64;
            if let Some((kind, note)) = plan.event(&watch, &notified, cooldown_ms) {
                let (told, note_text) = (notified.join(", "), note.as_deref().unwrap_or(""));
                if plan.crossed == Some(Kind::LongWait) {
                    tracing::warn!(%queue, wait_secs = wait, threshold_secs = threshold, notified = %told, note = note_text, "long wait");
                } else {
                    tracing::info!(%queue, event = kind.as_str(), wait_secs = wait, threshold_secs = threshold, notified = %told, note = note_text, "long wait event");
                }
                events.push(WaitEvent {
                    at_ms: now_ms,
                    queue: queue.clone(),
                    kind: kind.as_str().to_owned(),
                    wait_secs: (wait * 10.0).round() / 10.0,
                    threshold_secs: threshold,
                    notified,
                    failed,
                    note,
                });
            }
            if watch != before {
                changed.push((queue.as_str(), watch));
            }
        }
        out.events = events.len() as u64;
        let changed: Vec<(&str, &Watch)> = changed.iter().map(|(q, w)| (*q, w)).collect();
        store::save(&self.queues, &self.keys, &changed, &events, now_ms).await?;
        match skipped {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }

    fn interval(&self) -> Duration {
        self.config.interval
    }

    fn did_something(outcome: &WaitOutcome) -> bool {
        outcome.events > 0 || outcome.failed > 0
    }
}

/// The wait a queue is judged by: its oldest pending job's, 0 with nothing pending (a
/// cancelled job may still sit at the end of the list).
pub fn wait_of(stats: &QueueStats) -> f64 {
    if stats.pending > 0 {
        stats.oldest_pending_secs
    } else {
        0.0
    }
}

/// Whether `wait_secs` is a long wait for `threshold_secs` (longer than it, as Horizon).
pub fn is_over(wait_secs: f64, threshold_secs: u64) -> bool {
    wait_secs > threshold_secs as f64
}

/// What one check of one queue found and owes.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    /// The queue went over (`Some(LongWait)`) or back under (`Some(Recovered)`).
    crossed: Option<Kind>,
    /// This check decided to tell the episode (its cooldown allowed it).
    announced_now: bool,
    /// The notices owed: destination and which notice.
    owed: Vec<(String, Kind)>,
    /// How long the episode that just ended lasted, seconds.
    lasted_secs: f64,
}

/// Move `w` to the wait seen at `now_ms` and say which notices are owed: a destination is
/// owed "long wait" while the queue is over, the episode is announced and it was not told;
/// "recovered" once the queue is under and it still believes otherwise. Pure, so the
/// episode rules are tested without Redis or a clock.
fn plan(
    w: &mut Watch,
    wait: f64,
    threshold: u64,
    now_ms: u64,
    cooldown_ms: u64,
    destinations: &[String],
) -> Plan {
    let over = is_over(wait, threshold);
    // A destination taken out of the configuration can be told nothing more.
    w.told.retain(|d| destinations.contains(d));
    let mut p = Plan::default();
    match (w.over_since_ms, over) {
        (None, true) => {
            w.over_since_ms = Some(now_ms);
            w.episode_since_ms = now_ms;
            w.peak_secs = wait;
            p.crossed = Some(Kind::LongWait);
        }
        (Some(_), true) => w.peak_secs = w.peak_secs.max(wait),
        (Some(since), false) => {
            w.over_since_ms = None;
            w.announced = false;
            p.crossed = Some(Kind::Recovered);
            p.lasted_secs = now_ms.saturating_sub(since) as f64 / 1000.0;
        }
        (None, false) => {}
    }
    if over && !w.announced && now_ms >= w.last_alert_ms.saturating_add(cooldown_ms) {
        w.announced = true;
        w.last_alert_ms = now_ms;
        p.announced_now = true;
    }
    p.owed = destinations
        .iter()
        .filter_map(|d| {
            let told = w.told.contains(d);
            let to_tell = over && (w.announced || told);
            let kind = if to_tell {
                Kind::LongWait
            } else {
                Kind::Recovered
            };
            (to_tell != told).then(|| (d.clone(), kind))
        })
        .collect();
    p
}

impl Plan {
    /// The event this check is worth, if any: every crossing, and every notice that went out
    /// without one (told late after the cooldown, or delivered on a retry). Failures alone
    /// are not events (they are logged and counted), so a destination that stays down does
    /// not flood the list.
    fn event(
        &self,
        w: &Watch,
        notified: &[String],
        cooldown_ms: u64,
    ) -> Option<(Kind, Option<String>)> {
        let note = match self.crossed {
            Some(Kind::LongWait) if !w.announced => Some(format!(
                "not notified: within the cooldown of the last notice; told at {} if still over",
                clock(w.last_alert_ms.saturating_add(cooldown_ms))
            )),
            Some(Kind::Recovered) if notified.is_empty() && self.owed.is_empty() => {
                Some("nobody was told of this long wait, so nobody is told it ended".into())
            }
            Some(Kind::Recovered) => Some(format!(
                "lasted {}; longest wait {}",
                notify::human(self.lasted_secs),
                notify::human(w.peak_secs)
            )),
            Some(Kind::LongWait) => None,
            None if notified.is_empty() => return None,
            None if self.announced_now => {
                Some("still over when the cooldown ended: told now".into())
            }
            None => Some("delivered on a retry".into()),
        };
        // Without a crossing, whatever went out is of one kind (over: "long wait" only).
        let kind = self
            .crossed
            .or_else(|| self.owed.first().map(|(_, k)| *k))?;
        Some((kind, note))
    }
}

/// `HH:MM:SS UTC` of `ms`.
fn clock(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms as i64)
        .map_or_else(|| ms.to_string(), |t| t.format("%H:%M:%S UTC").to_string())
}

#[cfg(test)]
mod tests;
