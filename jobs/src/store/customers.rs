//! `customers`: callers and attendees, one row per phone number within a company.

use std::collections::HashMap;

use sqlx::{AnyConnection, Row};

use super::{Dialect, Op, RowExt, Store, StoreError, now_ms, placeholders};

const UPSERT_HEAD: &str =
    "INSERT INTO customers (company_id, phone, name, email, created_at_ms) VALUES ";
const UPSERT_MYSQL: &str = " ON DUPLICATE KEY UPDATE name = COALESCE(VALUES(name), name), email = COALESCE(VALUES(email), email)";
const UPSERT_SQLITE: &str = " ON CONFLICT (company_id, phone) DO UPDATE SET name = COALESCE(excluded.name, customers.name), \
     email = COALESCE(excluded.email, customers.email)";

/// The upsert of `n` rows (rows of one customer merge in the order given).
fn upsert_sql(dialect: Dialect, n: usize) -> String {
    format!(
        "{UPSERT_HEAD}{}{}",
        placeholders(n, 5),
        dialect.pick(UPSERT_MYSQL, UPSERT_SQLITE)
    )
}

/// A caller as one event knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub company_id: i64,
    pub phone: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// The customer with `phone` in `company_id`, created when new; a known name or email
/// fills in what was missing. Returns the id.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db customers.upsert", otel.kind = "client", db.operation.name = "customers.upsert"))]
pub async fn upsert(
    store: &Store,
    company_id: i64,
    phone: &str,
    name: Option<&str>,
    email: Option<&str>,
) -> Result<i64, StoreError> {
    const OP: &str = "customers.upsert";
    let sql = upsert_sql(store.dialect(), 1);
    sqlx::query(&sql)
        .bind(company_id)
        .bind(phone)
        .bind(name)
        .bind(email)
        .bind(now_ms())
        .execute(store.pool())
        .await
        .op(OP)?;
    let row = sqlx::query("SELECT id FROM customers WHERE company_id = ? AND phone = ?")
        .bind(company_id)
        .bind(phone)
        .fetch_one(store.pool())
        .await
        .op(OP)?;
    row.try_get(0).op(OP)
}

/// [`upsert`] for many callers in two statements on `conn` (a batch's transaction): the
/// upsert, in the order given, then their ids, by (company, phone).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db customers.upsert_many", otel.kind = "client", db.operation.name = "customers.upsert_many"))]
pub async fn upsert_many(
    conn: &mut AnyConnection,
    dialect: Dialect,
    callers: &[&Caller],
) -> Result<HashMap<(i64, String), i64>, StoreError> {
    const OP: &str = "customers.upsert_many";
    if callers.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = upsert_sql(dialect, callers.len());
    let now = now_ms();
    let mut query = sqlx::query(&sql);
    for c in callers {
        query = query
            .bind(c.company_id)
            .bind(&c.phone)
            .bind(&c.name)
            .bind(&c.email)
            .bind(now);
    }
    query.execute(&mut *conn).await.op(OP)?;
    // Company and phone each in a list: rows of other pairs may come too, and are dropped.
    let mut companies: Vec<i64> = callers.iter().map(|c| c.company_id).collect();
    companies.sort_unstable();
    companies.dedup();
    let mut phones: Vec<&str> = callers.iter().map(|c| c.phone.as_str()).collect();
    phones.sort_unstable();
    phones.dedup();
    let sql = format!(
        "SELECT id, company_id, phone FROM customers WHERE company_id IN ({}) AND phone IN ({})",
        vec!["?"; companies.len()].join(", "),
        vec!["?"; phones.len()].join(", ")
    );
    let mut query = sqlx::query(&sql);
    for c in &companies {
        query = query.bind(*c);
    }
    for p in &phones {
        query = query.bind(*p);
    }
    let rows = query.fetch_all(&mut *conn).await.op(OP)?;
    let mut ids = HashMap::with_capacity(rows.len());
    for r in rows {
        let (id, company, phone): (i64, i64, String) = (
            r.try_get(0).op(OP)?,
            r.try_get(1).op(OP)?,
            r.text(2).op(OP)?,
        );
        ids.insert((company, phone), id);
    }
    Ok(ids)
}

/// The first customer of `company_id` with `email` (case-insensitive), for attendees who
/// gave no phone number.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db customers.find_by_email", otel.kind = "client", db.operation.name = "customers.find_by_email"))]
pub async fn find_by_email(
    store: &Store,
    company_id: i64,
    email: &str,
) -> Result<Option<i64>, StoreError> {
    const OP: &str = "customers.find_by_email";
    let row = sqlx::query(
        "SELECT id FROM customers WHERE company_id = ? AND LOWER(email) = LOWER(?) ORDER BY id",
    )
    .bind(company_id)
    .bind(email)
    .fetch_optional(store.pool())
    .await
    .op(OP)?;
    row.map(|r| r.try_get(0)).transpose().op(OP)
}

/// A customer's (name, email, phone) as [`get`] reads them.
pub type CustomerRow = (String, Option<String>, Option<String>);

/// A customer's name and email.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db customers.get", otel.kind = "client", db.operation.name = "customers.get"))]
pub async fn get(store: &Store, id: i64) -> Result<Option<CustomerRow>, StoreError> {
    const OP: &str = "customers.get";
    let row = sqlx::query("SELECT phone, name, email FROM customers WHERE id = ?")
        .bind(id)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.map(|r| Ok::<_, sqlx::Error>((r.text(0)?, r.opt_text(1)?, r.opt_text(2)?)))
        .transpose()
        .op(OP)
}

/// How many customers a company has (tests check nothing is duplicated).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db customers.count", otel.kind = "client", db.operation.name = "customers.count"))]
pub async fn count(store: &Store, company_id: i64) -> Result<i64, StoreError> {
    const OP: &str = "customers.count";
    let row = sqlx::query("SELECT COUNT(*) FROM customers WHERE company_id = ?")
        .bind(company_id)
        .fetch_one(store.pool())
        .await
        .op(OP)?;
    row.try_get(0).op(OP)
}
