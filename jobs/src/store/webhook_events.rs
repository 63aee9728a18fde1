//! `webhook_events`: one row per provider event processed: when it arrived, when it was
//! processed and how it ended (`processed`, `ignored` or `failed`; `ignored` with the error
//! `stale` is an event older than the state already stored, which changed nothing).

use sqlx::{AnyConnection, Row};

use super::{Dialect, Op, RowExt, Store, StoreError, now_ms, placeholders};

const BEGIN_MYSQL: &str = "INSERT IGNORE INTO webhook_events (provider, event_id, event_type, received_at_ms, status) VALUES ";
const BEGIN_SQLITE: &str = "INSERT OR IGNORE INTO webhook_events (provider, event_id, event_type, received_at_ms, status) VALUES ";

/// The begin of `n` events: `(?, ?, ?, ?, 'received')` each; a row already there stays.
fn begin_sql(dialect: Dialect, n: usize) -> String {
    let row = "(?, ?, ?, ?, 'received')";
    format!(
        "{}{}",
        dialect.pick(BEGIN_MYSQL, BEGIN_SQLITE),
        vec![row; n].join(", ")
    )
}

const FINISH_HEAD: &str = "INSERT INTO webhook_events (provider, event_id, event_type, received_at_ms, status, error, processed_at_ms) VALUES ";
const FINISH_MYSQL: &str = " ON DUPLICATE KEY UPDATE status = VALUES(status), error = VALUES(error), processed_at_ms = VALUES(processed_at_ms)";
const FINISH_SQLITE: &str = " ON CONFLICT (provider, event_id) DO UPDATE SET status = excluded.status, \
     error = excluded.error, processed_at_ms = excluded.processed_at_ms";

/// An event as its row begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub received_at_ms: i64,
}

/// How an event's processing ended, for [`finish_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub event: EventRow,
    /// `processed`, `ignored`, `failed` or (a transient failure) `received`.
    pub status: &'static str,
    pub error: Option<String>,
}

/// Record that processing of an event starts (once per event).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db webhook_events.begin", otel.kind = "client", db.operation.name = "webhook_events.begin"))]
pub async fn begin(
    store: &Store,
    provider: &str,
    event_id: &str,
    event_type: &str,
    received_at_ms: i64,
) -> Result<(), StoreError> {
    let sql = begin_sql(store.dialect(), 1);
    sqlx::query(&sql)
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
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db webhook_events.finish", otel.kind = "client", db.operation.name = "webhook_events.finish"))]
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

/// [`begin`] for many events in one statement on `conn` (a batch's transaction).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db webhook_events.begin_many", otel.kind = "client", db.operation.name = "webhook_events.begin_many"))]
pub async fn begin_many(
    conn: &mut AnyConnection,
    dialect: Dialect,
    events: &[&EventRow],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = begin_sql(dialect, events.len());
    let mut query = sqlx::query(&sql);
    for e in events {
        query = query
            .bind(&e.provider)
            .bind(&e.event_id)
            .bind(&e.event_type)
            .bind(e.received_at_ms);
    }
    query.execute(conn).await.op("webhook_events.begin_many")?;
    Ok(())
}

/// [`finish`] for many events in one statement on `conn` (a batch's transaction): each
/// row, begun earlier, takes its status, error and processed time (a row that is somehow
/// missing is written whole rather than lost).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db webhook_events.finish_many", otel.kind = "client", db.operation.name = "webhook_events.finish_many"))]
pub async fn finish_many(
    conn: &mut AnyConnection,
    dialect: Dialect,
    done: &[&Finished],
) -> Result<(), StoreError> {
    if done.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "{FINISH_HEAD}{}{}",
        placeholders(done.len(), 7),
        dialect.pick(FINISH_MYSQL, FINISH_SQLITE)
    );
    let now = now_ms();
    let mut query = sqlx::query(&sql);
    for f in done {
        query = query
            .bind(&f.event.provider)
            .bind(&f.event.event_id)
            .bind(&f.event.event_type)
            .bind(f.event.received_at_ms)
            .bind(f.status)
            .bind(&f.error)
            .bind(now);
    }
    query.execute(conn).await.op("webhook_events.finish_many")?;
    Ok(())
}

/// An event's (type, status, error, processed) as [`get`] reads them.
pub type EventState = (String, String, Option<String>, Option<i64>);

/// An event's row: (type, status, error, processed).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db webhook_events.get", otel.kind = "client", db.operation.name = "webhook_events.get"))]
pub async fn get(
    store: &Store,
    provider: &str,
    event_id: &str,
) -> Result<Option<EventState>, StoreError> {
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
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db webhook_events.prune", otel.kind = "client", db.operation.name = "webhook_events.prune"))]
pub async fn prune(store: &Store, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
    super::delete_older(store, "webhook_events", "received_at_ms", cutoff_ms, limit)
        .await
        .op("webhook_events.prune")
}

/// How many events ended with `status` (benchmarks wait on it).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db webhook_events.count_status", otel.kind = "client", db.operation.name = "webhook_events.count_status"))]
pub async fn count_status(store: &Store, status: &str) -> Result<i64, StoreError> {
    const OP: &str = "webhook_events.count_status";
    let row = sqlx::query("SELECT COUNT(*) FROM webhook_events WHERE status = ?")
        .bind(status)
        .fetch_one(store.pool())
        .await
        .op(OP)?;
    row.try_get(0).op(OP)
}
