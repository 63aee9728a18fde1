//! Erasure of one person (GDPR art. 17) from the database: `switchboard erase`.
//!
//! The person is named by a phone number or an email address ([`Subject`]). Their rows are
//! anonymised in one transaction, never deleted, so every count, link and bill stays right:
//! * `customers` matched by the subject: `phone` becomes `erased:<id>` (it must stay unique
//!   per company), `name` and `email` NULL;
//! * `calls` from their numbers or of those customers: `from_number` becomes `erased`,
//!   `summary` and `analysis_json` (the transcript's gist) NULL; `to_number` is the
//!   business's own number and stays, as do times, duration and the call id (the Stripe
//!   meter event's identifier: billing needs it);
//! * `appointments` of those customers or with their phone or email as attendee: attendee
//!   fields NULL, the customer link cut (so reminders find no contact and send nothing),
//!   their name, number or email replaced inside title, location and cancellation reason;
//! * `notifications` to their number or address: `recipient` becomes `erased`, `last_error`
//!   NULL, and one not sent yet is `dropped`, so a copy of its job still running sends nothing;
//! * `usage_events` are kept whole (seconds, company, call id): billing totals never change;
//! * free-text columns of every table (errors, titles, summaries) that still hold their
//!   number or email anywhere get it replaced (a `LIKE` pre-filter, then [`Needles::scrub`]).
//!
//! A second run finds nothing (every matched value was changed) and reports zeros. A business's
//! own number is refused: erasing it would anonymise the business, not a person.

mod needles;

use std::collections::{BTreeMap, BTreeSet};

use sqlx::{AnyConnection, Row};

pub use needles::{ERASED, Needles, PERSONAL_FIELDS};

use super::{Dialect, Op, RowExt, Store, StoreError, now_ms};

/// Whom to erase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// An E.164 number, e.g. `+4915123456789`.
    Phone(String),
    /// An email address (matched case-insensitively).
    Email(String),
}

/// An argument that names nobody.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSubject(pub String);

impl Subject {
    /// A phone number in E.164: `+`, then 8 to 15 digits, the first not 0.
    pub fn phone(raw: &str) -> Result<Self, InvalidSubject> {
        let digits = raw.strip_prefix('+').unwrap_or_default();
        let ok = (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        ok.then(|| Self::Phone(raw.to_owned())).ok_or_else(|| {
            InvalidSubject(format!(
                "--phone {raw:?} is not an E.164 number (+ and 8 to 15 digits, e.g. +4915123456789)"
            ))
        })
    }

    /// An email address: one `@`, something before it, a dotted domain after, no spaces.
    pub fn email(raw: &str) -> Result<Self, InvalidSubject> {
        let ok = raw.len() <= 254
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
            && raw.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        ok.then(|| Self::Email(raw.to_owned()))
            .ok_or_else(|| InvalidSubject(format!("--email {raw:?} is not an email address")))
    }

    /// The text a hash of the subject is taken over (for audit records that must not hold it).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Phone(s) | Self::Email(s) => s,
        }
    }
}

/// Why an erasure did not run.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The number is one a business answers calls on (`phone_numbers`).
    #[error(
        "{0} is a business's own number (phone_numbers), not a caller's: nothing erased (calls keep the number they dialled)"
    )]
    BusinessNumber(String),
}

/// What an erasure changed (or, from [`preview`], would change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Rows changed per table, every table of the schema that can hold the person listed.
    pub tables: Vec<(&'static str, u64)>,
    /// `usage_events` rows of the person's calls, kept whole for billing.
    pub usage_kept: u64,
    /// Everything that identified them (subject, their customers' numbers, addresses and
    /// names): what their queued jobs are searched for.
    pub needles: Needles,
}

