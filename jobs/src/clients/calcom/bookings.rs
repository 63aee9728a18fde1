//! What Cal.com's bookings look like to Switchboard (the bodies sent, the answers read) and
//! the one UTC time form every booking and slot time is compared in.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};

/// A booking to make. Serialised as Cal.com's create-booking body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CreateBooking {
    /// RFC 3339; sent as UTC.
    pub start: String,
    pub event_type_id: i64,
    pub attendee: Attendee,
    /// Stored with the booking and returned by every read; Cal.com limits key count and sizes.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Who a booking is for. Lenient when read: missing or null fields are empty.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, rename_all = "camelCase")]
pub struct Attendee {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub email: String,
    /// IANA name, e.g. `Europe/Berlin`.
    #[serde(deserialize_with = "nullable")]
    pub time_zone: String,
    /// E.164.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
}

/// A booking as Cal.com reports it (the fields the jobs use).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Booking {
    pub id: i64,
    pub uid: String,
    #[serde(default)]
    pub title: Option<String>,
    /// UTC, in the form of [`utc`].
    #[serde(deserialize_with = "utc_time")]
    pub start: String,
    #[serde(deserialize_with = "utc_time")]
    pub end: String,
    /// `accepted`, `cancelled`, `pending`, `rejected`, ...
    pub status: String,
    #[serde(default)]
    pub event_type_id: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    pub attendees: Vec<Attendee>,
    /// Non-string values arrive as their JSON text (`42`, `true`, `{"a":1}`).
    #[serde(default, deserialize_with = "metadata")]
    pub metadata: BTreeMap<String, String>,
    /// Set on the booking a move created: the uid of the booking it replaced (Cal.com moves a
    /// booking by creating a new one and cancelling the old).
    #[serde(default)]
    pub rescheduled_from_uid: Option<String>,
}

/// Filters of [`super::CalcomClient::list_bookings`]; `None` leaves a filter out.
#[derive(Debug, Clone, Default)]
pub struct BookingQuery {
    pub event_type_id: Option<i64>,
    pub attendee_email: Option<String>,
    /// Bookings starting at or after this time (Cal.com `afterStart`).
    pub after_start: Option<String>,
    /// Bookings ending at or before this time (Cal.com `beforeEnd`).
    pub before_end: Option<String>,
    /// `upcoming`, `recurring`, `past`, `cancelled` or `unconfirmed`; several comma-separated.
    pub status: Option<String>,
}

/// `null` read as the type's default.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Any JSON object; non-string values as their JSON text.
fn metadata<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map = Option::<BTreeMap<String, serde_json::Value>>::deserialize(d)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

/// `time` (RFC 3339) as the UTC form this client sends and returns,
/// `2026-09-29T16:30:00.000Z`; `None` when it is not an RFC 3339 time (dates included).
/// Compare booking and slot times in this form (or as instants), never as given.
pub fn utc(time: &str) -> Option<String> {
    instant(time).map(format_utc)
}

/// `time` in UTC when it is an RFC 3339 time, else as given (Cal.com will say what is wrong).
pub(super) fn to_utc(time: &str) -> String {
    utc(time).unwrap_or_else(|| time.to_owned())
}

pub(super) fn instant(time: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(time.trim(), &Rfc3339)
        .ok()
        .map(|t| t.to_offset(UtcOffset::UTC))
}

/// `t` (in UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form Cal.com itself answers with.
pub(super) fn format_utc(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A booking time in the UTC form of [`utc`] (as given when it is not RFC 3339).
fn utc_time<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|t| to_utc(&t))
}
