//! `calendar.reschedule` through the development Cal.com stand-in, which validates every
//! request against Cal.com's document and moves a booking the Cal.com way (a new booking
//! with `rescheduledFromUid`, the old one cancelled), on `SQLite` and `MariaDB`.

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use switchboard_jobs::{
    EnqueueOptions,
    calendar::CalendarReschedule,
    clients::calcom::{Attendee, BookingQuery, CreateBooking},
    store::appointments,
};
use world::{EVENT_TYPE, Options, World};

async fn calendar_reschedule_moves_a_booking_at_the_stand_in(dialect: &str) {
    let w = World::with(
        dialect,
        Options {
            queues: &["calendar", "notifications"],
            inline: true,
            calcom_stand_in: true,
            ..Options::default()
        },
    )
    .await;
    let company = switchboard_jobs::store::companies::get(&w.store, w.company_id)
        .await
        .unwrap()
        .unwrap();
    let (client, _) = w.services.calendar.client_for(&company).unwrap();
    let email = "dana.ruiz@example.com";
    let first = client
        .create_booking(&CreateBooking {
            start: "2030-03-04T09:00:00Z".into(),
            event_type_id: EVENT_TYPE,
            attendee: Attendee {
                name: "Dana Ruiz".into(),
                email: email.into(),
                time_zone: "Europe/Berlin".into(),
                phone_number: None,
            },
            metadata: [("retell_call_id".to_owned(), "call_r1".to_owned())].into(),
        })
        .await
        .unwrap();
    let ours = appointments::Appointment {
        uid: first.uid.clone(),
        company_id: w.company_id,
        branch_id: w.branch_id,
        status: "booked".into(),
        start_at: first.start.clone(),
        end_at: first.end.clone(),
        attendee_email: Some(email.into()),
        ..Default::default()
    };
    appointments::upsert(&w.store, &ours).await.unwrap();

    let job = CalendarReschedule {
        uid: first.uid.clone(),
        start: "2030-03-05T11:00:00+01:00".into(),
        reason: Some("caller asked".into()),
    };
    w.h.queues
        .enqueue(&job, EnqueueOptions::default())
        .await
        .unwrap();
    w.settled("calendar", 1).await;
    assert_eq!(w.h.stats("calendar").await.dead, 0);

    // At the stand-in: the old booking cancelled, a new one at the new time, linked.
    let listed = client
        .list_bookings(&BookingQuery {
            attendee_email: Some(email.into()),
            ..BookingQuery::default()
        })
        .await
        .unwrap();
    let new = listed
        .iter()
        .find(|b| b.uid != first.uid)
        .expect("the move's new booking");
    assert_eq!(
        new.rescheduled_from_uid.as_deref(),
        Some(first.uid.as_str())
    );
    assert_eq!(new.start, "2030-03-05T10:00:00.000Z");
    // Here: the same, as the job records it.
    let old = appointments::get(&w.store, &first.uid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.status, "rescheduled");
    let moved = appointments::get(&w.store, &new.uid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (moved.status.as_str(), moved.rescheduled_from_uid.as_deref()),
        ("booked", Some(first.uid.as_str()))
    );
    w.stop().await;
}

on_both_databases!(calendar_reschedule_moves_a_booking_at_the_stand_in);
