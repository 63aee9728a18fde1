//! `appointments`: Cal.com bookings, one row per booking uid. A reschedule creates the new
//! booking's row linked to the old uid and marks the old one `rescheduled`.

use sqlx::{Row, any::AnyRow};

use super::{RowExt, Store, StoreError, now_ms};

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
     location, attendee_name, attendee_email, attendee_phone, rescheduled_from_uid, cancellation_reason, call_id, updated_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON DUPLICATE KEY UPDATE \
     customer_id = COALESCE(VALUES(customer_id), customer_id), status = VALUES(status), title = COALESCE(VALUES(title), title), \
     start_at = VALUES(start_at), end_at = VALUES(end_at), location = COALESCE(VALUES(location), location), \
     attendee_name = COALESCE(VALUES(attendee_name), attendee_name), attendee_email = COALESCE(VALUES(attendee_email), attendee_email), \
     attendee_phone = COALESCE(VALUES(attendee_phone), attendee_phone), \
     rescheduled_from_uid = COALESCE(VALUES(rescheduled_from_uid), rescheduled_from_uid), \
     cancellation_reason = COALESCE(VALUES(cancellation_reason), cancellation_reason), \
     call_id = COALESCE(VALUES(call_id), call_id), updated_at_ms = VALUES(updated_at_ms)";
const UPSERT_SQLITE: &str = "INSERT INTO appointments (uid, company_id, branch_id, customer_id, status, title, start_at, end_at, \
     location, attendee_name, attendee_email, attendee_phone, rescheduled_from_uid, cancellation_reason, call_id, updated_at_ms) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uid) DO UPDATE SET \
     customer_id = COALESCE(excluded.customer_id, appointments.customer_id), status = excluded.status, \
     title = COALESCE(excluded.title, appointments.title), start_at = excluded.start_at, end_at = excluded.end_at, \
     location = COALESCE(excluded.location, appointments.location), \
     attendee_name = COALESCE(excluded.attendee_name, appointments.attendee_name), \
     attendee_email = COALESCE(excluded.attendee_email, appointments.attendee_email), \
     attendee_phone = COALESCE(excluded.attendee_phone, appointments.attendee_phone), \
     rescheduled_from_uid = COALESCE(excluded.rescheduled_from_uid, appointments.rescheduled_from_uid), \
     cancellation_reason = COALESCE(excluded.cancellation_reason, appointments.cancellation_reason), \
     call_id = COALESCE(excluded.call_id, appointments.call_id), updated_at_ms = excluded.updated_at_ms";

/// Insert or update the booking `a.uid`.
pub async fn upsert(store: &Store, a: &Appointment) -> Result<(), StoreError> {
    sqlx::query(store.dialect().pick(UPSERT_MYSQL, UPSERT_SQLITE))
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
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Mark the booking `uid` (if known) with `status`; returns whether a row changed.
pub async fn set_status(store: &Store, uid: &str, status: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE appointments SET status = ?, updated_at_ms = ? WHERE uid = ?")
        .bind(status)
        .bind(now_ms())
        .bind(uid)
        .execute(store.pool())
        .await?;
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
pub async fn get(store: &Store, uid: &str) -> Result<Option<Appointment>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM appointments WHERE uid = ?");
    let row = sqlx::query(&sql)
        .bind(uid)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.as_ref().map(appointment).transpose()?)
}

/// The latest booking made for a call.
pub async fn find_by_call(store: &Store, call_id: &str) -> Result<Option<Appointment>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM appointments WHERE call_id = ? AND status = 'booked' ORDER BY id DESC"
    );
    let row = sqlx::query(&sql)
        .bind(call_id)
        .fetch_optional(store.pool())
        .await?;
    Ok(row.as_ref().map(appointment).transpose()?)
}
