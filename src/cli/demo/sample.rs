//! The demo's sample deliveries (the Retell call, a Cal.com booking, a Stripe invoice) with
//! this run's own ids and times, signed as the server verifies them.

use serde_json::{Value, json};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{config::Settings, dev, ingest::providers::hmac_sha256};

/// This run's own identifiers: everything ingest dedupes on (Retell `<event>:<call_id>`,
/// Cal.com `<trigger>:<uid>:<createdAt>`, Stripe's event id) and every object a handler keys
/// on (call, booking, invoice).
pub(super) struct Ids {
    pub(super) call: String,
    booking_uid: String,
    stripe_event: String,
    invoice: String,
}

impl Ids {
    pub(super) fn fresh() -> Self {
        let hex = || format!("{:032x}", rand::random::<u128>());
        Self {
            call: format!("call_{}", hex()),
            booking_uid: format!("demo{}", &hex()[..18]),
            stripe_event: format!("evt_demo{}", &hex()[..20]),
            invoice: format!("in_demo{}", &hex()[..20]),
        }
    }
}

/// A signed webhook ready to post.
pub(super) struct Delivery {
    /// What it is, for messages: `retell call_started`.
    pub(super) what: String,
    pub(super) provider: &'static str,
    pub(super) header: (&'static str, String),
    pub(super) body: String,
}

/// The sample deliveries, with this run's ids and times, signed as the server verifies them
/// (with the first, newest, of each configured secret list).
pub(super) fn deliveries(settings: &Settings, ids: &Ids) -> anyhow::Result<Vec<Delivery>> {
    let secret = |list: &[switchboard_jobs::Secret], dev: &str| {
        list.first()
            .map_or_else(|| dev.to_owned(), |s| s.expose().to_owned())
    };
    let s = &settings.secrets;
    let retell_key = secret(&s.retell_webhook_keys, dev::RETELL_KEY);
    let stripe_secret = secret(&s.stripe_webhook_secrets, dev::STRIPE_SECRET);
    let calcom_secret = secret(&s.calcom_webhook_secrets, dev::CALCOM_SECRET);
    let now = OffsetDateTime::now_utc();
    let now_ms = now.unix_timestamp() * 1000;
    let mut out = Vec::new();
    for (event, fixture) in [
        (
            "call_started",
            include_str!("../../../tests/fixtures/webhooks/retell_call_started.json"),
        ),
        (
            "call_ended",
            include_str!("../../../tests/fixtures/webhooks/retell_call_ended.json"),
        ),
        (
            "call_analyzed",
            include_str!("../../../tests/fixtures/webhooks/retell_call_analyzed.json"),
        ),
    ] {
        // The fixture's call id also sits in its recording and log URLs.
        let mut body: Value = serde_json::from_str(
            &fixture.replace("call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa", &ids.call),
        )?;
        let call = &mut body["call"];
        call["telephony_identifier"]["twilio_call_sid"] = json!(format!("CA{}", &ids.call[5..]));
        call["start_timestamp"] = json!(now_ms - 142_000);
        if event != "call_started" {
            call["end_timestamp"] = json!(now_ms);
        }
        if event == "call_analyzed" {
            let preferred = (now + Span::days(1))
                .replace_time(time::Time::from_hms(10, 0, 0).expect("valid time"))
                .format(&Rfc3339)?;
            call["call_analysis"]["custom_analysis_data"] = json!({
                "appointment_booked": false, "appointment_requested": true,
                "preferred_start": preferred, "service": "cleaning",
                "customer_name": "Dana Ruiz", "customer_email": "dana.ruiz@example.com",
                "callback_requested": false,
            });
        }
        let body = body.to_string();
        let ts = now_ms.to_string();
        let d = hex::encode(hmac_sha256(
            retell_key.as_bytes(),
            &[body.as_bytes(), ts.as_bytes()],
        ));
        out.push(Delivery {
            what: format!("retell {event} of {}", ids.call),
            provider: "retell",
            header: ("x-retell-signature", format!("v={ts},d={d}")),
            body,
        });
    }
    // The sample booking stands for one made on Cal.com's own page, not by the sample call
    // (whose booking `calendar.book` makes): it names no call, so it cannot pass for the
    // call's appointment, whichever is stored first.
    let mut calcom: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/webhooks/calcom_booking_created.json"
    ))?;
    calcom["createdAt"] = json!(now.format(&Rfc3339)?);
    calcom["payload"]["uid"] = json!(ids.booking_uid);
    calcom["payload"]["bookingId"] = json!(rand::random::<u32>() >> 1);
    calcom["payload"]["metadata"] = json!({ "source": "booking page" });
    let calcom = calcom.to_string();
    let d = hex::encode(hmac_sha256(calcom_secret.as_bytes(), &[calcom.as_bytes()]));
    out.push(Delivery {
        what: format!("calcom BOOKING_CREATED of {}", ids.booking_uid),
        provider: "calcom",
        header: ("x-cal-signature-256", d),
        body: calcom,
    });
    let mut stripe: Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/webhooks/stripe_invoice_paid.json"
    ))?;
    stripe["id"] = json!(ids.stripe_event);
    stripe["created"] = json!(now.unix_timestamp());
    stripe["data"]["object"]["id"] = json!(ids.invoice);
    let stripe = stripe.to_string();
    let t = now.unix_timestamp().to_string();
    let v1 = hex::encode(hmac_sha256(
        stripe_secret.as_bytes(),
        &[t.as_bytes(), b".", stripe.as_bytes()],
    ));
    out.push(Delivery {
        what: format!("stripe invoice.paid {}", ids.stripe_event),
        provider: "stripe",
        header: ("stripe-signature", format!("t={t},v1={v1}")),
        body: stripe,
    });
    Ok(out)
}
