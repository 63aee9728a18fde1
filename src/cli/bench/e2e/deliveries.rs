//! The deliveries `bench e2e` posts: the sample webhooks of `tests/fixtures/webhooks/` with
//! ids of their own (every delivery is a distinct event, none a duplicate of another or of
//! an earlier run's), addressed to one of the seeded businesses and signed as ingest verifies
//! them, with keys made for the run.
//!
//! Event `i` of a mix of `k` kinds is of kind `i mod k` and about object `i / k`: the Retell
//! events of one round are one call (started, ended and analysed merge into one row), a
//! Cal.com booking and a Stripe invoice are objects of their own.

use std::fmt;

use super::seed::Business;
use crate::ingest::providers::hmac_sha256;

const RETELL_STARTED: &str =
    include_str!("../../../../tests/fixtures/webhooks/retell_call_started.json");
const RETELL_ENDED: &str =
    include_str!("../../../../tests/fixtures/webhooks/retell_call_ended.json");
const RETELL_ANALYZED: &str =
    include_str!("../../../../tests/fixtures/webhooks/retell_call_analyzed.json");
const CALCOM_CREATED: &str =
    include_str!("../../../../tests/fixtures/webhooks/calcom_booking_created.json");
const STRIPE_PAID: &str =
    include_str!("../../../../tests/fixtures/webhooks/stripe_invoice_paid.json");

/// The fixtures' own identifiers, replaced in every delivery.
const FIXTURE_CALL: &str = "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa";
const FIXTURE_CALLER: &str = "+14155550123";
const FIXTURE_NUMBER: &str = "+14155550987";
const FIXTURE_BOOKING: &str = "bK3v9Qp2LmX7tRz1Yc8WnA";
const FIXTURE_BOOKING_ID: &str = "\"bookingId\": 480213";
const FIXTURE_EVENT_TYPE: &str = "\"eventTypeId\": 90211";
const FIXTURE_STRIPE_EVENT: &str = "evt_1T8xPaid0001";
const FIXTURE_INVOICE: &str = "in_1T8xQ2HarborDental01";
const FIXTURE_CUSTOMER: &str = "cus_T8xHarborDental";

/// One kind of delivery in a mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CallStarted,
    CallEnded,
    CallAnalyzed,
    BookingCreated,
    InvoicePaid,
}

impl Kind {
    const ALL: [(Self, &'static str); 5] = [
        (Self::CallStarted, "call_started"),
        (Self::CallEnded, "call_ended"),
        (Self::CallAnalyzed, "call_analyzed"),
        (Self::BookingCreated, "booking_created"),
        (Self::InvoicePaid, "invoice_paid"),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("", |(_, n)| n)
    }

    fn is_retell(self) -> bool {
        matches!(
            self,
            Self::CallStarted | Self::CallEnded | Self::CallAnalyzed
        )
    }
}

/// The kinds of a mix, dealt round robin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix(pub Vec<Kind>);

impl Mix {
    /// `call_ended` or a comma-separated list of `call_started`, `call_ended`,
    /// `call_analyzed`, `booking_created`, `invoice_paid` (each at most once).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut kinds = Vec::new();
        for name in raw.split(',').map(str::trim) {
            let kind = Kind::ALL
                .iter()
                .find(|(_, n)| *n == name)
                .map(|(k, _)| *k)
                .ok_or_else(|| {
                    let known: Vec<&str> = Kind::ALL.iter().map(|(_, n)| *n).collect();
                    format!("unknown event kind {name:?}: use {}", known.join(", "))
                })?;
            if kinds.contains(&kind) {
                return Err(format!("{name} is named twice in the mix"));
            }
            kinds.push(kind);
        }
        Ok(Self(kinds))
    }

    /// How many deliveries of `events` are of `kind`.
    pub fn count(&self, kind: Kind, events: usize) -> usize {
        let k = self.0.len();
        self.0
            .iter()
            .position(|&x| x == kind)
            .map_or(0, |p| events / k + usize::from(p < events % k))
    }

    /// How many distinct calls `events` deliveries of this mix are about.
    pub fn calls(&self, events: usize) -> usize {
        let k = self.0.len();
        let first = self.0.iter().position(|k| k.is_retell());
        first.map_or(0, |p| events / k + usize::from(p < events % k))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|k| k.name()).collect();
        f.write_str(&names.join(","))
    }
}

/// The run's signing keys: made for the run, handed to its ingest, never printed.
pub struct Keys {
    pub retell: String,
    pub calcom: String,
    pub stripe: String,
}

impl Keys {
    pub fn fresh() -> Self {
        let key = || format!("{:032x}", rand::random::<u128>());
        Self {
            retell: key(),
            calcom: key(),
            stripe: format!("whsec_{}", key()),
        }
    }
}

