//! Cal.com API v2: free slots, and creating, rescheduling, cancelling and listing bookings.
//!
//! Every request carries `Authorization: Bearer <key>` (each company has its own key) and the
//! `cal-api-version` its endpoint is documented for: `2024-09-04` for `/slots`, `2024-08-13`
//! for `/bookings`. Answers are `{"status": "success", "data": ...}`; refusals are
//! `{"status": "error", "error": {"code", "message"}}` and are classified like the other
//! clients ([`SendError`]). The key is never printed: not by `Debug`, not in an error (an
//! answer that echoes it is redacted), and it travels as a sensitive header.
//!
//! Times: Cal.com wants UTC. Starts that parse as RFC 3339 with an offset are converted to
//! UTC before they are sent, and slot times (which Cal.com gives in the requested time zone)
//! come back as UTC, e.g. `2026-09-29T16:30:00.000Z`.
//!
//! A write whose answer cannot be read (create, reschedule) is a permanent failure: Cal.com
//! may have made the booking, and a blind retry could make a second one.
//!
//! Here: the settings, the client and its requests; the booking types and the UTC time form
//! are in `bookings.rs`, the page-by-page listing in `pages.rs`.

mod bookings;
mod pages;

use std::{collections::BTreeMap, fmt, time::Duration};

use reqwest::{StatusCode, Url, header::HeaderMap};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use self::bookings::{format_utc, instant, to_utc};
pub use self::{
    bookings::{Attendee, Booking, BookingQuery, CreateBooking, utc},
    pages::BookingPages,
};
use super::{InvalidSettings, SendError, http};
use crate::secret::Secret;

const API_VERSION: &str = "cal-api-version";
const BOOKINGS_VERSION: &str = "2024-08-13";
const SLOTS_VERSION: &str = "2024-09-04";
/// Refusal bodies are cut to this many characters.
const MAX_DETAIL: usize = 300;

/// The `[calcom]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CalcomSettings {
    /// API root including the version, `https://api.cal.com/v2`; tests point it at a mock.
    pub base_url: String,
    /// Limit on each whole request; keep it below the job timeout.
    pub timeout_secs: u64,
}

impl Default for CalcomSettings {
    fn default() -> Self {
        CalcomSettings {
            base_url: "https://api.cal.com/v2".into(),
            timeout_secs: 10,
        }
    }
}

