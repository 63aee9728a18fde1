//! The batch path of call events writes the same rows as the single path, on `MariaDB` and on
//! `SQLite`: seeded random sequences of Retell events (three stages, calls of known and unknown
//! numbers, callers with and without names, fields present or missing, exact duplicates of
//! earlier events, in any order) are written one statement per row into one database, and in
//! random consecutive batches (each batch also finishing the previous batch's events, as the
//! store's writer mixes them) into another; then every call, caller, usage and event row of
//! the sequence is compared, by natural keys (ids are the databases' own).

mod common;
#[macro_use]
#[path = "common/world.rs"]
mod world;

use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};
use switchboard_jobs::store::{
    Store,
    call_events::{self, CallEvent, Recorded},
    calls::{self, Call},
    companies::{self, NewCompany},
    customers, usage_events,
    webhook_events::{self, EventRow, Finished},
};

on_both_databases!(batches_write_the_rows_one_at_a_time_writes);

const NUMBERS: [&str; 2] = ["+15550100001", "+15550100002"];
const UNKNOWN: &str = "+15550199999";
const CALLERS: [&str; 3] = ["+14155550111", "+14155550112", "+14155550113"];
/// Sequences per run, and events per sequence.
const ROUNDS: usize = 12;
const EVENTS: usize = 24;

async fn seed(store: &Store) -> Vec<i64> {
    let mut companies = Vec::new();
    for (i, number) in NUMBERS.iter().enumerate() {
        let company = companies::insert_company(
            store,
            &NewCompany {
                name: format!("Company {i}"),
                locale: "en".into(),
                timezone: "UTC".into(),
                ..NewCompany::default()
            },
        )
        .await
        .unwrap();
        let branch = companies::insert_branch(store, company, "Main", None, "UTC")
            .await
            .unwrap();
        companies::insert_phone_number(store, branch, number)
            .await
            .unwrap();
        companies.push(company);
    }
    companies
}

/// `make`'s value, 6 times in 10; `None` otherwise.
fn maybe<T>(rng: &mut StdRng, make: impl FnOnce(&mut StdRng) -> T) -> Option<T> {
    if rng.random_bool(0.6) {
        Some(make(rng))
    } else {
        None
    }
}

/// A random event of round `round`: one of four calls, each always dialled to the same number.
fn event(rng: &mut StdRng, round: usize) -> CallEvent {
    let call_index = rng.random_range(0..4usize);
    let call_id = format!("call_r{round}_{call_index}");
    let to = [NUMBERS[0], NUMBERS[1], NUMBERS[0], UNKNOWN][call_index];
    let stage = rng.random_range(1..=3i64);
    let caller = (*CALLERS.choose(rng).unwrap()).to_owned();
    let duration = maybe(rng, |r| r.random_range(0..600_000i64));
    let has_caller = rng.random_bool(0.8);
    let caller_name = maybe(rng, |r| format!("Name {}", r.random_range(0..3)));
    let caller_email = maybe(rng, |r| format!("c{}@example.com", r.random_range(0..3)));
    let analysed = stage == 3;
    let call = Call {
        call_id: call_id.clone(),
        from_number: if has_caller {
            caller.clone()
        } else {
            String::new()
        },
        to_number: to.to_owned(),
        stage,
        started_at_ms: maybe(rng, |r| 1_790_000_000_000 + r.random_range(0..1000)),
        ended_at_ms: (stage >= 2).then(|| 1_790_000_600_000 + rng.random_range(0..1000)),
        duration_ms: duration,
        disconnection_reason: maybe(rng, |_| "user_hangup".to_owned()),
        summary: analysed.then(|| format!("summary {}", rng.random_range(0..3))),
        sentiment: analysed.then(|| "Positive".to_owned()),
        successful: analysed.then(|| rng.random_bool(0.5)),
        analysis_json: analysed.then(|| format!("{{\"n\":{}}}", rng.random_range(0..3))),
        ..Call::default()
    };
    let kind = ["call_started", "call_ended", "call_analyzed"][(stage - 1) as usize];
    CallEvent {
        event: EventRow {
            provider: "retell".into(),
            event_id: format!("{kind}:{call_id}"),
            event_type: kind.into(),
            received_at_ms: 1_790_000_000_000 + rng.random_range(0..1000),
        },
        to_number: to.to_owned(),
        caller: has_caller.then_some((caller, caller_name, caller_email)),
        call,
        usage_seconds: duration.filter(|_| stage >= 2).map(|ms| (ms + 999) / 1000),
    }
}

