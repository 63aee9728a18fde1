//! Customer and admin notifications, one kind per module: `notify.email` ([`email`]) and
//! `notify.sms` ([`sms`]) send one message at most once through the outbox ([`send`]);
//! `notify.reminders` ([`reminders`]) decides when reminders are due. What a message says is
//! in [`templates`].

pub mod doubt;
pub mod email;
pub mod faults;
pub mod local_time;
pub mod reminders;
pub mod send;
pub mod sms;
pub mod templates;

pub use email::NotifyEmail;
pub use reminders::NotifyReminders;
pub use send::Message;
pub use sms::NotifySms;
pub use templates::{Locale, MessageVars, Rendered, Template, render};
