//! `appointments`: Cal.com bookings, one row per booking uid. A reschedule creates the new
//! booking's row linked to the old uid and marks the old one `rescheduled`.
//!
//! What must stay true, whatever order events arrive in and however many workers race:
//! - a webhook writes a row only if its Cal.com time (`createdAt`) is not older than the
//!   row's `event_at_ms` (NULL, a row written without an event time, loses to any); the
//!   comparison is in the statement's `WHERE`, so it holds against concurrent writers;
//! - a row that is `cancelled` or `rescheduled` is never `booked` again (Cal.com never
//!   re-uses a uid: a move makes a new one), by a webhook or by a calendar job;
//! - writes without an event time (calendar jobs, reconciliation) leave `event_at_ms` alone.
//!
//! Each guarded write tells its caller whether it landed, so only the write that won
//! notifies anyone. A repeat of the same event (same time) lands again: a retry after a
//! crash between the write and its notifications must still send them.

use sqlx::{Row, any::AnyRow};
use time::{Duration, OffsetDateTime};

use super::{Op, RowExt, Store, StoreError, now_ms};

/// A booking as Cal.com reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appointment {
    pub uid: String,
    pub company_id: i64,
    pub branch_id: i64,
    pub customer_id: Option<i64>,
    /// `booked`, `cancelled` or `rescheduled`.
    pub status: String,
    pub title: Option<String>,
    /// Start and end, ISO 8601 UTC as Cal.com sends them.
    pub start_at: String,
    pub end_at: String,
    pub location: Option<String>,
    pub attendee_name: Option<String>,
    pub attendee_email: Option<String>,
    pub attendee_phone: Option<String>,
    pub rescheduled_from_uid: Option<String>,
    pub cancellation_reason: Option<String>,
    pub call_id: Option<String>,
}

const COLUMNS: &str = "uid, company_id, branch_id, customer_id, status, title, start_at, end_at, location, attendee_name, \
     attendee_email, attendee_phone, rescheduled_from_uid, cancellation_reason, call_id";

const UPSERT_MYSQL: &str = "INSERT INTO appointments (uid, company_id, branch_id, customer_id, status, title, start_at, end_at, \
     location, attendee_name, attendee_email, attendee_phone, rescheduled_from_uid, cancellation_reason, call_id, updated_at_ms, event_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
     customer_id = COALESCE(VALUES(customer_id), customer_id), status = VALUES(status), title = COALESCE(VALUES(title), title), \
     start_at = VALUES(start_at), end_at = VALUES(end_at), location = COALESCE(VALUES(location), location), \
     attendee_name = COALESCE(VALUES(attendee_name), attendee_name), attendee_email = COALESCE(VALUES(attendee_email), attendee_email), \
     attendee_phone = COALESCE(VALUES(attendee_phone), attendee_phone), \
     rescheduled_from_uid = COALESCE(VALUES(rescheduled_from_uid), rescheduled_from_uid), \
     cancellation_reason = COALESCE(VALUES(cancellation_reason), cancellation_reason), \
     call_id = COALESCE(VALUES(call_id), call_id), updated_at_ms = VALUES(updated_at_ms)";
const UPSERT_SQLITE: &str = "INSERT INTO appointments (uid, company_id, branch_id, customer_id, status, title, start_at, end_at, \
     location, attendee_name, attendee_email, attendee_phone, rescheduled_from_uid, cancellation_reason, call_id, updated_at_ms, event_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uid) DO UPDATE SET \
     customer_id = COALESCE(excluded.customer_id, appointments.customer_id), status = excluded.status, \
     title = COALESCE(excluded.title, appointments.title), start_at = excluded.start_at, end_at = excluded.end_at, \
     location = COALESCE(excluded.location, appointments.location), \
     attendee_name = COALESCE(excluded.attendee_name, appointments.attendee_name), \
     attendee_email = COALESCE(excluded.attendee_email, appointments.attendee_email), \
     attendee_phone = COALESCE(excluded.attendee_phone, appointments.attendee_phone), \
     rescheduled_from_uid = COALESCE(excluded.rescheduled_from_uid, appointments.rescheduled_from_uid), \
     cancellation_reason = COALESCE(excluded.cancellation_reason, appointments.cancellation_reason), \
     call_id = COALESCE(excluded.call_id, appointments.call_id), updated_at_ms = excluded.updated_at_ms";

