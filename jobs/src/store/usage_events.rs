//! `usage_events`: call minutes to bill, one row per call (reported to Stripe by
//! `billing.report_usage`).

use sqlx::Row;

use super::{Store, StoreError, now_ms};

const INSERT_MYSQL: &str = "INSERT IGNORE INTO usage_events (call_id, company_id, seconds, created_at_ms) VALUES (?, ?, ?, ?)";
const INSERT_SQLITE: &str = "INSERT OR IGNORE INTO usage_events (call_id, company_id, seconds, created_at_ms) VALUES (?, ?, ?, ?)";

/// Record a call's billable seconds once; returns whether this call was new.
pub async fn record(
    store: &Store,
    call_id: &str,
    company_id: i64,
    seconds: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(store.dialect().pick(INSERT_MYSQL, INSERT_SQLITE))
        .bind(call_id)
        .bind(company_id)
        .bind(seconds)
        .bind(now_ms())
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The billable seconds of a call and whether they were reported.
pub async fn get(store: &Store, call_id: &str) -> Result<Option<(i64, Option<i64>)>, StoreError> {
    let row = sqlx::query("SELECT seconds, reported_at_ms FROM usage_events WHERE call_id = ?")
        .bind(call_id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row
        .map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()?)
}

/// Record that the call's usage reached Stripe.
pub async fn mark_reported(store: &Store, call_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE usage_events SET reported_at_ms = ? WHERE call_id = ? AND reported_at_ms IS NULL",
    )
    .bind(now_ms())
    .bind(call_id)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// When the call's usage was recorded (ms since the epoch): a stable time for the meter
/// event, the same on every retry.
pub async fn recorded_at(store: &Store, call_id: &str) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT created_at_ms FROM usage_events WHERE call_id = ?")
        .bind(call_id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}
