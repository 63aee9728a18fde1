//! Personal data at rest in Redis: with payload keys set, the whole path (a signed Retell
//! call asking for an appointment, through booking and notifications) leaves no caller
//! number, name, email or transcript readable in any key; jobs sealed under an old key run
//! after rotation and die with a clear error without it; dead and expired jobs of personal
//! kinds go after their own, shorter retention.

mod common;
#[path = "common/world.rs"]
mod world;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    Harness, at_ms,
    running::{self, Running},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard::{
    app::{Hooks, Roles},
    config::{PayloadKey, QueueSettings, SupervisorSettings},
    fleet::inline::drain,
    ingest::{SecretList, WebhookSecrets},
    maintenance::{Pruner, PrunerConfig, Service as _},
    queue::{Queues, job, schedule::TickJob, upkeep::PERSONAL_SCAN},
};
use switchboard_jobs::{
    EnqueueOptions, JobArgs, JobContext, JobError, Registry,
    store::{appointments, calls},
};
use time::{Duration as Span, OffsetDateTime, format_description::well_known::Rfc3339};
use wiremock::{Mock, ResponseTemplate, matchers};
use world::{EVENT_TYPE, Options, World};

const RETELL_KEY: &str = "key_seal_secret";
const CALL: &str = "call_5b2e9d0c7a4f41e38a1d2c6f90b1e7aa";

/// What must not be readable anywhere in Redis: the caller's and the called number (with and
/// without `+`), the caller's name and email, and phrases of the transcript.
const PERSONAL: [&str; 7] = [
    "14155550123",
    "14155550987",
    "Dana Ruiz",
    "dana.ruiz@example.com",
    "book a cleaning next Tuesday",
    "Shall I book it",
    "text confirmation",
];

fn key(id: &str, byte: u8) -> PayloadKey {
    PayloadKey::new(id, [byte; 32]).unwrap()
}

/// Every key under `prefix` with everything it holds, read by its type, as text.
async fn dump(h: &Harness) -> Vec<(String, String)> {
    let mut conn = h.conn();
    let mut out = Vec::new();
    for k in h.keys().await {
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let cmd = |name: &str| {
            let mut c = redis::cmd(name);
            c.arg(&k);
            c
        };
        let value: redis::Value = match kind.as_str() {
            "string" => cmd("GET"),
            "list" => cmd("LRANGE").arg(0).arg(-1).clone(),
            "hash" => cmd("HGETALL"),
            "zset" => cmd("ZRANGE").arg(0).arg(-1).arg("WITHSCORES").clone(),
            "set" => cmd("SMEMBERS"),
            "stream" => cmd("XRANGE").arg("-").arg("+").clone(),
            "none" => continue, // expired between SCAN and TYPE
            other => panic!("{k}: a {other} key; read it here too"),
        }
        .query_async(&mut conn)
        .await
        .unwrap();
        out.push((k, format!("{value:?}")));
    }
    out
}

/// Fail when any key under the test's prefix holds personal data in clear (its name too).
async fn assert_nothing_personal(h: &Harness, when: &str) -> usize {
    let keys = dump(h).await;
    for (k, text) in &keys {
        for needle in PERSONAL {
            assert!(
                !k.contains(needle) && !text.contains(needle),
                "{when}: {k} holds {needle:?} in clear: {text}"
            );
        }
    }
    keys.len()
}

/// Cal.com (no bookings yet, one free slot, the booking) and Stripe's meter events.
async fn stand_ins(w: &World, slot: &str) {
    let end = (OffsetDateTime::parse(slot, &Rfc3339).unwrap() + Span::minutes(30))
        .format(&Rfc3339)
        .unwrap();
    let ok = |body: serde_json::Value| ResponseTemplate::new(200).set_body_json(body);
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/bookings"))
        .respond_with(ok(json!({"status": "success", "data": []})))
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("GET"))
        .and(matchers::path("/v2/slots"))
        .respond_with(ok(
            json!({"status": "success", "data": {slot[..10].to_owned(): [{"start": slot}]}}),
        ))
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(201).set_body_json(
            json!({"status": "success", "data": {
                "id": 1, "uid": "bk_seal", "title": "Cleaning", "start": slot, "end": end,
                "status": "accepted", "eventTypeId": EVENT_TYPE,
                "attendees": [{"name": "Dana Ruiz", "email": "dana.ruiz@example.com"}],
                "metadata": {"switchboard_request": format!("book:{CALL}")}
            }}),
        ))
        .mount(&w.calcom)
        .await;
    Mock::given(matchers::method("POST"))
        .and(matchers::path("/v1/billing/meter_events"))
        .respond_with(ok(
            json!({"object": "billing.meter_event", "identifier": CALL}),
        ))
        .mount(&w.stripe)
        .await;
}

