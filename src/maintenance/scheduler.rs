//! The cron scheduler: enqueues each configured `[[schedule]]` job once per tick, however
//! many scheduler instances run.
//!
//! Every instance evaluates every schedule. A tick is claimed in Redis by a key of its own
//! (`{prefix:queue}:schedule:<name>:<tick ms>`, with a TTL) in the same script that pushes
//! the job, so exactly one instance enqueues it; the job id `cron-<name>-<tick ms>` names the
//! tick. The schedule's state hash keeps the newest tick any instance handled (`last_tick`):
//! an instance reads it each round, so ticks another instance already handled are never
//! counted as missed. Ticks older than `grace_secs` when found were missed (every instance
//! was down): `catch_up = "once"` enqueues one job for all of them, `"skip"` none. A schedule
//! seen for the first time starts from now; history before it owes nothing.

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use serde::Serialize;
use switchboard_jobs::EnqueueOptions;

use super::Service;
use crate::{
    config::{CatchUp, ScheduleSettings, SchedulerSettings, timetable::Timetable},
    queue::{Enqueued, QueueError, Queues, schedule::TickJob},
    telemetry::metric,
};

/// Ticks examined per schedule and round; a longer backlog of missed ticks is counted only
/// this far (the catch-up decision needs just the newest one).
const SCAN_LIMIT: usize = 100_000;
/// Longest sleep between rounds, so a changed clock is noticed.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// One schedule, parsed.
struct Entry {
    settings: ScheduleSettings,
    timetable: Timetable,
    /// The configured arguments as JSON text.
    args: String,
    /// The kind's priority (reconciliation runs `low`).
    priority: switchboard_jobs::Priority,
}

/// The priority of `kind` in the catalogue (normal for kinds it does not list, e.g. the
/// engine's own prune).
fn kind_priority(kind: &str) -> switchboard_jobs::Priority {
    switchboard_jobs::catalogue()
        .into_iter()
        .find(|k| k.kind == kind)
        .map_or(switchboard_jobs::Priority::Normal, |k| k.priority)
}

/// Enqueues recurring jobs.
pub struct Scheduler {
    queues: Queues,
    entries: Vec<Entry>,
    grace: Span,
    claim_ttl_ms: u64,
}

/// What a round did, over all schedules.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FireOutcome {
    /// Ticks this instance enqueued on time.
    pub enqueued: u64,
    /// Ticks another instance had already claimed.
    pub duplicate: u64,
    /// Ticks found missed (older than the grace period).
    pub missed: u64,
    /// Catch-up jobs this instance enqueued for missed ticks.
    pub caught_up: u64,
}

/// A schedule as `schedule list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleInfo {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub kind: String,
    pub queue: String,
    pub catch_up: CatchUp,
    /// The next three fire times, RFC 3339 in the schedule's zone.
    pub next: Vec<String>,
    /// When the last job was enqueued (tick or manual run), RFC 3339 in the zone.
    pub last_fire: Option<String>,
    /// That job's id.
    pub last_job: Option<String>,
}

