//! `companies`, `branches` and `phone_numbers`: who a call, booking or invoice belongs to.
//! The `AskProAI` app owns these rows; Switchboard reads them (the inserts serve set-up and tests).

use sqlx::{Row, any::AnyRow};

use super::{Op, RowExt, Store, StoreError, now_ms};
use crate::Secret;

/// A company as the jobs need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Company {
    pub id: i64,
    pub name: String,
    /// `de` or `en` (notifications are written in it).
    pub locale: String,
    pub timezone: String,
    pub admin_email: Option<String>,
    pub admin_phone: Option<String>,
    pub billing_status: String,
    pub stripe_customer_id: Option<String>,
    /// The company's own Cal.com API key, if it has one.
    pub calcom_api_key: Option<Secret>,
}

/// A branch and how it books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub id: i64,
    pub company_id: i64,
    pub name: String,
    pub calcom_event_type_id: Option<i64>,
    pub timezone: String,
}

/// A company and the branch a number or event type belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Business {
    pub company: Company,
    pub branch_id: i64,
}

const COMPANY_COLUMNS: &str = "c.id, c.name, c.locale, c.timezone, c.admin_email, c.admin_phone, c.billing_status, c.stripe_customer_id, c.calcom_api_key";

fn company(row: &AnyRow) -> Result<Company, sqlx::Error> {
    Ok(Company {
        id: row.try_get(0)?,
        name: row.text(1)?,
        locale: row.text(2)?,
        timezone: row.text(3)?,
        admin_email: row.opt_text(4)?,
        admin_phone: row.opt_text(5)?,
        billing_status: row.text(6)?,
        stripe_customer_id: row.opt_text(7)?,
        calcom_api_key: row.opt_text(8)?.map(Secret::from),
    })
}

fn business(row: &AnyRow) -> Result<Business, sqlx::Error> {
    Ok(Business {
        company: company(row)?,
        branch_id: row.try_get(9)?,
    })
}

/// The business that owns the called number.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.by_phone_number", otel.kind = "client", db.operation.name = "companies.by_phone_number"))]
pub async fn by_phone_number(store: &Store, number: &str) -> Result<Option<Business>, StoreError> {
    const OP: &str = "companies.by_phone_number";
    let sql = format!(
        "SELECT {COMPANY_COLUMNS}, b.id FROM phone_numbers p \
         JOIN branches b ON b.id = p.branch_id JOIN companies c ON c.id = b.company_id \
         WHERE p.number = ?"
    );
    let row = sqlx::query(&sql)
        .bind(number)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.as_ref().map(business).transpose().op(OP)
}

/// The company and branch of each called number of `numbers` that a business owns, in one
/// statement on `conn` (a batch's transaction); numbers nobody owns are left out.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.ids_by_phone_numbers", otel.kind = "client", db.operation.name = "companies.ids_by_phone_numbers"))]
pub async fn ids_by_phone_numbers(
    conn: &mut sqlx::AnyConnection,
    numbers: &[&str],
) -> Result<std::collections::HashMap<String, (i64, i64)>, StoreError> {
    const OP: &str = "companies.ids_by_phone_numbers";
    if numbers.is_empty() {
        return Ok(std::collections::HashMap::new());
    }
    let sql = format!(
        "SELECT p.number, c.id, b.id FROM phone_numbers p \
         JOIN branches b ON b.id = p.branch_id JOIN companies c ON c.id = b.company_id \
         WHERE p.number IN ({})",
        vec!["?"; numbers.len()].join(", ")
    );
    let mut query = sqlx::query(&sql);
    for n in numbers {
        query = query.bind(*n);
    }
    let rows = query.fetch_all(conn).await.op(OP)?;
    rows.iter()
        .map(|r| Ok((r.text(0)?, (r.try_get(1)?, r.try_get(2)?))))
        .collect::<Result<_, sqlx::Error>>()
        .op(OP)
}

