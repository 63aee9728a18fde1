//! What the HTTP provider clients ([`super::calcom`], [`super::sms`], [`super::stripe`])
//! share: how a client is built, how an answer becomes a [`SendError`], how a requested wait
//! is read, and how errors are written without leaking a credential or a URL.
//!
//! The rules every client follows unless its module says otherwise:
//! - one `reqwest::Client` per client value (cheap clones share its pool), with a connect
//!   timeout and a whole-request timeout from the client's `timeout_secs`, and
//!   `User-Agent: switchboard/<version>` so providers can tell our traffic apart;
//! - no answer at all (refused, reset, timed out) is transient; a request that cannot even be
//!   built (a broken `base_url`, a key that is no header value) is permanent;
//! - 429 and 503 are transient with the provider's `Retry-After`, 408 and other 5xx
//!   transient without a wait, any other refusal permanent (it is about this request or
//!   this account, and a retry sends the same);
//! - every request goes out through [`send`]: a client span named for the provider and the
//!   operation, with the trace's `traceparent` header, so the provider's side joins the trace;
//! - error texts never carry the URL (its path or query may hold an account id or an
//!   attendee's email) and never a credential ([`redact`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{
    StatusCode,
    header::{HeaderMap, HeaderValue, RETRY_AFTER},
};
use time::{OffsetDateTime, format_description::well_known::Rfc2822};
use tracing::Instrument;

use super::SendError;
use crate::secret::{REDACTED, Secret};

/// The `User-Agent` of every provider request.
pub const USER_AGENT: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

/// Longest wait a provider may impose; longer values are taken as broken headers.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Longest wait for a connection. A provider that accepts no connection within this is
/// down or unreachable, and waiting out the whole request limit would only delay the retry.
const MAX_CONNECT: Duration = Duration::from_secs(5);

/// Delta-seconds at or above this are read as a Unix time (Cal.com's API v1 sends its reset
/// times so); no provider asks for a wait of 31 years.
const UNIX_TIME_FROM: u64 = 1_000_000_000;

/// Secrets shorter than this are not real credentials (the development stand-ins use such),
/// and replacing them would mangle unrelated text.
const MIN_REDACTED_LEN: usize = 8;

/// A client whose whole request (connect, send, read) is limited to `timeout_secs` (at least
/// 1) and whose connect step to the lesser of that and 5 seconds.
pub fn client(timeout_secs: u64) -> reqwest::Client {
    let request = Duration::from_secs(timeout_secs.max(1));
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(request.min(MAX_CONNECT))
        .timeout(request)
        .build()
        // Fails only when the TLS backend cannot initialise, as `reqwest::Client::new`
        // (which panics then too); nothing could be sent anyway.
        .expect("the HTTP client's TLS backend initialises")
}

/// Send `request` inside a client span named `name` (e.g. `Cal.com book`) with the trace's
/// `traceparent`; the span records the answer's status. The span holds no URL: a path or
/// query may carry an account id or an attendee's email.
pub async fn send(
    name: &str,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    let (client, request) = request.build_split();
    let mut request = request?;
    let span = tracing::info_span!(
        "provider request",
        otel.name = name,
        otel.kind = "client",
        http.request.method = %request.method(),
        server.address = request.url().host_str().unwrap_or_default(),
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(value) =
        crate::trace::traceparent_of(&span).and_then(|tp| HeaderValue::from_str(&tp).ok())
    {
        request
            .headers_mut()
            .insert(crate::trace::TRACEPARENT, value);
    }
    let answer = client.execute(request).instrument(span.clone()).await;
    match &answer {
        Ok(response) => {
            span.record("http.response.status_code", response.status().as_u16());
            if !response.status().is_success() {
                span.record("otel.status_code", "ERROR");
            }
        }
        Err(_) => {
            span.record("otel.status_code", "ERROR");
        }
    }
    answer
}

/// No answer to a request to `provider` (e.g. `Stripe API`, `Cal.com cancel`): transient,
/// unless the request could not even be built. The message has no URL.
pub fn request_failed(provider: &str, e: reqwest::Error) -> SendError {
    let permanent = e.is_builder();
    let reason = format!("{provider}: {}", error_chain(&e.without_url()));
    if permanent {
        SendError::Permanent(reason)
    } else {
        SendError::transient(reason)
    }
}

/// A refusal with `status`, described by `reason`: 429 and 503 are transient with
/// `retry_after`, 408 and other 5xx transient without a wait, anything else permanent.
pub fn classify(status: StatusCode, retry_after: Option<Duration>, reason: String) -> SendError {
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => SendError::Transient {
            reason,
            retry_after,
        },
        StatusCode::REQUEST_TIMEOUT => SendError::transient(reason),
        s if s.is_server_error() => SendError::transient(reason),
        _ => SendError::Permanent(reason),
    }
}

