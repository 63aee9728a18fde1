//! Switchboard on a Redis Cluster (3 masters, 3 replicas) and behind Sentinel (a master, a
//! replica, three Sentinels), each of the test's own on free ports: the queue's core cases
//! on the cluster, a 200,000-job drain over 3 partitions, the slot check, and a master lost
//! during a drain (cluster) or during ingest load (Sentinel), counted with and without
//! replicated acknowledgement.
//!
//! The failover tests print one `failover:` line each with what they counted; run them with
//! `--nocapture` to read it.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    Harness, cases,
    cluster::{RedisCluster, SentinelSet},
    running,
    running::Running,
};
use switchboard::{
    app::{Hooks, Roles},
    config::RedisMode,
    fleet::Observer,
    ingest::{SecretList, WebhookSecrets},
    maintenance::{Rescuer, Service as _},
    queue::job::Job,
};
use switchboard_jobs::{EnqueueOptions, noop::Noop};
use tokio_util::sync::CancellationToken;

/// The heavy tests here (a 200,000-job drain, the failovers under load) take turns: side by
/// side on a 2-core machine they starve each other's Redis processes past the node timeout
/// and a replica's confirmation, and a test then measures the machine, not the engine.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start_cluster() -> RedisCluster {
    tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .unwrap()
}

