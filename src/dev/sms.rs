//! The SMS gateway stand-in: the two operations Switchboard uses of a Twilio-compatible
//! Messages resource, under `/dev/sms` (so `sms.base_url` is `<stand-ins>/sms`), with the
//! shapes and refusals of Twilio's API 2010-04-01 for the fields Switchboard sends:
//!
//! - `POST /2010-04-01/Accounts/{sid}/Messages.json`, form `From`, `To`, `Body`: 201 with the
//!   message (`sid` is `SM` and 32 hex digits); a missing field is 400 with Twilio's code.
//! - `GET` on the same path lists the messages newest first, filtered by `To`, `From` and
//!   `DateSent` / `DateSent>` / `DateSent<` (a UTC day `YYYY-MM-DD`, on / on or after / on
//!   or before), `PageSize` (1 to 1000, default 50) and `Page`; the answer has `messages`
//!   and `next_page_uri` (relative to the API root, `null` on the last page).
//!
//! Both answer 401 unless basic auth is [`ACCOUNT_SID`]:[`AUTH_TOKEN`] and the path names that
//! account. A message is "sent" at once: `date_sent` (RFC 2822, as Twilio writes it) is the
//! time of the POST. State lives in the [`Gateway`] value; tests serve their own.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    routing::get,
};
use base64::Engine as _;
use serde_json::{Value, json};
use time::{Date, Month, OffsetDateTime, format_description::well_known::Rfc2822};

/// The development account (the runtime uses it when no SMS credentials are set).
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000de0";
/// The development account's auth token.
pub const AUTH_TOKEN: &str = "dev";

/// Where the stand-in is mounted on the HTTP listener.
const MOUNT: &str = "/dev/sms";

/// Messages the gateway accepted, oldest first. Cheap to clone (one shared list).
#[derive(Clone, Default)]
pub struct Gateway {
    messages: Arc<Mutex<Vec<Stored>>>,
}

#[derive(Clone)]
struct Stored {
    sent_at: OffsetDateTime,
    message: Value,
}

type Answer = (StatusCode, Json<Value>);

