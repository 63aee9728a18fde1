//! Calendar jobs. `calendar.book` is enqueued when a call's analysis asks for an appointment
//! the agent did not book during the call; its Cal.com side is the calendar issue's work.

use serde::{Deserialize, Serialize};

use crate::JobArgs;

/// Arguments of `calendar.book`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarBook {
    /// The Retell call that asked for it (also the idempotency key: one booking per call).
    pub call_id: String,
    pub company_id: i64,
    pub branch_id: i64,
    pub customer_id: Option<i64>,
    pub service: Option<String>,
    /// ISO 8601 as the agent captured it.
    pub preferred_start: Option<String>,
    pub customer_name: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
}

impl JobArgs for CalendarBook {
    const KIND: &'static str = "calendar.book";
    const QUEUE: &'static str = "calendar";
}