/// The wait an answer's `Retry-After` asks for, if it has a readable one.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get(RETRY_AFTER).and_then(wait)
}

/// A wait header's value as a duration from now, capped at [`MAX_RETRY_AFTER`]: delta-seconds
/// (`120`; at or above 10^9 a Unix time) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`).
/// A time in the past is no wait.
pub fn wait(value: &HeaderValue) -> Option<Duration> {
    wait_at(value.to_str().ok()?, SystemTime::now())
}

fn wait_at(value: &str, now: SystemTime) -> Option<Duration> {
    let now = now.duration_since(UNIX_EPOCH).ok()?;
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(n) if n < UNIX_TIME_FROM => Duration::from_secs(n),
        Ok(at) => Duration::from_secs(at).saturating_sub(now),
        Err(_) => {
            let at = OffsetDateTime::parse(value, &Rfc2822)
                .ok()?
                .unix_timestamp();
            Duration::from_secs(u64::try_from(at).ok()?).saturating_sub(now)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// `e` and its sources, joined: transport errors keep the useful detail in the chain.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Some errors already repeat their source in their own message.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `text` with every occurrence of `secret` replaced by `[redacted]` (a provider may quote a
/// key back in its refusal).
pub fn redact_text(text: &str, secret: &Secret) -> String {
    if secret.expose().len() < MIN_REDACTED_LEN {
        return text.to_owned();
    }
    text.replace(secret.expose(), REDACTED)
}

/// `e` with `secret` redacted from its reason.
pub fn redact(e: SendError, secret: &Secret) -> SendError {
    match e {
        SendError::Transient {
            reason,
            retry_after,
        } => SendError::Transient {
            reason: redact_text(&reason, secret),
            retry_after,
        },
        SendError::Permanent(reason) => SendError::Permanent(redact_text(&reason, secret)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified_by_what_a_retry_can_do() {
        let wait = Some(Duration::from_secs(3));
        let class = |status: u16| classify(StatusCode::from_u16(status).unwrap(), wait, "r".into());
        for status in [429, 503] {
            assert!(
                matches!(class(status), SendError::Transient { retry_after, .. } if retry_after == wait),
                "{status}"
            );
        }
        for status in [408, 500, 502, 504] {
            assert!(
                matches!(
                    class(status),
                    SendError::Transient {
                        retry_after: None,
                        ..
                    }
                ),
                "{status}"
            );
        }
        for status in [300, 400, 401, 403, 404, 409, 422] {
            assert!(matches!(class(status), SendError::Permanent(_)), "{status}");
        }
    }

    #[test]
    fn waits_are_seconds_unix_times_or_http_dates_and_capped() {
        // 2026-10-21T07:28:00Z.
        let now = UNIX_EPOCH + Duration::from_secs(1_792_567_680);
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(wait_at(" 120 ", now), secs(120));
        assert_eq!(wait_at("0", now), secs(0));
        assert_eq!(wait_at("1792567710", now), secs(30), "a Unix time");
        assert_eq!(wait_at("1792567000", now), secs(0), "a Unix time passed");
        assert_eq!(wait_at("Wed, 21 Oct 2026 07:28:45 GMT", now), secs(45));
        assert_eq!(wait_at("Wed, 21 Oct 2026 07:00:00 GMT", now), secs(0));
        assert_eq!(wait_at("86400", now), Some(MAX_RETRY_AFTER), "capped");
        assert_eq!(
            wait_at("Thu, 22 Oct 2026 07:28:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        for broken in ["", "soon", "-5", "1.5", "Wed, 32 Oct 2026 07:28:00 GMT"] {
            assert_eq!(wait_at(broken, now), None, "{broken:?}");
        }
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), secs(7));
    }

    #[test]
    fn secrets_are_redacted_from_reasons_and_short_ones_left_alone() {
        let key = Secret::new("sk_test_0123456789");
        let e = SendError::Permanent("Invalid API Key provided: sk_test_0123456789".into());
        assert_eq!(
            redact(e, &key).to_string(),
            "Invalid API Key provided: [redacted]"
        );
        let e = SendError::Transient {
            reason: "sk_test_0123456789 is busy".into(),
            retry_after: Some(Duration::from_secs(1)),
        };
        assert!(matches!(
            redact(e, &key),
            SendError::Transient { reason, retry_after: Some(_) } if reason == "[redacted] is busy"
        ));
        assert_eq!(redact_text("dev is dev", &Secret::new("dev")), "dev is dev");
    }
}