async fn on_cluster(
    cluster: &RedisCluster,
    tune: impl FnOnce(&mut switchboard::config::Settings),
) -> Harness {
    Harness::on(RedisMode::Cluster, &cluster.seeds(), tune).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_core_cases_pass_on_a_cluster() {
    let cluster = start_cluster().await;
    let (h1, h2, h3, h4, h5, h6) = (
        on_cluster(&cluster, |_| {}).await,
        on_cluster(&cluster, |_| {}).await,
        on_cluster(&cluster, |_| {}).await,
        on_cluster(&cluster, |_| {}).await,
        on_cluster(&cluster, |_| {}).await,
        on_cluster(&cluster, |_| {}).await,
    );
    let h7 = on_cluster(&cluster, |s| s.queue.completed_max = 1_000_000).await;
    let h8 = on_cluster(&cluster, |_| {}).await;
    tokio::join!(
        cases::processes_a_job(&h1),
        cases::failing_job_retries_with_backoff_then_dies_with_its_error(&h2),
        cases::poisoned_job_goes_to_the_dead_set_at_once(&h3),
        cases::delayed_job_never_runs_before_its_time(&h4),
        cases::pause_stops_fetching_and_continue_resumes(&h5),
        cases::unique_key_suppresses_the_second_push(&h6),
        cases::a_worker_killed_mid_drain_loses_nothing(&h7),
        cases::three_scheduler_processes_enqueue_each_of_20_ticks_exactly_once(&h8),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_live_in_slots_of_their_own_and_a_partitioned_drain_loses_nothing() {
    let _turn = HEAVY.lock().await;
    let cluster = start_cluster().await;
    let h = on_cluster(&cluster, |s| {
        s.queue.partitions.insert("webhooks".into(), 3);
    })
    .await;
    h.queues
        .check_slots(&["webhooks".into(), "calendar".into()])
        .await
        .expect("every queue's script keys share one slot");
    let pending: Vec<String> = h
        .queues
        .partition_names("webhooks")
        .iter()
        .map(|p| h.queues.keys(p).unwrap().pending.clone())
        .collect();
    let slots = h
        .queues
        .topology()
        .slots_of(&pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(slots.len(), 3);
    assert!(
        slots[0] != slots[1] && slots[1] != slots[2] && slots[0] != slots[2],
        "three partitions, three slots: {slots:?}"
    );

    // The CLI on the cluster: pause acts on every partition; status shows them on request.
    let cli = |args: &[&str]| {
        let out = h
            .command()
            .env("SWITCHBOARD_QUEUE__PARTITIONS__WEBHOOKS", "3")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    cli(&["pause", "webhooks"]);
    let status: serde_json::Value =
        serde_json::from_str(&cli(&["status", "--json", "--partitions"])).unwrap();
    let paused: Vec<(String, bool)> = status["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["name"].as_str().unwrap().starts_with("webhooks"))
        .map(|q| {
            (
                q["name"].as_str().unwrap().to_owned(),
                q["paused"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        paused,
        [
            ("webhooks".to_owned(), true),
            ("webhooks#0".to_owned(), true),
            ("webhooks#1".to_owned(), true),
            ("webhooks#2".to_owned(), true)
        ],
        "{status}"
    );
    cli(&["continue", "webhooks"]);
    assert!(
        h.queues
            .partition_stats("webhooks")
            .await
            .unwrap()
            .iter()
            .all(|p| !p.paused)
    );

    let out = tokio::task::spawn_blocking(move || {
        h.command()
            .args(["bench", "drain", "--jobs", "200000", "--partitions", "3"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap();
    println!("cluster drain: {line}");
    let result: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(result["jobs"], 200_000, "{line}");
    assert_eq!(result["lost"], 0, "{line}");
    assert_eq!(result["duplicates"], 0, "{line}");
    assert_eq!(result["partitions"], 3, "{line}");
    assert_eq!(result["redis_mode"], "cluster", "{line}");
}

/// What a failover test counted (printed whole, so some fields are read only by `Debug`).
#[allow(dead_code)]
#[derive(Debug, Default)]
struct Counted {
    acknowledged: usize,
    refused: u64,
    lost: usize,
    duplicates: usize,
    /// From the kill until the cluster served the lost master's slots again.
    failover_secs: f64,
    /// From the kill until every acknowledged job had run.
    drained_secs: f64,
    /// From the producers' stop until every acknowledged job had run.
    drained_after_producers_secs: f64,
    /// Acknowledged once the failover was seen.
    after_failover: usize,
    /// The last refusal's error, to tell a replica's silence from a lost connection.
    last_refusal: Option<String>,
    /// How many of the queue's partitions the killed master served.
    partitions_on_victim: usize,
}

/// Enqueue one job at a time from 4 producers into queue `fo` (3 partitions) while a fleet
/// drains it; kill the master of partition 1 once 3,000 are acknowledged; go on until 1,000
/// more are acknowledged (or 60 s); then wait up to 60 s for every acknowledged job to run.
#[allow(clippy::too_many_lines)] // one story: load, kill, failover, count
async fn failover_during_a_drain(min_replicas_acked: u32) -> Counted {
    let _turn = HEAVY.lock().await;
    let mut cluster = start_cluster().await;
    // The partitions' slots follow the harness's random key prefix, and all three may fall
    // on the master the test kills: then no partition is left whose master still has a
    // replica to confirm a push, and nothing is acknowledged after the failover however long
    // the test waits (CI: 0 in 60 s, every push refused for want of a replica). So the test
    // takes a prefix that spreads the partitions over two masters or more.
    let mut tries = 0;
    let (h, masters) = loop {
        let h = on_cluster(&cluster, |s| {
            s.queue.partitions.insert("fo".into(), 3);
            s.queue.min_replicas_acked = min_replicas_acked;
            // The default wait for a replica: on a loaded machine a healthy replica can lag
            // past 100 ms, and every push it would have confirmed is refused.
            s.queue.replicas_timeout_ms = 500;
            s.queue.completed_max = 1_000_000;
        })
        .await;
        let masters: Vec<u16> = h
            .queues
            .partition_names("fo")
            .iter()
            .map(|p| cluster.master_port_for_key(&h.queues.keys(p).unwrap().pending))
            .collect();
        if masters.iter().collect::<HashSet<_>>().len() > 1 {
            break (h, masters);
        }
        tries += 1;
        assert!(tries < 50, "50 prefixes put every partition on one master");
    };
    let runs = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let sink = Arc::clone(&runs);
    let observer: Observer = Arc::new(move |job: &Job| {
        *sink.lock().unwrap().entry(job.id.to_string()).or_default() += 1;
    });
    let token = CancellationToken::new();
    tokio::spawn(
        Rescuer::new(
            h.queues.clone(),
            h.queues.partition_names("fo"),
            &h.settings.maintenance,
        )
        .run(token.clone()),
    );
    let fleet = h
        .fleet(
            &h.fleet_settings("fo", 16, 16, 3),
            switchboard_jobs::registry(),
            Some(observer),
        )
        .await;

    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let last_refusal = Arc::new(Mutex::new(None::<String>));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for _ in 0..4 {
        let (queues, acknowledged, refused, last_refusal, next, stop) = (
            h.queues.clone(),
            Arc::clone(&acknowledged),
            Arc::clone(&refused),
            Arc::clone(&last_refusal),
            Arc::clone(&next),
            Arc::clone(&stop),
        );
        producers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let id = format!("f{}", next.fetch_add(1, Ordering::SeqCst));
                let job = Noop {
                    fail: None,
                    sleep_ms: Some(1),
                };
                let options = EnqueueOptions::default().on_queue("fo").with_id(&id);
                match queues.enqueue(&job, options).await {
                    Ok(_) => acknowledged.lock().unwrap().push(id),
                    Err(e) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                        *last_refusal.lock().unwrap() = Some(e.to_string());
                    }
                }
            }
        }));
    }
    let count = |n: usize| {
        let acknowledged = Arc::clone(&acknowledged);
        move || {
            let k = acknowledged.lock().unwrap().len();
            async move { k >= n }
        }
    };
    h.wait_for("3,000 acknowledged", Duration::from_secs(60), count(3_000))
        .await;
    let victim = masters[1];
    let partitions_on_victim = masters.iter().filter(|&&m| m == victim).count();
    let killed = Instant::now();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.kill(victim);
        cluster.wait_failover(victim, Duration::from_secs(30));
        cluster
    })
    .await
    .unwrap();
    let failover_secs = killed.elapsed().as_secs_f64();
    let at_failover = acknowledged.lock().unwrap().len();
    let after = at_failover + 1_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < after && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(60);
    let lost = loop {
        let lost = {
            let runs = runs.lock().unwrap();
            acknowledged
                .iter()
                .filter(|id| !runs.contains_key(*id))
                .count()
        };
        if lost == 0 || Instant::now() > deadline {
            break lost;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let drained_secs = killed.elapsed().as_secs_f64();
    let drained_after_producers_secs = stopped.elapsed().as_secs_f64();
    fleet.stop().await;
    token.cancel();
    let duplicates = runs.lock().unwrap().values().filter(|&&n| n > 1).count();
    drop(cluster);
    Counted {
        acknowledged: acknowledged.len(),
        refused: refused.load(Ordering::SeqCst),
        lost,
        duplicates,
        failover_secs,
        drained_secs,
        drained_after_producers_secs,
        after_failover: acknowledged.len() - at_failover,
        last_refusal: last_refusal.lock().unwrap().take(),
        partitions_on_victim,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_lost_during_a_drain_loses_no_job_acknowledged_by_a_replica() {
    let c = failover_during_a_drain(1).await;
    println!("failover: cluster drain, min_replicas_acked = 1: {c:?}");
    assert!(c.acknowledged >= 4_000, "{c:?}");
    assert_eq!(c.lost, 0, "every acknowledged job ran: {c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_lost_during_a_drain_without_replicated_acknowledgement_is_counted() {
    let c = failover_during_a_drain(0).await;
    println!("failover: cluster drain, min_replicas_acked = 0: {c:?}");
    assert!(
        c.acknowledged > 4_000,
        "the fleet went on after the failover: {c:?}"
    );
    assert!(c.drained_after_producers_secs < 30.0, "{c:?}");
}

/// Post signed Stripe deliveries from 4 clients to an ingest on a Sentinel-watched Redis;
/// kill the master after 500 are acknowledged (202); go on for 5 s after the Sentinels name
/// a new master; then look up each acknowledged delivery's job on the new master.
#[allow(clippy::too_many_lines)] // one story: load, kill, failover, count
async fn failover_during_ingest(min_replicas_acked: u32) -> Counted {
    let _turn = HEAVY.lock().await;
    let mut set = tokio::task::spawn_blocking(SentinelSet::start)
        .await
        .unwrap();
    let h = Harness::on(RedisMode::Sentinel, &set.urls(), |s| {
        SentinelSet::master_name().clone_into(&mut s.redis.sentinel_master);
        s.ingest.min_replicas_acked = min_replicas_acked;
        // The default wait, as for the drain above.
        s.ingest.replicas_timeout_ms = 500;
        s.ingest.queue = "sentinel-webhooks".into();
    })
    .await;
    let hooks = Hooks {
        secrets: Some(WebhookSecrets {
            stripe: Some(SecretList::parse(running::STRIPE_SECRET)),
            ..WebhookSecrets::default()
        }),
        ..Hooks::default()
    };
    let app = Arc::new(Running::start(h.settings.clone(), Roles::ingest(), hooks).await);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let refused = Arc::new(AtomicU64::new(0));
    let after_failover = Arc::new(AtomicUsize::new(0));
    let failed_over = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (app, acknowledged, refused, after_failover, failed_over, next, stop) = (
            Arc::clone(&app),
            Arc::clone(&acknowledged),
            Arc::clone(&refused),
            Arc::clone(&after_failover),
            Arc::clone(&failed_over),
            Arc::clone(&next),
            Arc::clone(&stop),
        );
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let id = format!("evt_s{}", next.fetch_add(1, Ordering::SeqCst));
                let (body, signature) = running::signed_stripe(&id);
                if app.post_stripe(&body, Some(&signature)).await == 202 {
                    acknowledged.lock().unwrap().push(id);
                    if failed_over.load(Ordering::SeqCst) {
                        after_failover.fetch_add(1, Ordering::SeqCst);
                    }
                } else {
                    refused.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let acked = Arc::clone(&acknowledged);
    h.wait_for(
        "500 deliveries acknowledged",
        Duration::from_secs(60),
        move || {
            let n = acked.lock().unwrap().len();
            async move { n >= 500 }
        },
    )
    .await;
    let killed = Instant::now();
    let set = tokio::task::spawn_blocking(move || {
        let old = set.kill_master();
        set.wait_new_master(old, Duration::from_secs(30));
        set
    })
    .await
    .unwrap();
    let failover_secs = killed.elapsed().as_secs_f64();
    failed_over.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let keys = h.queues.keys("sentinel-webhooks").unwrap();
    let mut conn = h.conn();
    let mut lost = 0;
    for id in &acknowledged {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(keys.unique(&format!("stripe:{id}")));
        // The test's own connection last spoke to the old master: its first command may
        // fail (that failure sends it to the new master).
        let mut present = cmd.query_async::<bool>(&mut conn).await;
        for _ in 0..3 {
            if present.is_ok() {
                break;
            }
            present = cmd.query_async::<bool>(&mut conn).await;
        }
        if !present.unwrap() {
            lost += 1;
        }
    }
    Arc::into_inner(app).unwrap().stop().await;
    drop(set);
    Counted {
        acknowledged: acknowledged.len(),
        refused: refused.load(Ordering::SeqCst),
        lost,
        failover_secs,
        after_failover: after_failover.load(Ordering::SeqCst),
        ..Counted::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_during_ingest_loses_no_delivery_acknowledged_by_a_replica() {
    let c = failover_during_ingest(1).await;
    println!("failover: sentinel ingest, min_replicas_acked = 1: {c:?}");
    assert!(c.acknowledged >= 500, "{c:?}");
    assert_eq!(c.lost, 0, "every 202 is on the new master: {c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_during_ingest_is_followed_to_the_new_master() {
    let c = failover_during_ingest(0).await;
    println!("failover: sentinel ingest, min_replicas_acked = 0: {c:?}");
    assert!(
        c.after_failover > 0,
        "ingest found the new master and went on answering 202: {c:?}"
    );
}
