//! No customer message lost in doubt, on `MariaDB` and on `SQLite`: an attempt that ends
//! between claiming a notification and sending it, or between the provider's accept and the
//! mark (the test-only fault points of `Services::faults`, which leave the row as a crash
//! would), is resolved by the retry: SMS are looked up at the gateway stand-in by their
//! reference, email goes again with the same Message-ID. Messages for bookings cancelled or
//! moved before the send are dropped, neither sent nor dead.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use switchboard_jobs::{
    EnqueueOptions,
    notify::{doubt::reference, faults::FaultPoint, send::message_id},
    store::notifications::{self, Notification},
    webhook::{CalcomWebhook, WebhookEvent},
};
use wiremock::{Mock, ResponseTemplate, matchers};
use world::{Options, World};

const UID: &str = "bK3v9Qp2LmX7tRz1Yc8WnA";
const PHONE: &str = "+14155550123";
const EMAIL_KEY: &str = "appointment:bK3v9Qp2LmX7tRz1Yc8WnA:confirmation:email";
const SMS_KEY: &str = "appointment:bK3v9Qp2LmX7tRz1Yc8WnA:confirmation:sms";

async fn calcom(w: &World, name: &str, trigger: &str) {
    let body = std::fs::read_to_string(format!(
        "{}/tests/fixtures/webhooks/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let e = WebhookEvent {
        provider: "calcom".into(),
        event_type: trigger.into(),
        dedupe_key: format!("{trigger}:{name}"),
        received_at_ms: 1_790_150_400_000,
        request_id: "req-1".into(),
        body,
    };
    w.h.queues
        .enqueue(&CalcomWebhook(e), EnqueueOptions::default())
        .await
        .unwrap();
}

/// A world whose SMS go to the remembering stand-in, jobs run inline.
async fn world(dialect: &str) -> World {
    World::with(
        dialect,
        Options {
            inline: true,
            sms_stand_in: true,
            ..Options::default()
        },
    )
    .await
}

async fn row(w: &World, key: &str) -> Notification {
    let rows = notifications::list(&w.store, key).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.into_iter().next().unwrap()
}

fn header<'a>(eml: &'a str, name: &str) -> Option<&'a str> {
    eml.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Book, with a fault armed at `point` for both confirmation messages; returns the world
/// once everything settled.
async fn book_with_fault(dialect: &str, point: FaultPoint) -> World {
    let w = world(dialect).await;
    w.faults().arm(point, EMAIL_KEY);
    w.faults().arm(point, SMS_KEY);
    calcom(&w, "calcom_booking_created.json", "BOOKING_CREATED").await;
    w.settled("webhooks", 1).await;
    w.settled("notifications", 2).await;
    assert_eq!(w.faults().pending(), 0, "both faults fired");
    let s = w.h.stats("notifications").await;
    assert_eq!(
        (s.processed, s.failed, s.dead),
        (2, 2, 0),
        "each message: one attempt ended by the fault, then success"
    );
    w
}

on_both_databases!(
    a_death_between_claim_and_send_delivers_once,
    a_death_between_send_and_mark_delivers_once_by_sms_and_one_message_id_by_email,
    a_failed_lookup_is_retried_and_never_sends_blind,
    a_confirmation_for_a_booking_cancelled_before_the_send_is_dropped,
    a_confirmation_for_a_booking_moved_away_is_dropped,
);

async fn a_death_between_claim_and_send_delivers_once(dialect: &str) {
    let w = book_with_fault(dialect, FaultPoint::BeforeSend).await;
    let mails = w.sink.messages();
    assert_eq!(mails.len(), 1, "one email");
    assert_eq!(
        header(&mails[0], "Message-ID"),
        Some(&*message_id(EMAIL_KEY))
    );
    let sms = w.gateway.as_ref().unwrap().messages();
    assert_eq!(sms.len(), 1, "one SMS: {sms:?}");
    let body = sms[0]["body"].as_str().unwrap();
    assert!(
        body.ends_with(&format!(" {}", reference(SMS_KEY))),
        "{body}"
    );
    assert_eq!(sms[0]["to"], PHONE);
    for (key, id) in [
        (EMAIL_KEY, message_id(EMAIL_KEY)),
        (SMS_KEY, sms[0]["sid"].as_str().unwrap().to_owned()),
    ] {
        let n = row(&w, key).await;
        assert_eq!(
            (n.status.as_str(), n.attempts, n.message_id.as_deref()),
            ("sent", 2, Some(id.as_str())),
            "{key}"
        );
    }
    w.stop().await;
}

