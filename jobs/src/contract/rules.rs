//! The rules the providers state outside their schemas (see the README beside the documents):
//! how each authenticates, Stripe's `Idempotency-Key` and meter event `timestamp` window, and
//! Twilio's one-of rules for the sender and the content.

use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde_json::Value;

use super::{Provider, Request, refusal::Problem};

/// Longest `Idempotency-Key` Stripe takes.
const MAX_IDEMPOTENCY_KEY: usize = 255;
/// Stripe takes meter events from the past 35 calendar days ...
const PAST_WINDOW_SECS: i64 = 35 * 24 * 3600;
/// ... and up to 5 minutes ahead.
const FUTURE_WINDOW_SECS: i64 = 5 * 60;

/// Cal.com and Stripe: `Authorization: Bearer <key>` (Stripe also takes basic auth with the
/// key as user); Twilio: basic auth whose user is the `{AccountSid}` of the path.
pub(super) fn credentials(
    provider: Provider,
    headers: &HeaderMap,
    path_params: &[(String, String)],
) -> Result<(), Problem> {
    let auth = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let bearer = auth
        .strip_prefix("Bearer ")
        .is_some_and(|k| !k.trim().is_empty());
    let basic = auth.strip_prefix("Basic ").and_then(|b| {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':')
            .map(|(user, secret)| (user.to_owned(), secret.to_owned()))
    });
    match provider {
        Provider::Calcom if !bearer => Err(Problem::unauthorized(
            "Authorization: Bearer <api key> is required",
        )),
        Provider::Stripe if !bearer && basic.as_ref().is_none_or(|(u, _)| u.is_empty()) => {
            Err(Problem::unauthorized(
                "You did not provide an API key. Provide it in the Authorization header \
                 (Authorization: Bearer YOUR_SECRET_KEY).",
            ))
        }
        Provider::Twilio => {
            let account = path_params
                .iter()
                .find(|(n, _)| n == "AccountSid")
                .map(|(_, v)| v.as_str());
            match basic {
                Some((user, token)) if Some(user.as_str()) == account && !token.is_empty() => {
                    Ok(())
                }
                Some(_) => Err(Problem::unauthorized(
                    "Authenticate: the basic auth user must be the AccountSid of the path, \
                     with its auth token",
                )),
                None => Err(Problem::unauthorized(
                    "Authenticate: basic auth AccountSid:AuthToken is required",
                )),
            }
        }
        _ => Ok(()),
    }
}

/// Refusals the provider words more precisely than a schema error: Twilio's missing `To`.
pub(super) fn before_schemas(provider: Provider, body: &Value) -> Result<(), Problem> {
    if provider == Provider::Twilio && body["To"].as_str().is_none_or(str::is_empty) {
        return Err(Problem::bad("A 'To' phone number is required.", Some("To")).twilio(21604));
    }
    Ok(())
}

/// Rules on a request whose schemas passed; `body` is the body as JSON (a form as an object).
pub(super) fn beyond_schemas(
    provider: Provider,
    request: &Request<'_>,
    body: &Value,
    now: i64,
) -> Result<(), Problem> {
    match provider {
        Provider::Calcom => calcom(request, body),
        Provider::Stripe => {
            if request.method.eq_ignore_ascii_case("POST") {
                idempotency_key(request.headers)?;
            }
            meter_event_timestamp(body, now)
        }
        // The one-ofs are the create's; a listing has no body.
        Provider::Twilio if request.method.eq_ignore_ascii_case("POST") => message_one_ofs(body),
        Provider::Twilio => Ok(()),
    }
}

/// Cal.com's descriptions: a booking names its event type by id, or by slug with its owner;
/// booking and slot times are UTC; metadata has at most 50 keys of up to 40 characters and
/// string values of up to 500.
fn calcom(request: &Request<'_>, body: &Value) -> Result<(), Problem> {
    let post = request.method.eq_ignore_ascii_case("POST");
    if post && request.path.trim_end_matches('/').ends_with("/v2/bookings") {
        let has = |name: &str| !body[name].is_null();
        if !has("eventTypeId") && !(has("eventTypeSlug") && (has("username") || has("teamSlug"))) {
            return Err(Problem::bad(
                "eventTypeId is required unless eventTypeSlug and username or teamSlug are given",
                Some("eventTypeId"),
            ));
        }
        utc("start", body["start"].as_str().unwrap_or_default(), false)?;
        if let Some(metadata) = body["metadata"].as_object() {
            let too_long = metadata.iter().find(|(k, v)| {
                k.chars().count() > 40 || v.as_str().is_some_and(|v| v.chars().count() > 500)
            });
            if metadata.len() > 50 || too_long.is_some() {
                return Err(Problem::bad(
                    "metadata must have at most 50 keys, each key up to 40 characters, and \
                     string values up to 500 characters",
                    Some("metadata"),
                ));
            }
        }
    }
    if !post && request.path.trim_end_matches('/').ends_with("/v2/slots") {
        for (name, value) in super::form::pairs(request.query.as_bytes()) {
            if name == "start" || name == "end" {
                utc(&name, &value, true)?;
            }
        }
    }
    Ok(())
}

/// `value` is an ISO 8601 time in UTC (`Z` or `+00:00`), or, when `date_ok`, a bare date.
fn utc(name: &str, value: &str, date_ok: bool) -> Result<(), Problem> {
    let is_date = value.len() == 10 && value.as_bytes().get(4) == Some(&b'-');
    let is_utc = value.len() > 10 && (value.ends_with('Z') || value.ends_with("+00:00"));
    if is_utc || (date_ok && is_date) {
        Ok(())
    } else {
        Err(Problem::bad(
            format!("{name} must be in UTC timezone as ISO 8601 datestring, not {value:?}"),
            Some(name),
        ))
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<(), Problem> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if key.is_empty() {
        return Err(Problem::bad(
            "Every POST carries an Idempotency-Key header (the documented rule for retries).",
            Some("Idempotency-Key"),
        ));
    }
    if key.chars().count() > MAX_IDEMPOTENCY_KEY {
        return Err(Problem::bad(
            format!(
                "Keys for idempotent requests can only be {MAX_IDEMPOTENCY_KEY} characters long \
                 and should be unique."
            ),
            Some("Idempotency-Key"),
        ));
    }
    Ok(())
}

fn meter_event_timestamp(body: &Value, now: i64) -> Result<(), Problem> {
    let Some(timestamp) = body["timestamp"].as_i64() else {
        return Ok(()); // absent: Stripe uses its own clock
    };
    if timestamp < now - PAST_WINDOW_SECS || timestamp > now + FUTURE_WINDOW_SECS {
        return Err(Problem::bad(
            format!(
                "The timestamp {timestamp} must be within the past 35 calendar days or up to \
                 5 minutes in the future (now is {now})."
            ),
            Some("timestamp"),
        ));
    }
    Ok(())
}

/// One of `From` / `MessagingServiceSid`; one of `Body` / `MediaUrl` / `ContentSid`.
fn message_one_ofs(body: &Value) -> Result<(), Problem> {
    let has = |name: &str| match &body[name] {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => true,
    };
    if !has("From") && !has("MessagingServiceSid") {
        return Err(Problem::bad("A 'From' phone number is required.", Some("From")).twilio(21603));
    }
    if !has("Body") && !has("MediaUrl") && !has("ContentSid") {
        return Err(Problem::bad("Message body is required.", Some("Body")).twilio(21602));
    }
    Ok(())
}
