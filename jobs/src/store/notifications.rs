//! `notifications`: the outbox that makes customer messages go out once.
//!
//! A notification is identified by its unique key. Sending goes through states:
//! `pending` (row written) -> `sending` (claimed by exactly one attempt, written *before*
//! the message leaves) -> `sent` (after the provider accepted it). A classified failure that
//! proves the message was not accepted puts it back to `retry`; a permanent one to `failed`;
//! a message that is no longer wanted (its appointment was cancelled) to `dropped`.
//! An attempt that finds `sent` or `dropped` does nothing; one that finds `sending` knows a
//! previous attempt ended between claiming and marking (the queue runs one attempt of a job
//! at a time: a job's timeout is shorter than its lease), so delivery is in doubt and that
//! attempt takes the claim over to resolve it ([`Claim::Resolve`]; how is the sender's
//! business, see `notify::doubt`). The take-over bumps `attempts` only if it still holds the
//! value read, so of two attempts resolving the same doubt exactly one proceeds.

use sqlx::Row;

use super::{Op, RowExt, Store, StoreError, now_ms};

/// What a send attempt may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This attempt owns the send (attempt number given).
    Send { attempts: i64 },
    /// Already sent: do nothing.
    AlreadySent,
    /// A previous attempt ended between claim and mark, so the message may have left; this
    /// attempt took the claim over (attempt number given) and must find out before sending.
    /// `created_at_ms`: when the row was written, before any claim.
    Resolve { attempts: i64, created_at_ms: i64 },
    /// Another attempt took the in-doubt claim over at the same moment: leave it to that one.
    Busy,
    /// Dropped earlier (no longer wanted): do nothing.
    Dropped,
    /// Failed for good earlier.
    Failed,
}

/// A notification to record.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub unique_key: &'a str,
    /// `email` or `sms`.
    pub channel: &'a str,
    pub recipient: &'a str,
    pub template: &'a str,
    pub locale: &'a str,
}

const INSERT_MYSQL: &str = "INSERT IGNORE INTO notifications (unique_key, channel, recipient, template, locale, status, attempts, created_at_ms) \
     VALUES (?, ?, ?, ?, ?, 'pending', 0, ?)";
const INSERT_SQLITE: &str = "INSERT OR IGNORE INTO notifications (unique_key, channel, recipient, template, locale, status, attempts, created_at_ms) \
     VALUES (?, ?, ?, ?, ?, 'pending', 0, ?)";

/// Write the outbox row unless its unique key exists; returns how many rows it wrote.
async fn insert(store: &Store, n: &NewNotification<'_>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(store.dialect().pick(INSERT_MYSQL, INSERT_SQLITE))
        .bind(n.unique_key)
        .bind(n.channel)
        .bind(n.recipient)
        .bind(n.template)
        .bind(n.locale)
        .bind(now_ms())
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Write the outbox row if new, then try to claim the send. The claim is one conditional
/// UPDATE, so of two concurrent attempts exactly one gets `Send`.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db notifications.claim", otel.kind = "client", db.operation.name = "notifications.claim"))]
pub async fn claim(store: &Store, n: &NewNotification<'_>) -> Result<Claim, StoreError> {
    const OP: &str = "notifications.claim";
    insert(store, n).await.op(OP)?;
    let claimed = sqlx::query(
        "UPDATE notifications SET status = 'sending', attempts = attempts + 1 \
         WHERE unique_key = ? AND status IN ('pending', 'retry')",
    )
    .bind(n.unique_key)
    .execute(store.pool())
    .await
    .op(OP)?;
    let row = sqlx::query(
        "SELECT status, attempts, created_at_ms FROM notifications WHERE unique_key = ?",
    )
    .bind(n.unique_key)
    .fetch_one(store.pool())
    .await
    .op(OP)?;
    let status: String = row.text(0).op(OP)?;
    let attempts: i64 = row.try_get(1).op(OP)?;
    let created_at_ms: i64 = row.try_get(2).op(OP)?;
    Ok(match (claimed.rows_affected(), status.as_str()) {
        (1, _) => Claim::Send { attempts },
        (_, "sent") => Claim::AlreadySent,
        (_, "dropped") => Claim::Dropped,
        (_, "failed") => Claim::Failed,
        (_, "sending") => take_over(store, n.unique_key, attempts, created_at_ms).await?,
        // Changed between the UPDATE and the SELECT: another attempt is at it.
        _ => Claim::Busy,
    })
}

/// Take over an in-doubt claim seen with `attempts`: a compare-and-set on the attempt count,
/// so only one of several concurrent resolvers gets [`Claim::Resolve`].
async fn take_over(
    store: &Store,
    unique_key: &str,
    attempts: i64,
    created_at_ms: i64,
) -> Result<Claim, StoreError> {
    let taken = sqlx::query(
        "UPDATE notifications SET attempts = attempts + 1 \
         WHERE unique_key = ? AND status = 'sending' AND attempts = ?",
    )
    .bind(unique_key)
    .bind(attempts)
    .execute(store.pool())
    .await
    .op("notifications.take_over")?;
    Ok(if taken.rows_affected() == 1 {
        Claim::Resolve {
            attempts: attempts + 1,
            created_at_ms,
        }
    } else {
        Claim::Busy
    })
}

/// What [`reserve`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// This call wrote the row: the notification is new.
    New,
    /// The row existed and no send has claimed it yet (its job may still be queued, or an
    /// earlier enqueue was lost): enqueueing it again is safe under the queue's unique key.
    Pending,
    /// A send claimed it already (sending, sent, retrying, failed or dropped): leave it.
    Taken,
}

