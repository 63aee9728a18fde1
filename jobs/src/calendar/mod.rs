//! Calendar jobs against Cal.com: `calendar.book` (enqueued when a call's analysis asks for an
//! appointment the agent did not book in-call), `calendar.reschedule` and `calendar.cancel`,
//! and `calendar.reconcile` (from the scheduler), which makes `appointments` agree with Cal.com.
//! Every Cal.com request first takes a slot of the fleet-wide rate limit of its API key; a
//! full limit or a 429 snoozes the job (no attempt used).

mod book;
mod change;
mod reconcile;

pub use book::run_book;
pub use change::{run_cancel, run_reschedule};
pub use reconcile::run_reconcile;

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

/// Arguments of `calendar.reschedule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarReschedule {
    /// The booking to move.
    pub uid: String,
    /// New start, RFC 3339.
    pub start: String,
    pub reason: Option<String>,
}

impl JobArgs for CalendarReschedule {
    const KIND: &'static str = "calendar.reschedule";
    const QUEUE: &'static str = "calendar";
}

/// Arguments of `calendar.cancel`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarCancel {
    /// The booking to cancel.
    pub uid: String,
    pub reason: Option<String>,
}

impl JobArgs for CalendarCancel {
    const KIND: &'static str = "calendar.cancel";
    const QUEUE: &'static str = "calendar";
}

/// Arguments of `calendar.reconcile`; every field has a default, so `{}` is a whole job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CalendarReconcile {
    /// How many days ahead of now are compared with Cal.com.
    pub days: u32,
    /// After this many seconds a run starts no further branch and leaves the rest to a
    /// continuation: keep it well below the calendar supervisor's job timeout.
    pub budget_secs: u64,
    /// Set on a continuation (a run cut short by the Cal.com rate limit or its budget): only
    /// branches with a larger id are left to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_branch_id: Option<i64>,
}

impl Default for CalendarReconcile {
    fn default() -> Self {
        Self {
            days: 14,
            budget_secs: 10,
            after_branch_id: None,
        }
    }
}

impl JobArgs for CalendarReconcile {
    const KIND: &'static str = "calendar.reconcile";
    const QUEUE: &'static str = "calendar";
}
