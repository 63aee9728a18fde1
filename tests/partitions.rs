//! Beyond one Redis slot and one healthy link, on a real Redis: partitioned queues (spread,
//! summed stats, pause, per-key order, dead jobs across partitions), replicated
//! acknowledgement refused when no replica confirms, and the fencing of a worker cut off
//! from Redis.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use common::{Harness, jobs, running, running::Running, tcp_cut::TcpCut};
use switchboard::{
    app::{Hooks, Roles},
    fleet::{Fleet, Observer},
    ingest::{SecretList, WebhookSecrets},
    maintenance::{Rescuer, Service as _},
    queue::{QueueError, Queues, admin::Selection, job::Job},
};
use switchboard_jobs::{EnqueueOptions, noop::Noop};
use tokio_util::sync::CancellationToken;

const SECS: Duration = Duration::from_secs(20);

async fn partitioned(queue: &str, p: u16) -> Harness {
    Harness::with(|s| {
        s.queue.partitions.insert(queue.to_owned(), p);
    })
    .await
}

#[tokio::test]
async fn a_partitioned_queue_spreads_its_jobs_and_is_paused_and_counted_as_one() {
    let h = partitioned("parts", 3).await;
    let args = vec![Noop::default(); 30];
    for chunk in args.chunks(1) {
        h.queues.enqueue_many("parts", chunk, None).await.unwrap();
    }
    let parts = h.queues.partition_stats("parts").await.unwrap();
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["parts", "parts#1", "parts#2"]);
    assert!(
        parts.iter().all(|p| p.pending == 10),
        "round robin: {parts:?}"
    );
    assert_eq!(h.stats("parts").await.pending, 30);

    h.queues.pause("parts").await.unwrap();
    let parts = h.queues.partition_stats("parts").await.unwrap();
    assert!(parts.iter().all(|p| p.paused), "{parts:?}");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let observer: Observer = Arc::new(move |job: &Job| {
        sink.lock()
            .unwrap()
            .push((job.id.to_string(), job.queue.to_string()));
    });
    let fleet = h
        .fleet(
            &h.fleet_settings("parts", 4, 4, 3),
            switchboard_jobs::registry(),
            Some(observer),
        )
        .await;
    // One worker per partition, each refused while paused.
    let workers = fleet.workers();
    assert_eq!(workers.len(), 3);
    h.wait_for("every partition's worker refused twice", SECS, || {
        let n = workers
            .iter()
            .map(|w| w.counters().paused.load(Ordering::SeqCst))
            .min()
            .unwrap();
        async move { n >= 2 }
    })
    .await;
    assert_eq!(
        h.stats("parts").await.processed,
        0,
        "nothing runs while paused"
    );

    h.queues.resume("parts").await.unwrap();
    h.wait_processed("parts", 30, SECS).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 30);
    assert!(
        seen.iter().all(|(_, q)| q == "parts"),
        "jobs report the logical queue"
    );
    let parts = h.queues.partition_stats("parts").await.unwrap();
    assert!(parts.iter().all(|p| p.processed == 10), "{parts:?}");
    let s = h.stats("parts").await;
    assert_eq!((s.pending, s.running, s.processed), (0, 0, 30));
    fleet.stop().await;
}

#[tokio::test]
async fn per_key_order_holds_on_a_partitioned_queue() {
    const KEYS: usize = 12;
    const PER_KEY: usize = 25;
    let h = partitioned("ordered", 3).await;
    for n in 0..PER_KEY {
        for k in 0..KEYS {
            h.queues
                .enqueue(
                    &Noop {
                        fail: None,
                        sleep_ms: Some(1),
                    },
                    EnqueueOptions::default()
                        .on_queue("ordered")
                        .sequence(format!("call-{k}"))
                        .with_id(format!("k{k}-{n:03}")),
                )
                .await
                .unwrap();
        }
    }
    let parts = h.queues.partition_stats("ordered").await.unwrap();
    assert!(
        parts.iter().filter(|p| p.pending > 0).count() > 1,
        "the keys spread over partitions: {parts:?}"
    );
    let starts = Arc::new(Mutex::new(HashMap::<String, Vec<String>>::new()));
    let sink = Arc::clone(&starts);
    let observer: Observer = Arc::new(move |job: &Job| {
        let (key, _) = job.id.split_once('-').unwrap();
        sink.lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default()
            .push(job.id.to_string());
    });
    let fleet = h
        .fleet(
            &h.fleet_settings("ordered", 8, 8, 3),
            switchboard_jobs::registry(),
            Some(observer),
        )
        .await;
    h.wait_processed("ordered", (KEYS * PER_KEY) as u64, SECS)
        .await;
    fleet.stop().await;
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), KEYS);
    for (key, ids) in starts {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "key {key} ran out of order");
        assert_eq!(ids.len(), PER_KEY, "key {key} ran each job once");
    }
}

