//! Call minutes to Stripe usage-based billing, as billing meter events.
//!
//! One request per event: `POST {base_url}/v1/billing/meter_events`, form-encoded
//! `event_name`, `payload[stripe_customer_id]`, `payload[value]`, `identifier` and
//! `timestamp`, with `Authorization: Bearer sk_...` and an `Idempotency-Key` header.
//!
//! Two layers keep a call from being billed twice, and both depend on the caller sending the
//! same [`MeterEvent`] on every attempt: the `Idempotency-Key` makes Stripe replay its first
//! answer to a retry (for 24 hours), and the `identifier` makes Stripe refuse a second event
//! for the same call (for at least 24 hours) even under a new key. That refusal is reported as
//! success: the usage is at Stripe. The secret key arrives as a [`Secret`] and never
//! appears in `Debug` output, errors or logs.

use std::{fmt, time::Duration};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::{InvalidSettings, SendError, http};
use crate::secret::Secret;

/// Stripe's limits on `event_name` and `identifier`, and on `Idempotency-Key` headers.
const MAX_EVENT_NAME: usize = 100;
const MAX_IDENTIFIER: usize = 100;
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The `[stripe]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    /// API root, `https://api.stripe.com`; tests point it at a mock server.
    pub base_url: String,
    /// The `event_name` of the meter that counts call minutes.
    pub meter_event_name: String,
    /// Limit on the whole request; keep it below the job timeout.
    pub timeout_secs: u64,
}

impl Default for StripeSettings {
    fn default() -> Self {
        StripeSettings {
            base_url: "https://api.stripe.com".into(),
            meter_event_name: "call_minutes".into(),
            timeout_secs: 10,
        }
    }
}

impl StripeSettings {
    /// The first problem that would stop usage reports from working.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let url = self.base_url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(InvalidSettings(format!(
                "stripe.base_url {url:?} is not an http(s) URL"
            )));
        }
        let name = self.meter_event_name.trim();
        if name.is_empty() || name.len() > MAX_EVENT_NAME {
            return Err(InvalidSettings(format!(
                "stripe.meter_event_name must be 1 to {MAX_EVENT_NAME} characters"
            )));
        }
        if self.timeout_secs == 0 {
            return Err(InvalidSettings(
                "stripe.timeout_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// One usage report: `value` minutes of a call, billed to `stripe_customer_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEvent {
    pub stripe_customer_id: String,
    pub value: i64,
    /// Stripe's deduplication key (at most 100 characters); the same for every attempt.
    pub identifier: String,
    /// When the usage happened, unix seconds; Stripe takes the past 35 days only.
    pub timestamp: i64,
    /// For usage reported after that window (at the time of the report instead): when the
    /// call really ended, unix seconds, sent as `payload[call_ended_at]` for the books.
    pub call_ended_at: Option<i64>,
    /// The same for every attempt, e.g. [`usage_idempotency_key`].
    pub idempotency_key: String,
}

/// What Stripe recorded. `created` and `livemode` are `None` when Stripe already had the event
/// (see [`StripeClient::report_meter_event`]) or its answer lacked them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MeterEventReceipt {
    pub identifier: String,
    pub created: Option<i64>,
    pub livemode: Option<bool>,
}

/// A stable `Idempotency-Key` for a call's usage report: `switchboard-usage-<call id>`, or,
/// when that would be longer than 255 characters or the id is not printable ASCII (header
/// values must be), `switchboard-usage-fnv128-<hash of the id>`. Ids that start with
/// `fnv128-` are hashed too, so the two forms never meet.
pub fn usage_idempotency_key(call_id: &str) -> String {
    const PREFIX: &str = "switchboard-usage-";
    const HASHED: &str = "fnv128-";
    let plain = PREFIX.len() + call_id.len() <= MAX_IDEMPOTENCY_KEY
        && call_id.bytes().all(|b| b.is_ascii_graphic())
        && !call_id.starts_with(HASHED);
    if plain {
        format!("{PREFIX}{call_id}")
    } else {
        format!("{PREFIX}{HASHED}{:032x}", fnv1a_128(call_id.as_bytes()))
    }
}

/// FNV-1a, 128 bits: stable across builds and Rust versions (unlike `DefaultHasher`), which a
/// key that must match between attempts, possibly across a deploy, needs. Call ids are ours
/// or signed by the telephony provider, so a non-cryptographic hash is enough.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u128::from(b)).wrapping_mul(PRIME))
}

