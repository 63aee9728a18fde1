//! `appointment_reminders`: one row per appointment and reminder kind, written by the
//! `notify.reminders` run that first finds the reminder due. Its unique key is what makes a
//! reminder count once across overlapping runs; `enqueued_at_ms` records that its
//! notifications reached the queue.

use sqlx::Row;

use super::{Op, Store, StoreError, now_ms};

const INSERT_MYSQL: &str = "INSERT IGNORE INTO appointment_reminders (appointment_uid, kind, created_at_ms) VALUES (?, ?, ?)";
const INSERT_SQLITE: &str = "INSERT OR IGNORE INTO appointment_reminders (appointment_uid, kind, created_at_ms) VALUES (?, ?, ?)";

/// What [`claim`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReminderClaim {
    /// This call wrote the row: the reminder is new.
    New,
    /// Another run wrote it, and its notifications may not be queued yet.
    Unfinished,
    /// Its notifications are on the queue already.
    Enqueued,
}

/// Record that the `kind` reminder of appointment `uid` is due. Of concurrent callers,
/// exactly one sees [`ReminderClaim::New`].
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointment_reminders.claim", otel.kind = "client", db.operation.name = "appointment_reminders.claim"))]
pub async fn claim(store: &Store, uid: &str, kind: &str) -> Result<ReminderClaim, StoreError> {
    const OP: &str = "appointment_reminders.claim";
    let inserted = sqlx::query(store.dialect().pick(INSERT_MYSQL, INSERT_SQLITE))
        .bind(uid)
        .bind(kind)
        .bind(now_ms())
        .execute(store.pool())
        .await
        .op(OP)?;
    if inserted.rows_affected() > 0 {
        return Ok(ReminderClaim::New);
    }
    let row = sqlx::query(
        "SELECT enqueued_at_ms FROM appointment_reminders WHERE appointment_uid = ? AND kind = ?",
    )
    .bind(uid)
    .bind(kind)
    .fetch_one(store.pool())
    .await
    .op(OP)?;
    Ok(match row.try_get::<Option<i64>, _>(0).op(OP)? {
        Some(_) => ReminderClaim::Enqueued,
        None => ReminderClaim::Unfinished,
    })
}

/// Record that the reminder's notifications are on the queue.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointment_reminders.mark_enqueued", otel.kind = "client", db.operation.name = "appointment_reminders.mark_enqueued"))]
pub async fn mark_enqueued(store: &Store, uid: &str, kind: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE appointment_reminders SET enqueued_at_ms = ? WHERE appointment_uid = ? AND kind = ? \
         AND enqueued_at_ms IS NULL",
    )
    .bind(now_ms())
    .bind(uid)
    .bind(kind)
    .execute(store.pool())
    .await.op("appointment_reminders.mark_enqueued")?;
    Ok(())
}

/// Delete up to `limit` rows written before `cutoff_ms` (their appointments are long past:
/// a reminder is claimed at most a day ahead); returns how many went.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointment_reminders.prune", otel.kind = "client", db.operation.name = "appointment_reminders.prune"))]
pub async fn prune(store: &Store, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
    super::delete_older(
        store,
        "appointment_reminders",
        "created_at_ms",
        cutoff_ms,
        limit,
    )
    .await
    .op("appointment_reminders.prune")
}
