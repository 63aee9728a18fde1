//! `usage_events`: call minutes to bill, one row per call (reported to Stripe by
//! `billing.report_usage`).

use sqlx::{AnyConnection, Row};

use super::{Dialect, Op, RowExt, Store, StoreError, now_ms, placeholders};

const INSERT_MYSQL: &str =
    "INSERT IGNORE INTO usage_events (call_id, company_id, seconds, created_at_ms) VALUES ";
const INSERT_SQLITE: &str =
    "INSERT OR IGNORE INTO usage_events (call_id, company_id, seconds, created_at_ms) VALUES ";

/// The insert of `n` rows; a call already recorded (or named twice) keeps its first row.
fn insert_sql(dialect: Dialect, n: usize) -> String {
    format!(
        "{}{}",
        dialect.pick(INSERT_MYSQL, INSERT_SQLITE),
        placeholders(n, 4)
    )
}

/// Record a call's billable seconds once; returns whether this call was new.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.record", otel.kind = "client", db.operation.name = "usage_events.record"))]
pub async fn record(
    store: &Store,
    call_id: &str,
    company_id: i64,
    seconds: i64,
) -> Result<bool, StoreError> {
    let sql = insert_sql(store.dialect(), 1);
    let done = sqlx::query(&sql)
        .bind(call_id)
        .bind(company_id)
        .bind(seconds)
        .bind(now_ms())
        .execute(store.pool())
        .await
        .op("usage_events.record")?;
    Ok(done.rows_affected() > 0)
}

/// [`record`] for many calls, `(call_id, company_id, seconds)`, in one statement on `conn`
/// (a batch's transaction).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.record_many", otel.kind = "client", db.operation.name = "usage_events.record_many"))]
pub async fn record_many(
    conn: &mut AnyConnection,
    dialect: Dialect,
    usage: &[(&str, i64, i64)],
) -> Result<(), StoreError> {
    if usage.is_empty() {
        return Ok(());
    }
    let sql = insert_sql(dialect, usage.len());
    let now = now_ms();
    let mut query = sqlx::query(&sql);
    for (call_id, company_id, seconds) in usage {
        query = query
            .bind(*call_id)
            .bind(*company_id)
            .bind(*seconds)
            .bind(now);
    }
    query.execute(conn).await.op("usage_events.record_many")?;
    Ok(())
}

/// The billable seconds of a call and whether they were reported.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.get", otel.kind = "client", db.operation.name = "usage_events.get"))]
pub async fn get(store: &Store, call_id: &str) -> Result<Option<(i64, Option<i64>)>, StoreError> {
    const OP: &str = "usage_events.get";
    let row = sqlx::query("SELECT seconds, reported_at_ms FROM usage_events WHERE call_id = ?")
        .bind(call_id)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
        .op(OP)
}

/// Record that the call's usage reached Stripe.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.mark_reported", otel.kind = "client", db.operation.name = "usage_events.mark_reported"))]
pub async fn mark_reported(store: &Store, call_id: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE usage_events SET reported_at_ms = ? WHERE call_id = ? AND reported_at_ms IS NULL",
    )
    .bind(now_ms())
    .bind(call_id)
    .execute(store.pool())
    .await
    .op("usage_events.mark_reported")?;
    Ok(())
}

/// When the call's usage was recorded (ms since the epoch): a stable time for the meter
/// event, the same on every retry.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.recorded_at", otel.kind = "client", db.operation.name = "usage_events.recorded_at"))]
pub async fn recorded_at(store: &Store, call_id: &str) -> Result<Option<i64>, StoreError> {
    const OP: &str = "usage_events.recorded_at";
    let row = sqlx::query("SELECT created_at_ms FROM usage_events WHERE call_id = ?")
        .bind(call_id)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.map(|r| r.try_get(0)).transpose().op(OP)
}

/// An ended call whose usage has not reached Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreported {
    pub call_id: String,
    pub company_id: i64,
    /// The recorded billable seconds; `None` when the call has no `usage_events` row yet.
    pub seconds: Option<i64>,
    pub duration_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
}