/// Write the outbox row of a notification about to be enqueued, unless it exists. The
/// unique key makes exactly one of any number of concurrent callers see [`Reserved::New`].
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db notifications.reserve", otel.kind = "client", db.operation.name = "notifications.reserve"))]
pub async fn reserve(store: &Store, n: &NewNotification<'_>) -> Result<Reserved, StoreError> {
    const OP: &str = "notifications.reserve";
    let inserted = insert(store, n).await.op(OP)?;
    if inserted > 0 {
        return Ok(Reserved::New);
    }
    let row = sqlx::query("SELECT status FROM notifications WHERE unique_key = ?")
        .bind(n.unique_key)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    let status = row.map(|r| r.text(0)).transpose().op(OP)?;
    Ok(match status.as_deref() {
        Some("pending") => Reserved::Pending,
        _ => Reserved::Taken,
    })
}

/// The provider accepted the message.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db notifications.mark_sent", otel.kind = "client", db.operation.name = "notifications.mark_sent"))]
pub async fn mark_sent(
    store: &Store,
    unique_key: &str,
    message_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE notifications SET status = 'sent', message_id = ?, sent_at_ms = ?, last_error = NULL WHERE unique_key = ?")
        .bind(message_id)
        .bind(now_ms())
        .bind(unique_key)
        .execute(store.pool())
        .await.op("notifications.mark_sent")?;
    Ok(())
}

/// The provider refused it in a way that proves it was not accepted: another attempt may send.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db notifications.mark_retry", otel.kind = "client", db.operation.name = "notifications.mark_retry"))]
pub async fn mark_retry(store: &Store, unique_key: &str, error: &str) -> Result<(), StoreError> {
    set_status(store, unique_key, "retry", error)
        .await
        .op("notifications.mark_retry")
}

/// It is no longer wanted (`reason` says why): write the row if new and mark it `dropped`
/// unless it was sent, failed or dropped already; returns whether this call dropped it.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db notifications.drop_unsent", otel.kind = "client", db.operation.name = "notifications.drop_unsent"))]
pub async fn drop_unsent(
    store: &Store,
    n: &NewNotification<'_>,
    reason: &str,
) -> Result<bool, StoreError> {
    const OP: &str = "notifications.drop_unsent";
    insert(store, n).await.op(OP)?;
    let done = sqlx::query(
        "UPDATE notifications SET status = 'dropped', last_error = ? \
         WHERE unique_key = ? AND status IN ('pending', 'retry', 'sending')",
    )
    .bind(reason)
    .bind(n.unique_key)
    .execute(store.pool())
    .await
    .op(OP)?;
    Ok(done.rows_affected() > 0)
}

/// It can never be sent.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db notifications.mark_failed", otel.kind = "client", db.operation.name = "notifications.mark_failed"))]
pub async fn mark_failed(store: &Store, unique_key: &str, error: &str) -> Result<(), StoreError> {
    set_status(store, unique_key, "failed", error)
        .await
        .op("notifications.mark_failed")
}

async fn set_status(
    store: &Store,
    unique_key: &str,
    status: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE notifications SET status = ?, last_error = ? WHERE unique_key = ?")
        .bind(status)
        .bind(error)
        .bind(unique_key)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub unique_key: String,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub locale: String,
    pub status: String,
    pub attempts: i64,
    pub message_id: Option<String>,
    pub last_error: Option<String>,
}

/// Every notification whose key starts with `prefix`, by key.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db notifications.list", otel.kind = "client", db.operation.name = "notifications.list"))]
pub async fn list(store: &Store, prefix: &str) -> Result<Vec<Notification>, StoreError> {
    const OP: &str = "notifications.list";
    let rows = sqlx::query(
        "SELECT unique_key, channel, recipient, template, locale, status, attempts, message_id, last_error \
         FROM notifications WHERE unique_key LIKE ? ORDER BY unique_key",
    )
    .bind(format!("{prefix}%"))
    .fetch_all(store.pool())
    .await.op(OP)?;
    rows.iter()
        .map(|r| {
            Ok(Notification {
                unique_key: r.text(0)?,
                channel: r.text(1)?,
                recipient: r.text(2)?,
                template: r.text(3)?,
                locale: r.text(4)?,
                status: r.text(5)?,
                attempts: r.try_get(6)?,
                message_id: r.opt_text(7)?,
                last_error: r.opt_text(8)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .op(OP)
}