impl Report {
    /// Rows changed in all.
    pub fn changed(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Tables in the order reports list them.
const TABLES: [&str; 6] = [
    "customers",
    "calls",
    "appointments",
    "notifications",
    "usage_events",
    "webhook_events",
];

/// Free-text columns that may quote a number or address anywhere (errors, titles, texts).
/// Table and column names are constants of this module, never input.
const FREE_TEXT: &[(&str, &str)] = &[
    ("webhook_events", "error"),
    ("notifications", "last_error"),
    ("usage_events", "report_error"),
    ("appointments", "title"),
    ("appointments", "location"),
    ("appointments", "cancellation_reason"),
    ("calls", "summary"),
    ("calls", "analysis_json"),
    ("calls", "disconnection_reason"),
];

/// Most ids bound in one statement.
const CHUNK: usize = 500;

/// Everything that identifies the person, read only (nothing changes).
pub async fn identify(store: &Store, subject: &Subject) -> Result<Needles, ErasureError> {
    const OP: &str = "erasure.identify";
    let mut conn = store.pool().acquire().await.op(OP)?;
    refuse_business_number(&mut conn, subject).await?;
    Ok(person(&mut conn, subject).await.op(OP)?.needles)
}

/// Anonymise the person, in one transaction.
pub async fn erase(store: &Store, subject: &Subject) -> Result<Report, ErasureError> {
    run(store, subject, true).await
}

/// What [`erase`] would change: the same statements in a transaction that is rolled back.
pub async fn preview(store: &Store, subject: &Subject) -> Result<Report, ErasureError> {
    run(store, subject, false).await
}

async fn run(store: &Store, subject: &Subject, commit: bool) -> Result<Report, ErasureError> {
    const OP: &str = "erasure.erase";
    let mut tx = store.pool().begin().await.op(OP)?;
    refuse_business_number(&mut tx, subject).await?;
    let person = person(&mut tx, subject).await.op(OP)?;
    let mut touched: BTreeMap<&'static str, BTreeSet<i64>> = BTreeMap::new();
    let usage_kept = anonymise(&mut tx, store.dialect(), &person, &mut touched)
        .await
        .op(OP)?;
    for (table, column) in FREE_TEXT {
        let ids = scrub_column(&mut tx, table, column, &person.needles)
            .await
            .op(OP)?;
        touched.entry(table).or_default().extend(ids);
    }
    // Fault points: dying before the commit changes nothing (the transaction is lost and a
    // rerun does it all); after it, a rerun finds nothing left and reports zeros.
    if commit {
        tx.commit().await.op(OP)?;
    } else {
        tx.rollback().await.op(OP)?;
    }
    Ok(Report {
        tables: TABLES
            .iter()
            .map(|t| (*t, touched.get(t).map_or(0, |ids| ids.len() as u64)))
            .collect(),
        usage_kept,
        needles: person.needles,
    })
}

async fn refuse_business_number(
    conn: &mut AnyConnection,
    subject: &Subject,
) -> Result<(), ErasureError> {
    let Subject::Phone(phone) = subject else {
        return Ok(());
    };
    let row = sqlx::query("SELECT COUNT(*) FROM phone_numbers WHERE number = ?")
        .bind(phone)
        .fetch_one(&mut *conn)
        .await
        .op("erasure.refuse_business_number")?;
    let n: i64 = row.try_get(0).op("erasure.refuse_business_number")?;
    if n > 0 {
        return Err(ErasureError::BusinessNumber(phone.clone()));
    }
    Ok(())
}

/// The person's rows and identifiers.
struct Person {
    customers: Vec<i64>,
    appointments: Vec<i64>,
    /// Their numbers: the subject and their customers' and attendee numbers.
    phones: Vec<String>,
    /// Their addresses, lowercase.
    emails: Vec<String>,
    needles: Needles,
}

/// Customers matched by the subject itself; appointments of those customers or naming the
/// subject's (or those customers') number or address as attendee.
async fn person(conn: &mut AnyConnection, subject: &Subject) -> Result<Person, sqlx::Error> {
    let mut p = Person {
        customers: Vec::new(),
        appointments: Vec::new(),
        phones: Vec::new(),
        emails: Vec::new(),
        needles: Needles::default(),
    };
    let (sql, value) = match subject {
        Subject::Phone(phone) => {
            p.phones.push(phone.clone());
            (
                "SELECT id, phone, name, email FROM customers WHERE phone = ?",
                phone.clone(),
            )
        }
        Subject::Email(email) => {
            p.emails.push(email.to_ascii_lowercase());
            (
                "SELECT id, phone, name, email FROM customers WHERE LOWER(email) = ?",
                email.to_ascii_lowercase(),
            )
        }
    };
    for row in sqlx::query(sql).bind(value).fetch_all(&mut *conn).await? {
        p.customers.push(row.try_get(0)?);
        p.learn(row.opt_text(1)?, row.opt_text(3)?, row.opt_text(2)?);
    }
    let sql = format!(
        "SELECT id, attendee_phone, attendee_email, attendee_name FROM appointments \
         WHERE customer_id IN ({}) OR attendee_phone IN ({}) OR LOWER(attendee_email) IN ({})",
        marks(p.customers.len()),
        marks(p.phones.len()),
        marks(p.emails.len())
    );
    let mut query = sqlx::query(&sql);
    for id in &p.customers {
        query = query.bind(*id);
    }
    for v in p.phones.iter().chain(&p.emails) {
        query = query.bind(v.clone());
    }
    for row in query.fetch_all(&mut *conn).await? {
        p.appointments.push(row.try_get(0)?);
        p.learn(row.opt_text(1)?, row.opt_text(2)?, row.opt_text(3)?);
    }
    for phone in &p.phones {
        p.needles.add_phone(phone);
    }
    for email in &p.emails {
        p.needles.add_email(email);
    }
    Ok(p)
}

impl Person {
    fn learn(&mut self, phone: Option<String>, email: Option<String>, name: Option<String>) {
        if let Some(phone) = phone.filter(|p| !p.is_empty() && !p.starts_with("erased"))
            && !self.phones.contains(&phone)
        {
            self.phones.push(phone);
        }
        if let Some(email) = email.map(|e| e.to_ascii_lowercase())
            && !email.is_empty()
            && !self.emails.contains(&email)
        {
            self.emails.push(email);
        }
        if let Some(name) = name {
            self.needles.add_name(&name);
        }
    }
}

/// Anonymise the person's customers, calls, appointments and notifications; returns how
/// many usage rows of their calls were kept.
async fn anonymise(
    conn: &mut AnyConnection,
    dialect: Dialect,
    p: &Person,
    touched: &mut BTreeMap<&'static str, BTreeSet<i64>>,
) -> Result<u64, sqlx::Error> {
    let now = now_ms();
    let erased_phone = dialect.pick("CONCAT('erased:', id)", "'erased:' || id");
    let sql = format!(
        "UPDATE customers SET phone = {erased_phone}, name = NULL, email = NULL WHERE id IN"
    );
    update_ids(conn, &sql, &p.customers, None).await?;
    touched.entry("customers").or_default().extend(&p.customers);

    let sql = format!(
        "SELECT id, call_id FROM calls WHERE from_number IN ({}) OR customer_id IN ({})",
        marks(p.phones.len()),
        marks(p.customers.len())
    );
    let mut query = sqlx::query(&sql);
    for phone in &p.phones {
        query = query.bind(phone.clone());
    }
    for id in &p.customers {
        query = query.bind(*id);
    }
    let mut calls = Vec::new();
    let mut call_ids = Vec::new();
    for row in query.fetch_all(&mut *conn).await? {
        calls.push(row.try_get::<i64, _>(0)?);
        call_ids.push(row.text(1)?);
    }
    let sql = "UPDATE calls SET from_number = 'erased', summary = NULL, analysis_json = NULL, \
               updated_at_ms = ? WHERE id IN";
    update_ids(conn, sql, &calls, Some(now)).await?;
    touched.entry("calls").or_default().extend(&calls);
    let mut usage_kept = 0;
    for chunk in call_ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT COUNT(*) FROM usage_events WHERE call_id IN ({})",
            marks(chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id.clone());
        }
        usage_kept += query.fetch_one(&mut *conn).await?.try_get::<i64, _>(0)? as u64;
    }

