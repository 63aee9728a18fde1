//! Erasure on `SQLite` (the integration tests in `tests/erase.rs` cover `MariaDB` too).

use super::*;
use crate::store::{
    appointments::{self, Appointment},
    calls::{self, Call},
    companies, customers,
    notifications::{self, NewNotification},
    usage_events, webhook_events,
};

const DANA: &str = "+14155550123";
const BUSINESS: &str = "+14155550987";

#[allow(clippy::too_many_lines)] // one linear seed of every table
async fn seeded() -> (Store, tempfile::TempDir, i64) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db.sqlite?mode=rwc", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let company = companies::insert_company(
        &store,
        &companies::NewCompany {
            name: "Harbor Dental".into(),
            locale: "en".into(),
            timezone: "UTC".into(),
            admin_email: None,
            admin_phone: None,
            stripe_customer_id: None,
            calcom_api_key: None,
        },
    )
    .await
    .unwrap();
    let branch = companies::insert_branch(&store, company, "Pier St", Some(1), "UTC")
        .await
        .unwrap();
    companies::insert_phone_number(&store, branch, BUSINESS)
        .await
        .unwrap();
    let customer = customers::upsert(
        &store,
        company,
        DANA,
        Some("Dana Ruiz"),
        Some("Dana.Ruiz@example.com"),
    )
    .await
    .unwrap();
    let other = customers::upsert(&store, company, "+14155550199", Some("Sam Lee"), None)
        .await
        .unwrap();
    for (call_id, from, customer_id) in [
        ("call_1", DANA, customer),
        ("call_2", "+14155550199", other),
    ] {
        calls::upsert(
            &store,
            &Call {
                call_id: call_id.into(),
                company_id: company,
                branch_id: branch,
                customer_id: Some(customer_id),
                from_number: from.into(),
                to_number: BUSINESS.into(),
                stage: calls::STAGE_ANALYZED,
                duration_ms: Some(142_000),
                summary: Some("Caller booked a cleaning".into()),
                analysis_json: Some(r#"{"customer_name":"Dana Ruiz"}"#.into()),
                ..Call::default()
            },
        )
        .await
        .unwrap();
        usage_events::record(&store, call_id, company, 142)
            .await
            .unwrap();
    }
    appointments::upsert(
        &store,
        &Appointment {
            uid: "bk_1".into(),
            company_id: company,
            branch_id: branch,
            customer_id: Some(customer),
            status: "booked".into(),
            title: Some("Cleaning between Dr. Lee Park and Dana Ruiz".into()),
            start_at: "2026-09-29T16:30:00Z".into(),
            end_at: "2026-09-29T17:00:00Z".into(),
            attendee_name: Some("Dana Ruiz".into()),
            attendee_email: Some("dana.ruiz@example.com".into()),
            attendee_phone: Some(DANA.into()),
            ..Appointment::default()
        },
    )
    .await
    .unwrap();
    for (key, channel, to) in [
        ("k:email", "email", "DANA.RUIZ@example.com"),
        ("k:sms", "sms", DANA),
    ] {
        notifications::reserve(
            &store,
            &NewNotification {
                unique_key: key,
                channel,
                recipient: to,
                template: "confirmation",
                locale: "en",
            },
        )
        .await
        .unwrap();
    }
    webhook_events::begin(&store, "retell", "evt_1", "call_ended", 1)
        .await
        .unwrap();
    webhook_events::finish(
        &store,
        "retell",
        "evt_1",
        "failed",
        Some("caller %2B14155550123 unknown"),
    )
    .await
    .unwrap();
    (store, dir, customer)
}

fn counts(report: &Report) -> Vec<(&'static str, u64)> {
    report.tables.clone()
}

#[tokio::test]
async fn the_person_is_anonymised_once_and_billing_stays() {
    let (store, _dir, customer) = seeded().await;
    let subject = Subject::phone(DANA).unwrap();
    let preview = preview(&store, &subject).await.unwrap();
    let report = erase(&store, &subject).await.unwrap();
    assert_eq!(
        counts(&preview),
        counts(&report),
        "a preview counts what erase does"
    );
    assert_eq!(
        counts(&report),
        vec![
            ("customers", 1),
            ("calls", 1),
            ("appointments", 1),
            ("notifications", 2),
            ("usage_events", 0),
            ("webhook_events", 1)
        ]
    );
    assert_eq!(report.usage_kept, 1);
    assert!(
        report.needles.matches("DANA.RUIZ@EXAMPLE.COM"),
        "the email was learnt"
    );

    let (phone, name, email) = customers::get(&store, customer).await.unwrap().unwrap();
    assert_eq!(
        (phone, name, email),
        (format!("erased:{customer}"), None, None)
    );
    let call = calls::get(&store, "call_1").await.unwrap().unwrap();
    assert_eq!(
        (call.from_number.as_str(), call.to_number.as_str()),
        ("erased", BUSINESS)
    );
    assert_eq!((call.summary, call.analysis_json), (None, None));
    assert_eq!(
        calls::get(&store, "call_2")
            .await
            .unwrap()
            .unwrap()
            .from_number,
        "+14155550199"
    );
    let a = appointments::get(&store, "bk_1").await.unwrap().unwrap();
    assert_eq!(
        a.title.as_deref(),
        Some("Cleaning between Dr. Lee Park and [erased]")
    );
    assert_eq!(
        (
            a.attendee_name,
            a.attendee_email,
            a.attendee_phone,
            a.customer_id
        ),
        (None, None, None, None)
    );
    let sent = notifications::list(&store, "k:").await.unwrap();
    assert!(
        sent.iter()
            .all(|n| n.recipient == "erased" && n.status == "dropped"),
        "{sent:?}"
    );
    assert_eq!(
        usage_events::get(&store, "call_1").await.unwrap(),
        Some((142, None))
    );
    let event = webhook_events::get(&store, "retell", "evt_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.2.as_deref(), Some("caller [erased] unknown"));

    let again = erase(&store, &subject).await.unwrap();
    assert_eq!(again.changed(), 0, "{again:?}");
    let by_email = erase(&store, &Subject::email("dana.ruiz@EXAMPLE.com").unwrap())
        .await
        .unwrap();
    assert_eq!(by_email.changed(), 0, "{by_email:?}");
}

#[tokio::test]
async fn by_email_and_never_a_business_number() {
    let (store, _dir, customer) = seeded().await;
    let report = erase(&store, &Subject::email("dana.ruiz@EXAMPLE.com").unwrap())
        .await
        .unwrap();
    assert_eq!(report.tables[0], ("customers", 1));
    assert_eq!(
        report.tables[1],
        ("calls", 1),
        "the call of the customer found by email"
    );
    assert_eq!(
        customers::get(&store, customer).await.unwrap().unwrap().1,
        None
    );
    let refused = erase(&store, &Subject::phone(BUSINESS).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, ErasureError::BusinessNumber(_)),
        "{refused}"
    );
}

#[test]
fn subjects_are_checked() {
    assert!(Subject::phone("+4915123456789").is_ok());
    for bad in [
        "4915123456789",
        "+0151",
        "+49 151 23",
        "+49151234567890123",
        "",
    ] {
        assert!(Subject::phone(bad).is_err(), "{bad}");
    }
    assert!(Subject::email("a.b@example.com").is_ok());
    for bad in [
        "a.b",
        "@example.com",
        "a@b",
        "a b@example.com",
        "a@@example.com",
        "a@example.",
    ] {
        assert!(Subject::email(bad).is_err(), "{bad}");
    }
}
