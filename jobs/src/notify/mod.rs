//! Customer and admin notifications: what a message says ([`templates`]) and the jobs that
//! send it.

pub mod templates;

pub use templates::{Locale, MessageVars, Rendered, Template, render};
