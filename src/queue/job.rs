//! The wire form of a job. An item on the queue is `<id> <envelope JSON>`: the id up front
//! lets Lua find it with one string search instead of decoding JSON per job.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Everything stored with a job besides its id. Field names are short because every byte
/// is paid once per job in Redis memory and on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// Times the job was handed back because the worker holding it vanished (crash, OOM
    /// kill, lost host). It comes first in the JSON because the rescue script counts it
    /// with a string edit at the start of the object.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub resc: u32,
    /// Set by the rescue script when `resc` passed the limit and the job was set aside in
    /// the dead set as poisonous.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
    /// Job kind, e.g. `webhook.stripe`.
    pub kind: String,
    /// Version of the kind's argument shape.
    #[serde(default = "one")]
    pub v: u16,
    /// The sequence key: jobs of one queue with the same key run one at a time, in enqueue
    /// order. Kept before `args` so the rescue script finds it without decoding the args.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sq: Option<String>,
    /// The tenant whose turn serves the job (round robin over tenants with ready work). Kept
    /// before `args`, like `sq`, for the scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tn: Option<String>,
    /// `high` or `low`; absent means normal. Kept before `args` for the scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr: Option<switchboard_jobs::Priority>,
    /// Expiry, ms since the epoch: a job not started by then is recorded as expired and
    /// never runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// The typed arguments, kept as raw JSON until the handler decodes them. With payload
    /// keys configured, a JSON string `"$sealed:v1:<key id>:<data>"` instead
    /// (`crate::queue::seal`); read them through `Queues::open_args`.
    pub args: Box<RawValue>,
    /// Attempts already made (0 before the first run).
    #[serde(default)]
    pub attempt: u32,
    /// Attempts allowed for this job; absent means the supervisor's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Enqueue time, microseconds since the epoch (wait-time metrics).
    pub enq_us: u64,
    /// Earliest start, ms since the epoch, for scheduled jobs and retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<u64>,
    /// The dedupe key it was enqueued with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<String>,
    /// Last error message, set when an attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    /// When the last attempt failed, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<u64>,
    /// When the first attempt failed, ms since the epoch: a kind's retry budget counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<u64>,
    /// Times the job snoozed (rate limits, an open circuit); no attempt was used for them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub snz: u32,
    /// When it first snoozed, ms since the epoch: `queue.max_snooze_secs` counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_snoozed_at: Option<u64>,
    /// W3C `traceparent` of the span that enqueued it: the job's span continues that trace
    /// (`switchboard_jobs::trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tp: Option<String>,
    /// The ingest request the job descends from, for its log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
}

const fn one() -> u16 {
    1
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
const fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Envelope {
    /// A new job of `kind` (argument shape `version`) carrying `args`, enqueued now, not yet
    /// attempted. Producers set the other fields (`max`, `run_at`, `unique`) as asked.
    pub fn new(kind: impl Into<String>, version: u16, args: Box<RawValue>) -> Self {
        Self {
            resc: 0,
            lost: false,
            kind: kind.into(),
            v: version,
            sq: None,
            tn: None,
            pr: None,
            exp: None,
            args,
            attempt: 0,
            max: None,
            enq_us: now_us(),
            run_at: None,
            unique: None,
            err: None,
            failed_at: None,
            first_failed_at: None,
            snz: 0,
            first_snoozed_at: None,
            tp: None,
            rid: None,
        }
    }

    /// When the job became (or becomes) ready to run, in microseconds since the epoch.
    pub fn ready_at_us(&self) -> u64 {
        self.run_at
            .map_or(self.enq_us, |ms| self.enq_us.max(ms * 1000))
    }
}

/// A job as fetched: its id, decoded envelope and the exact item bytes Redis holds
/// (needed to settle it without re-encoding).
#[derive(Debug, Clone)]
pub struct Job {
    /// The job id.
    pub id: std::sync::Arc<str>,
    /// Queue it came from.
    pub queue: std::sync::Arc<str>,
    /// Decoded envelope.
    pub envelope: Envelope,
    /// The item as stored: `<id> <json>`.
    pub item: std::sync::Arc<str>,
}

/// An item that is not `<id> <json>` with a valid envelope.
#[derive(Debug, thiserror::Error)]
#[error("malformed queue item: {0}")]
pub struct MalformedItem(pub String);

/// Encode an item.
pub fn encode(id: &str, envelope: &Envelope) -> String {
    let json = serde_json::to_string(envelope).expect("an envelope always serializes");
    let mut item = String::with_capacity(id.len() + 1 + json.len());
    item.push_str(id);
    item.push(' ');
    item.push_str(&json);
    item
}

/// Split an item into its id and envelope.
pub fn decode(item: &str) -> Result<(&str, Envelope), MalformedItem> {
    let (id, json) = item
        .split_once(' ')
        .ok_or_else(|| MalformedItem("no id separator".into()))?;
    let envelope = serde_json::from_str(json).map_err(|e| MalformedItem(e.to_string()))?;
    Ok((id, envelope))
}

/// A new job id: time-ordered and unique across processes (ULID).
pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Now, ms since the epoch.
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// Now, µs since the epoch.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_round_trip() {
        let env = Envelope {
            resc: 0,
            lost: false,
            kind: "noop".into(),
            v: 1,
            sq: Some("booking:1".into()),
            tn: Some("7".into()),
            pr: Some(switchboard_jobs::Priority::High),
            exp: None,
            args: RawValue::from_string(r#"{"a":1}"#.into()).unwrap(),
            attempt: 2,
            max: Some(5),
            enq_us: 1_000_000,
            run_at: None,
            unique: None,
            err: Some("boom".into()),
            failed_at: Some(3),
            first_failed_at: Some(2),
            snz: 3,
            first_snoozed_at: Some(1),
            tp: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            rid: Some("req-1".into()),
        };
        let item = encode("01ABC", &env);
        assert!(item.starts_with("01ABC {"));
        let (id, back) = decode(&item).unwrap();
        assert_eq!(id, "01ABC");
        assert_eq!(back.attempt, 2);
        assert_eq!(back.args.get(), r#"{"a":1}"#);
        assert_eq!(back.err.as_deref(), Some("boom"));
        assert_eq!(
            (back.tp, back.rid.as_deref()),
            (env.tp.clone(), Some("req-1"))
        );
    }

    #[test]
    fn malformed_items_are_errors() {
        assert!(decode("no-space").is_err());
        assert!(decode("id {not json").is_err());
    }
}