/// The business whose branch books through Cal.com event type `event_type_id`.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.by_calcom_event_type", otel.kind = "client", db.operation.name = "companies.by_calcom_event_type"))]
pub async fn by_calcom_event_type(
    store: &Store,
    event_type_id: i64,
) -> Result<Option<Business>, StoreError> {
    const OP: &str = "companies.by_calcom_event_type";
    let sql = format!(
        "SELECT {COMPANY_COLUMNS}, b.id FROM branches b JOIN companies c ON c.id = b.company_id \
         WHERE b.calcom_event_type_id = ?"
    );
    let row = sqlx::query(&sql)
        .bind(event_type_id)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.as_ref().map(business).transpose().op(OP)
}

/// The company billed as Stripe customer `customer_id`.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.by_stripe_customer", otel.kind = "client", db.operation.name = "companies.by_stripe_customer"))]
pub async fn by_stripe_customer(
    store: &Store,
    customer_id: &str,
) -> Result<Option<Company>, StoreError> {
    const OP: &str = "companies.by_stripe_customer";
    let sql = format!("SELECT {COMPANY_COLUMNS} FROM companies c WHERE c.stripe_customer_id = ?");
    let row = sqlx::query(&sql)
        .bind(customer_id)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.as_ref().map(company).transpose().op(OP)
}

/// A company by id.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.get", otel.kind = "client", db.operation.name = "companies.get"))]
pub async fn get(store: &Store, id: i64) -> Result<Option<Company>, StoreError> {
    const OP: &str = "companies.get";
    let sql = format!("SELECT {COMPANY_COLUMNS} FROM companies c WHERE c.id = ?");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.as_ref().map(company).transpose().op(OP)
}

