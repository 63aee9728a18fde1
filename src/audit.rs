//! Who changed what: the audit trail of operator actions.
//!
//! Every change an operator makes — retry, forget, retry all, pause, continue, erase, and
//! later cancel and enqueue — from the dashboard, its API or the CLI is one [`Entry`]: who
//! (operator or key name), from where (client address, or the CLI's user and host), through
//! which door, what, on which queues and jobs, when.
//!
//! The trail is a capped Redis stream, `{<prefix>:audit}:log`, written with `XADD` only:
//! * every role that can change something (a dashboard on an `ingest`-only host, the CLI on
//!   an operator's laptop) already talks to Redis, while the database is only reachable from
//!   the hosts that run handlers;
//! * a stream is append-only by construction (entries get increasing ids and nothing edits
//!   them), and `MAXLEN ~` keeps it bounded (`audit.max_entries`) without a pruner;
//! * the same entry is also written to the log as one JSON line (target `audit`), so the log
//!   shipper keeps a copy for as long as the deployment keeps logs.

use serde::{Deserialize, Serialize};

use crate::queue::{QueueError, Queues, job};

/// Newest entries kept in the stream (approximate trim, `XADD MAXLEN ~`).
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;

/// One audited change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// Operator name, API key name, or `cli:<user>`.
    pub who: String,
    /// Client address (`ip:port`), or `<host>` for the CLI.
    pub from: String,
    /// `dashboard`, `api` or `cli`.
    pub via: String,
    /// `retry`, `forget`, `retry_all`, `pause`, `continue`, `erase`, ...
    pub action: String,
    /// Queues it touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// Jobs it touched (ids), when it named them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
    /// How many things it changed (jobs retried, rows anonymised, ...).
    pub count: u64,
    /// Anything else worth keeping (never a secret or personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Entry {
    /// An entry for `action` by `who` from `from` through `via`, now, touching nothing yet.
    pub fn new(who: impl Into<String>, from: impl Into<String>, via: &str, action: &str) -> Self {
        Self {
            at_ms: job::now_ms(),
            who: who.into(),
            from: from.into(),
            via: via.to_owned(),
            action: action.to_owned(),
            queues: Vec::new(),
            jobs: Vec::new(),
            count: 0,
            detail: None,
        }
    }

    /// The same entry naming `queues`.
    #[must_use]
    pub fn queues(mut self, queues: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.queues = queues.into_iter().map(Into::into).collect();
        self
    }

    /// The same entry naming `jobs`.
    #[must_use]
    pub fn jobs(mut self, jobs: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.jobs = jobs.into_iter().map(Into::into).collect();
        self
    }

    /// The same entry with `count` things changed.
    #[must_use]
    pub fn count(mut self, count: u64) -> Self {
        self.count = count;
        self
    }

    /// The same entry with `detail`.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Who runs the CLI: `cli:<user>` from `<host>`.
    pub fn cli(action: &str) -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        Self::new(format!("cli:{user}"), host, "cli", action)
    }
}

/// The audit trail under one key prefix. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    queues: Queues,
    key: String,
    max_entries: u64,
}

impl AuditLog {
    /// The trail under `queues`' prefix, keeping about `max_entries`.
    pub fn new(queues: Queues, max_entries: u64) -> Self {
        let key = key(&queues.settings().prefix);
        Self {
            queues,
            key,
            max_entries: max_entries.max(1),
        }
    }

    /// Append `entry` to the stream and write it to the log as one JSON line.
    pub async fn record(&self, entry: &Entry) -> Result<(), QueueError> {
        let json = serde_json::to_string(entry)?;
        tracing::info!(target: "audit", "{json}");
        let mut conn = self.queues.conn();
        let _: String = redis::cmd("XADD")
            .arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_entries)
            .arg("*")
            .arg("e")
            .arg(json)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Append `entry`; a failure is logged, never hides the change that was already made.
    pub async fn record_or_warn(&self, entry: &Entry) {
        if let Err(e) = self.record(entry).await {
            tracing::error!(error = %e, action = %entry.action, "writing the audit record failed");
        }
    }

    /// Up to `limit` entries, newest first, older than the stream id `before` when given.
    pub async fn recent(
        &self,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<(String, Entry)>, QueueError> {
        let mut conn = self.queues.conn();
        let end = before.map_or_else(|| "+".to_owned(), |b| format!("({b}"));
        let rows: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&self.key)
            .arg(end)
            .arg("-")
            .arg("COUNT")
            .arg(limit.clamp(1, 1000))
            .query_async(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, fields)| {
                let json = fields.into_iter().find(|(k, _)| k == "e")?.1;
                serde_json::from_str(&json).ok().map(|e| (id, e))
            })
            .collect())
    }
}

/// The stream's key under `prefix`.
pub fn key(prefix: &str) -> String {
    format!("{{{prefix}:audit}}:log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_without_empty_fields() {
        let e = Entry::new("alice", "10.0.0.7:5123", "dashboard", "retry")
            .queues(["webhooks"])
            .jobs(["01J"])
            .count(1);
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("detail"), "{json}");
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
        assert_eq!(key("sb"), "{sb:audit}:log");
    }
}
