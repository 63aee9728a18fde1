//! `webhook_events`: one row per provider event processed: when it arrived, when it was
//! processed and how it ended (`processed`, `ignored` or `failed`; `ignored` with the error
//! `stale` is an event older than the state already stored, which changed nothing).

use sqlx::Row;

use super::{Op, RowExt, Store, StoreError, now_ms};

const BEGIN_MYSQL: &str = "INSERT IGNORE INTO webhook_events (provider, event_id, event_type, received_at_ms, status) VALUES (?, ?, ?, ?, 'received')";
const BEGIN_SQLITE: &str = "INSERT OR IGNORE INTO webhook_events (provider, event_id, event_type, received_at_ms, status) VALUES (?, ?, ?, ?, 'received')";

/// Record that processing of an event starts (once per event).
pub async fn begin(
    store: &Store,
    provider: &str,
    event_id: &str,
    event_type: &str,
    received_at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(store.dialect().pick(BEGIN_MYSQL, BEGIN_SQLITE))
        .bind(provider)
        .bind(event_id)
        .bind(event_type)
        .bind(received_at_ms)
        .execute(store.pool())
        .await
        .op("webhook_events.begin")?;
    Ok(())
}

/// Record how processing ended.
pub async fn finish(
    store: &Store,
    provider: &str,
    event_id: &str,
    status: &str,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhook_events SET status = ?, error = ?, processed_at_ms = ? WHERE provider = ? AND event_id = ?")
        .bind(status)
        .bind(error)
        .bind(now_ms())
        .bind(provider)
        .bind(event_id)
        .execute(store.pool())
        .await.op("webhook_events.finish")?;
    Ok(())
}

/// An event's row: (type, status, error, processed).
pub async fn get(
    store: &Store,
    provider: &str,
    event_id: &str,
) -> Result<Option<(String, String, Option<String>, Option<i64>)>, StoreError> {
    const OP: &str = "webhook_events.get";
    let row = sqlx::query("SELECT event_type, status, error, processed_at_ms FROM webhook_events WHERE provider = ? AND event_id = ?")
        .bind(provider)
        .bind(event_id)
        .fetch_optional(store.pool())
        .await.op(OP)?;
    row.map(|r| Ok::<_, sqlx::Error>((r.text(0)?, r.text(1)?, r.opt_text(2)?, r.try_get(3)?)))
        .transpose()
        .op(OP)
}

/// Delete up to `limit` rows received before `cutoff_ms`; returns how many went. Callers
/// repeat until fewer than `limit` go, so no single statement holds locks for long.
pub async fn prune(store: &Store, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
    super::delete_older(store, "webhook_events", "received_at_ms", cutoff_ms, limit)
        .await
        .op("webhook_events.prune")
}
