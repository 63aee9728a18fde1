//! `invoices`: Stripe invoices of a company, one row per Stripe invoice id, as the newest
//! Stripe event about it (by the event's `created` time, kept in `event_at_ms`) reports it.

use sqlx::Row;

use super::{Op, RowExt, Store, StoreError, now_ms};

/// An invoice as one event reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub stripe_invoice_id: String,
    pub company_id: i64,
    /// `paid`, `payment_failed`, ...
    pub status: String,
    /// Amounts in the currency's minor unit.
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub hosted_invoice_url: Option<String>,
}

const INSERT_NEW_MYSQL: &str = "INSERT IGNORE INTO invoices (stripe_invoice_id, company_id, status, amount_due, amount_paid, \
     currency, hosted_invoice_url, updated_at_ms, event_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_NEW_SQLITE: &str = "INSERT OR IGNORE INTO invoices (stripe_invoice_id, company_id, status, amount_due, amount_paid, \
     currency, hosted_invoice_url, updated_at_ms, event_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Write the invoice as a Stripe event of time `event_at_ms` (ms) reports it: inserted when
/// unknown, else updated unless the stored event time is newer (the comparison is in the
/// `WHERE`, so racing workers cannot regress it; an equal time lands, so a retried event
/// does its follow-ups again). Returns whether the write landed (false: the event is stale).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db invoices.record", otel.kind = "client", db.operation.name = "invoices.record"))]
pub async fn record(store: &Store, i: &Invoice, event_at_ms: i64) -> Result<bool, StoreError> {
    const OP: &str = "invoices.record";
    let inserted = sqlx::query(store.dialect().pick(INSERT_NEW_MYSQL, INSERT_NEW_SQLITE))
        .bind(&i.stripe_invoice_id)
        .bind(i.company_id)
        .bind(&i.status)
        .bind(i.amount_due)
        .bind(i.amount_paid)
        .bind(&i.currency)
        .bind(&i.hosted_invoice_url)
        .bind(now_ms())
        .bind(event_at_ms)
        .execute(store.pool())
        .await
        .op(OP)?;
    if inserted.rows_affected() > 0 {
        return Ok(true);
    }
    // MySQL counts matched rows (sqlx connects with CLIENT_FOUND_ROWS): a repeat that
    // changes nothing still reports that it landed.
    let updated = sqlx::query(
        "UPDATE invoices SET status = ?, amount_due = ?, amount_paid = ?, currency = ?, \
         hosted_invoice_url = COALESCE(?, hosted_invoice_url), updated_at_ms = ?, event_at_ms = ? \
         WHERE stripe_invoice_id = ? AND (event_at_ms IS NULL OR event_at_ms <= ?)",
    )
    .bind(&i.status)
    .bind(i.amount_due)
    .bind(i.amount_paid)
    .bind(&i.currency)
    .bind(&i.hosted_invoice_url)
    .bind(now_ms())
    .bind(event_at_ms)
    .bind(&i.stripe_invoice_id)
    .bind(event_at_ms)
    .execute(store.pool())
    .await
    .op(OP)?;
    Ok(updated.rows_affected() > 0)
}

/// An invoice by Stripe id.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db invoices.get", otel.kind = "client", db.operation.name = "invoices.get"))]
pub async fn get(store: &Store, stripe_invoice_id: &str) -> Result<Option<Invoice>, StoreError> {
    const OP: &str = "invoices.get";
    let row = sqlx::query(
        "SELECT stripe_invoice_id, company_id, status, amount_due, amount_paid, currency, hosted_invoice_url \
         FROM invoices WHERE stripe_invoice_id = ?",
    )
    .bind(stripe_invoice_id)
    .fetch_optional(store.pool())
    .await.op(OP)?;
    row.map(|r| {
        Ok::<_, sqlx::Error>(Invoice {
            stripe_invoice_id: r.text(0)?,
            company_id: r.try_get(1)?,
            status: r.text(2)?,
            amount_due: r.try_get(3)?,
            amount_paid: r.try_get(4)?,
            currency: r.text(5)?,
            hosted_invoice_url: r.opt_text(6)?,
        })
    })
    .transpose()
    .op(OP)
}
