//! `webhook.stripe`: `invoice.paid` and `invoice.payment_failed` update `invoices` and the
//! company's billing status (a failure notifies the company's admin);
//! `customer.subscription.updated` sets the billing status from the subscription.
//!
//! Stripe does not deliver in order. Each event carries its `created` time; the invoice row
//! and the company's billing status each move only forward in it (the comparison is in the
//! writing statement). An invoice event older than the stored invoice is stale: nothing is
//! written and no email goes, so a late `invoice.payment_failed` after `invoice.paid` leaves
//! the invoice paid and the company active.

use std::sync::Arc;

use serde::Deserialize;

use super::{Handled, db_retry, invalid, with_event_row};
use crate::{
    EnqueueOptions, JobContext, JobError,
    notify::{
        email,
        send::Message,
        templates::{MessageVars, Template},
    },
    services::Services,
    store::{
        companies,
        invoices::{self, Invoice},
    },
};

webhook_kind!(StripeWebhook, "webhook.stripe");

#[derive(Deserialize)]
struct Body {
    id: String,
    /// When Stripe raised the event, unix seconds: orders events of one invoice or company.
    created: Option<i64>,
    #[serde(rename = "type")]
    kind: String,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: Object,
}

#[derive(Deserialize)]
struct Object {
    id: String,
    customer: Option<String>,
    status: Option<String>,
    amount_due: Option<i64>,
    amount_paid: Option<i64>,
    currency: Option<String>,
    hosted_invoice_url: Option<String>,
}

/// Handler of `webhook.stripe`.
pub async fn handle(
    services: Arc<Services>,
    args: StripeWebhook,
    ctx: JobContext,
) -> Result<(), JobError> {
    let event = args.0;
    with_event_row(&services, &event, process(&services, &event.body, &ctx)).await
}

async fn process(services: &Services, body: &str, ctx: &JobContext) -> Result<Handled, JobError> {
    let body: Body = serde_json::from_str(body).map_err(|e| invalid("stripe", &e))?;
    if !matches!(
        body.kind.as_str(),
        "invoice.paid" | "invoice.payment_failed" | "customer.subscription.updated"
    ) {
        return Ok(Handled::Ignored);
    }
    let event_at_ms = body
        .created
        .and_then(|s| s.checked_mul(1000))
        .ok_or_else(|| {
            JobError::permanent(format!(
                "stripe event {} ({}) has no created time, so it cannot be ordered",
                body.id, body.kind
            ))
        })?;
    let o = body.data.object;
    let store = &services.store;
    let customer = o.customer.as_deref().ok_or_else(|| {
        JobError::permanent(format!(
            "stripe event {} ({}) names no customer",
            body.id, body.kind
        ))
    })?;
    let company = companies::by_stripe_customer(store, customer)
        .await
        .map_err(db_retry)?
        .ok_or_else(|| {
            JobError::permanent(format!(
                "no company is Stripe customer {customer} (event {})",
                body.id
            ))
        })?;
    if body.kind == "customer.subscription.updated" {
        let status = o.status.as_deref().ok_or_else(|| {
            JobError::permanent(format!(
                "stripe subscription {} has no status (event {})",
                o.id, body.id
            ))
        })?;
        // One conditional statement: dying before or after it, the retry lands it again (an
        // equal time does) or finds a newer status standing.
        let landed = companies::set_billing_status(store, company.id, status, event_at_ms)
            .await
            .map_err(db_retry)?;
        return Ok(if landed {
            Handled::Processed
        } else {
            Handled::Stale
        });
    }
    let failed = body.kind == "invoice.payment_failed";
    let invoice = Invoice {
        stripe_invoice_id: o.id.clone(),
        company_id: company.id,
        status: if failed {
            "payment_failed".into()
        } else {
            "paid".into()
        },
        amount_due: o.amount_due.unwrap_or(0),
        amount_paid: o.amount_paid.unwrap_or(0),
        currency: o.currency.clone().unwrap_or_else(|| "usd".into()),
        hosted_invoice_url: o.hosted_invoice_url.clone(),
    };
    // Fault points: dying before the invoice write leaves nothing done. Dying after it (before
    // the billing status or the email) leaves the invoice at this event's time, and the retry
    // lands it again (an equal time does) and does the rest; the email's key (invoice and
    // event) makes a repeat a no-op. A stale invoice event stops here: the newer event of the
    // same invoice set the billing status at a time at least as new (or its retry will).
    if !invoices::record(store, &invoice, event_at_ms)
        .await
        .map_err(db_retry)?
    {
        return Ok(Handled::Stale);
    }
    let status = if failed { "past_due" } else { "active" };
    if !companies::set_billing_status(store, company.id, status, event_at_ms)
        .await
        .map_err(db_retry)?
    {
        // The invoice itself did fail (or get paid): its email still goes below.
        tracing::info!(
            company = company.id,
            event = %body.id,
            "billing status set by a newer event: left alone"
        );
    }
    if failed {
        warn_admin(ctx, &company, &invoice, &body.id).await?;
    }
    Ok(Handled::Processed)
}

/// Tell the company's admin that `invoice` could not be paid (once per invoice and event).
async fn warn_admin(
    ctx: &JobContext,
    company: &companies::Company,
    invoice: &Invoice,
    event_id: &str,
) -> Result<(), JobError> {
    let Some(admin) = company.admin_email.clone() else {
        tracing::warn!(
            company = company.id,
            "payment failed but the company has no admin email"
        );
        return Ok(());
    };
    let amount = format!(
        "{:.2} {}",
        invoice.amount_due as f64 / 100.0,
        invoice.currency.to_uppercase()
    );
    let message = Message {
        key: format!(
            "invoice:{}:payment_failed:{event_id}",
            invoice.stripe_invoice_id
        ),
        to: admin,
        to_name: None,
        template: Template::PaymentFailed,
        locale: company.locale.clone(),
        vars: MessageVars {
            recipient_name: company.name.clone(),
            company_name: company.name.clone(),
            amount: Some(amount),
            invoice_url: invoice.hosted_invoice_url.clone(),
            ..MessageVars::default()
        },
    };
    let options = EnqueueOptions::default().tenant(company.id.to_string());
    email::enqueue_with(ctx, message, options).await
}