#[tokio::test]
async fn the_whole_path_leaves_nothing_personal_in_clear_in_redis() {
    let w = World::with(
        "sqlite",
        Options {
            fleet: false,
            ..Options::default()
        },
    )
    .await;
    let slot = (OffsetDateTime::now_utc() + Span::days(2))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap();
    stand_ins(&w, &slot).await;
    let mut settings = w.h.settings.clone();
    settings.queue.payload_keys = vec![key("k1", 7)];
    let keyed = Queues::connect(&settings.redis.url, settings.queue.clone())
        .await
        .unwrap();
    let hooks = || Hooks {
        services: Some(w.services.clone()),
        secrets: Some(WebhookSecrets {
            retell: Some(SecretList::parse(RETELL_KEY)),
            ..WebhookSecrets::default()
        }),
        ..Hooks::default()
    };
    let serve = Roles {
        embedded_redis: false,
        ..Roles::serve(&settings)
    };

    // First ingest alone: the delivery waits on the queue, sealed.
    let ingest = Running::start(
        settings.clone(),
        Roles {
            fleet: false,
            ..serve
        },
        hooks(),
    )
    .await;
    let (body, signature) = running::signed_call_analyzed(RETELL_KEY, &slot);
    assert!(
        std::str::from_utf8(&body)
            .is_ok_and(|b| b.contains("+14155550123") && b.contains("book a cleaning next Tuesday"))
    );
    assert_eq!(ingest.post_retell(body, &signature, &[]).await, 202);
    ingest.stop().await;
    let pending = w.h.pending_items("webhooks").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(
        pending[0].contains(r#""args":"$sealed:v1:k1:"#),
        "{}",
        pending[0]
    );
    let (_, envelope) = job::decode(&pending[0]).unwrap();
    let args = keyed.open_args(&envelope).unwrap();
    assert!(
        args.get().contains("book a cleaning next Tuesday"),
        "it opens"
    );
    assert_nothing_personal(&w.h, "queued").await;

    // Then everything: call stored, booked, notified by email and SMS, minutes reported;
    // Redis is read whole at every poll, so jobs pending, leased or waiting for a retry on
    // the way are looked at too.
    let all = Running::start(settings.clone(), serve, hooks()).await;
    let store = w.store.clone();
    let (sms, stripe, h) = (&w.sms, &w.stripe, &w.h);
    w.h.wait_for(
        "booking, email, SMS and meter event",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            let mails = w.sink.messages().len();
            async move {
                assert_nothing_personal(h, "on the way").await;
                let booked = appointments::get(&store, "bk_seal")
                    .await
                    .unwrap()
                    .is_some();
                let texts = sms.received_requests().await.unwrap().len();
                let meters = stripe.received_requests().await.unwrap().len();
                booked && mails == 1 && texts == 1 && meters == 1
            }
        },
    )
    .await;
    let call = calls::get(&w.store, CALL).await.unwrap().unwrap();
    assert_eq!(call.duration_ms, Some(142_000));
    assert!(w.sink.messages()[0].contains("dana.ruiz@example.com"));
    all.stop().await;
    let keys = assert_nothing_personal(&w.h, "after the whole path").await;
    assert!(keys > 5, "the path left its traces to look at: {keys} keys");
    w.stop().await;
}

/// Fails for good quoting its argument, as a real error might quote a number.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Leaky {
    phone: String,
}

impl JobArgs for Leaky {
    const KIND: &'static str = "test.leaky";
    const QUEUE: &'static str = "leaky";
}

/// Records its argument as its result.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Echo {
    phone: String,
}

impl JobArgs for Echo {
    const KIND: &'static str = "test.echo";
    const QUEUE: &'static str = "leaky";
}

/// A supervisor over `queue` for inline drains: one attempt per job.
fn supervisor(h: &Harness, queue: &str) -> SupervisorSettings {
    h.fleet_settings(queue, 1, 0, 1).supervisors.remove(0)
}

/// The handlers of [`Leaky`] and [`Echo`]; `seen` collects the phones they were given.
fn leaky_registry(seen: &Arc<Mutex<Vec<String>>>) -> Arc<Registry> {
    let mut r = Registry::default();
    let s = Arc::clone(seen);
    r.register(move |a: Leaky, _: JobContext| {
        s.lock().unwrap().push(a.phone.clone());
        async move { Err(JobError::permanent(format!("no route to {}", a.phone))) }
    });
    let s = Arc::clone(seen);
    r.register(move |a: Echo, ctx: JobContext| {
        s.lock().unwrap().push(a.phone.clone());
        ctx.set_result(json!({ "sent_to": a.phone }));
        async { Ok(()) }
    });
    Arc::new(r)
}