async fn a_death_between_send_and_mark_delivers_once_by_sms_and_one_message_id_by_email(
    dialect: &str,
) {
    let w = book_with_fault(dialect, FaultPoint::BeforeMark).await;
    // The SMS left before the death; the retry finds it at the gateway and sends nothing.
    let sms = w.gateway.as_ref().unwrap().messages();
    assert_eq!(sms.len(), 1, "one SMS: {sms:?}");
    let n = row(&w, SMS_KEY).await;
    assert_eq!(
        (n.status.as_str(), n.message_id.as_deref()),
        ("sent", sms[0]["sid"].as_str())
    );
    // The email left too; the retry cannot ask, so it sends again with the same Message-ID.
    let mails = w.sink.messages();
    assert_eq!(mails.len(), 2, "the narrowest window: two copies");
    for m in &mails {
        assert_eq!(
            header(m, "Message-ID"),
            Some(&*message_id(EMAIL_KEY)),
            "{m}"
        );
    }
    assert_eq!(row(&w, EMAIL_KEY).await.status, "sent");
    w.stop().await;
}

async fn a_failed_lookup_is_retried_and_never_sends_blind(dialect: &str) {
    // The wiremock gateway: the first lookup answers 503, the second lists the message.
    let w = World::new(dialect, "en", 0).await;
    w.faults().arm(FaultPoint::BeforeMark, SMS_KEY);
    let list = || {
        matchers::path(format!(
            "/2010-04-01/Accounts/{}/Messages.json",
            world::SMS_ACCOUNT
        ))
    };
    Mock::given(matchers::method("GET"))
        .and(list())
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.sms)
        .await;
    let listed = serde_json::json!({
        "messages": [{
            "sid": "SM0123456789abcdef0123456789abcdef", "to": PHONE, "from": "+15550000000",
            "body": format!("Confirmed. {}", reference(SMS_KEY)), "status": "delivered",
            "date_sent": "Sun, 06 Dec 2026 08:00:00 +0000"
        }],
        "next_page_uri": null
    });
    Mock::given(matchers::method("GET"))
        .and(list())
        .and(matchers::query_param("To", PHONE))
        .and(matchers::basic_auth(world::SMS_ACCOUNT, "token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(listed))
        .with_priority(2)
        .mount(&w.sms)
        .await;
    calcom(&w, "calcom_booking_created.json", "BOOKING_CREATED").await;
    w.settled("webhooks", 1).await;
    w.settled("notifications", 2).await;
    let requests = w.sms.received_requests().await.unwrap();
    let count = |m: &str| requests.iter().filter(|r| r.method.as_str() == m).count();
    assert_eq!(
        (count("POST"), count("GET")),
        (1, 2),
        "one send, two lookups"
    );
    let n = row(&w, SMS_KEY).await;
    assert_eq!(
        (n.status.as_str(), n.attempts, n.message_id.as_deref()),
        ("sent", 3, Some("SM0123456789abcdef0123456789abcdef"))
    );
    let s = w.h.stats("notifications").await;
    assert_eq!((s.processed, s.dead), (2, 0));
    w.stop().await;
}

async fn a_confirmation_for_a_booking_cancelled_before_the_send_is_dropped(dialect: &str) {
    let w = world(dialect).await;
    // Both webhooks are processed before any notification runs.
    calcom(&w, "calcom_booking_created.json", "BOOKING_CREATED").await;
    calcom(&w, "calcom_booking_cancelled.json", "BOOKING_CANCELLED").await;
    w.settled("webhooks", 2).await;
    w.settled("notifications", 4).await;
    let s = w.h.stats("notifications").await;
    assert_eq!((s.processed, s.failed, s.dead), (4, 0, 0));
    for key in [EMAIL_KEY, SMS_KEY] {
        let n = row(&w, key).await;
        assert_eq!((n.status.as_str(), n.attempts), ("dropped", 0), "{key}");
        assert!(n.last_error.unwrap().contains("cancelled"));
    }
    for channel in ["email", "sms"] {
        let key = format!("appointment:{UID}:cancellation:{channel}");
        assert_eq!(row(&w, &key).await.status, "sent", "{key}");
    }
    let mails = w.sink.messages();
    assert_eq!(mails.len(), 1, "only the cancellation");
    assert_ne!(
        header(&mails[0], "Message-ID"),
        Some(&*message_id(EMAIL_KEY))
    );
    assert_eq!(w.gateway.as_ref().unwrap().messages().len(), 1);
    w.stop().await;
}

async fn a_confirmation_for_a_booking_moved_away_is_dropped(dialect: &str) {
    let w = world(dialect).await;
    calcom(&w, "calcom_booking_created.json", "BOOKING_CREATED").await;
    calcom(&w, "calcom_booking_rescheduled.json", "BOOKING_RESCHEDULED").await;
    w.settled("webhooks", 2).await;
    w.settled("notifications", 4).await;
    assert_eq!(w.h.stats("notifications").await.dead, 0);
    for key in [EMAIL_KEY, SMS_KEY] {
        assert_eq!(row(&w, key).await.status, "dropped", "{key}");
    }
    for channel in ["email", "sms"] {
        let key = format!("appointment:Hq4nW8sZ1aB6cD2eF0gJkL:reschedule:{channel}");
        assert_eq!(row(&w, &key).await.status, "sent", "{key}");
    }
    assert_eq!(w.sink.messages().len(), 1, "only the reschedule");
    w.stop().await;
}

/// The stand-in's sends, refusals, filters and pages, through the client where it can.
#[tokio::test]
async fn the_sms_stand_in_refuses_like_twilio_and_lists_by_number_and_day() {
    use switchboard::dev::sms::{ACCOUNT_SID, AUTH_TOKEN};
    use switchboard_jobs::clients::{
        SendError,
        sms::{SmsClient, SmsSettings},
    };
    const OTHER: &str = "+14155550199";
    let (gateway, base) = common::sms_stand_in().await;
    let settings = SmsSettings {
        base_url: base.clone(),
        from: "+15550000000".into(),
        timeout_secs: 5,
    };
    let client = SmsClient::new(&settings, ACCOUNT_SID.into(), AUTH_TOKEN.into());
    let today = time::OffsetDateTime::now_utc().date();

    let wrong = SmsClient::new(&settings, ACCOUNT_SID.into(), "wrong-token".into());
    let refused = wrong.send(PHONE, "hi").await;
    assert!(
        matches!(&refused, Err(SendError::Permanent(r)) if r.contains("401")),
        "{refused:?}"
    );
    let refused = wrong.find_sent(PHONE, today, "Ref").await;
    assert!(
        matches!(&refused, Err(SendError::Permanent(r)) if r.contains("401")),
        "{refused:?}"
    );
    let http = reqwest::Client::new();
    let url = format!("{base}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    for (form, code) in [
        (&[("From", "+15550000000"), ("Body", "hi")][..], 21604),
        (&[("From", "+15550000000"), ("To", PHONE)][..], 21602),
    ] {
        let answer = http
            .post(&url)
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
    }
    assert!(gateway.messages().is_empty(), "nothing refused was kept");

    let first = client.send(PHONE, "One. Ref AAAAAA").await.unwrap();
    let second = client.send(PHONE, "Two. Ref BBBBBB").await.unwrap();
    client.send(OTHER, "Three. Ref BBBBBB").await.unwrap();
    for sid in [&first, &second] {
        assert_eq!(sid.len(), 34, "{sid}");
        assert!(sid.starts_with("SM") && sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    }
    assert_ne!(first, second);
    let listed = gateway.messages();
    let sent = time::OffsetDateTime::parse(
        listed[0]["date_sent"].as_str().unwrap(),
        &time::format_description::well_known::Rfc2822,
    )
    .unwrap()
    .date();

    let found = client.find_sent(PHONE, sent, "Ref BBBBBB").await.unwrap();
    assert_eq!(found.map(|m| m.sid), Some(second.clone()));
    let found = client.find_sent(OTHER, sent, "Ref AAAAAA").await.unwrap();
    assert_eq!(found, None, "To filters");
    let found = client
        .find_sent(PHONE, sent.next_day().unwrap(), "Ref AAAAAA")
        .await
        .unwrap();
    assert_eq!(found, None, "DateSent> filters");

    // Pages of one, newest first, linked by `next_page_uri` relative to the API root.
    let get = |url: String| {
        http.get(url)
            .basic_auth(ACCOUNT_SID, Some(AUTH_TOKEN))
            .send()
    };
    let answer = get(format!("{url}?To=%2B14155550123&PageSize=1"))
        .await
        .unwrap();
    let page: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(page["messages"][0]["sid"], second.as_str());
    let next = page["next_page_uri"].as_str().unwrap();
    let page: serde_json::Value = get(format!("{base}{next}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"][0]["sid"], first.as_str());
    assert_eq!(page["next_page_uri"], serde_json::Value::Null);
    let answer = get(format!("{url}?DateSent%3E=yesterday")).await.unwrap();
    assert_eq!(answer.status(), 400);
}
