//! What the development stand-ins have been asked to do, shared by their routes (Cal.com in
//! `calcom.rs`, Stripe in `standins.rs`, the SMS gateway in `sms.rs`) and shown at
//! `/dev/state`.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::sms::Gateway;

/// Everything the stand-ins recorded.
#[derive(Default)]
pub(super) struct Recorded {
    pub(super) bookings: Vec<Value>,
    pub(super) meter_events: Vec<Value>,
    /// The SMS gateway stand-in's messages ([`super::sms`]).
    pub(super) sms: Gateway,
}

pub(super) type Shared = Arc<Mutex<Recorded>>;