impl Scheduler {
    /// A scheduler over `schedules` (validated with [`problems`] at start-up).
    pub fn new(
        queues: Queues,
        schedules: &[ScheduleSettings],
        settings: &SchedulerSettings,
    ) -> Result<Self, String> {
        let entries = schedules
            .iter()
            .map(|s| {
                Ok(Entry {
                    timetable: Timetable::parse(&s.cron, &s.timezone)
                        .map_err(|e| format!("schedule {}: {e}", s.name))?,
                    args: s.args.to_string(),
                    priority: kind_priority(&s.kind),
                    settings: s.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            queues,
            entries,
            grace: Span::seconds(i64::try_from(settings.grace_secs).unwrap_or(i64::MAX / 1000)),
            claim_ttl_ms: settings.claim_ttl_secs.saturating_mul(1000),
        })
    }

    /// Register every schedule's queue so operators see it before its first job.
    pub async fn register_queues(&self) -> Result<(), QueueError> {
        for e in &self.entries {
            self.queues.register_queue(&e.settings.queue).await?;
        }
        Ok(())
    }

    /// Handle every tick due at `now`, counting each schedule's outcomes.
    pub async fn fire_due(&self, now: DateTime<Utc>) -> Result<FireOutcome, QueueError> {
        let mut total = FireOutcome::default();
        for entry in &self.entries {
            let o = self.run_entry(entry, now).await.inspect_err(|_| {
                metric::scheduler_fired(&entry.settings.name, "failed", 1);
            })?;
            let name = &entry.settings.name;
            for (outcome, n) in [
                ("enqueued", o.enqueued),
                ("duplicate", o.duplicate),
                ("missed", o.missed),
                ("caught_up", o.caught_up),
            ] {
                if n > 0 {
                    metric::scheduler_fired(name, outcome, n);
                }
            }
            total.enqueued += o.enqueued;
            total.duplicate += o.duplicate;
            total.missed += o.missed;
            total.caught_up += o.caught_up;
        }
        Ok(total)
    }

    async fn run_entry(
        &self,
        entry: &Entry,
        now: DateTime<Utc>,
    ) -> Result<FireOutcome, QueueError> {
        let mut out = FireOutcome::default();
        let Some(last) = self.last_tick(entry, now).await? else {
            return Ok(out);
        };
        let mut due = entry.timetable.between(last, now, SCAN_LIMIT);
        if due.len() == SCAN_LIMIT {
            // A very long outage of a dense schedule: the newest ticks are what matter.
            let recent =
                entry
                    .timetable
                    .between(now - self.grace - Span::hours(1), now, SCAN_LIMIT);
            out.missed += SCAN_LIMIT as u64;
            due = recent;
        }
        let on_time_from = now - self.grace;
        let split = due.partition_point(|t| *t < on_time_from);
        let (missed, on_time) = due.split_at(split);
        if let Some(&newest_missed) = missed.last() {
            out.missed += missed.len() as u64;
            match entry.settings.catch_up {
                CatchUp::Once => {
                    if self.fire(entry, newest_missed, true, now).await? {
                        out.caught_up += 1;
                    }
                }
                CatchUp::Skip => {
                    self.fire(entry, newest_missed, false, now).await?;
                }
            }
        }
        for &tick in on_time {
            if self.fire(entry, tick, true, now).await? {
                out.enqueued += 1;
            } else {
                out.duplicate += 1;
            }
        }
        Ok(out)
    }

    /// The newest tick any instance handled; `None` (after recording `now`) for a schedule
    /// never seen before.
    async fn last_tick(
        &self,
        entry: &Entry,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, QueueError> {
        let s = &entry.settings;
        let last = self
            .queues
            .schedule_last_tick(&s.queue, &s.name, now.timestamp_millis())
            .await?;
        Ok(Utc
            .timestamp_millis_opt(last)
            .single()
            .filter(|t| *t != now))
    }

    /// Claim `tick` and (when `enqueue`) push its job; true when this call enqueued.
    async fn fire(
        &self,
        entry: &Entry,
        tick: DateTime<Utc>,
        enqueue: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, QueueError> {
        let s = &entry.settings;
        let tick_ms = tick.timestamp_millis();
        let id = format!("cron-{}-{tick_ms}", s.name);
        let job = enqueue.then(|| TickJob {
            kind: &s.kind,
            args: &entry.args,
            priority: entry.priority,
        });
        let pushed = self
            .queues
            .fire_tick(
                &s.queue,
                &s.name,
                tick_ms,
                self.claim_ttl_ms,
                &id,
                job,
                now.timestamp_millis(),
            )
            .await?;
        if pushed {
            tracing::info!(schedule = %s.name, kind = %s.kind, job = %id, tick = %tick.with_timezone(&entry.timetable.zone()), "scheduled job enqueued");
        }
        Ok(pushed)
    }

    /// `schedule run NAME`: enqueue the schedule's job now, outside its timetable; `None`
    /// when no schedule has that name.
    pub async fn fire_now(&self, name: &str) -> Result<Option<Enqueued>, QueueError> {
        let Some(entry) = self.entries.iter().find(|e| e.settings.name == name) else {
            return Ok(None);
        };
        let s = &entry.settings;
        let enqueued = self
            .queues
            .enqueue_json(
                &s.kind,
                1,
                entry.args.clone(),
                &s.queue,
                EnqueueOptions::default(),
            )
            .await?;
        self.queues
            .record_fire(&s.queue, name, &enqueued.id, Utc::now().timestamp_millis())
            .await?;
        metric::scheduler_fired(name, "manual", 1);
        Ok(Some(enqueued))
    }

    /// Every schedule with its next three fire times after `now` and its last fire.
    pub async fn list(&self, now: DateTime<Utc>) -> Result<Vec<ScheduleInfo>, QueueError> {
        let mut out = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            let s = &entry.settings;
            let zone = entry.timetable.zone();
            let last = self.queues.last_fire(&s.queue, &s.name).await?;
            out.push(ScheduleInfo {
                name: s.name.clone(),
                cron: s.cron.clone(),
                timezone: s.timezone.clone(),
                kind: s.kind.clone(),
                queue: s.queue.clone(),
                catch_up: s.catch_up,
                next: entry
                    .timetable
                    .upcoming(now, 3)
                    .iter()
                    .map(|t| t.with_timezone(&zone).to_rfc3339())
                    .collect(),
                last_fire: last
                    .fired_ms
                    .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
                    .map(|t| t.with_timezone(&zone).to_rfc3339()),
                last_job: last.job,
            });
        }
        Ok(out)
    }

    /// The earliest fire time of any schedule after `now`.
    pub fn next_wake(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.entries
            .iter()
            .filter_map(|e| e.timetable.next_after(now))
            .min()
    }
}

impl Service for Scheduler {
    const NAME: &'static str = "scheduler";
    type Outcome = FireOutcome;

    /// Handle every tick due at `now`.
    async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<FireOutcome> {
        let o = self.fire_due(now).await?;
        if o.missed > 0 {
            tracing::warn!(
                missed = o.missed,
                caught_up = o.caught_up,
                "ticks were missed while no scheduler ran"
            );
        }
        Ok(o)
    }

    fn interval(&self) -> std::time::Duration {
        MAX_SLEEP
    }

    /// Until the next tick of any schedule.
    fn wait_after(&self, _: &FireOutcome, now: DateTime<Utc>) -> std::time::Duration {
        self.next_wake(now).map_or(MAX_SLEEP, |t| {
            (t - Utc::now()).to_std().unwrap_or_default().min(MAX_SLEEP)
        })
    }

    fn did_something(o: &FireOutcome) -> bool {
        *o != FireOutcome::default()
    }
}