/// Insert or update the booking `a.uid` unconditionally (set-up and tests; jobs use
/// [`record_event`], [`record_booked`] or [`mark_rescheduled`]).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.upsert", otel.kind = "client", db.operation.name = "appointments.upsert"))]
pub async fn upsert(store: &Store, a: &Appointment) -> Result<(), StoreError> {
    write(
        store,
        store.dialect().pick(UPSERT_MYSQL, UPSERT_SQLITE),
        a,
        None,
    )
    .await
    .op("appointments.upsert")?;
    Ok(())
}

/// Mark the booking `uid` (if known) with `status`, keeping its event time (a calendar
/// job's own write, after Cal.com did it); returns whether a row changed.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.set_status", otel.kind = "client", db.operation.name = "appointments.set_status"))]
pub async fn set_status(store: &Store, uid: &str, status: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE appointments SET status = ?, updated_at_ms = ? WHERE uid = ?")
        .bind(status)
        .bind(now_ms())
        .bind(uid)
        .execute(store.pool())
        .await
        .op("appointments.set_status")?;
    Ok(done.rows_affected() > 0)
}

fn appointment(row: &AnyRow) -> Result<Appointment, sqlx::Error> {
    Ok(Appointment {
        uid: row.text(0)?,
        company_id: row.try_get(1)?,
        branch_id: row.try_get(2)?,
        customer_id: row.try_get(3)?,
        status: row.text(4)?,
        title: row.opt_text(5)?,
        start_at: row.text(6)?,
        end_at: row.text(7)?,
        location: row.opt_text(8)?,
        attendee_name: row.opt_text(9)?,
        attendee_email: row.opt_text(10)?,
        attendee_phone: row.opt_text(11)?,
        rescheduled_from_uid: row.opt_text(12)?,
        cancellation_reason: row.opt_text(13)?,
        call_id: row.opt_text(14)?,
    })
}

/// A booking by uid.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.get", otel.kind = "client", db.operation.name = "appointments.get"))]
pub async fn get(store: &Store, uid: &str) -> Result<Option<Appointment>, StoreError> {
    const OP: &str = "appointments.get";
    let sql = format!("SELECT {COLUMNS} FROM appointments WHERE uid = ?");
    let row = sqlx::query(&sql)
        .bind(uid)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.as_ref().map(appointment).transpose().op(OP)
}

/// The latest booking made for a call.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.find_by_call", otel.kind = "client", db.operation.name = "appointments.find_by_call"))]
pub async fn find_by_call(store: &Store, call_id: &str) -> Result<Option<Appointment>, StoreError> {
    const OP: &str = "appointments.find_by_call";
    let sql = format!(
        "SELECT {COLUMNS} FROM appointments WHERE call_id = ? AND status = 'booked' ORDER BY id DESC"
    );
    let row = sqlx::query(&sql)
        .bind(call_id)
        .fetch_optional(store.pool())
        .await
        .op(OP)?;
    row.as_ref().map(appointment).transpose().op(OP)
}

const SELECT_BOOKED_ALL: &str =
    "WHERE status = 'booked' AND start_at >= ? AND start_at < ? ORDER BY start_at, uid";
const SELECT_BOOKED_BRANCH: &str = "WHERE status = 'booked' AND branch_id = ? AND start_at >= ? AND start_at < ? \
     ORDER BY start_at, uid";

