//! `invoices`: Stripe invoices of a company, one row per Stripe invoice id.

use sqlx::Row;

use super::{Op, RowExt, Store, StoreError, now_ms};

/// An invoice as the latest event reports it.
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

const UPSERT_MYSQL: &str = "INSERT INTO invoices (stripe_invoice_id, company_id, status, amount_due, amount_paid, currency, hosted_invoice_url, updated_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE status = VALUES(status), amount_due = VALUES(amount_due), \
     amount_paid = VALUES(amount_paid), currency = VALUES(currency), \
     hosted_invoice_url = COALESCE(VALUES(hosted_invoice_url), hosted_invoice_url), updated_at_ms = VALUES(updated_at_ms)";
const UPSERT_SQLITE: &str = "INSERT INTO invoices (stripe_invoice_id, company_id, status, amount_due, amount_paid, currency, hosted_invoice_url, updated_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (stripe_invoice_id) DO UPDATE SET status = excluded.status, \
     amount_due = excluded.amount_due, amount_paid = excluded.amount_paid, currency = excluded.currency, \
     hosted_invoice_url = COALESCE(excluded.hosted_invoice_url, invoices.hosted_invoice_url), updated_at_ms = excluded.updated_at_ms";

/// Insert or update an invoice.
pub async fn upsert(store: &Store, i: &Invoice) -> Result<(), StoreError> {
    sqlx::query(store.dialect().pick(UPSERT_MYSQL, UPSERT_SQLITE))
        .bind(&i.stripe_invoice_id)
        .bind(i.company_id)
        .bind(&i.status)
        .bind(i.amount_due)
        .bind(i.amount_paid)
        .bind(&i.currency)
        .bind(&i.hosted_invoice_url)
        .bind(now_ms())
        .execute(store.pool())
        .await
        .op("invoices.upsert")?;
    Ok(())
}

/// An invoice by Stripe id.
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