    anonymise_appointments(conn, p, now).await?;
    touched
        .entry("appointments")
        .or_default()
        .extend(&p.appointments);

    let sql = format!(
        "SELECT id FROM notifications WHERE recipient IN ({}) OR LOWER(recipient) IN ({})",
        marks(p.phones.len()),
        marks(p.emails.len())
    );
    let mut query = sqlx::query(&sql);
    for v in p.phones.iter().chain(&p.emails) {
        query = query.bind(v.clone());
    }
    let notifications: Vec<i64> = query
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let sql = "UPDATE notifications SET recipient = 'erased', last_error = NULL, \
               status = CASE WHEN status IN ('pending', 'retry') THEN 'dropped' ELSE status END WHERE id IN";
    update_ids(conn, sql, &notifications, None).await?;
    touched
        .entry("notifications")
        .or_default()
        .extend(&notifications);
    Ok(usage_kept)
}

/// Attendee fields NULL, the customer link cut, the person replaced inside the texts.
async fn anonymise_appointments(
    conn: &mut AnyConnection,
    p: &Person,
    now: i64,
) -> Result<(), sqlx::Error> {
    for id in &p.appointments {
        let row = sqlx::query(
            "SELECT title, location, cancellation_reason FROM appointments WHERE id = ?",
        )
        .bind(*id)
        .fetch_one(&mut *conn)
        .await?;
        let scrub = |i: usize| -> Result<Option<String>, sqlx::Error> {
            Ok(row.opt_text(i)?.map(|t| p.needles.scrub(&t).unwrap_or(t)))
        };
        let (title, location, reason) = (scrub(0)?, scrub(1)?, scrub(2)?);
        sqlx::query(
            "UPDATE appointments SET attendee_name = NULL, attendee_email = NULL, attendee_phone = NULL, \
             customer_id = NULL, title = ?, location = ?, cancellation_reason = ?, updated_at_ms = ? WHERE id = ?",
        )
        .bind(title)
        .bind(location)
        .bind(reason)
        .bind(now)
        .bind(*id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Replace the person inside `table.column` wherever it still holds their number or
/// address; returns the ids of the rows changed.
async fn scrub_column(
    conn: &mut AnyConnection,
    table: &str,
    column: &str,
    needles: &Needles,
) -> Result<Vec<i64>, sqlx::Error> {
    let mut changed = Vec::new();
    for term in needles.like_terms() {
        let sql = format!("SELECT id, {column} FROM {table} WHERE {column} LIKE ? ESCAPE '!'");
        let rows = sqlx::query(&sql)
            .bind(format!("%{}%", like_escape(term)))
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let Some(text) = row.opt_text(1)? else {
                continue;
            };
            let Some(clean) = needles.scrub(&text) else {
                continue;
            };
            sqlx::query(&format!("UPDATE {table} SET {column} = ? WHERE id = ?"))
                .bind(clean)
                .bind(id)
                .execute(&mut *conn)
                .await?;
            changed.push(id);
        }
    }
    Ok(changed)
}

/// Run `sql` (ending in `WHERE id IN`) over `ids` in chunks, with `first` bound before them.
async fn update_ids(
    conn: &mut AnyConnection,
    sql: &str,
    ids: &[i64],
    first: Option<i64>,
) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(CHUNK) {
        let sql = format!("{sql} ({})", marks(chunk.len()));
        let mut query = sqlx::query(&sql);
        if let Some(v) = first {
            query = query.bind(v);
        }
        for id in chunk {
            query = query.bind(*id);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// `n` placeholders; none becomes `NULL`, so `x IN (NULL)` matches nothing.
fn marks(n: usize) -> String {
    if n == 0 {
        "NULL".to_owned()
    } else {
        vec!["?"; n].join(", ")
    }
}

/// `term` with `LIKE`'s wildcards escaped by `!`.
fn like_escape(term: &str) -> String {
    let mut out = String::with_capacity(term.len());
    for c in term.chars() {
        if matches!(c, '!' | '%' | '_') {
            out.push('!');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
