//! `customers`: callers and attendees, one row per phone number within a company.

use sqlx::Row;

use super::{Op, RowExt, Store, StoreError, now_ms};

const UPSERT_MYSQL: &str = "INSERT INTO customers (company_id, phone, name, email, created_at_ms) VALUES (?, ?, ?, ?, ?) \
     ON DUPLICATE KEY UPDATE name = COALESCE(VALUES(name), name), email = COALESCE(VALUES(email), email)";
const UPSERT_SQLITE: &str = "INSERT INTO customers (company_id, phone, name, email, created_at_ms) VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (company_id, phone) DO UPDATE SET name = COALESCE(excluded.name, customers.name), \
     email = COALESCE(excluded.email, customers.email)";

/// The customer with `phone` in `company_id`, created when new; a known name or email
/// fills in what was missing. Returns the id.
pub async fn upsert(
    store: &Store,
    company_id: i64,
    phone: &str,
    name: Option<&str>,
    email: Option<&str>,
) -> Result<i64, StoreError> {
    const OP: &str = "customers.upsert";
    sqlx::query(store.dialect().pick(UPSERT_MYSQL, UPSERT_SQLITE))
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

/// The first customer of `company_id` with `email` (case-insensitive), for attendees who
/// gave no phone number.
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

/// A customer's name and email.
pub async fn get(
    store: &Store,
    id: i64,
) -> Result<Option<(String, Option<String>, Option<String>)>, StoreError> {
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
pub async fn count(store: &Store, company_id: i64) -> Result<i64, StoreError> {
    const OP: &str = "customers.count";
    let row = sqlx::query("SELECT COUNT(*) FROM customers WHERE company_id = ?")
        .bind(company_id)
        .fetch_one(store.pool())
        .await
        .op(OP)?;
    row.try_get(0).op(OP)
}
