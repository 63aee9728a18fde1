//! Where the database's time goes during `bench e2e`'s timed part, from the server's own
//! counters (`MariaDB`/`MySQL`: `information_schema.GLOBAL_STATUS`), as deltas per event:
//! statements the clients sent, commits, redo-log fsyncs and row writes. The bench's own
//! progress polls (one `SELECT` each) are left out of the statement count. Server-wide
//! counters: other clients of the same server count in them. `SQLite` keeps no such
//! counters, so its line has no profile.

use std::collections::BTreeMap;

use switchboard_jobs::store::{Store, probe};

/// The counters read, in the order printed.
const NAMES: [&str; 8] = [
    "Questions",
    "Com_commit",
    "Com_insert",
    "Com_update",
    "Com_select",
    "Com_stmt_prepare",
    "Innodb_os_log_fsyncs",
    "Innodb_rows_inserted",
];

/// The counters at the start of the timed part (empty for `SQLite`).
pub struct Counters(BTreeMap<String, u64>);

impl Counters {
    pub async fn read(store: &Store) -> anyhow::Result<Self> {
        Ok(Self(probe::server_counters(store, &NAMES).await?))
    }

    /// The growth since `self` per event, as a JSON object (`None` for `SQLite`); `polls`
    /// progress polls are taken off `Questions`.
    pub async fn delta(
        &self,
        store: &Store,
        events: u64,
        polls: u64,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let now = Self::read(store).await?;
        let mut out = serde_json::Map::new();
        for name in NAMES {
            let key = name.to_lowercase();
            let (then, at_end) = (self.0.get(&key), now.0.get(&key));
            let mut grown = at_end
                .copied()
                .unwrap_or(0)
                .saturating_sub(then.copied().unwrap_or(0));
            if matches!(name, "Questions" | "Com_select") {
                grown = grown.saturating_sub(polls);
            }
            out.insert(
                format!("{key}_per_event"),
                serde_json::json!(super::super::round(grown as f64 / events as f64)),
            );
        }
        Ok(Some(out.into()))
    }
}
