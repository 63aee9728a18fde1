//! The Cal.com API v2 stand-in: slots (2024-09-04, in the requested time zone with offsets),
//! and bookings created, listed (filters, `take`/`skip` with a `pagination` object),
//! rescheduled (a new booking `rescheduledFromUid` the old, which is cancelled) and cancelled.
//! Requests reach it already checked against Cal.com's document (`contract.rs`); answers carry
//! the fields the document marks required for a booking.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

use super::state::Shared;

/// Every booking lasts this long.
const MINUTES: i64 = 30;

type Answer = (StatusCode, Json<Value>);

fn success(status: StatusCode, data: Value) -> Answer {
    let mut body = json!({ "status": "success" });
    body["data"] = data;
    (status, Json(body))
}

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    let error = json!({ "code": code, "message": message });
    (status, Json(json!({ "status": "error", "error": error })))
}

/// `t` as Cal.com writes UTC times, `2026-09-29T16:30:00.000Z`.
fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// An ISO 8601 time, or a date (its start, or with `end_of_day` its end).
fn instant(text: &str, end_of_day: bool) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let t = if end_of_day {
        day.and_hms_opt(23, 59, 59)?
    } else {
        day.and_hms_opt(0, 0, 0)?
    };
    Some(t.and_utc())
}

/// Every full hour from 09:00 to 16:00 UTC in [start, end], minus booked starts, listed under
/// the day and with the offset of `timeZone` (UTC when absent), as Cal.com does.
pub async fn slots(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Answer {
    let zone: chrono_tz::Tz = match q.get("timeZone").map(|z| z.parse()) {
        None => chrono_tz::UTC,
        Some(Ok(zone)) => zone,
        Some(Err(_)) => {
            let message = format!("Invalid time zone {:?}", q["timeZone"]);
            return error(StatusCode::BAD_REQUEST, "BadRequestException", &message);
        }
    };
    let (Some(start), Some(end)) = (
        q.get("start").and_then(|t| instant(t, false)),
        q.get("end").and_then(|t| instant(t, true)),
    ) else {
        let message = "start and end must be ISO 8601 dates or times".to_owned();
        return error(StatusCode::BAD_REQUEST, "BadRequestException", &message);
    };
    let booked: Vec<DateTime<Utc>> = s
        .lock()
        .expect("dev state")
        .bookings
        .iter()
        .filter(|b| b["status"] != "cancelled")
        .filter_map(|b| b["start"].as_str().and_then(|t| instant(t, false)))
        .collect();
    let mut days = serde_json::Map::new();
    let mut t = start
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(start, |t| t.and_utc());
    let mut listed = 0;
    while t <= end && listed < 200 {
        let hour = t.format("%H").to_string();
        if t >= start && ("09".."17").contains(&hour.as_str()) && !booked.contains(&t) {
            let local = zone.from_utc_datetime(&t.naive_utc());
            let day = local.format("%Y-%m-%d").to_string();
            let start = local.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string();
            if let Some(list) = days.entry(day).or_insert_with(|| json!([])).as_array_mut() {
                list.push(json!({ "start": start }));
            }
            listed += 1;
        }
        t += chrono::Duration::hours(1);
    }
    success(StatusCode::OK, Value::Object(days))
}

/// Bookings matching the filters, by start, a page at a time (`take`, default 100; `skip`).
pub async fn list(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Answer {
    let now = Utc::now();
    let after = q.get("afterStart").and_then(|t| instant(t, false));
    let before = q.get("beforeEnd").and_then(|t| instant(t, true));
    let statuses: Vec<&str> = q
        .get("status")
        .map_or(Vec::new(), |s| s.split(',').collect());
    let number = |name: &str, default: usize| {
        q.get(name)
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(default, |v| v.max(0.0) as usize)
    };
    let (take, skip) = (number("take", 100), number("skip", 0));
    let time = |b: &Value, field: &str| b[field].as_str().and_then(|t| instant(t, false));
    let mut matching: Vec<Value> = s
        .lock()
        .expect("dev state")
        .bookings
        .iter()
        .filter(|b| {
            let (start, end) = (time(b, "start"), time(b, "end"));
            let cancelled = b["status"] == "cancelled";
            let status_ok = statuses.is_empty()
                || statuses.iter().any(|s| match *s {
                    "cancelled" => cancelled,
                    "upcoming" => !cancelled && end.is_some_and(|e| e >= now),
                    "past" => !cancelled && end.is_some_and(|e| e < now),
                    "unconfirmed" => b["status"] == "pending",
                    _ => false,
                });
            q.get("eventTypeId").is_none_or(|id| {
                b["eventTypeId"]
                    .as_i64()
                    .is_some_and(|b| id.parse() == Ok(b))
            }) && q
                .get("attendeeEmail")
                .is_none_or(|e| b["attendees"][0]["email"].as_str() == Some(e))
                && after.is_none_or(|a| start.is_some_and(|s| s >= a))
                && before.is_none_or(|z| end.is_some_and(|e| e <= z))
                && status_ok
        })
        .cloned()
        .collect();
    matching.sort_by_key(|b| time(b, "start"));
    if q.get("sortStart").is_some_and(|s| s == "desc") {
        matching.reverse();
    }
    let total = matching.len();
    let page: Vec<Value> = matching.into_iter().skip(skip).take(take).collect();
    let per_page = take.max(1);
    let pagination = json!({
        "totalItems": total,
        "remainingItems": total.saturating_sub(skip + page.len()),
        "returnedItems": page.len(),
        "itemsPerPage": take,
        "currentPage": skip / per_page + 1,
        "totalPages": total.div_ceil(per_page),
        "hasNextPage": skip + page.len() < total,
        "hasPreviousPage": skip > 0,
    });
    let body = json!({ "status": "success", "data": page, "pagination": pagination });
    (StatusCode::OK, Json(body))
}

/// A booking with every field Cal.com's `BookingOutput_2024_08_13` requires. Its uid is the
/// `n`th of this process and a random tag, never one an earlier `serve` gave out: Redis
/// outlives the stand-in's memory, and a reused uid would make this booking's confirmation
/// a duplicate of that earlier booking's (the notifications are keyed by the uid).
fn booking(n: usize, start: DateTime<Utc>, event_type_id: &Value, attendee: &Value) -> Value {
    let now = utc(Utc::now());
    let uid = format!("dev_booking_{n}_{:08x}", rand::random::<u32>());
    let mut attendee = attendee.clone();
    attendee["absent"] = false.into();
    json!({
        "id": 900_000 + n, "uid": uid,
        "title": "Appointment (development stand-in)", "description": "",
        "hosts": [{"id": 1, "name": "Development host", "email": "host@dev.invalid",
                   "username": "dev-host", "timeZone": "UTC"}],
        "status": "accepted", "start": utc(start),
        "end": utc(start + chrono::Duration::minutes(MINUTES)), "duration": MINUTES,
        "eventTypeId": event_type_id, "eventType": {"id": event_type_id, "slug": "dev-appointment"},
        "location": "", "absentHost": false, "createdAt": now, "updatedAt": now,
        "attendees": [attendee], "bookingFieldsResponses": {}, "metadata": {},
    })
}

pub async fn create(State(s): State<Shared>, Json(req): Json<Value>) -> Answer {
    let Some(start) = req["start"].as_str().and_then(|t| instant(t, false)) else {
        let message = "start must be an ISO 8601 time".to_owned();
        return error(StatusCode::BAD_REQUEST, "BadRequestException", &message);
    };
    let mut state = s.lock().expect("dev state");
    let mut created = booking(
        state.bookings.len() + 1,
        start,
        &req["eventTypeId"],
        &req["attendee"],
    );
    if req["metadata"].is_object() {
        created["metadata"] = req["metadata"].clone();
    }
    super::window::remember(&mut state.bookings, created.clone());
    tracing::info!(uid = %created["uid"], "dev stand-in: Cal.com booking created");
    success(StatusCode::CREATED, created)
}

/// The booking `uid` (its index), or Cal.com's 404, or its 400 when it is cancelled.
fn live(bookings: &[Value], uid: &str) -> Result<usize, Answer> {
    match bookings.iter().position(|b| b["uid"] == uid) {
        None => Err(error(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            &format!("Booking with uid={uid} was not found in the database"),
        )),
        Some(i) if bookings[i]["status"] == "cancelled" => Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequestException",
            "This booking has already been cancelled.",
        )),
        Some(i) => Ok(i),
    }
}