/// A signed delivery ready to post.
pub struct Delivery {
    /// `retell`, `calcom` or `stripe`: the path under `/webhooks/`.
    pub provider: &'static str,
    pub header: (&'static str, String),
    pub body: String,
}

/// Delivery `i` of `mix` for run `tag`, addressed to one of `businesses`, signed at `now_ms`.
pub fn delivery(
    mix: &Mix,
    i: usize,
    tag: &str,
    businesses: &[Business],
    keys: &Keys,
    now_ms: i64,
) -> Delivery {
    let k = mix.0.len();
    let (kind, object) = (mix.0[i % k], i / k);
    let business = &businesses[object % businesses.len()];
    let call = format!("call_{tag}{object:010}");
    let caller = format!("+1650{object:07}");
    match kind {
        Kind::BookingCreated => {
            let body = CALCOM_CREATED
                .replace(FIXTURE_BOOKING, &format!("bk{tag}{object:010}"))
                .replace(FIXTURE_BOOKING_ID, &format!("\"bookingId\": {object}"))
                .replace(
                    FIXTURE_EVENT_TYPE,
                    &format!("\"eventTypeId\": {}", business.event_type),
                )
                .replace(FIXTURE_CALLER, &caller)
                .replace(FIXTURE_CALL, &call);
            let d = hex::encode(hmac_sha256(keys.calcom.as_bytes(), &[body.as_bytes()]));
            Delivery {
                provider: "calcom",
                header: ("x-cal-signature-256", d),
                body,
            }
        }
        Kind::InvoicePaid => {
            let body = STRIPE_PAID
                .replace(FIXTURE_STRIPE_EVENT, &format!("evt_{tag}{object:010}"))
                .replace(FIXTURE_INVOICE, &format!("in_{tag}{object:010}"))
                .replace(FIXTURE_CUSTOMER, &business.stripe_customer);
            let t = (now_ms / 1000).to_string();
            let v1 = hex::encode(hmac_sha256(
                keys.stripe.as_bytes(),
                &[t.as_bytes(), b".", body.as_bytes()],
            ));
            Delivery {
                provider: "stripe",
                header: ("stripe-signature", format!("t={t},v1={v1}")),
                body,
            }
        }
        retell => {
            let fixture = match retell {
                Kind::CallStarted => RETELL_STARTED,
                Kind::CallEnded => RETELL_ENDED,
                _ => RETELL_ANALYZED,
            };
            let body = fixture
                .replace(FIXTURE_CALL, &call)
                .replace(FIXTURE_NUMBER, &business.number)
                .replace(FIXTURE_CALLER, &caller);
            let ts = now_ms.to_string();
            let d = hex::encode(hmac_sha256(
                keys.retell.as_bytes(),
                &[body.as_bytes(), ts.as_bytes()],
            ));
            Delivery {
                provider: "retell",
                header: ("x-retell-signature", format!("v={ts},d={d}")),
                body,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_count_their_kinds() {
        let mix = Mix::parse("call_started, call_ended,invoice_paid").unwrap();
        assert_eq!(mix.to_string(), "call_started,call_ended,invoice_paid");
        assert_eq!(mix.count(Kind::CallStarted, 10), 4);
        assert_eq!(mix.count(Kind::CallEnded, 10), 3);
        assert_eq!(mix.count(Kind::InvoicePaid, 10), 3);
        assert_eq!(mix.count(Kind::BookingCreated, 10), 0);
        assert_eq!(mix.calls(10), 4);
        assert!(Mix::parse("call_ended,call_ended").is_err());
        assert!(
            Mix::parse("call_ending")
                .unwrap_err()
                .contains("call_started, call_ended")
        );
    }

    #[test]
    fn every_fixture_identifier_is_replaced() {
        let business = Business {
            company_id: 1,
            number: "+15550001111".into(),
            event_type: 77,
            stripe_customer: "cus_bench1".into(),
        };
        let keys = Keys::fresh();
        let mix = Mix::parse("call_ended,booking_created,invoice_paid").unwrap();
        for i in 0..3 {
            let d = delivery(&mix, i, "t1", std::slice::from_ref(&business), &keys, 0);
            for old in [
                FIXTURE_CALL,
                FIXTURE_CALLER,
                FIXTURE_NUMBER,
                FIXTURE_BOOKING,
                FIXTURE_BOOKING_ID,
                FIXTURE_EVENT_TYPE,
                FIXTURE_STRIPE_EVENT,
                FIXTURE_INVOICE,
                FIXTURE_CUSTOMER,
            ] {
                assert!(!d.body.contains(old), "{} still has {old}", d.provider);
            }
        }
    }
}
