//! What the wait watch keeps in Redis, all under the hash tag `{<prefix>:waits}` (one slot):
//!
//! * `state`  HASH queue -> JSON [`Watch`]: the queue's episode and who was told. Kept in
//!   Redis, not in the leader's memory, so a new leader carries on where the old one stopped
//!   instead of telling everyone again.
//! * `events` LIST of JSON [`WaitEvent`], newest first, capped at [`EVENTS_KEPT`] (`LPUSH` +
//!   `LTRIM`): what the dashboard lists.
//! * `checks` HASH `rounds` (count) and `at_ms` (the last one): proof the watch is running,
//!   for the dashboard and for tests that wait for rounds instead of sleeping.
//!
//! Only the maintenance leader writes; anyone may read.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::queue::{QueueError, Queues};

/// Newest events kept.
pub const EVENTS_KEPT: usize = 1000;

/// One queue's episode, as kept in `state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Watch {
    /// Since when (ms) the queue has been over its threshold; `None` while it is under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_since_ms: Option<u64>,
    /// Whether this episode is to be told (decided once, when the cooldown allowed it):
    /// destinations not yet told are tried again at each check while it lasts.
    #[serde(default)]
    pub announced: bool,
    /// Destinations that were told "long wait" and not yet "recovered". Guards the pairing:
    /// a "recovered" notice goes exactly to these, and none of them gets a second "long
    /// wait" while it still believes the queue is over.
    #[serde(default)]
    pub told: BTreeSet<String>,
    /// When the last "long wait" notice was decided (ms; 0: never): the cooldown runs from it.
    #[serde(default)]
    pub last_alert_ms: u64,
    /// Start (ms) and longest wait (s) of the latest episode, for the "recovered" notice.
    #[serde(default)]
    pub episode_since_ms: u64,
    #[serde(default)]
    pub peak_secs: f64,
}

/// One thing that happened to a queue's wait, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitEvent {
    /// When, ms since the epoch.
    pub at_ms: u64,
    pub queue: String,
    /// `long_wait` (went over, or told late) or `recovered` (back under, or told late).
    pub kind: String,
    /// The oldest pending job's wait then, seconds.
    pub wait_secs: f64,
    pub threshold_secs: u64,
    /// Destinations told in this check (`webhook`, `email <address>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notified: Vec<String>,
    /// Destinations that failed in this check (tried again at the next).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    /// Why nobody was told, or anything else worth a line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The watch's rounds so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Checks {
    pub rounds: u64,
    /// When the last round ended, ms since the epoch (0: never).
    pub at_ms: u64,
}

/// The keys under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    state: String,
    events: String,
    checks: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        let key = |name: &str| format!("{{{prefix}:waits}}:{name}");
        Self {
            state: key("state"),
            events: key("events"),
            checks: key("checks"),
        }
    }
}

/// Every queue's watch (unreadable entries start afresh).
pub(super) async fn load(
    queues: &Queues,
    keys: &Keys,
) -> Result<HashMap<String, Watch>, QueueError> {
    let mut conn = queues.conn();
    let raw: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&keys.state)
        .query_async(&mut conn)
        .await?;
    Ok(raw
        .into_iter()
        .filter_map(|(q, json)| serde_json::from_str(&json).ok().map(|w| (q, w)))
        .collect())
}

/// Write the watches that changed, append `events` and count the round, in one round trip.
pub(super) async fn save(
    queues: &Queues,
    keys: &Keys,
    changed: &[(&str, &Watch)],
    events: &[WaitEvent],
    now_ms: u64,
) -> Result<(), QueueError> {
    let mut pipe = redis::pipe();
    for (queue, watch) in changed {
        pipe.hset(&keys.state, *queue, serde_json::to_string(watch)?)
            .ignore();
    }
    if !events.is_empty() {
        for e in events {
            pipe.lpush(&keys.events, serde_json::to_string(e)?).ignore();
        }
        pipe.ltrim(&keys.events, 0, EVENTS_KEPT as isize - 1)
            .ignore();
    }
    pipe.hincr(&keys.checks, "rounds", 1)
        .ignore()
        .hset(&keys.checks, "at_ms", now_ms)
        .ignore();
    let mut conn = queues.conn();
    let () = pipe.query_async(&mut conn).await?;
    Ok(())
}

/// Reads for operators: the events, the watches and the rounds. Cheap to clone.
#[derive(Clone)]
pub struct WaitLog {
    queues: Queues,
    keys: Keys,
}

impl WaitLog {
    /// The log under `queues`' prefix.
    pub fn new(queues: Queues) -> Self {
        let keys = Keys::new(&queues.settings().prefix);
        Self { queues, keys }
    }

    /// Up to `limit` events, newest first.
    pub async fn recent(&self, limit: usize) -> Result<Vec<WaitEvent>, QueueError> {
        let mut conn = self.queues.conn();
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(&self.keys.events)
            .arg(0)
            .arg(limit.clamp(1, EVENTS_KEPT) - 1)
            .query_async(&mut conn)
            .await?;
        Ok(raw
            .iter()
            .filter_map(|json| serde_json::from_str(json).ok())
            .collect())
    }

    /// Every queue's watch.
    pub async fn watches(&self) -> Result<HashMap<String, Watch>, QueueError> {
        load(&self.queues, &self.keys).await
    }

    /// The rounds so far.
    pub async fn checks(&self) -> Result<Checks, QueueError> {
        let mut conn = self.queues.conn();
        let (rounds, at_ms): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(&self.keys.checks)
            .arg("rounds")
            .arg("at_ms")
            .query_async(&mut conn)
            .await?;
        Ok(Checks {
            rounds: rounds.unwrap_or(0),
            at_ms: at_ms.unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_tag_and_watches_read_back() {
        let k = Keys::new("sb");
        for key in [&k.state, &k.events, &k.checks] {
            assert!(key.starts_with("{sb:waits}:"), "{key}");
        }
        let w = Watch {
            over_since_ms: Some(5),
            announced: true,
            told: ["webhook".to_owned()].into(),
            last_alert_ms: 5,
            episode_since_ms: 5,
            peak_secs: 61.5,
        };
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Watch>(&json).unwrap(), w);
        assert_eq!(
            serde_json::from_str::<Watch>("{}").unwrap(),
            Watch::default()
        );
    }
}
