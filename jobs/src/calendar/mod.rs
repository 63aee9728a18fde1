//! Calendar jobs against Cal.com, one kind per module: `calendar.book` (enqueued when a call's
//! analysis asks for an appointment the agent did not book in-call), `calendar.reschedule` and
//! `calendar.cancel`, and `calendar.reconcile` (from the scheduler), which makes `appointments`
//! agree with Cal.com. Every Cal.com request first takes a slot of the fleet-wide rate limit
//! of its API key (`access`); a full limit or a 429 snoozes the job (no attempt used).

mod access;
pub mod book;
pub mod cancel;
pub mod reconcile;
pub mod reschedule;

pub use book::CalendarBook;
pub use cancel::CalendarCancel;
pub use reconcile::CalendarReconcile;
pub use reschedule::CalendarReschedule;