/// Reports meter events. Cheap to clone: one connection pool for all reports.
#[derive(Clone)]
pub struct StripeClient {
    http: reqwest::Client,
    /// The meter events endpoint.
    url: String,
    event_name: String,
    /// Scrubbed from Stripe's answers before they become errors.
    secret_key: Secret,
}

/// A Stripe error answer: `{"error": {"type": ..., "code": ..., "message": ...}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ApiError,
}

#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

impl StripeClient {
    /// A client for `settings` with the given secret key (`sk_...` or a restricted `rk_...`).
    pub fn new(settings: &StripeSettings, secret_key: Secret) -> StripeClient {
        let base = settings.base_url.trim().trim_end_matches('/');
        StripeClient {
            http: http::client(settings.timeout_secs),
            url: format!("{base}/v1/billing/meter_events"),
            event_name: settings.meter_event_name.trim().to_owned(),
            secret_key,
        }
    }

    /// Report `event` to the configured meter.
    ///
    /// A refusal because Stripe already has an event with this `identifier` ("An event already
    /// exists with identifier ...", a 400) is `Ok`, with `created` and `livemode` `None`: a
    /// retry after a lost answer, or after the idempotency key expired, finds the usage already
    /// recorded, and that is what the caller wanted. Stripe keeps the first event's value.
    ///
    /// Errors: no answer (timeout, connection), 408, 409 (another request with the same key is
    /// still running), 429 and 5xx are transient, with Stripe's `Retry-After` when it sent
    /// one; so is any refusal Stripe marks `Stripe-Should-Retry: true` or as a `lock_timeout`.
    /// Any other refusal (unknown customer or meter, bad timestamp, bad key) is permanent.
    pub async fn report_meter_event(
        &self,
        event: &MeterEvent,
    ) -> Result<MeterEventReceipt, SendError> {
        check(event)?;
        let value = event.value.to_string();
        let timestamp = event.timestamp.to_string();
        let ended = event.call_ended_at.map(|t| t.to_string());
        let mut form = vec![
            ("event_name", self.event_name.as_str()),
            ("payload[stripe_customer_id]", &event.stripe_customer_id),
            ("payload[value]", &value),
            ("identifier", &event.identifier),
            ("timestamp", &timestamp),
        ];
        if let Some(ended) = &ended {
            form.push(("payload[call_ended_at]", ended));
        }
        let request = self
            .http
            .post(&self.url)
            .bearer_auth(self.secret_key.expose())
            .header("Idempotency-Key", &event.idempotency_key)
            .form(&form);
        let response = http::send("Stripe meter event", request)
            .await
            // An idempotency key that is no header value fails here, as unbuildable: permanent.
            .map_err(|e| http::request_failed("Stripe API", e))?;
        let status = response.status();
        if !status.is_success() {
            return self.refused(response, event).await;
        }
        match response.json::<MeterEventReceipt>().await {
            Ok(receipt) => Ok(receipt),
            // Stripe took the event; a retry would only meet the duplicate refusal.
            Err(e) => {
                tracing::warn!(%status, identifier = %event.identifier,
                    error = %http::error_chain(&e.without_url()),
                    "Stripe recorded the meter event, but its answer did not parse");
                Ok(already_recorded(event))
            }
        }
    }