/// A sequence: new events, and exact duplicates of earlier ones (a retried or replayed
/// delivery repeats its event as it was).
fn sequence(rng: &mut StdRng, round: usize) -> Vec<CallEvent> {
    let mut events: Vec<CallEvent> = Vec::with_capacity(EVENTS);
    while events.len() < EVENTS {
        if !events.is_empty() && rng.random_bool(0.25) {
            let again = events.choose(rng).unwrap().clone();
            events.push(again);
        } else {
            events.push(event(rng, round));
        }
    }
    events
}

/// How the event ends, by what was found.
fn finished(e: &CallEvent, recorded: Recorded) -> Finished {
    let (status, error) = match recorded {
        Recorded::Stored { .. } => ("processed", None),
        Recorded::UnknownNumber => ("failed", Some(format!("no business owns {}", e.to_number))),
    };
    Finished {
        event: e.event.clone(),
        status,
        error,
    }
}

async fn single(store: &Store, events: &[CallEvent]) -> Vec<Recorded> {
    let mut out = Vec::new();
    for e in events {
        let r = call_events::record_one(store, e).await.unwrap();
        call_events::finish_one(store, &finished(e, r))
            .await
            .unwrap();
        out.push(r);
    }
    out
}

async fn batched(store: &Store, events: &[CallEvent], rng: &mut StdRng) -> Vec<Recorded> {
    let mut out = Vec::new();
    let mut pending: Vec<Finished> = Vec::new();
    let mut at = 0;
    while at < events.len() {
        let size = rng.random_range(1..=8).min(events.len() - at);
        let chunk = &events[at..at + size];
        let written =
            call_events::write_together(store, chunk.to_vec(), std::mem::take(&mut pending))
                .await
                .unwrap();
        pending = chunk
            .iter()
            .zip(&written)
            .map(|(e, r)| finished(e, *r))
            .collect();
        out.extend(written);
        at += size;
    }
    call_events::write_together(store, Vec::new(), pending)
        .await
        .unwrap();
    out
}

/// A result with the customer as its phone (ids differ between databases).
async fn comparable(store: &Store, r: Recorded) -> String {
    match r {
        Recorded::Stored {
            company_id,
            branch_id,
            customer_id,
        } => {
            let phone = match customer_id {
                Some(id) => Some(customers::get(store, id).await.unwrap().unwrap().0),
                None => None,
            };
            format!("stored {company_id} {branch_id} {phone:?}")
        }
        Recorded::UnknownNumber => "unknown".into(),
    }
}

/// Every row the events touch, by natural keys.
async fn rows(store: &Store, events: &[CallEvent], companies: &[i64]) -> Vec<String> {
    let mut out = Vec::new();
    let mut ids: Vec<&str> = events.iter().map(|e| e.call.call_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let call = calls::get(store, id).await.unwrap();
        let customer = match call.as_ref().and_then(|c| c.customer_id) {
            Some(c) => customers::get(store, c).await.unwrap(),
            None => None,
        };
        let call = call.map(|c| Call {
            customer_id: None,
            ..c
        });
        out.push(format!("call {id}: {call:?} customer {customer:?}"));
        let usage = usage_events::get(store, id).await.unwrap();
        out.push(format!("usage {id}: {usage:?}"));
    }
    for e in events {
        let row = webhook_events::get(store, "retell", &e.event.event_id)
            .await
            .unwrap()
            .map(|(t, s, err, processed)| (t, s, err, processed.is_some()));
        out.push(format!("event {}: {row:?}", e.event.event_id));
    }
    for c in companies {
        let n = customers::count(store, *c).await.unwrap();
        out.push(format!("customers of {c}: {n}"));
    }
    out
}

async fn batches_write_the_rows_one_at_a_time_writes(dialect: &str) {
    let (one, _one_db) = world::database(dialect).await;
    let (many, _many_db) = world::database(dialect).await;
    let companies = seed(&one).await;
    assert_eq!(seed(&many).await, companies, "both databases seed alike");
    let mut rng = StdRng::seed_from_u64(0x5eed_0018);
    for round in 0..ROUNDS {
        let events = sequence(&mut rng, round);
        let by_one = single(&one, &events).await;
        let by_many = batched(&many, &events, &mut rng).await;
        for (i, (a, b)) in by_one.iter().zip(&by_many).enumerate() {
            assert_eq!(
                comparable(&one, *a).await,
                comparable(&many, *b).await,
                "round {round}, event {i}: {:?}",
                events[i]
            );
        }
        let (a, b) = (
            rows(&one, &events, &companies).await,
            rows(&many, &events, &companies).await,
        );
        assert!(
            a.iter().any(|r| r.contains("processed")) && a.iter().any(|r| r.contains("failed")),
            "round {round} exercises both endings: {a:#?}"
        );
        assert_eq!(a, b, "round {round}: {events:#?}");
    }
    one.pool().close().await;
    many.pool().close().await;
}