/// Booked appointments (of `branch_id`, or of every branch) that may start between `from` and
/// `to`: a superset, since start times are text with whatever offset Cal.com or a webhook
/// gave. The text filter is widened by a day on each side; callers compare exact instants.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.booked_around", otel.kind = "client", db.operation.name = "appointments.booked_around"))]
pub async fn booked_around(
    store: &Store,
    branch_id: Option<i64>,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<Appointment>, StoreError> {
    const OP: &str = "appointments.booked_around";
    let day = |t: OffsetDateTime| {
        let d = t.date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    };
    let (low, high) = (day(from - Duration::DAY), day(to + Duration::DAY * 2));
    let filter = if branch_id.is_some() {
        SELECT_BOOKED_BRANCH
    } else {
        SELECT_BOOKED_ALL
    };
    let sql = format!("SELECT {COLUMNS} FROM appointments {filter}");
    let mut query = sqlx::query(&sql);
    if let Some(branch) = branch_id {
        query = query.bind(branch);
    }
    let rows = query
        .bind(low)
        .bind(high)
        .fetch_all(store.pool())
        .await
        .op(OP)?;
    rows.iter()
        .map(appointment)
        .collect::<Result<_, sqlx::Error>>()
        .op(OP)
}

const INSERT_NEW_MYSQL: &str = "INSERT IGNORE INTO appointments (uid, company_id, branch_id, customer_id, status, title, \
     start_at, end_at, location, attendee_name, attendee_email, attendee_phone, rescheduled_from_uid, cancellation_reason, \
     call_id, updated_at_ms, event_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const INSERT_NEW_SQLITE: &str = "INSERT OR IGNORE INTO appointments (uid, company_id, branch_id, customer_id, status, title, \
     start_at, end_at, location, attendee_name, attendee_email, attendee_phone, rescheduled_from_uid, cancellation_reason, \
     call_id, updated_at_ms, event_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Insert the booking `a.uid` unless a row for it exists (whatever its state: a webhook or
/// a calendar job that wrote it first knows more); returns whether this call inserted it.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.insert_if_absent", otel.kind = "client", db.operation.name = "appointments.insert_if_absent"))]
pub async fn insert_if_absent(store: &Store, a: &Appointment) -> Result<bool, StoreError> {
    let done = write(
        store,
        store.dialect().pick(INSERT_NEW_MYSQL, INSERT_NEW_SQLITE),
        a,
        None,
    )
    .await
    .op("appointments.insert_if_absent")?;
    Ok(done.rows_affected() > 0)
}

/// The update half of [`record_event`] and [`record_booked`]. Binds: the columns of `a`
/// from `customer_id` to `call_id` (`company_id`, `branch_id` never change), `updated_at_ms`,
/// the event time for the column, then `uid`, the event time twice (NULL: no time rule) and
/// the new status twice (a `booked` write needs a `booked` row).
const GUARDED_UPDATE: &str = "UPDATE appointments SET customer_id = COALESCE(?, customer_id), status = ?, \
     title = COALESCE(?, title), start_at = ?, end_at = ?, location = COALESCE(?, location), \
     attendee_name = COALESCE(?, attendee_name), attendee_email = COALESCE(?, attendee_email), \
     attendee_phone = COALESCE(?, attendee_phone), rescheduled_from_uid = COALESCE(?, rescheduled_from_uid), \
     cancellation_reason = COALESCE(?, cancellation_reason), call_id = COALESCE(?, call_id), updated_at_ms = ?, \
     event_at_ms = COALESCE(?, event_at_ms) \
     WHERE uid = ? AND (? IS NULL OR event_at_ms IS NULL OR event_at_ms <= ?) AND (? <> 'booked' OR status = 'booked')";

/// Write the booking `a` as a Cal.com event of time `event_at_ms` reports it: inserted when
/// unknown, else updated when the stored event time is not newer and, for a `booked` write,
/// the row is still `booked`. Returns whether the write landed (false: a newer event, or a
/// cancellation or move, got there first; the event is stale).
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.record_event", otel.kind = "client", db.operation.name = "appointments.record_event"))]
pub async fn record_event(
    store: &Store,
    a: &Appointment,
    event_at_ms: i64,
) -> Result<bool, StoreError> {
    record(store, a, Some(event_at_ms))
        .await
        .op("appointments.record_event")
}

/// Write the booking `a` (status `booked`) as a calendar job made it at Cal.com: inserted
/// when unknown, else updated only while the row is still `booked` (a cancellation or move
/// that got there first stands), its event time left as it is. Returns whether it landed.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.record_booked", otel.kind = "client", db.operation.name = "appointments.record_booked"))]
pub async fn record_booked(store: &Store, a: &Appointment) -> Result<bool, StoreError> {
    record(store, a, None)
        .await
        .op("appointments.record_booked")
}

/// Insert if absent, else the guarded update: two statements, each atomic, so a racing
/// writer between them is simply the row the update's `WHERE` judges.
async fn record(
    store: &Store,
    a: &Appointment,
    event_at_ms: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let insert = store.dialect().pick(INSERT_NEW_MYSQL, INSERT_NEW_SQLITE);
    if write(store, insert, a, event_at_ms).await?.rows_affected() > 0 {
        return Ok(true);
    }
    // MySQL counts matched rows here (sqlx connects with CLIENT_FOUND_ROWS), so a repeat
    // that changes nothing still reports that it landed.
    let done = sqlx::query(GUARDED_UPDATE)
        .bind(a.customer_id)
        .bind(&a.status)
        .bind(&a.title)
        .bind(&a.start_at)
        .bind(&a.end_at)
        .bind(&a.location)
        .bind(&a.attendee_name)
        .bind(&a.attendee_email)
        .bind(&a.attendee_phone)
        .bind(&a.rescheduled_from_uid)
        .bind(&a.cancellation_reason)
        .bind(&a.call_id)
        .bind(now_ms())
        .bind(event_at_ms)
        .bind(&a.uid)
        .bind(event_at_ms)
        .bind(event_at_ms)
        .bind(&a.status)
        .execute(store.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Mark the booking `old.uid` moved away by a reschedule at Cal.com time `event_at_ms`,
/// unless a newer event wrote it. An unknown booking is inserted as `old` (status
/// `rescheduled`), so its own `BOOKING_CREATED`, arriving late, cannot book it. Returns
/// whether the mark landed.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.mark_rescheduled", otel.kind = "client", db.operation.name = "appointments.mark_rescheduled"))]
pub async fn mark_rescheduled(
    store: &Store,
    old: &Appointment,
    event_at_ms: i64,
) -> Result<bool, StoreError> {
    const OP: &str = "appointments.mark_rescheduled";
    let insert = store.dialect().pick(INSERT_NEW_MYSQL, INSERT_NEW_SQLITE);
    let tombstone = Appointment {
        status: "rescheduled".into(),
        ..old.clone()
    };
    if write(store, insert, &tombstone, Some(event_at_ms))
        .await
        .op(OP)?
        .rows_affected()
        > 0
    {
        return Ok(true);
    }
    let done = sqlx::query(
        "UPDATE appointments SET status = 'rescheduled', event_at_ms = ?, updated_at_ms = ? \
         WHERE uid = ? AND (event_at_ms IS NULL OR event_at_ms <= ?)",
    )
    .bind(event_at_ms)
    .bind(now_ms())
    .bind(&old.uid)
    .bind(event_at_ms)
    .execute(store.pool())
    .await
    .op(OP)?;
    Ok(done.rows_affected() > 0)
}

/// Cancel the booking `uid` if it is still `booked` (a row another job moved on, e.g. to
/// `rescheduled`, is left alone); returns whether this call cancelled it.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.cancel_if_booked", otel.kind = "client", db.operation.name = "appointments.cancel_if_booked"))]
pub async fn cancel_if_booked(store: &Store, uid: &str, reason: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE appointments SET status = 'cancelled', cancellation_reason = COALESCE(cancellation_reason, ?), \
         updated_at_ms = ? WHERE uid = ? AND status = 'booked'",
    )
    .bind(reason)
    .bind(now_ms())
    .bind(uid)
    .execute(store.pool())
    .await.op("appointments.cancel_if_booked")?;
    Ok(done.rows_affected() > 0)
}

/// Mark the booking `uid` moved away if it is still `booked` (reconciliation found its
/// successor; a row another job moved on is left alone); returns whether this call marked it.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.reschedule_if_booked", otel.kind = "client", db.operation.name = "appointments.reschedule_if_booked"))]
pub async fn reschedule_if_booked(store: &Store, uid: &str) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE appointments SET status = 'rescheduled', updated_at_ms = ? WHERE uid = ? AND status = 'booked'",
    )
    .bind(now_ms())
    .bind(uid)
    .execute(store.pool())
    .await
    .op("appointments.reschedule_if_booked")?;
    Ok(done.rows_affected() > 0)
}

/// Set the times of the booking `uid` if it is still `booked`; returns whether it changed.
#[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db appointments.move_if_booked", otel.kind = "client", db.operation.name = "appointments.move_if_booked"))]
pub async fn move_if_booked(
    store: &Store,
    uid: &str,
    start_at: &str,
    end_at: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE appointments SET start_at = ?, end_at = ?, updated_at_ms = ? WHERE uid = ? AND status = 'booked'",
    )
    .bind(start_at)
    .bind(end_at)
    .bind(now_ms())
    .bind(uid)
    .execute(store.pool())
    .await.op("appointments.move_if_booked")?;
    Ok(done.rows_affected() > 0)
}

/// Run `sql`, an insert of every column of `a` in table order (`uid` ... `call_id`,
/// `updated_at_ms`, `event_at_ms`).
async fn write(
    store: &Store,
    sql: &'static str,
    a: &Appointment,
    event_at_ms: Option<i64>,
) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
    sqlx::query(sql)
        .bind(&a.uid)
        .bind(a.company_id)
        .bind(a.branch_id)
        .bind(a.customer_id)
        .bind(&a.status)
        .bind(&a.title)
        .bind(&a.start_at)
        .bind(&a.end_at)
        .bind(&a.location)
        .bind(&a.attendee_name)
        .bind(&a.attendee_email)
        .bind(&a.attendee_phone)
        .bind(&a.rescheduled_from_uid)
        .bind(&a.cancellation_reason)
        .bind(&a.call_id)
        .bind(now_ms())
        .bind(event_at_ms)
        .execute(store.pool())
        .await
}
