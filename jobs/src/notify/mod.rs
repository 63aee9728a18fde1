//! Customer and admin notifications: what a message says ([`templates`]) and the jobs that
//! decide when one is due ([`reminders`]); [`send`] delivers them.

pub mod reminders;
pub mod send;
pub mod templates;

pub use templates::{Locale, MessageVars, Rendered, Template, render};