/// Up to `limit` calls that ended (they have an end time or a duration) no later than
/// `ended_before_ms` (the row's last update when Retell gave no end time), whose company
/// bills through Stripe, and whose usage is unrecorded or unreported (and not refused for
/// good: see [`mark_unbillable`]); oldest call first.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.unreported", otel.kind = "client", db.operation.name = "usage_events.unreported"))]
pub async fn unreported(
    store: &Store,
    ended_before_ms: i64,
    limit: i64,
) -> Result<Vec<Unreported>, StoreError> {
    const OP: &str = "usage_events.unreported";
    let rows = sqlx::query(
        "SELECT c.call_id, c.company_id, u.seconds, c.duration_ms, c.started_at_ms, c.ended_at_ms \
         FROM calls c JOIN companies co ON co.id = c.company_id \
         LEFT JOIN usage_events u ON u.call_id = c.call_id \
         WHERE (c.ended_at_ms IS NOT NULL OR c.duration_ms IS NOT NULL) AND u.reported_at_ms IS NULL \
         AND u.failed_at_ms IS NULL \
         AND co.stripe_customer_id IS NOT NULL AND COALESCE(c.ended_at_ms, c.updated_at_ms) <= ? \
         ORDER BY c.id LIMIT ?",
    )
    .bind(ended_before_ms)
    .bind(limit)
    .fetch_all(store.pool())
    .await.op(OP)?;
    rows.iter()
        .map(|r| {
            Ok(Unreported {
                call_id: r.text(0)?,
                company_id: r.try_get(1)?,
                seconds: r.try_get(2)?,
                duration_ms: r.try_get(3)?,
                started_at_ms: r.try_get(4)?,
                ended_at_ms: r.try_get(5)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .op(OP)
}

/// Fix the meter event time of a call's report: `candidate_ms` unless an earlier attempt
/// fixed one that is still at or after `usable_after_ms`; returns the time to send. Every
/// attempt then sends the same event, as its `Idempotency-Key` requires. Dying before or
/// after this write is harmless: the next attempt reads what was fixed, or fixes it.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.fix_billed_at", otel.kind = "client", db.operation.name = "usage_events.fix_billed_at"))]
pub async fn fix_billed_at(
    store: &Store,
    call_id: &str,
    candidate_ms: i64,
    usable_after_ms: i64,
) -> Result<i64, StoreError> {
    const OP: &str = "usage_events.fix_billed_at";
    sqlx::query(
        "UPDATE usage_events SET billed_at_ms = ? WHERE call_id = ? \
         AND (billed_at_ms IS NULL OR billed_at_ms < ?)",
    )
    .bind(candidate_ms)
    .bind(call_id)
    .bind(usable_after_ms)
    .execute(store.pool())
    .await
    .op(OP)?;
    let row = sqlx::query("SELECT billed_at_ms FROM usage_events WHERE call_id = ?")
        .bind(call_id)
        .fetch_one(store.pool())
        .await
        .op(OP)?;
    row.try_get::<Option<i64>, _>(0)
        .op(OP)
        .map(|t| t.unwrap_or(candidate_ms))
}

/// Stripe refused the call's report for good: record why, so reconciliation stops offering
/// it and finance can see it ([`unbillable`]).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.mark_unbillable", otel.kind = "client", db.operation.name = "usage_events.mark_unbillable"))]
pub async fn mark_unbillable(store: &Store, call_id: &str, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE usage_events SET failed_at_ms = ?, report_error = ? WHERE call_id = ? AND reported_at_ms IS NULL",
    )
    .bind(now_ms())
    .bind(error.chars().take(500).collect::<String>())
    .bind(call_id)
    .execute(store.pool())
    .await
    .op("usage_events.mark_unbillable")?;
    Ok(())
}

/// How the report of a call ended badly: when, and Stripe's reason; `None` when it did not.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.unbillable_reason", otel.kind = "client", db.operation.name = "usage_events.unbillable_reason"))]
pub async fn unbillable_reason(
    store: &Store,
    call_id: &str,
) -> Result<Option<(i64, String)>, StoreError> {
    const OP: &str = "usage_events.unbillable_reason";
    let row = sqlx::query(
        "SELECT failed_at_ms, report_error FROM usage_events WHERE call_id = ? AND failed_at_ms IS NOT NULL",
    )
    .bind(call_id)
    .fetch_optional(store.pool())
    .await
    .op(OP)?;
    row.map(|r| Ok::<_, sqlx::Error>((r.try_get(0)?, r.opt_text(1)?.unwrap_or_default())))
        .transpose()
        .op(OP)
}

/// How many calls' usage Stripe refused for good (never billed; for finance).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.unbillable", otel.kind = "client", db.operation.name = "usage_events.unbillable"))]
pub async fn unbillable(store: &Store) -> Result<i64, StoreError> {
    const OP: &str = "usage_events.unbillable";
    let row = sqlx::query("SELECT COUNT(*) FROM usage_events WHERE failed_at_ms IS NOT NULL AND reported_at_ms IS NULL")
        .fetch_one(store.pool())
        .await
        .op(OP)?;
    row.try_get(0).op(OP)
}

/// How many calls of a company have usage recorded (tests and benchmarks check nothing is
/// recorded twice).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db usage_events.count", otel.kind = "client", db.operation.name = "usage_events.count"))]
pub async fn count(store: &Store, company_id: i64) -> Result<i64, StoreError> {
    const OP: &str = "usage_events.count";
    let row = sqlx::query("SELECT COUNT(*) FROM usage_events WHERE company_id = ?")
        .bind(company_id)
        .fetch_one(store.pool())
        .await
        .op(OP)?;
    row.try_get(0).op(OP)
}