#[tokio::test]
async fn dead_jobs_of_every_partition_are_listed_retried_and_forgotten() {
    let h = partitioned("poison", 3).await;
    let switches = jobs::Switches::new();
    for _ in 0..6 {
        h.queues
            .enqueue(&jobs::Poison::default(), EnqueueOptions::default())
            .await
            .unwrap();
    }
    let fleet = h
        .fleet(
            &h.fleet_settings("poison", 2, 2, 3),
            jobs::registry(&switches),
            None,
        )
        .await;
    let queues = h.queues.clone();
    h.wait_for("six dead jobs", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("poison").await.unwrap().dead == 6 }
    })
    .await;
    let dead = h.queues.dead_list("poison", 100).await.unwrap();
    assert_eq!(dead.len(), 6);
    let parts = h.queues.partition_stats("poison").await.unwrap();
    assert!(parts.iter().all(|p| p.dead == 2), "{parts:?}");

    // Retried by id, each in its own partition; it dies again (poison).
    let ids: Vec<String> = dead.iter().map(|d| d.id.clone()).collect();
    assert_eq!(
        h.queues
            .dead_retry("poison", Selection::Ids(ids[..3].to_vec()))
            .await
            .unwrap(),
        3
    );
    // Revived (dead_retry answered 3), then dead again.
    let queues = h.queues.clone();
    h.wait_for("six dead again", SECS, || {
        let queues = queues.clone();
        async move { queues.stats("poison").await.unwrap().dead == 6 }
    })
    .await;
    assert_eq!(
        h.queues
            .dead_forget("poison", Selection::All)
            .await
            .unwrap(),
        6
    );
    assert_eq!(h.stats("poison").await.dead, 0);
    fleet.stop().await;
}

#[tokio::test]
async fn an_acknowledgement_no_replica_confirms_is_refused_with_503() {
    // This Redis has no replica: WAIT 1 can never be satisfied.
    let h = Harness::with(|s| {
        s.queue.min_replicas_acked = 1;
        s.queue.replicas_timeout_ms = 50;
        s.ingest.min_replicas_acked = 1;
        s.ingest.replicas_timeout_ms = 50;
    })
    .await;
    let err = h
        .queues
        .enqueue(
            &Noop::default(),
            EnqueueOptions::default().on_queue("acked"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::NotReplicated { wanted: 1, got: 0 }),
        "{err}"
    );

    let mut settings = h.settings.clone();
    settings.ingest.queue = "acked-webhooks".into();
    let hooks = Hooks {
        secrets: Some(WebhookSecrets {
            stripe: Some(SecretList::parse(running::STRIPE_SECRET)),
            ..WebhookSecrets::default()
        }),
        ..Hooks::default()
    };
    let app = Running::start(settings, Roles::ingest(), hooks).await;
    let (body, signature) = running::signed_stripe("evt_unreplicated_1");
    let r = app
        .client
        .post(format!("{}/webhooks/stripe", app.base))
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503, "no 202 without the replica");
    assert!(r.headers().contains_key("retry-after"));
    app.stop().await;
}