impl CalcomSettings {
    /// The first problem that would stop Cal.com calls from working.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let url = self.base_url.trim();
        let usable = Url::parse(url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.has_host() && u.query().is_none()
        });
        if !usable {
            return Err(InvalidSettings(format!(
                "calcom.base_url {url:?} is not an http(s) URL without a query"
            )));
        }
        if self.timeout_secs == 0 {
            return Err(InvalidSettings(
                "calcom.timeout_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// One company's way into Cal.com. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct CalcomClient {
    http: reqwest::Client,
    /// `base_url` without a trailing slash.
    base_url: String,
    /// Redacted from anything Cal.com echoes back.
    api_key: Secret,
}

/// `{"status": "success", "data": ...}`.
#[derive(Deserialize)]
struct Answer<T> {
    data: T,
}

/// One slot; the `range` format and seated slots add fields we do not need.
#[derive(Deserialize)]
struct Slot {
    start: String,
}

/// `{"status": "error", "error": {"code": "BadRequestException", "message": "..."}}`.
#[derive(Deserialize)]
struct Refusal {
    error: RefusalDetail,
}

#[derive(Deserialize)]
struct RefusalDetail {
    code: Option<serde_json::Value>,
    message: Option<serde_json::Value>,
}

impl CalcomClient {
    /// A client for `settings` acting with `api_key`.
    pub fn new(settings: &CalcomSettings, api_key: Secret) -> CalcomClient {
        CalcomClient {
            http: http::client(settings.timeout_secs),
            base_url: settings.base_url.trim().trim_end_matches('/').to_owned(),
            api_key: trim_key(api_key),
        }
    }

    /// The same client acting with another company's key, sharing the connection pool.
    #[must_use]
    pub fn with_api_key(&self, api_key: Secret) -> CalcomClient {
        CalcomClient {
            api_key: trim_key(api_key),
            ..self.clone()
        }
    }

    /// Free slot start times (UTC, RFC 3339, sorted) for an event type in [start, end).
    ///
    /// `start` and `end` are RFC 3339 times (or dates, which Cal.com reads as the start and
    /// end of that day); `time_zone` is passed on (it decides which day a slot is listed
    /// under) but the answer is UTC either way.
    pub async fn free_slots(
        &self,
        event_type_id: i64,
        start: &str,
        end: &str,
        time_zone: &str,
    ) -> Result<Vec<String>, SendError> {
        const OP: &str = "free slots";
        let (from, until) = (instant(start), instant(end));
        let mut query = vec![
            ("eventTypeId", event_type_id.to_string()),
            (
                "start",
                from.map_or_else(|| start.trim().to_owned(), format_utc),
            ),
            (
                "end",
                until.map_or_else(|| end.trim().to_owned(), format_utc),
            ),
        ];
        if !time_zone.trim().is_empty() {
            query.push(("timeZone", time_zone.trim().to_owned()));
        }
        let request = self.http.get(self.url(&["slots"])?).query(&query);
        let response = self.send(OP, request, SLOTS_VERSION).await?;
        let days: BTreeMap<String, Vec<Slot>> =
            data(OP, response).await.map_err(SendError::transient)?;
        let mut starts = Vec::new();
        for slot in days.into_values().flatten() {
            let at = instant(&slot.start).ok_or_else(|| {
                SendError::transient(format!(
                    "Cal.com {OP}: slot start {:?} is not an RFC 3339 time",
                    slot.start
                ))
            })?;
            // Cal.com's `end` may include a slot starting exactly at it; ours does not.
            if from.is_none_or(|f| at >= f) && until.is_none_or(|u| at < u) {
                starts.push(at);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        Ok(starts.into_iter().map(format_utc).collect())
    }

    /// Book `request.attendee` into `request.event_type_id` at `request.start`.
    pub async fn create_booking(&self, request: &CreateBooking) -> Result<Booking, SendError> {
        const OP: &str = "create booking";
        let body = CreateBooking {
            start: to_utc(&request.start),
            ..request.clone()
        };
        let request = self.http.post(self.url(&["bookings"])?).json(&body);
        let response = self.send(OP, request, BOOKINGS_VERSION).await?;
        let created: serde_json::Value = data(OP, response)
            .await
            .map_err(|e| unreadable_write(OP, &e))?;
        // A recurring event type answers with its occurrences; the first is the one booked.
        let created = match created {
            serde_json::Value::Array(occurrences) => occurrences.into_iter().next(),
            one => Some(one),
        };
        let booking = created.map(serde_json::from_value::<Booking>);
        match booking {
            Some(Ok(booking)) => Ok(booking),
            Some(Err(e)) => Err(unreadable_write(OP, &format!("Cal.com {OP}: {e}"))),
            None => Err(unreadable_write(
                OP,
                &format!("Cal.com {OP}: no booking in the answer"),
            )),
        }
    }

    /// Move booking `uid` to `start`. Cal.com answers with the booking at its new time,
    /// which may carry a new uid (the old one is then cancelled).
    pub async fn reschedule(
        &self,
        uid: &str,
        start: &str,
        reason: Option<&str>,
    ) -> Result<Booking, SendError> {
        const OP: &str = "reschedule";
        let mut body = serde_json::json!({ "start": to_utc(start) });
        if let Some(reason) = reason {
            body["reschedulingReason"] = reason.into();
        }
        let url = self.booking_url(OP, uid, "reschedule")?;
        let response = self
            .send(OP, self.http.post(url).json(&body), BOOKINGS_VERSION)
            .await?;
        data(OP, response)
            .await
            .map_err(|e| unreadable_write(OP, &e))
    }

    /// Cancel booking `uid`.
    pub async fn cancel(&self, uid: &str, reason: Option<&str>) -> Result<(), SendError> {
        const OP: &str = "cancel";
        let mut body = serde_json::json!({});
        if let Some(reason) = reason {
            body["cancellationReason"] = reason.into();
        }
        let url = self.booking_url(OP, uid, "cancel")?;
        self.send(OP, self.http.post(url).json(&body), BOOKINGS_VERSION)
            .await?;
        Ok(())
    }

    /// Bookings matching `query`, earliest start first, read page by page (`take`/`skip`).
    ///
    /// Cal.com filters on start ≥ `after_start` and end ≤ `before_end`. More than
    /// 5,000 matches is an error rather than a partial list.
    pub async fn list_bookings(&self, query: &BookingQuery) -> Result<Vec<Booking>, SendError> {
        let mut pages = self.booking_pages(query);
        while pages.next_page().await? {}
        Ok(pages.into_bookings())
    }

    /// The same listing one request at a time, for callers that pace each request (a
    /// rate-limit slot per page).
    pub fn booking_pages<'a>(&'a self, query: &BookingQuery) -> BookingPages<'a> {
        BookingPages::new(self, query)
    }

    /// `{base_url}/{segments...}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url, SendError> {
        let broken = || SendError::Permanent("Cal.com base_url is not a usable URL".into());
        let mut url = Url::parse(&self.base_url).map_err(|_| broken())?;
        url.path_segments_mut()
            .map_err(|()| broken())?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn booking_url(&self, op: &str, uid: &str, action: &str) -> Result<Url, SendError> {
        if uid.trim().is_empty() {
            return Err(SendError::Permanent(format!(
                "Cal.com {op}: empty booking uid"
            )));
        }
        self.url(&["bookings", uid.trim(), action])
    }

    /// Send with the key and API version; any non-2xx answer becomes a [`SendError`].
    async fn send(
        &self,
        op: &str,
        request: reqwest::RequestBuilder,
        version: &str,
    ) -> Result<reqwest::Response, SendError> {
        let request = request
            .bearer_auth(self.api_key.expose())
            .header(API_VERSION, version);
        let response = http::send(&format!("Cal.com {op}"), request)
            .await
            // No URL in the message (`http::request_failed`): its query holds attendee emails.
            .map_err(|e| self.redact(http::request_failed(&format!("Cal.com {op}"), e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(status, response.headers());
        let text = response.text().await.unwrap_or_default();
        Err(self.redact(classify(op, status, retry_after, &text)))
    }

    /// `e` without the key (Cal.com may echo it, and so may an unbuildable request).
    fn redact(&self, e: SendError) -> SendError {
        http::redact(e, &self.api_key)
    }
}

impl fmt::Debug for CalcomClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalcomClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// `key` without the whitespace a pasted key often brings.
fn trim_key(key: Secret) -> Secret {
    if key.expose().trim().len() == key.expose().len() {
        key
    } else {
        Secret::new(key.expose().trim())
    }
}

/// The whole answer as `T`, or why not.
async fn body<T: DeserializeOwned>(op: &str, response: reqwest::Response) -> Result<T, String> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| {
        format!(
            "Cal.com {op}: reading the answer: {}",
            http::error_chain(&e.without_url())
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("Cal.com {op}: unexpected answer ({status}): {e}"))
}

/// The answer's `data` as `T`, or why not.
async fn data<T: DeserializeOwned>(op: &str, response: reqwest::Response) -> Result<T, String> {
    body::<Answer<T>>(op, response).await.map(|a| a.data)
}

fn unreadable_write(op: &str, why: &str) -> SendError {
    SendError::Permanent(format!(
        "{why} (Cal.com {op} succeeded, so the booking may have changed: check before retrying)"
    ))
}

/// The wait a refusal asks for: `Retry-After` (429 and 503), else for 429 the largest of
/// Cal.com's `X-RateLimit-Reset-<name>` headers (seconds until that limit's block ends; all
/// of them are blocked when Cal.com refuses, and a retry that is refused again costs an
/// attempt). Values are read by [`http::wait`]: seconds, a Unix time (Cal.com's API v1
/// form) or an HTTP-date, capped at an hour.
fn retry_after(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    let wait = match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            http::retry_after(headers)
        }
        _ => None,
    };
    wait.or_else(|| {
        (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| {
                headers
                    .iter()
                    .filter(|(name, _)| name.as_str().starts_with("x-ratelimit-reset"))
                    .filter_map(|(_, v)| http::wait(v))
                    .max()
            })
            .flatten()
    })
}

/// Cal.com's refusal text (its `error.message` and `error.code`, else the body, cut), classified
/// by [`http::classify`].
fn classify(op: &str, status: StatusCode, retry_after: Option<Duration>, body: &str) -> SendError {
    let text = |v: serde_json::Value| match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    let detail = match serde_json::from_str::<Refusal>(body) {
        Ok(Refusal {
            error:
                RefusalDetail {
                    message: Some(m),
                    code,
                },
        }) => match code.map(text) {
            Some(c) if !c.is_empty() => format!("{} ({c})", text(m)),
            _ => text(m),
        },
        _ => body.trim().to_owned(),
    };
    let detail: String = detail.chars().take(MAX_DETAIL).collect();
    let reason = format!("Cal.com {op} answered {status}: {detail}");
    http::classify(status, retry_after, reason)
}
