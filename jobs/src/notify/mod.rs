//! Customer and admin notifications: what a message says ([`templates`]) and the jobs that
//! decide when one is due ([`reminders`]); `crate::notify_send` sends them.

pub mod reminders;
pub mod templates;

pub use templates::{Locale, MessageVars, Rendered, Template, render};