    /// An error answer: Stripe already having the event is success, anything else an error.
    async fn refused(
        &self,
        response: reqwest::Response,
        event: &MeterEvent,
    ) -> Result<MeterEventReceipt, SendError> {
        let status = response.status();
        let headers = response.headers();
        let retry_after = http::retry_after(headers);
        // `true` or `false` when Stripe knows whether a retry can help.
        let should_retry = headers
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<bool>().ok());
        let text = http::redact_text(&response.text().await.unwrap_or_default(), &self.secret_key);
        let error = serde_json::from_str::<ErrorBody>(&text)
            .unwrap_or_default()
            .error;
        if status == StatusCode::BAD_REQUEST && is_duplicate(&error) {
            tracing::info!(identifier = %event.identifier,
                "Stripe already has this meter event; counted as reported");
            return Ok(already_recorded(event));
        }
        Err(classify(status, retry_after, should_retry, &error, &text))
    }
}

/// A receipt for an event Stripe has, without the details of its answer.
fn already_recorded(event: &MeterEvent) -> MeterEventReceipt {
    MeterEventReceipt {
        identifier: event.identifier.clone(),
        created: None,
        livemode: None,
    }
}

impl fmt::Debug for StripeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeClient")
            .field("url", &self.url)
            .field("event_name", &self.event_name)
            .finish_non_exhaustive()
    }
}

/// Events Stripe would refuse or, worse, accept without deduplication (an empty `identifier`
/// makes Stripe invent one), checked before anything is sent.
fn check(event: &MeterEvent) -> Result<(), SendError> {
    let problem = if event.stripe_customer_id.trim().is_empty() {
        "no Stripe customer id"
    } else if event.identifier.is_empty() || event.identifier.len() > MAX_IDENTIFIER {
        "the identifier must be 1 to 100 characters"
    } else if event.idempotency_key.is_empty() || event.idempotency_key.len() > MAX_IDEMPOTENCY_KEY
    {
        "the idempotency key must be 1 to 255 characters"
    } else {
        return Ok(());
    };
    Err(SendError::Permanent(format!(
        "meter event {:?} not sent: {problem}",
        event.identifier
    )))
}

/// Stripe's refusal of a second event with an `identifier` it already has. Observed as a 400
/// `invalid_request_error` without a code, "An event already exists with identifier <id>.";
/// a `duplicate...` code is accepted too in case Stripe adds one.
fn is_duplicate(error: &ApiError) -> bool {
    let message = error.message.as_deref().unwrap_or_default().to_lowercase();
    error
        .code
        .as_deref()
        .is_some_and(|c| c.contains("duplicate"))
        || (message.contains("identifier") && message.contains("already"))
}

/// What a retry can achieve: [`http::classify`], with Stripe's additions. Stripe's
/// `Retry-After` counts on every transient answer, not only 429 and 503; and a refusal that
/// is otherwise permanent is transient when Stripe says so (`Stripe-Should-Retry: true`), or,
/// when it says nothing, for a 409 or a busy code.
fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    should_retry: Option<bool>,
    error: &ApiError,
    body: &str,
) -> SendError {
    let detail = match (&error.message, &error.kind, &error.code) {
        (Some(m), Some(t), Some(c)) => format!("{m} ({t}, {c})"),
        (Some(m), Some(t), None) => format!("{m} ({t})"),
        (Some(m), None, _) => m.clone(),
        _ => body.chars().take(200).collect(),
    };
    let reason = format!("Stripe API answered {status}: {detail}");
    // Retried by Stripe's own libraries: lock timeouts and keys still in use by a request in
    // flight (409, `idempotency_key_in_use`) clear once the other request finishes.
    let busy = matches!(
        error.code.as_deref(),
        Some("lock_timeout" | "idempotency_key_in_use" | "rate_limit")
    );
    match http::classify(status, retry_after, reason) {
        SendError::Transient { reason, .. } => SendError::Transient {
            reason,
            retry_after,
        },
        SendError::Permanent(reason)
            if should_retry.unwrap_or(status == StatusCode::CONFLICT || busy) =>
        {
            SendError::Transient {
                reason,
                retry_after,
            }
        }
        permanent @ SendError::Permanent(_) => permanent,
    }
}