impl Gateway {
    /// The messages accepted so far, oldest first, as the list shows them.
    pub fn messages(&self) -> Vec<Value> {
        self.lock().iter().map(|s| s.message.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Stored>> {
        self.messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The stand-in's routes over `gateway`.
pub fn router(gateway: Gateway) -> Router {
    Router::new()
        .route(
            &format!("{MOUNT}/2010-04-01/Accounts/{{sid}}/Messages.json"),
            get(list).post(send),
        )
        .with_state(gateway)
}

/// Twilio's error body.
fn refuse(status: StatusCode, code: u32, message: &str) -> Answer {
    let body = json!({
        "code": code, "message": message, "status": status.as_u16(),
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
    });
    (status, Json(body))
}

/// 401 unless the request authenticates as the development account named in the path.
fn authenticate(sid: &str, headers: &HeaderMap) -> Result<(), Answer> {
    let expected =
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"));
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    if sid == ACCOUNT_SID && given == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(refuse(StatusCode::UNAUTHORIZED, 20003, "Authenticate"))
    }
}

fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
}

async fn send(
    State(gateway): State<Gateway>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Answer {
    if let Err(refusal) = authenticate(&sid, &headers) {
        return refusal;
    }
    let field = |name: &str| form.get(name).filter(|v| !v.trim().is_empty());
    let (Some(to), Some(from), Some(body)) = (field("To"), field("From"), field("Body")) else {
        return match (field("To"), field("From")) {
            (None, _) => refuse(
                StatusCode::BAD_REQUEST,
                21604,
                "A 'To' phone number is required.",
            ),
            (_, None) => refuse(
                StatusCode::BAD_REQUEST,
                21603,
                "A 'From' phone number is required.",
            ),
            _ => refuse(StatusCode::BAD_REQUEST, 21602, "Message body is required."),
        };
    };
    let now = OffsetDateTime::now_utc();
    let mut messages = gateway.lock();
    let n = messages.len() as u128 + 1;
    // Unique across restarts of the stand-in: the start time's nanoseconds, then a counter.
    let sid = format!(
        "SM{:032x}",
        (now.unix_timestamp_nanos().unsigned_abs() << 20) | n
    );
    let date = now.format(&Rfc2822).unwrap_or_default();
    let message = json!({
        "sid": sid, "account_sid": ACCOUNT_SID, "api_version": "2010-04-01",
        "to": to, "from": from, "body": body, "status": "sent", "direction": "outbound-api",
        "date_created": date, "date_sent": date, "date_updated": date,
        "num_segments": "1", "num_media": "0", "error_code": null, "error_message": null,
        "uri": format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json"),
    });
    super::window::remember(
        &mut messages,
        Stored {
            sent_at: now,
            message: message.clone(),
        },
    );
    tracing::info!(%sid, "dev stand-in: SMS accepted");
    let mut answer = message;
    answer["status"] = json!("queued");
    (StatusCode::CREATED, Json(answer))
}

/// A `DateSent` filter value: a UTC day.
fn day(value: &str) -> Option<Date> {
    let mut parts = value.splitn(3, '-');
    let mut next = || {
        parts
            .next()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
    };
    let (year, month, day) = (next()?, next()?, next()?);
    let month = Month::try_from(month.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()
}

async fn list(
    State(gateway): State<Gateway>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Answer {
    if let Err(refusal) = authenticate(&sid, &headers) {
        return refusal;
    }
    let mut days = Vec::new();
    for (name, keep) in [
        ("DateSent", (|d, f| d == f) as fn(Date, Date) -> bool),
        ("DateSent>", |d, f| d >= f),
        ("DateSent<", |d, f| d <= f),
    ] {
        if let Some(value) = q.get(name) {
            let Some(filter) = day(value) else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    20001,
                    &format!("Invalid {name}: {value}"),
                );
            };
            days.push((filter, keep));
        }
    }
    let size = match q.get("PageSize").map(|s| s.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return refuse(StatusCode::BAD_REQUEST, 20001, "Invalid PageSize"),
    };
    let Ok(page) = q.get("Page").map_or(Ok(0), |p| p.parse::<usize>()) else {
        return refuse(StatusCode::BAD_REQUEST, 20001, "Invalid Page");
    };
    let matching: Vec<Value> = gateway
        .lock()
        .iter()
        .rev()
        .filter(|s| q.get("To").is_none_or(|to| s.message["to"] == to.as_str()))
        .filter(|s| {
            q.get("From")
                .is_none_or(|f| s.message["from"] == f.as_str())
        })
        .filter(|s| days.iter().all(|(f, keep)| keep(s.sent_at.date(), *f)))
        .map(|s| s.message.clone())
        .collect();
    let start = page.saturating_mul(size);
    let messages: Vec<Value> = matching.iter().skip(start).take(size).cloned().collect();
    let mut filters = form_urlencoded::Serializer::new(String::new());
    for name in ["To", "From", "DateSent", "DateSent>", "DateSent<"] {
        if let Some(value) = q.get(name) {
            filters.append_pair(name, value);
        }
    }
    let filters = filters.finish();
    let uri = |p: usize| format!("{}?{filters}&PageSize={size}&Page={p}", messages_path());
    let next = (start + size < matching.len()).then(|| uri(page + 1));
    let previous = (page > 0).then(|| uri(page - 1));
    let body = json!({
        "messages": messages, "page": page, "page_size": size, "start": start,
        "end": start + messages.len().saturating_sub(1),
        "uri": uri(page), "first_page_uri": uri(0),
        "next_page_uri": next, "previous_page_uri": previous,
    });
    (StatusCode::OK, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_and_days_are_in_twilio_form() {
        assert_eq!(ACCOUNT_SID.len(), 34);
        assert!(ACCOUNT_SID.starts_with("AC"));
        assert!(ACCOUNT_SID[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            day("2026-12-06"),
            Date::from_calendar_date(2026, Month::December, 6).ok()
        );
        assert_eq!(day("06/12/2026"), None);
    }
}
