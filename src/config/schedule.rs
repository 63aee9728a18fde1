//! `[scheduler]` and `[[schedule]]`: the recurring jobs and how ticks are claimed.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{timetable::Timetable, validate_name};

/// See `[scheduler]` in `config/default.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    /// A tick found due no later than this after its time fires as usual; older ticks were
    /// missed (downtime) and follow their schedule's `catch_up`.
    pub grace_secs: u64,
    /// How long the per-(schedule, tick) claim lives; must outlast any instance's lag.
    pub claim_ttl_secs: u64,
}

/// One `[[schedule]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Unique name; part of Redis keys and job ids.
    pub name: String,
    /// Cron expression with seconds: `sec min hour day month weekday [year]`.
    pub cron: String,
    /// IANA zone the expression is read in.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Job kind to enqueue.
    pub kind: String,
    /// The job's arguments (a table).
    #[serde(default = "empty_table")]
    pub args: serde_json::Value,
    /// Queue to enqueue on.
    pub queue: String,
    /// What a start after downtime does with the ticks it missed.
    #[serde(default)]
    pub catch_up: CatchUp,
}

/// Missed ticks after downtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Enqueue nothing for them; the next tick fires as usual.
    #[default]
    Skip,
    /// Enqueue one job for all of them.
    Once,
}

impl std::fmt::Display for CatchUp {
    /// The configuration's own word: `skip` or `once`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Skip => "skip",
            Self::Once => "once",
        })
    }
}

fn utc() -> String {
    "UTC".to_owned()
}

fn empty_table() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// One line per problem in the scheduler settings and schedules.
pub fn problems(settings: &SchedulerSettings, schedules: &[ScheduleSettings]) -> Vec<String> {
    let mut out = Vec::new();
    if settings.grace_secs < 1 {
        out.push("scheduler.grace_secs must be at least 1".to_owned());
    }
    if settings.claim_ttl_secs < settings.grace_secs.saturating_mul(2).max(60) {
        out.push(format!(
            "scheduler.claim_ttl_secs = {} must be at least 60 and twice grace_secs ({})",
            settings.claim_ttl_secs, settings.grace_secs
        ));
    }
    let mut names = HashSet::new();
    for (i, s) in schedules.iter().enumerate() {
        let at = format!("schedule[{i}] ({})", s.name);
        if validate_name(&s.name).is_err() {
            out.push(format!(
                "{at}: name must be letters, digits, '-', '_' or '.'"
            ));
        }
        if !names.insert(s.name.as_str()) {
            out.push(format!("{at}: name is used twice"));
        }
        if let Err(e) = Timetable::parse(&s.cron, &s.timezone) {
            out.push(format!("{at}: {e}"));
        }
        if s.kind.trim().is_empty() {
            out.push(format!("{at}: kind must not be empty"));
        }
        if !s.args.is_object() {
            out.push(format!("{at}: args must be a table"));
        }
        if validate_name(&s.queue).is_err() {
            out.push(format!(
                "{at}: queue {:?} must be letters, digits, '-', '_' or '.'",
                s.queue
            ));
        }
    }
    out
}
