//! `serve`'s embedded defaults, so the whole path runs on a fresh machine: a private Redis
//! when none answers ([`embedded`]), and stand-ins for Cal.com, Stripe and the SMS gateway
//! under `/dev/` ([`standins`]) with published development webhook secrets, and the demo's
//! window on the server's database ([`demo`], for `switchboard demo`). Nothing here is
//! used in production (`dev.stand_ins = false`, `redis.embedded = false`).

mod calcom;
mod contract;
pub mod demo;
pub mod embedded;
pub mod sms;
pub mod standins;
mod state;
mod window;

pub use standins::{CALCOM_SECRET, RETELL_KEY, SMS_ACCOUNT_SID, STRIPE_SECRET, base_url, router};
