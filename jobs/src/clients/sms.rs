//! SMS out through a Twilio-compatible REST API.
//!
//! One request per message: `POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json` with
//! the form fields `From`, `To` and `Body`, authenticated with HTTP basic auth (account SID,
//! auth token). The answer's `sid` identifies the message at the provider. Both
//! credentials arrive as [`Secret`]s and are never printed; errors carry no URL (it holds
//! the account SID).
//!
//! [`SmsClient::find_sent`] reads the same resource as a list (`GET`, filters `To` and
//! `DateSent>` = on or after a UTC day, `PageSize`; the answer's `messages` and
//! `next_page_uri`, a path relative to the API root), to learn whether a message whose send
//! was in doubt was accepted. Its refusals are classified like a send's.

use std::{fmt, time::Duration};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::{InvalidSettings, SendError, http};
use crate::secret::Secret;

/// The sender `config/default.toml` ships for the development stand-in; refused when real
/// messages are sent.
pub const PLACEHOLDER_FROM: &str = "+10000000000";

/// Messages asked for per list page (the API allows 1 to 1000).
const PAGE_SIZE: &str = "100";

/// Pages a lookup reads at most; a number that has had more messages in the days looked at
/// is not a customer's phone, and the lookup gives up rather than loop.
const MAX_PAGES: usize = 20;

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
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        let url = self.base_url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(InvalidSettings(format!(
                "sms.base_url {url:?} is not an http(s) URL"
            )));
        }
        if self.from.trim().is_empty() {
            return Err(InvalidSettings("sms.from is empty".into()));
        }
        if self.timeout_secs == 0 {
            return Err(InvalidSettings(
                "sms.timeout_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Sends SMS. Cheap to share: one connection pool for all sends.
pub struct SmsClient {
    http: reqwest::Client,
    /// The API root (`base_url` without a trailing slash); list pages are relative to it.
    base: String,
    /// The account's Messages endpoint.
    url: String,
    from: String,
    account_sid: Secret,
    auth_token: Secret,
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

/// A message as the list shows it (the fields a lookup reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListedMessage {
    /// `SM` and 32 hex digits.
    pub sid: String,
    pub to: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// RFC 2822 (`Thu, 24 Aug 2023 05:01:45 +0000`); `null` while not yet sent.
    #[serde(default)]
    pub date_sent: Option<String>,
}

/// One page of the list.
#[derive(Deserialize)]
struct ListPage {
    messages: Vec<ListedMessage>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

impl SmsClient {
    /// A client for `settings` with the given account credentials.
    pub fn new(settings: &SmsSettings, account_sid: Secret, auth_token: Secret) -> SmsClient {
        let base = settings.base_url.trim().trim_end_matches('/');
        SmsClient {
            http: http::client(settings.timeout_secs),
            base: base.to_owned(),
            url: format!(
                "{base}/2010-04-01/Accounts/{}/Messages.json",
                account_sid.expose()
            ),
            from: settings.from.clone(),
            account_sid,
            auth_token,
        }
    }

    /// Send `body` to `to` (E.164) and return the provider's message id.
    pub async fn send(&self, to: &str, body: &str) -> Result<String, SendError> {
        let request = self
            .http
            .post(&self.url)
            .basic_auth(self.account_sid.expose(), Some(self.auth_token.expose()))
            .form(&[("From", self.from.as_str()), ("To", to), ("Body", body)]);
        let response = http::send("SMS send", request)
            .await
            .map_err(|e| http::request_failed("SMS API", e))?;
        let status = response.status();
        if status.is_success() {
            return match response.json::<Accepted>().await {
                Ok(accepted) => Ok(accepted.sid),
                // The provider took the message; retrying would send it twice.
                Err(e) => {
                    tracing::warn!(%status, error = %http::error_chain(&e.without_url()),
                        "SMS accepted, but the answer has no message sid");
                    Ok(String::new())
                }
            };
        }
        let retry_after = http::retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        Err(classify(status, retry_after, &text))
    }

    /// The first message to `to` sent on or after the UTC day `since` whose body contains
    /// `reference`, if the gateway lists one. Reads page after page until it is found or the
    /// list ends; a page link outside this account's Messages list is not followed.
    pub async fn find_sent(
        &self,
        to: &str,
        since: time::Date,
        reference: &str,
    ) -> Result<Option<ListedMessage>, SendError> {
        let day = format!(
            "{:04}-{:02}-{:02}",
            since.year(),
            u8::from(since.month()),
            since.day()
        );
        let first = self.http.get(&self.url).query(&[
            ("To", to),
            ("DateSent>", &day),
            ("PageSize", PAGE_SIZE),
        ]);
        let mut page = self.list_page(first).await?;
        for _ in 1..=MAX_PAGES {
            if let Some(found) = page
                .messages
                .into_iter()
                // `to` again: a gateway that ignored the filter must not match another number.
                .find(|m| m.to == to && m.body.as_deref().is_some_and(|b| b.contains(reference)))
            {
                return Ok(Some(found));
            }
            let Some(next) = page.next_page_uri.filter(|n| !n.is_empty()) else {
                return Ok(None);
            };
            let path = &self.url[self.base.len()..];
            if !next.starts_with(path) {
                return Err(SendError::Permanent(
                    "SMS API list: the next page is not a page of this account's messages".into(),
                ));
            }
            page = self
                .list_page(self.http.get(format!("{}{next}", self.base)))
                .await?;
        }
        Err(SendError::Permanent(format!(
            "SMS API list: more than {MAX_PAGES} pages of messages to this number; look the message up by hand"
        )))
    }

    /// One list request, answered.
    async fn list_page(&self, request: reqwest::RequestBuilder) -> Result<ListPage, SendError> {
        let request = request.basic_auth(self.account_sid.expose(), Some(self.auth_token.expose()));
        let response = http::send("SMS list", request)
            .await
            .map_err(|e| http::request_failed("SMS API list", e))?;
        let status = response.status();
        if status.is_success() {
            // An unreadable page decides nothing: try again later rather than send blind.
            return response.json::<ListPage>().await.map_err(|e| {
                SendError::transient(format!(
                    "SMS API list answered {status} with an unreadable page: {}",
                    http::error_chain(&e.without_url())
                ))
            });
        }
        let retry_after = http::retry_after(response.headers());
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

/// The gateway's refusal text (Twilio's `message` and `code`, else the body, cut), classified
/// by [`http::classify`]: about this message or this account unless 408, 429 or 5xx.
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
    http::classify(status, retry_after, reason)
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