#[tokio::test]
async fn every_producer_seals_and_errors_and_results_show_opened() {
    let h = Harness::with(|s| s.queue.payload_keys = vec![key("k1", 1)]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let phone = "+14155550123".to_owned();
    let dead = h
        .queues
        .enqueue(
            &Leaky {
                phone: phone.clone(),
            },
            EnqueueOptions::default(),
        )
        .await
        .unwrap();
    let done = h
        .queues
        .enqueue(
            &Echo {
                phone: phone.clone(),
            },
            EnqueueOptions::default(),
        )
        .await
        .unwrap();
    // The batch and the scheduler's paths seal too.
    let batch = [Echo {
        phone: phone.clone(),
    }];
    h.queues.enqueue_many("leaky", &batch, None).await.unwrap();
    let tick = TickJob {
        kind: Echo::KIND,
        args: r#"{"phone":"+14155550123"}"#,
        priority: switchboard_jobs::Priority::Normal,
    };
    let now = i64::try_from(job::now_ms()).unwrap();
    let fired = h
        .queues
        .fire_tick("leaky", "nightly", now, 60_000, "cron-1", Some(tick), now)
        .await
        .unwrap();
    assert!(fired);
    assert_eq!(h.pending_items("leaky").await.len(), 4);
    assert_nothing_personal(&h, "queued").await;
    drain(
        &h.queues,
        leaky_registry(&seen),
        "leaky",
        &supervisor(&h, "leaky"),
    )
    .await
    .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![phone.clone(); 4]);
    assert_nothing_personal(&h, "after a death and results").await;

    let listed = h.queues.dead_list("leaky", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].error.as_deref(), Some("no route to +14155550123"));
    assert_eq!(listed[0].args, json!({ "phone": phone }));
    let view = h.queues.find_job("leaky", &dead.id).await.unwrap().unwrap();
    assert_eq!(view.error.as_deref(), Some("no route to +14155550123"));
    assert_eq!(view.args, Some(json!({ "phone": phone })));
    let view = h.queues.find_job("leaky", &done.id).await.unwrap().unwrap();
    assert_eq!(view.result, Some(json!({ "sent_to": phone })));
}