/// A fleet over queue `gated` of `concurrency` 1 and `prefetch` 4 on `queues`, its jobs
/// held at `switches`' gate.
async fn gated_fleet(h: &Harness, queues: &Queues, switches: &Arc<jobs::Switches>) -> Fleet {
    let mut fleet = h.fleet_settings("gated", 1, 4, 3);
    fleet.supervisors[0].timeout_secs = 5;
    Fleet::start(queues, Arc::new(jobs::registry(switches)), &fleet, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_worker_cut_off_from_redis_starts_no_job_rescued_elsewhere() {
    let h = Harness::with(|s| s.queue.lease_secs = 6).await;
    let proxy = TcpCut::start("127.0.0.1:6379".into()).await;
    let cut_off = Queues::connect(
        &format!("redis://127.0.0.1:{}", proxy.port),
        h.settings.queue.clone(),
    )
    .await
    .unwrap();
    let (a, b) = (jobs::Switches::new(), jobs::Switches::new());
    b.gate.add_permits(100);
    let fleet_a = gated_fleet(&h, &cut_off, &a).await;
    let worker_a = fleet_a.workers().pop().unwrap();
    for _ in 0..5 {
        h.queues
            .enqueue(&jobs::Gated::default(), EnqueueOptions::default())
            .await
            .unwrap();
    }
    let queues = h.queues.clone();
    h.wait_for("A running one job and holding four", SECS, || {
        let (queues, a) = (queues.clone(), Arc::clone(&a));
        async move { a.started() == 1 && queues.stats("gated").await.unwrap().running == 5 }
    })
    .await;

    proxy.cut();
    // The lease passes; the rescuer gives all five to B, which runs them.
    let token = CancellationToken::new();
    tokio::spawn(
        Rescuer::new(
            h.queues.clone(),
            vec!["gated".into()],
            &h.settings.maintenance,
        )
        .run(token.clone()),
    );
    let fleet_b = gated_fleet(&h, &h.queues, &b).await;
    h.wait_for("B ran all five", Duration::from_secs(30), || {
        let n = b.finished.load(Ordering::SeqCst);
        async move { n == 5 }
    })
    .await;

    // A's running job ends now, if its timeout has not ended it already; A would start its
    // next leased job then, unless it is fenced.
    a.gate.add_permits(1);
    // A reaches Redis again: its settlement is written (and skipped: the lease was gone),
    // its credit comes back and it fetches again, finding nothing.
    proxy.restore();
    let before = worker_a.counters().empty.load(Ordering::SeqCst);
    h.wait_for("A fetching again", SECS, || {
        let n = worker_a.counters().empty.load(Ordering::SeqCst);
        async move { n > before }
    })
    .await;
    assert_eq!(a.started(), 1, "A started nothing after it was cut off");
    assert_eq!(
        worker_a.counters().fenced.load(Ordering::SeqCst),
        4,
        "A handed back each job it held unstarted"
    );
    assert_eq!(b.started(), 5);
    let s = h.stats("gated").await;
    assert_eq!((s.pending, s.running), (0, 0), "{s:?}");
    token.cancel();
    fleet_b.stop().await;
    fleet_a.stop().await;
}

#[tokio::test]
async fn a_lease_a_worker_does_not_know_of_is_handed_back() {
    // As after a failover whose new master missed the worker's last settlement: Redis holds
    // a lease for a live worker that has no such job.
    let h = Harness::new().await;
    let fleet = h
        .fleet(
            &h.fleet_settings("orphans", 2, 2, 3),
            switchboard_jobs::registry(),
            None,
        )
        .await;
    let worker = fleet.workers().pop().unwrap();
    let keys = h.queues.keys("orphans").unwrap();
    let queues = h.queues.clone();
    let registered = keys.workers.clone();
    let id = worker.id().to_owned();
    h.wait_for("the worker registered", SECS, || {
        let (mut conn, registered, id) = (queues.conn(), registered.clone(), id.clone());
        async move {
            redis::cmd("ZSCORE")
                .arg(registered)
                .arg(id)
                .query_async::<Option<f64>>(&mut conn)
                .await
                .unwrap()
                .is_some()
        }
    })
    .await;
    let envelope = switchboard::queue::Envelope::new(
        "noop",
        1,
        serde_json::value::to_raw_value(&serde_json::json!({})).unwrap(),
    );
    let item = switchboard::queue::job::encode("orphan-1", &envelope);
    let () = redis::pipe()
        .hset(keys.leased(worker.id()), "orphan-1", &item)
        .hincr(&keys.stats, "running", 1)
        .query_async(&mut h.conn())
        .await
        .unwrap();
    h.wait_processed("orphans", 1, SECS).await;
    let s = h.stats("orphans").await;
    assert_eq!((s.pending, s.running, s.processed), (0, 0, 1), "{s:?}");
    fleet.stop().await;
}
