//! SMS out through a Twilio-compatible REST API.
//!
//! One request per message: `POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json` with
//! the form fields `From`, `To` and `Body`, authenticated with HTTP basic auth (account SID,
//! auth token). The answer's `sid` identifies the message at the provider. The auth token
//! comes from `SMS_AUTH_TOKEN` only and is never printed; errors carry no URL (it holds the
//! account SID).

use std::{fmt, time::Duration};

use reqwest::{StatusCode, header::RETRY_AFTER};
use serde::{Deserialize, Serialize};

use super::{ConfigError, SendError, env_var, error_chain};

/// The `[sms]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSettings {
    /// API root, `https://api.twilio.com` for Twilio; tests point it at a mock server.
    pub base_url: String,
    /// Sender number (E.164) or alphanumeric sender id.
    pub from: String,
    /// Limit on the whole request; keep it below the job timeout.
    pub timeout_secs: u64,
}

impl SmsSettings {
    /// The first problem that would stop SMS from working.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.base_url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError(format!(
                "sms.base_url {url:?} is not an http(s) URL"
            )));
        }
        if self.from.trim().is_empty() {
            return Err(ConfigError("sms.from is empty".into()));
        }
        if self.timeout_secs == 0 {
            return Err(ConfigError("sms.timeout_secs must be at least 1".into()));
        }
        Ok(())
    }
}

/// Sends SMS. Cheap to share: one connection pool for all sends.
pub struct SmsClient {
    http: reqwest::Client,
    /// The account's Messages endpoint.
    url: String,
    from: String,
    account_sid: String,
    auth_token: String,
}

/// A Twilio error body, e.g. `{"code": 21211, "message": "The 'To' number ... is not a valid
/// phone number.", "status": 400}`.
#[derive(Deserialize)]
struct ApiError {
    message: Option<String>,
    code: Option<i64>,
}

/// The part of an accepted message's answer we keep.
#[derive(Deserialize)]
struct Accepted {
    sid: String,
}

impl SmsClient {
    /// A client for `settings` with the given account credentials.
    pub fn new(settings: &SmsSettings, account_sid: String, auth_token: String) -> SmsClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.timeout_secs.max(1)))
            .build()
            // Fails only when the TLS backend cannot initialise, as `reqwest::Client::new`
            // (which panics then too); nothing could send anyway.
            .expect("the HTTP client's TLS backend initialises");
        let base = settings.base_url.trim().trim_end_matches('/');
        SmsClient {
            http,
            url: format!("{base}/2010-04-01/Accounts/{account_sid}/Messages.json"),
            from: settings.from.clone(),
            account_sid,
            auth_token,
        }
    }

    /// A client with `SMS_ACCOUNT_SID` and `SMS_AUTH_TOKEN`; `None` when either is unset.
    pub fn from_env(settings: &SmsSettings) -> Option<SmsClient> {
        let sid = env_var("SMS_ACCOUNT_SID")?;
        let token = env_var("SMS_AUTH_TOKEN")?;
        Some(Self::new(settings, sid, token))
    }

    /// Send `body` to `to` (E.164) and return the provider's message id.
    pub async fn send(&self, to: &str, body: &str) -> Result<String, SendError> {
        let response = self
            .http
            .post(&self.url)
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&[("From", self.from.as_str()), ("To", to), ("Body", body)])
            .send()
            .await
            .map_err(request_failed)?;
        let status = response.status();
        if status.is_success() {
            return match response.json::<Accepted>().await {
                Ok(accepted) => Ok(accepted.sid),
                // The provider took the message; retrying would send it twice.
                Err(e) => {
                    tracing::warn!(%status, error = %error_chain(&e.without_url()),
                        "SMS accepted, but the answer has no message sid");
                    Ok(String::new())
                }
            };
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.unwrap_or_default();
        Err(classify(status, retry_after, &text))
    }
}

impl fmt::Debug for SmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsClient")
            .field("from", &self.from)
            .field("account_sid", &self.account_sid)
            .finish_non_exhaustive()
    }
}

/// No answer at all: the request may be retried. A request that cannot even be built (a
/// broken `base_url`) never will.
fn request_failed(e: reqwest::Error) -> SendError {
    let permanent = e.is_builder();
    let reason = format!("SMS API: {}", error_chain(&e.without_url()));
    if permanent {
        SendError::Permanent(reason)
    } else {
        SendError::transient(reason)
    }
}

/// 429, 408 and 5xx may pass later (429 and 503 say when, in seconds); any other refusal is
/// about this message or this account and will not.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SendError {
    let detail = match serde_json::from_str::<ApiError>(body) {
        Ok(ApiError {
            message: Some(m),
            code: Some(c),
        }) => format!("{m} (code {c})"),
        Ok(ApiError {
            message: Some(m),
            code: None,
        }) => m,
        _ => body.chars().take(200).collect(),
    };
    let reason = format!("SMS API answered {status}: {detail}");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_what_a_retry_can_do() {
        let wait = Some(Duration::from_secs(3));
        for status in [429, 503] {
            let e = classify(StatusCode::from_u16(status).unwrap(), wait, "");
            assert!(matches!(e, SendError::Transient { retry_after, .. } if retry_after == wait));
        }
        for status in [408, 500, 502, 504] {
            let e = classify(StatusCode::from_u16(status).unwrap(), wait, "");
            assert!(
                matches!(
                    e,
                    SendError::Transient {
                        retry_after: None,
                        ..
                    }
                ),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 422] {
            let e = classify(
                StatusCode::from_u16(status).unwrap(),
                None,
                "<html>nope</html>",
            );
            assert!(
                matches!(&e, SendError::Permanent(r) if r.contains("nope")),
                "{status}"
            );
        }
        let long = "x".repeat(10_000);
        let e = classify(StatusCode::BAD_REQUEST, None, &long);
        assert!(e.to_string().len() < 300, "bodies are cut");
    }

    #[test]
    fn settings_are_checked() {
        let ok = SmsSettings {
            base_url: "https://api.twilio.com".into(),
            from: "+4930555000".into(),
            timeout_secs: 10,
        };
        assert_eq!(ok.validate(), Ok(()));
        let bad = [
            SmsSettings {
                base_url: "api.twilio.com".into(),
                ..ok.clone()
            },
            SmsSettings {
                from: String::new(),
                ..ok.clone()
            },
            SmsSettings {
                timeout_secs: 0,
                ..ok.clone()
            },
        ];
        for s in bad {
            assert!(s.validate().is_err(), "{s:?}");
        }
        let client = SmsClient::new(
            &SmsSettings {
                base_url: "http://x/".into(),
                ..ok
            },
            "AC1".into(),
            "t".into(),
        );
        assert_eq!(client.url, "http://x/2010-04-01/Accounts/AC1/Messages.json");
    }
}