#[tokio::test]
async fn jobs_sealed_under_an_old_key_run_after_rotation_and_die_clearly_without_it() {
    let h = Harness::new().await;
    let with_keys = |keys: Vec<PayloadKey>| {
        let settings = QueueSettings {
            payload_keys: keys,
            ..h.settings.queue.clone()
        };
        let url = h.settings.redis.url.clone();
        async move { Queues::connect(&url, settings).await.unwrap() }
    };
    let old = with_keys(vec![key("k1", 1)]).await;
    let rotated = with_keys(vec![key("k2", 2), key("k1", 1)]).await;
    let only_new = with_keys(vec![key("k2", 2)]).await;
    let echo = |n: u32| Echo {
        phone: format!("+1415555{n:04}"),
    };

    // Written under k1 (and one plain, from before any key): all run under [k2, k1].
    for n in 0..3 {
        old.enqueue(&echo(n), EnqueueOptions::default())
            .await
            .unwrap();
    }
    h.queues
        .enqueue(&echo(3), EnqueueOptions::default())
        .await
        .unwrap();
    let items = h.pending_items("leaky").await;
    assert_eq!(items.iter().filter(|i| i.contains(":k1:")).count(), 3);
    let seen = Arc::new(Mutex::new(Vec::new()));
    drain(
        &rotated,
        leaky_registry(&seen),
        "leaky",
        &supervisor(&h, "leaky"),
    )
    .await
    .unwrap();
    let mut phones = seen.lock().unwrap().clone();
    phones.sort();
    assert_eq!(phones, (0..4).map(|n| echo(n).phone).collect::<Vec<_>>());
    let stats = h.stats("leaky").await;
    assert_eq!((stats.processed, stats.dead), (4, 0));

    // Under k2 alone, k1's jobs cannot run: dead at once, the error naming k1.
    for n in 10..12 {
        old.enqueue(&echo(n), EnqueueOptions::default())
            .await
            .unwrap();
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    drain(
        &only_new,
        leaky_registry(&seen),
        "leaky",
        &supervisor(&h, "leaky"),
    )
    .await
    .unwrap();
    assert!(seen.lock().unwrap().is_empty(), "no handler saw them");
    let stats = h.stats("leaky").await;
    assert_eq!((stats.processed, stats.dead), (4, 2));
    for listed in only_new.dead_list("leaky", 10).await.unwrap() {
        let error = listed.error.unwrap();
        assert!(
            error.contains("payload key \"k1\"") && error.contains("not among the configured"),
            "{error}"
        );
        assert_eq!(listed.attempts, 1, "a permanent failure, not retried");
    }
    // Put k1 back and they open again (for inspection, or a retry).
    let back = rotated.dead_list("leaky", 10).await.unwrap();
    assert!(
        back.iter().all(|d| d.args["phone"].as_str().is_some()),
        "{back:?}"
    );
}

/// `plain` jobs of a kind without personal data, one `test.leaky` per 100 of them and a
/// `notify.sms` (all to die), and one expiring job of each sort, on `queue`.
async fn seed(h: &Harness, queue: &str, plain: usize) {
    for n in 0..plain {
        h.queues
            .enqueue_json(
                "test.other",
                1,
                "{}".into(),
                queue,
                EnqueueOptions::default(),
            )
            .await
            .unwrap();
        if n % 100 == 0 {
            h.queues
                .enqueue(
                    &Leaky {
                        phone: format!("+1{n}"),
                    },
                    EnqueueOptions::default(),
                )
                .await
                .unwrap();
        }
    }
    h.queues
        .enqueue_json(
            "notify.sms",
            1,
            "{}".into(),
            queue,
            EnqueueOptions::default(),
        )
        .await
        .unwrap();
    let past = std::time::SystemTime::now() - Duration::from_secs(1);
    for kind in ["notify.email", "test.other"] {
        let options = EnqueueOptions {
            expires_at: Some(past),
            ..EnqueueOptions::default()
        };
        h.queues
            .enqueue_json(kind, 1, "{}".into(), queue, options)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn dead_and_expired_jobs_of_personal_kinds_go_after_their_own_retention() {
    let h = Harness::with(|s| {
        s.queue.personal_dead_retention_secs = 3600;
        s.queue.personal_kinds = vec!["test.leaky".into(), "notify.*".into()];
    })
    .await;
    let queue = "leaky";
    let start = job::now_ms();
    // More than one round reads, so the cursor must carry the rest over.
    let plain = PERSONAL_SCAN + 20;
    seed(&h, queue, plain).await;
    // No handler for test.other and notify.sms: they die at once, like the leaky ones.
    let seen = Arc::new(Mutex::new(Vec::new()));
    drain(
        &h.queues,
        leaky_registry(&seen),
        queue,
        &supervisor(&h, queue),
    )
    .await
    .unwrap();
    let personal_dead = 6 + 1;
    let dead = h.stats(queue).await.dead;
    assert_eq!(dead, plain as u64 + personal_dead);
    let k = h.queues.keys(queue).unwrap();
    let expired = || async {
        let mut conn = h.conn();
        let n: u64 = redis::cmd("ZCARD")
            .arg(&k.expired_at)
            .query_async(&mut conn)
            .await
            .unwrap();
        n
    };
    assert_eq!(expired().await, 2);

    // Within the personal retention nothing goes.
    let early = h.queues.prune(queue, start + 3_599_000).await.unwrap();
    assert_eq!((early.dead, early.expired), (0, 0));
    assert_eq!(h.stats(queue).await.dead, dead);

    // Past it, the personal ones go over a few bounded rounds; the others stay.
    let now = job::now_ms();
    let pruner = Pruner::new(
        h.queues.clone(),
        vec![queue.into()],
        PrunerConfig::default(),
    );
    let (mut dropped, mut expired_dropped, mut rounds) = (0, 0, 0);
    while rounds < 5 {
        let out = pruner.run_once(at_ms(now + 3_601_000)).await.unwrap();
        dropped += out.dead;
        expired_dropped += out.expired;
        rounds += 1;
        if dropped == personal_dead && expired_dropped == 1 {
            break;
        }
    }
    assert_eq!(
        (dropped, expired_dropped),
        (personal_dead, 1),
        "{rounds} rounds"
    );
    assert!(rounds >= 2, "one round reads at most {PERSONAL_SCAN} items");
    let stats = h.stats(queue).await;
    assert_eq!(stats.dead, plain as u64);
    assert_eq!(expired().await, 1);
    let left = h.queues.dead_list(queue, plain + 10).await.unwrap();
    assert!(left.iter().all(|d| d.kind == "test.other"));
    let mut conn = h.conn();
    let items: u64 = redis::cmd("HLEN")
        .arg(&k.dead)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(items, plain as u64, "dead items and dead_at agree");

    // Nothing left to find: a further round reads only what came since.
    let again = pruner.run_once(at_ms(now + 3_602_000)).await.unwrap();
    assert_eq!((again.dead, again.expired), (0, 0));
    assert_eq!(h.stats(queue).await.dead, plain as u64);
}
