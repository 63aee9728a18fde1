//! Calendar jobs against Cal.com, one kind per module: `calendar.book` (enqueued when a call's
//! analysis asks for an appointment the agent did not book in-call), `calendar.reschedule` and
//! `calendar.cancel`, and `calendar.reconcile` (from the scheduler), which makes `appointments`
//! agree with Cal.com. Every Cal.com request first takes a slot of the fleet-wide rate limit
//! of its API key (`rate_limited`); a full limit or a 429 snoozes the job (no attempt used).

pub mod book;
pub mod cancel;
mod rate_limited;
pub mod reconcile;
pub mod reschedule;

pub use book::CalendarBook;
pub use cancel::CalendarCancel;
pub use reconcile::CalendarReconcile;
pub use reschedule::CalendarReschedule;
