//! `switchboard demo`: drive the whole path of a running `serve` with the sample webhooks.
//!
//! Seeds a demo business (if missing) into the configured database, posts the sample Retell,
//! Cal.com and Stripe deliveries signed with the configured (or development) secrets, then
//! waits until the call is stored, the appointment the caller asked for is booked at Cal.com,
//! the customer is notified and the call's minutes are reported to Stripe, and prints what
//! happened. With `dev.stand_ins` on, no provider account is needed.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use switchboard_jobs::store::{
    Dialect, Store, appointments, calls, companies, notifications, usage_events,
};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{config::Settings, dev, ingest::providers::hmac_sha256};

const NUMBER: &str = "+14155550987";
const CALL: &str = "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa";

/// Run the demo against the server at `url`.
pub async fn run(settings: &Settings, url: &str) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database.url)
        .await
        .context("opening the database")?;
    if store.dialect() == Dialect::Sqlite {
        store.migrate().await?;
    }
    seed(&store).await?;
    let client = reqwest::Client::new();
    // The first (newest) of each configured list, as the server accepts it.
    let secret = |list: &[switchboard_jobs::Secret], dev: &str| {
        list.first()
            .map_or_else(|| dev.to_owned(), |s| s.expose().to_owned())
    };
    let s = &settings.secrets;
    let retell_key = secret(&s.retell_webhook_keys, dev::RETELL_KEY);
    let stripe_secret = secret(&s.stripe_webhook_secrets, dev::STRIPE_SECRET);
    let calcom_secret = secret(&s.calcom_webhook_secrets, dev::CALCOM_SECRET);

    let preferred = (OffsetDateTime::now_utc() + Span::days(1))
        .replace_time(time::Time::from_hms(10, 0, 0).expect("valid time"))
        .format(&Rfc3339)?;
    let analyzed = include_str!("../../tests/fixtures/webhooks/retell_call_analyzed.json").replace(
        r#""appointment_booked": true"#,
        &format!(r#""appointment_booked": false, "appointment_requested": true, "preferred_start": "{preferred}", "customer_name": "Dana Ruiz", "customer_email": "dana.ruiz@example.com""#),
    );
    let retell = [
        include_str!("../../tests/fixtures/webhooks/retell_call_started.json").to_owned(),
        include_str!("../../tests/fixtures/webhooks/retell_call_ended.json").to_owned(),
        analyzed,
    ];
    for body in &retell {
        let ts = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).to_string();
        let d = hex::encode(hmac_sha256(
            retell_key.as_bytes(),
            &[body.as_bytes(), ts.as_bytes()],
        ));
        post(
            &client,
            url,
            "retell",
            ("x-retell-signature", format!("v={ts},d={d}")),
            body,
        )
        .await?;
    }
    // The sample booking stands for one made on Cal.com's own page, not by the sample call
    // (whose booking `calendar.book` makes): it names no call, so the demo's look-up of the
    // call's appointment cannot pick it up, whichever is stored first.
    let calcom = include_str!("../../tests/fixtures/webhooks/calcom_booking_created.json").replace(
        r#""retell_call_id": "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa""#,
        r#""source": "booking page""#,
    );
    let calcom = calcom.as_str();
    let d = hex::encode(hmac_sha256(calcom_secret.as_bytes(), &[calcom.as_bytes()]));
    post(&client, url, "calcom", ("x-cal-signature-256", d), calcom).await?;
    let stripe = include_str!("../../tests/fixtures/webhooks/stripe_invoice_paid.json");
    let t = OffsetDateTime::now_utc().unix_timestamp().to_string();
    let v1 = hex::encode(hmac_sha256(
        stripe_secret.as_bytes(),
        &[t.as_bytes(), b".", stripe.as_bytes()],
    ));
    post(
        &client,
        url,
        "stripe",
        ("stripe-signature", format!("t={t},v1={v1}")),
        stripe,
    )
    .await?;

    let summary = wait_for_outcome(&store).await?;
    println!("{summary}");
    Ok(())
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    provider: &str,
    header: (&str, String),
    body: &str,
) -> anyhow::Result<()> {
    let answer = client
        .post(format!("{url}/webhooks/{provider}"))
        .header(header.0, header.1)
        .body(body.to_owned())
        .send()
        .await
        .with_context(|| format!("posting to {url}: is `switchboard serve` running?"))?;
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    eprintln!("demo: POST /webhooks/{provider} -> {status} {text}");
    anyhow::ensure!(
        status.is_success(),
        "{provider} delivery refused: {status} {text}"
    );
    Ok(())
}

/// The demo business: the number the sample call dialled, the sample Cal.com event type and
/// the sample Stripe customer.
async fn seed(store: &Store) -> anyhow::Result<()> {
    if companies::by_phone_number(store, NUMBER).await?.is_some() {
        return Ok(());
    }
    let company = companies::insert_company(
        store,
        &companies::NewCompany {
            name: "Harbor Dental (demo)".into(),
            locale: "en".into(),
            timezone: "America/Los_Angeles".into(),
            admin_email: Some("owner@harbordental.example".into()),
            admin_phone: None,
            stripe_customer_id: Some("cus_T8xHarborDental".into()),
            calcom_api_key: None,
        },
    )
    .await?;
    let branch = companies::insert_branch(
        store,
        company,
        "Pier St",
        Some(90211),
        "America/Los_Angeles",
    )
    .await?;
    companies::insert_phone_number(store, branch, NUMBER).await?;
    eprintln!("demo: seeded the demo business (company {company}, number {NUMBER})");
    Ok(())
}

async fn wait_for_outcome(store: &Store) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let call = calls::get(store, CALL).await?;
        let booked = appointments::find_by_call(store, CALL).await?;
        let usage = usage_events::get(store, CALL).await?;
        let sent = match &booked {
            Some(a) => notifications::list(store, &format!("appointment:{}:confirmation", a.uid))
                .await?
                .into_iter()
                .filter(|n| n.status == "sent")
                .map(|n| format!("{} to {}", n.channel, n.recipient))
                .collect(),
            None => Vec::new(),
        };
        let reported = usage.is_some_and(|(_, at)| at.is_some());
        if let (Some(call), Some(appointment)) = (&call, &booked)
            && call.stage == calls::STAGE_ANALYZED
            && !sent.is_empty()
            && reported
        {
            return Ok(json!({
                "demo": "ok",
                "call": { "id": CALL, "duration_ms": call.duration_ms, "summary": call.summary },
                "appointment": { "uid": appointment.uid, "start": appointment.start_at, "status": appointment.status },
                "notified": sent,
                "usage_reported": true,
            }));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the path did not complete within 60 s (call stored: {}, booked: {}, notified: {}, usage reported: {reported}); see `switchboard status` and `switchboard failed list`",
            call.is_some(),
            booked.is_some(),
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
