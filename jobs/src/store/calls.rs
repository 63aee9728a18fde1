//! `calls`: one row per Retell call, merged from `call_started`, `call_ended` and
//! `call_analyzed` in whatever order they arrive: every column keeps the first non-null
//! value it gets, and `stage` only moves forward.

use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Dialect, Op, RowExt, Store, StoreError, now_ms, placeholders};

/// Stage of a call, in the order Retell reports them.
pub const STAGE_STARTED: i64 = 1;
pub const STAGE_ENDED: i64 = 2;
pub const STAGE_ANALYZED: i64 = 3;

/// A call: as stored, or as one event knows it for [`upsert`] (where `None` leaves a column
/// as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    pub call_id: String,
    pub company_id: i64,
    pub branch_id: i64,
    pub customer_id: Option<i64>,
    pub from_number: String,
    pub to_number: String,
    pub stage: i64,
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub duration_ms: Option<i64>,
    pub disconnection_reason: Option<String>,
    pub summary: Option<String>,
    pub sentiment: Option<String>,
    pub successful: Option<bool>,
    pub analysis_json: Option<String>,
}

const COLUMNS: &str = "call_id, company_id, branch_id, customer_id, from_number, to_number, stage, started_at_ms, \
     ended_at_ms, duration_ms, disconnection_reason, summary, sentiment, successful, analysis_json";

const UPSERT_HEAD: &str = "INSERT INTO calls (call_id, company_id, branch_id, customer_id, from_number, to_number, stage, \
     started_at_ms, ended_at_ms, duration_ms, disconnection_reason, summary, sentiment, successful, analysis_json, updated_at_ms) \
     VALUES ";
/// Placeholders per row of [`UPSERT_HEAD`].
const UPSERT_WIDTH: usize = 16;
const UPSERT_MYSQL: &str = " ON DUPLICATE KEY UPDATE \
     customer_id = COALESCE(customer_id, VALUES(customer_id)), stage = GREATEST(stage, VALUES(stage)), \
     started_at_ms = COALESCE(started_at_ms, VALUES(started_at_ms)), ended_at_ms = COALESCE(ended_at_ms, VALUES(ended_at_ms)), \
     duration_ms = COALESCE(duration_ms, VALUES(duration_ms)), \
     disconnection_reason = COALESCE(disconnection_reason, VALUES(disconnection_reason)), \
     summary = COALESCE(summary, VALUES(summary)), sentiment = COALESCE(sentiment, VALUES(sentiment)), \
     successful = COALESCE(successful, VALUES(successful)), analysis_json = COALESCE(analysis_json, VALUES(analysis_json)), \
     updated_at_ms = VALUES(updated_at_ms)";
const UPSERT_SQLITE: &str = " ON CONFLICT (call_id) DO UPDATE SET \
     customer_id = COALESCE(calls.customer_id, excluded.customer_id), stage = MAX(calls.stage, excluded.stage), \
     started_at_ms = COALESCE(calls.started_at_ms, excluded.started_at_ms), \
     ended_at_ms = COALESCE(calls.ended_at_ms, excluded.ended_at_ms), \
     duration_ms = COALESCE(calls.duration_ms, excluded.duration_ms), \
     disconnection_reason = COALESCE(calls.disconnection_reason, excluded.disconnection_reason), \
     summary = COALESCE(calls.summary, excluded.summary), sentiment = COALESCE(calls.sentiment, excluded.sentiment), \
     successful = COALESCE(calls.successful, excluded.successful), \
     analysis_json = COALESCE(calls.analysis_json, excluded.analysis_json), updated_at_ms = excluded.updated_at_ms";

/// The upsert of `n` rows: rows of one call merge in the order given, as `n` single upserts
/// would.
fn upsert_sql(dialect: Dialect, n: usize) -> String {
    format!(
        "{UPSERT_HEAD}{}{}",
        placeholders(n, UPSERT_WIDTH),
        dialect.pick(UPSERT_MYSQL, UPSERT_SQLITE)
    )
}

/// Insert or merge one event's view of a call.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db calls.upsert", otel.kind = "client", db.operation.name = "calls.upsert"))]
pub async fn upsert(store: &Store, c: &Call) -> Result<(), StoreError> {
    let sql = upsert_sql(store.dialect(), 1);
    bind_call(sqlx::query(&sql), c, now_ms())
        .execute(store.pool())
        .await
        .op("calls.upsert")?;
    Ok(())
}

/// Insert or merge many events' views of calls, in one statement on `conn` (a batch's
/// transaction), in the order given.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db calls.upsert_many", otel.kind = "client", db.operation.name = "calls.upsert_many"))]
pub async fn upsert_many(
    conn: &mut AnyConnection,
    dialect: Dialect,
    calls: &[&Call],
) -> Result<(), StoreError> {
    if calls.is_empty() {
        return Ok(());
    }
    let sql = upsert_sql(dialect, calls.len());
    let now = now_ms();
    let mut query = sqlx::query(&sql);
    for c in calls {
        query = bind_call(query, c, now);
    }
    query.execute(conn).await.op("calls.upsert_many")?;
    Ok(())
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Bind one row of the upsert.
fn bind_call<'q>(query: Query<'q>, c: &'q Call, now: i64) -> Query<'q> {
    query
        .bind(&c.call_id)
        .bind(c.company_id)
        .bind(c.branch_id)
        .bind(c.customer_id)
        .bind(&c.from_number)
        .bind(&c.to_number)
        .bind(c.stage)
        .bind(c.started_at_ms)
        .bind(c.ended_at_ms)
        .bind(c.duration_ms)
        .bind(&c.disconnection_reason)
        .bind(&c.summary)
        .bind(&c.sentiment)
        .bind(c.successful.map(i64::from))
        .bind(&c.analysis_json)
        .bind(now)
}

fn call(row: &AnyRow) -> Result<Call, sqlx::Error> {
    Ok(Call {
        call_id: row.text(0)?,
        company_id: row.try_get(1)?,
        branch_id: row.try_get(2)?,
        customer_id: row.try_get(3)?,
        from_number: row.text(4)?,
        to_number: row.text(5)?,
        stage: row.try_get(6)?,
        started_at_ms: row.try_get(7)?,
        ended_at_ms: row.try_get(8)?,
        duration_ms: row.try_get(9)?,
        disconnection_reason: row.opt_text(10)?,
        summary: row.opt_text(11)?,
        sentiment: row.opt_text(12)?,
        successful: row.try_get::<Option<i64>, _>(13)?.map(|v| v != 0),
        analysis_json: row.opt_text(14)?,
    })
}

/// A call by Retell's id.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db calls.get", otel.kind = "client", db.operation.name = "calls.get"))]
pub async fn get(store: &Store, call_id: &str) -> Result<Option<Call>, StoreError> {
    const OP: &str = "calls.get";
    let sql = format!("SELECT {COLUMNS} FROM calls WHERE call_id = ?");
    let row = sqlx::query(&sql)
        .bind(call_id)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.as_ref().map(call).transpose().op(OP)
}

/// Number of call rows of a company.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db calls.count", otel.kind = "client", db.operation.name = "calls.count"))]
pub async fn count(store: &Store, company_id: i64) -> Result<i64, StoreError> {
    const OP: &str = "calls.count";
    let row = sqlx::query("SELECT COUNT(*) FROM calls WHERE company_id = ?")
        .bind(company_id)
        .fetch_one(store.pool())
        .await
        .op(OP)?;
    row.try_get(0).op(OP)
}