/// A branch by id.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.branch", otel.kind = "client", db.operation.name = "companies.branch"))]
pub async fn branch(store: &Store, id: i64) -> Result<Option<Branch>, StoreError> {
    const OP: &str = "companies.branch";
    let row = sqlx::query(
        "SELECT id, company_id, name, calcom_event_type_id, timezone FROM branches WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(store.pool())
    .await
    .op(OP)?;
    row.map(|r| {
        Ok::<_, sqlx::Error>(Branch {
            id: r.try_get(0)?,
            company_id: r.try_get(1)?,
            name: r.text(2)?,
            calcom_event_type_id: r.try_get(3)?,
            timezone: r.text(4)?,
        })
    })
    .transpose()
    .op(OP)
}

/// Every branch that books through Cal.com (it has an event type), with its company, by
/// branch id; branches of companies whose subscription ended (`canceled`) are left out.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.calendar_branches", otel.kind = "client", db.operation.name = "companies.calendar_branches"))]
pub async fn calendar_branches(store: &Store) -> Result<Vec<(Company, Branch)>, StoreError> {
    const OP: &str = "companies.calendar_branches";
    let sql = format!(
        "SELECT {COMPANY_COLUMNS}, b.id, b.name, b.calcom_event_type_id, b.timezone \
         FROM branches b JOIN companies c ON c.id = b.company_id \
         WHERE b.calcom_event_type_id IS NOT NULL AND c.billing_status <> 'canceled' ORDER BY b.id"
    );
    let rows = sqlx::query(&sql).fetch_all(store.pool()).await.op(OP)?;
    let pair = |r: &AnyRow| {
        let company = company(r)?;
        let branch = Branch {
            id: r.try_get(9)?,
            company_id: company.id,
            name: r.text(10)?,
            calcom_event_type_id: r.try_get(11)?,
            timezone: r.text(12)?,
        };
        Ok::<_, sqlx::Error>((company, branch))
    };
    rows.iter()
        .map(pair)
        .collect::<Result<_, sqlx::Error>>()
        .op(OP)
}

/// Set the company's billing status (`active`, `past_due`, `canceled`, ...) as a Stripe
/// event of time `at_ms` (ms) reports it, unless a newer event set it (compared in the
/// `WHERE`, so racing workers cannot regress it; NULL, never set by an event, loses).
/// Returns whether it landed.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.set_billing_status", otel.kind = "client", db.operation.name = "companies.set_billing_status"))]
pub async fn set_billing_status(
    store: &Store,
    id: i64,
    status: &str,
    at_ms: i64,
) -> Result<bool, StoreError> {
    // MySQL counts matched rows (sqlx connects with CLIENT_FOUND_ROWS), so a repeat counts.
    let done = sqlx::query(
        "UPDATE companies SET billing_status = ?, billing_status_at_ms = ? WHERE id = ? \
         AND (billing_status_at_ms IS NULL OR billing_status_at_ms <= ?)",
    )
    .bind(status)
    .bind(at_ms)
    .bind(id)
    .bind(at_ms)
    .execute(store.pool())
    .await
    .op("companies.set_billing_status")?;
    Ok(done.rows_affected() > 0)
}

/// A company to insert.
#[derive(Debug, Clone, Default)]
pub struct NewCompany {
    pub name: String,
    pub locale: String,
    pub timezone: String,
    pub admin_email: Option<String>,
    pub admin_phone: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub calcom_api_key: Option<String>,
}

/// Insert a company; returns its id.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.insert_company", otel.kind = "client", db.operation.name = "companies.insert_company"))]
pub async fn insert_company(store: &Store, c: &NewCompany) -> Result<i64, StoreError> {
    let insert = sqlx::query(
        "INSERT INTO companies (name, locale, timezone, admin_email, admin_phone, stripe_customer_id, calcom_api_key, billing_status, created_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?)",
    )
    .bind(&c.name)
    .bind(&c.locale)
    .bind(&c.timezone)
    .bind(&c.admin_email)
    .bind(&c.admin_phone)
    .bind(&c.stripe_customer_id)
    .bind(&c.calcom_api_key)
    .bind(now_ms());
    insert_returning_id(store, insert)
        .await
        .op("companies.insert_company")
}

/// Insert a branch; returns its id.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.insert_branch", otel.kind = "client", db.operation.name = "companies.insert_branch"))]
pub async fn insert_branch(
    store: &Store,
    company_id: i64,
    name: &str,
    calcom_event_type_id: Option<i64>,
    timezone: &str,
) -> Result<i64, StoreError> {
    let insert = sqlx::query("INSERT INTO branches (company_id, name, calcom_event_type_id, timezone) VALUES (?, ?, ?, ?)")
        .bind(company_id)
        .bind(name)
        .bind(calcom_event_type_id)
        .bind(timezone);
    insert_returning_id(store, insert)
        .await
        .op("companies.insert_branch")
}

/// Attach a phone number to a branch.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db companies.insert_phone_number", otel.kind = "client", db.operation.name = "companies.insert_phone_number"))]
pub async fn insert_phone_number(
    store: &Store,
    branch_id: i64,
    number: &str,
) -> Result<i64, StoreError> {
    let insert = sqlx::query("INSERT INTO phone_numbers (branch_id, number) VALUES (?, ?)")
        .bind(branch_id)
        .bind(number);
    insert_returning_id(store, insert)
        .await
        .op("companies.insert_phone_number")
}

/// Run `insert` and read the new row's id on the same connection.
async fn insert_returning_id<'q>(
    store: &Store,
    insert: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
) -> Result<i64, sqlx::Error> {
    let mut conn = store.pool().acquire().await?;
    insert.execute(&mut *conn).await?;
    let last = store
        .dialect()
        .pick("SELECT LAST_INSERT_ID()", "SELECT last_insert_rowid()");
    let row = sqlx::query(last).fetch_one(&mut *conn).await?;
    // MySQL reports an unsigned BIGINT; read it as whatever integer the driver gives.
    row.try_get::<i64, _>(0)
        .or_else(|_| row.try_get::<i32, _>(0).map(i64::from))
}
