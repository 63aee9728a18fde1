//! What the domain handlers use: the database, the outbound clients and the fleet-wide rate
//! limiter. Built once by the runtime and shared by every handler.

use std::sync::Arc;

use crate::{
    RateLimiter, Secret,
    clients::{
        calcom::{CalcomClient, CalcomSettings},
        mail::Mailer,
        sms::SmsClient,
        stripe::StripeClient,
    },
    notify::faults::Faults,
    store::{Store, companies::Company},
};

/// Shared dependencies of the handlers.
pub struct Services {
    /// The database.
    pub store: Store,
    /// Email transport (SMTP or files).
    pub mailer: Mailer,
    /// SMS gateway; `None` when no credentials are configured (SMS jobs then fail for good).
    pub sms: Option<SmsClient>,
    /// Cal.com access.
    pub calendar: CalendarAccess,
    /// Stripe; `None` without a secret key (usage reports then fail for good).
    pub stripe: Option<StripeClient>,
    /// Provider rate limits shared by the whole fleet.
    pub limiter: Arc<dyn RateLimiter>,
    /// Test-only fault injection on the notification delivery path (see
    /// [`Faults`](crate::notify::faults::Faults)); always `None` in production.
    pub faults: Option<Arc<Faults>>,
}

/// How to reach Cal.com for a company.
pub struct CalendarAccess {
    pub settings: CalcomSettings,
    /// The deployment's key (`CALCOM_API_KEY`), for companies without a key of their own.
    pub default_key: Option<Secret>,
    /// Requests per minute allowed per API key, across the fleet.
    pub requests_per_minute: u32,
}

impl CalendarAccess {
    /// The client and the rate-limit name for `company`, or `None` when no key is known.
    pub fn client_for(&self, company: &Company) -> Option<(CalcomClient, String)> {
        let key = company
            .calcom_api_key
            .as_ref()
            .or(self.default_key.as_ref())?;
        // One limit per key, as Cal.com counts. The name holds the key, so it must stay
        // inside the limiter (the runtime's keeps only a digest of it).
        let limit_name = format!("calcom:{}", key.expose());
        Some((CalcomClient::new(&self.settings, key.clone()), limit_name))
    }
}
