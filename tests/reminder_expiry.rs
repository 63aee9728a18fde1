//! Reminders that come too late are never sent, on `MariaDB` and on `SQLite`: a reminder job
//! expires at its appointment's start, so one still queued then is recorded as expired (not
//! run, not dead) while the reminder of a later appointment still goes.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use std::time::{Duration, SystemTime};

use switchboard_jobs::{
    EnqueueOptions, notify::reminders::NotifyReminders, store::appointments, store::notifications,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use world::World;

on_both_databases!(a_reminder_still_queued_when_the_appointment_begins_expires);

async fn a_reminder_still_queued_when_the_appointment_begins_expires(dialect: &str) {
    let w = World::new(dialect, "en", 0).await;
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    // One appointment begins in seconds (its reminder will still be queued then); the other
    // in 90 minutes, whose reminder must still go.
    let soon = now + time::Duration::seconds(4);
    for (uid, start, who) in [
        ("starts_soon", soon, "soon"),
        ("starts_later", now + time::Duration::minutes(90), "later"),
    ] {
        let a = appointments::Appointment {
            uid: uid.into(),
            company_id: w.company_id,
            branch_id: w.branch_id,
            status: "booked".into(),
            start_at: start.format(&Rfc3339).unwrap(),
            end_at: (start + time::Duration::minutes(30))
                .format(&Rfc3339)
                .unwrap(),
            attendee_email: Some(format!("{who}@example.com")),
            attendee_phone: Some(
                if who == "soon" {
                    "+14155550101"
                } else {
                    "+14155550102"
                }
                .into(),
            ),
            ..appointments::Appointment::default()
        };
        appointments::upsert(&w.store, &a).await.unwrap();
    }
    // The reminder run alone, on a queue of its own: its notifications wait.
    w.h.queues
        .enqueue(
            &NotifyReminders {},
            EnqueueOptions::default().on_queue("reminders"),
        )
        .await
        .unwrap();
    assert_eq!(w.drain_only("reminders").await, 1);
    assert_eq!(
        w.h.stats("notifications").await.pending,
        4,
        "two appointments, email and SMS each (the run must start before the first begins)"
    );
    let began = SystemTime::from(soon);
    w.h.wait_for(
        "the first appointment to begin",
        Duration::from_secs(10),
        || async { SystemTime::now() > began },
    )
    .await;
    w.settled("notifications", 2).await;

    let k = w.h.queues.keys("notifications").unwrap();
    let mut conn = w.h.conn();
    let counted: Option<u64> = redis::cmd("HGET")
        .arg(&k.stats)
        .arg("expired")
        .query_async(&mut conn)
        .await
        .unwrap();
    let kept: u64 = redis::cmd("HLEN")
        .arg(&k.expired)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        (counted, kept),
        (Some(2), 2),
        "both reminders of the begun appointment expired"
    );
    let s = w.h.stats("notifications").await;
    assert_eq!(
        (s.processed, s.dead, s.failed),
        (2, 0, 0),
        "expired is neither run nor dead"
    );
    let mails = mails(&w);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("later@example.com"), "{}", mails[0]);
    let texts = sms_texts(&w).await;
    assert_eq!(texts.len(), 1);
    assert!(texts[0].contains("14155550102"), "{}", texts[0]);
    let sent: Vec<String> = notifications::list(&w.store, "appointment:starts_soon:")
        .await
        .unwrap()
        .into_iter()
        .filter(|n| n.status == "sent")
        .map(|n| n.unique_key)
        .collect();
    assert!(
        sent.is_empty(),
        "nothing sent for the begun appointment: {sent:?}"
    );
    w.stop().await;
}

/// The emails the SMTP sink received, with quoted-printable soft breaks undone.
fn mails(w: &World) -> Vec<String> {
    w.sink
        .messages()
        .iter()
        .map(|m| m.replace("=\r\n", "").replace("=\n", ""))
        .collect()
}

/// The SMS request bodies the gateway received.
async fn sms_texts(w: &World) -> Vec<String> {
    w.sms
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect()
}