/// Cal.com's way: a new booking at the new time, `rescheduledFromUid` the old one, which is
/// cancelled (`rescheduledToUid` the new one). Answers the new booking.
pub async fn reschedule(
    State(s): State<Shared>,
    Path(uid): Path<String>,
    Json(req): Json<Value>,
) -> Answer {
    let Some(start) = req["start"].as_str().and_then(|t| instant(t, false)) else {
        let message = "start must be an ISO 8601 time".to_owned();
        return error(StatusCode::BAD_REQUEST, "BadRequestException", &message);
    };
    let mut state = s.lock().expect("dev state");
    let old = match live(&state.bookings, &uid) {
        Ok(i) => i,
        Err(answer) => return answer,
    };
    let previous = state.bookings[old].clone();
    let mut moved = booking(
        state.bookings.len() + 1,
        start,
        &previous["eventTypeId"],
        &previous["attendees"][0],
    );
    moved["metadata"] = previous["metadata"].clone();
    moved["rescheduledFromUid"] = uid.clone().into();
    if let Some(reason) = req["reschedulingReason"].as_str() {
        moved["reschedulingReason"] = reason.into();
    }
    let old_booking = &mut state.bookings[old];
    old_booking["status"] = "cancelled".into();
    old_booking["rescheduledToUid"] = moved["uid"].clone();
    old_booking["updatedAt"] = utc(Utc::now()).into();
    super::window::remember(&mut state.bookings, moved.clone());
    tracing::info!(from = %uid, to = %moved["uid"], "dev stand-in: Cal.com booking rescheduled");
    success(StatusCode::CREATED, moved)
}

/// Cancel `uid`: 404 when unknown, 400 when already cancelled, else the cancelled booking.
pub async fn cancel(
    State(s): State<Shared>,
    Path(uid): Path<String>,
    Json(req): Json<Value>,
) -> Answer {
    let mut state = s.lock().expect("dev state");
    let i = match live(&state.bookings, &uid) {
        Ok(i) => i,
        Err(answer) => return answer,
    };
    let b = &mut state.bookings[i];
    b["status"] = "cancelled".into();
    b["updatedAt"] = utc(Utc::now()).into();
    if let Some(reason) = req["cancellationReason"].as_str() {
        b["cancellationReason"] = reason.into();
    }
    success(StatusCode::OK, b.clone())
}
