//! A refused request, answered in the provider's own shape and status, so a client meets the
//! same body from a stand-in as from the provider:
//! - Cal.com: `{"status": "error", "timestamp", "path", "error": {"code": "BadRequestException",
//!   "message"}}` (401 `UnauthorizedException`, 404 `NotFoundException`);
//! - Stripe: `{"error": {"type": "invalid_request_error", "message", "param"}}`;
//! - Twilio: `{"code", "message", "more_info": "https://www.twilio.com/docs/errors/<code>",
//!   "status"}`.
//!
//! None of the three documents keeps an error schema (Stripe's `error` is trimmed, Cal.com and
//! Twilio declare none), so these shapes follow the providers' published error pages.

use std::fmt;

use serde_json::{Value, json};

/// The provider a contract belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Cal.com API v2.
    Calcom,
    /// Stripe (billing meter events).
    Stripe,
    /// Twilio API 2010-04-01 (Messages), and gateways that copy it.
    Twilio,
}

/// Why a request was refused, and the provider's answer to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// 400, 401 or 404.
    pub status: u16,
    /// The provider's error body.
    pub body: Value,
    /// One line for logs and test failures: operation and problem.
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// What is wrong, before it is put in a provider's words.
#[derive(Debug, Clone)]
pub(super) struct Problem {
    pub status: u16,
    pub message: String,
    /// The parameter at fault (Stripe's `param`), if one is.
    pub param: Option<String>,
    /// Twilio's error code; a generic one when `None`.
    pub twilio_code: Option<u32>,
}

impl Problem {
    pub fn bad(message: impl Into<String>, param: Option<&str>) -> Problem {
        Problem {
            status: 400,
            message: message.into(),
            param: param.map(str::to_owned),
            twilio_code: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Problem {
        Problem {
            status: 401,
            ..Problem::bad(message, None)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Problem {
        Problem {
            status: 404,
            ..Problem::bad(message, None)
        }
    }

    #[must_use]
    pub fn twilio(mut self, code: u32) -> Problem {
        self.twilio_code = Some(code);
        self
    }

    /// The provider's answer to this problem with a request for `path`.
    pub fn refusal(self, provider: Provider, path: &str, now: i64) -> Refusal {
        let body = match provider {
            Provider::Calcom => calcom(&self, path, now),
            Provider::Stripe => stripe(&self),
            Provider::Twilio => twilio(&self),
        };
        Refusal {
            status: self.status,
            body,
            reason: format!("{provider:?} {path}: {}", self.message),
        }
    }
}

fn calcom(p: &Problem, path: &str, now: i64) -> Value {
    let code = match p.status {
        401 => "UnauthorizedException",
        404 => "NotFoundException",
        _ => "BadRequestException",
    };
    let timestamp = time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    json!({
        "status": "error",
        "timestamp": timestamp,
        "path": path,
        "error": { "code": code, "message": p.message },
    })
}

fn stripe(p: &Problem) -> Value {
    let mut error = json!({ "type": "invalid_request_error", "message": p.message });
    if let Some(param) = &p.param {
        error["param"] = param.clone().into();
    }
    json!({ "error": error })
}

fn twilio(p: &Problem) -> Value {
    // 20003 Authenticate, 20404 not found, 21211-ish parameter errors as 21200 otherwise.
    let code = p.twilio_code.unwrap_or(match p.status {
        401 => 20003,
        404 => 20404,
        _ => 21200,
    });
    json!({
        "code": code,
        "message": p.message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": p.status,
    })
}
