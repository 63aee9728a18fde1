//! What the domain handlers use: the database and the outbound message transports. Built
//! once by the runtime and shared by every handler.

use crate::{
    clients::{mail::Mailer, sms::SmsClient},
    store::Store,
};

/// Shared dependencies of the handlers.
pub struct Services {
    /// The database.
    pub store: Store,
    /// Email transport (SMTP or files).
    pub mailer: Mailer,
    /// SMS gateway; `None` when no credentials are configured (SMS jobs then fail for good).
    pub sms: Option<SmsClient>,
}
