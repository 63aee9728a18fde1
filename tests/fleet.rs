//! Fleet behaviour against a real Redis: graceful shutdown, crash recovery after SIGKILL, a
//! large backlog, Redis memory after the trim window, and auto-balancing with its history on
//! the dashboard.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use common::{Harness, cases, jobs};
use serde_json::Value;
use switchboard::{
    app::{self, Hooks, Roles},
    config::FleetSettings,
    dashboard::Credentials,
    fleet::Observer,
    maintenance::{Pruner, Service as _},
    queue::job::{Job, now_ms},
};
use switchboard_jobs::noop::Noop;

/// Jobs in the backlog test.
const N_BACKLOG: usize = 200_000;
/// Jobs in the memory test.
const N_TRIM: usize = 20_000;

#[tokio::test]
async fn graceful_shutdown_hands_back_unstarted_jobs_and_finishes_running_ones() {
    let h = Harness::new().await;
    let switches = jobs::Switches::new();
    // 2 run at once, 10 more are leased ahead: 12 held by the worker, 8 left pending.
    let fleet = h
        .fleet(
            &h.fleet_settings("gated", 2, 10, 3),
            jobs::registry(&switches),
            None,
        )
        .await;
    h.queues
        .enqueue_many("gated", &vec![jobs::Gated::default(); 20], None)
        .await
        .unwrap();
    let queues = h.queues.clone();
    h.wait_for("2 running and 12 leased", Duration::from_secs(10), || {
        let (queues, started) = (queues.clone(), switches.started());
        async move { started == 2 && queues.stats("gated").await.unwrap().running == 12 }
    })
    .await;

    let stopping = tokio::spawn(fleet.stop());
    // Unstarted jobs go back at once, while the two running ones are still held.
    h.wait_for(
        "10 unstarted jobs handed back",
        Duration::from_secs(10),
        || {
            let queues = queues.clone();
            async move {
                let s = queues.stats("gated").await.unwrap();
                s.pending == 18 && s.running == 2
            }
        },
    )
    .await;
    assert!(!stopping.is_finished(), "shutdown waits for running jobs");
    assert_eq!(switches.finished.load(Ordering::SeqCst), 0);

    switches.gate.add_permits(2);
    let stopped = common::within(Duration::from_secs(10), "fleet stop", stopping)
        .await
        .unwrap();
    assert_eq!((stopped.clean, stopped.abandoned), (1, 0));
    assert_eq!(
        switches.finished.load(Ordering::SeqCst),
        2,
        "running jobs finished"
    );
    assert_eq!(switches.started(), 2, "no job started after the stop");
    let s = h.stats("gated").await;
    assert_eq!((s.pending, s.running, s.processed), (18, 0, 2));
    assert!(
        h.queues.workers("gated").await.unwrap().is_empty(),
        "worker deregistered"
    );
}

#[tokio::test]
async fn shutdown_deadline_hands_overdue_running_jobs_back() {
    let h = Harness::new().await;
    let switches = jobs::Switches::new();
    let mut settings = h.fleet_settings("gated", 1, 0, 3);
    settings.shutdown_timeout_secs = 1;
    let fleet = h.fleet(&settings, jobs::registry(&switches), None).await;
    h.queues
        .enqueue_many("gated", &[jobs::Gated::default()], None)
        .await
        .unwrap();
    h.wait_for("the job running", Duration::from_secs(10), || {
        let n = switches.started();
        async move { n == 1 }
    })
    .await;
    let stopped = common::within(Duration::from_secs(10), "fleet stop", fleet.stop()).await;
    assert_eq!(
        (stopped.clean, stopped.abandoned, stopped.jobs_handed_back),
        (0, 1, 1)
    );
    let s = h.stats("gated").await;
    assert_eq!(
        (s.pending, s.running, s.processed),
        (1, 0, 0),
        "the overdue job is back in the queue"
    );
}

#[tokio::test]
async fn a_worker_killed_mid_drain_loses_nothing() {
    let h = Harness::with(|s| s.queue.completed_max = 1_000_000).await;
    cases::a_worker_killed_mid_drain_loses_nothing(&h).await;
}

#[tokio::test]
async fn a_backlog_of_200k_jobs_drains_completely() {
    let h = Harness::new().await;
    let ids: Vec<String> = (0..N_BACKLOG).map(|i| format!("b{i}")).collect();
    for (ids, args) in ids
        .chunks(20_000)
        .zip(vec![Noop::default(); N_BACKLOG].chunks(20_000))
    {
        h.queues
            .enqueue_many("backlog", args, Some(ids))
            .await
            .unwrap();
    }
    assert_eq!(h.stats("backlog").await.pending, N_BACKLOG as u64);

    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..N_BACKLOG).map(|_| AtomicU8::new(0)).collect());
    let counter = Arc::clone(&runs);
    let observer: Observer = Arc::new(move |job: &Job| {
        let i: usize = job.id.strip_prefix('b').unwrap().parse().unwrap();
        counter[i].fetch_add(1, Ordering::Relaxed);
    });
    let mut settings = h.fleet_settings("backlog", 64, 64, 3);
    settings.supervisors[0].workers = 2;
    let fleet = h
        .fleet(&settings, switchboard_jobs::registry(), Some(observer))
        .await;
    h.wait_processed("backlog", N_BACKLOG as u64, Duration::from_secs(300))
        .await;
    fleet.stop().await;

    let never = runs
        .iter()
        .filter(|r| r.load(Ordering::Relaxed) == 0)
        .count();
    let twice = runs
        .iter()
        .filter(|r| r.load(Ordering::Relaxed) > 1)
        .count();
    assert_eq!((never, twice), (0, 0));
    let s = h.stats("backlog").await;
    assert_eq!(
        (s.pending, s.running, s.processed, s.failed),
        (0, 0, N_BACKLOG as u64, 0)
    );
}

async fn memory_of(h: &Harness) -> (u64, Vec<String>) {
    let mut conn = h.conn();
    let keys = h.keys().await;
    let mut total = 0;
    for k in &keys {
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        total += bytes.unwrap_or(0);
    }
    (total, keys)
}

#[tokio::test]
async fn redis_memory_returns_to_baseline_after_drain_and_trim() {
    let h = Harness::new().await;
    h.queues.register_queue("trim").await.unwrap();
    let (baseline, _) = memory_of(&h).await;

    h.queues
        .enqueue_many("trim", &vec![Noop::default(); N_TRIM], None)
        .await
        .unwrap();
    let (loaded, _) = memory_of(&h).await;
    assert!(
        loaded > baseline + 1_000_000,
        "20k jobs occupy memory ({loaded} bytes)"
    );

    let fleet = h
        .fleet(
            &h.fleet_settings("trim", 64, 64, 3),
            switchboard_jobs::registry(),
            None,
        )
        .await;
    h.wait_processed("trim", N_TRIM as u64, Duration::from_secs(60))
        .await;
    fleet.stop().await;
    let (drained, _) = memory_of(&h).await;
    assert!(
        drained > baseline + 100_000,
        "completed records kept within the window ({drained} bytes)"
    );

    // The trim window passes (the pruner is asked about a time past it).
    let pruner = Pruner::new(
        h.queues.clone(),
        vec!["trim".into()],
        &h.settings.maintenance,
    );
    let later = now_ms() + (h.settings.queue.completed_retention_secs + 1) * 1000;
    let outcome = pruner.run_once(common::at_ms(later)).await.unwrap();
    assert_eq!(
        (outcome.completed, outcome.dead),
        (h.settings.queue.completed_max.min(N_TRIM as u64), 0)
    );
    let (after, keys) = memory_of(&h).await;
    assert!(
        after <= baseline + 1024,
        "memory {after} bytes vs baseline {baseline}; keys left: {keys:?}"
    );
}

/// Supervisor `test` over `hot` and `cold` with 8 slots, balanced: each queue 1 to 7 slots,
/// one slot a second at most.
fn balanced(h: &Harness) -> FleetSettings {
    let mut settings = h.fleet_settings("hot", 8, 0, 3);
    let sup = &mut settings.supervisors[0];
    sup.queues.push("cold".into());
    sup.balance = switchboard::config::Balance::Auto;
    sup.min_slots = 1;
    sup.max_slots = Some(7);
    sup.balance_max_shift = 1;
    sup.balance_cooldown_secs = 1;
    settings
}

/// 10 ms noop jobs.
fn slow_noops(n: usize) -> Vec<Noop> {
    vec![
        Noop {
            fail: None,
            sleep_ms: Some(10)
        };
        n
    ]
}

#[tokio::test]
async fn a_balanced_supervisor_moves_slots_to_the_queue_that_fills_and_back_when_it_drains() {
    const JOBS: usize = 3000;
    let h = Harness::new().await;
    let settings = balanced(&h);
    let fleet = h.fleet(&settings, switchboard_jobs::registry(), None).await;
    let slots = |fleet: &switchboard::fleet::Fleet| {
        let s = fleet.balanced_slots();
        let of = |q: &str| s.iter().find(|(_, queue, _)| queue == q).unwrap().2;
        (of("hot"), of("cold"))
    };
    assert_eq!(slots(&fleet), (4, 4), "an even split to start");
    h.queues
        .enqueue_many("hot", &slow_noops(JOBS), None)
        .await
        .unwrap();

    // Sample the split until the backlog is gone and the split is even again.
    let mut samples: Vec<(std::time::Instant, (usize, usize))> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = (std::time::Instant::now(), slots(&fleet));
        if samples.last().map(|(_, s)| *s) != Some(now.1) {
            samples.push(now);
        }
        let drained = h.stats("hot").await.processed == JOBS as u64;
        if drained && now.1 == (4, 4) && samples.iter().any(|(_, s)| s.0 == 7) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no full swing within 60 s: {:?}",
            samples.iter().map(|(_, s)| *s).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let splits: Vec<(usize, usize)> = samples.iter().map(|(_, s)| *s).collect();
    assert!(
        splits.iter().all(|(hot, cold)| hot + cold == 8),
        "{splits:?}"
    );
    assert!(
        splits.iter().all(|&(hot, cold)| hot <= 7 && cold >= 1),
        "{splits:?}"
    );
    for pair in samples.windows(2) {
        let ((t0, (h0, _)), (t1, (h1, _))) = (pair[0], pair[1]);
        assert_eq!(h0.abs_diff(h1), 1, "one slot per move: {splits:?}");
        assert!(
            t1 - t0 >= Duration::from_millis(900),
            "moves a cooldown apart: {:?} between {h0} and {h1}",
            t1 - t0
        );
    }
    assert_eq!(splits[..4], [(4, 4), (5, 3), (6, 2), (7, 1)], "{splits:?}");
    fleet.stop().await;
}

/// The slot history goes through Redis: a dashboard in an app of its own (HTTP only, no
/// fleet) shows the split of a fleet started elsewhere moving toward the queue that fills,
/// and drops the fleet once it stops.
#[tokio::test]
async fn the_dashboard_shows_a_balanced_supervisors_slots_over_time() {
    let h = Harness::with(|s| s.dev.stand_ins = false).await;
    let fleet = h
        .fleet(&balanced(&h), switchboard_jobs::registry(), None)
        .await;
    let dashboard = DashboardOnly::start(&h).await;
    let get = |path: &str| dashboard.get(path);
    let slots_of = |v: &Value| -> (u64, u64) {
        (
            v["slots"]["hot"].as_u64().unwrap_or(0),
            v["slots"]["cold"].as_u64().unwrap_or(0),
        )
    };

    h.queues
        .enqueue_many("hot", &slow_noops(3000), None)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let sup = loop {
        let answer = get("/api/supervisors/slots").await;
        if let Ok(r) = answer
            && r.status() == 200
        {
            let all: Value = r.json().await.unwrap();
            let sup = all
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["supervisor"] == "test")
                .cloned();
            if let Some(sup) = sup
                && sup["current"]["hot"].as_u64() >= Some(6)
            {
                break sup;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no sample with 6 slots on hot within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let samples = sup["samples"].as_array().unwrap();
    let splits: Vec<(u64, u64)> = samples.iter().map(slots_of).collect();
    assert_eq!(splits[..3], [(4, 4), (5, 3), (6, 2)], "{splits:?}");
    assert!(
        splits.iter().all(|(hot, cold)| hot + cold == 8),
        "{splits:?}"
    );
    assert_eq!(sup["queues"], serde_json::json!(["cold", "hot"]));
    let instances = sup["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "one fleet runs the supervisor");
    assert_eq!(
        instances[0]["fleet"], samples[0]["fleet"],
        "samples name their fleet instance"
    );
    assert_eq!(
        sup["current"]["hot"].as_u64(),
        Some(slots_of(samples.last().unwrap()).0)
    );

    let page = get("/dashboard/slots").await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for part in [
        "id=\"slots-test\"",
        "<svg class=\"chart\"",
        "<polyline points=",
        "<title>hot</title>",
        "<title>cold</title>",
        "href=\"/dashboard/slots\" class=\"current\"",
    ] {
        assert!(html.contains(part), "the page lacks {part}: {html}");
    }
    let overview = get("/dashboard").await.unwrap().text().await.unwrap();
    assert!(
        overview.contains("href=\"/dashboard/slots\""),
        "linked from the overview"
    );

    // A fleet that stops writes an empty split: it holds no slots from then on.
    fleet.stop().await;
    let r: Value = get("/api/supervisors/slots?minutes=5")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sup = &r.as_array().unwrap()[0];
    assert_eq!(sup["instances"], serde_json::json!([]), "{sup}");
    assert_eq!(sup["current"], serde_json::json!({}), "{sup}");
    let last = sup["samples"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["slots"],
        serde_json::json!({}),
        "the stop sample: {last}"
    );

    dashboard.stop().await;
}

/// The dashboard in an app of its own: the HTTP role only, no fleet, on a port-0 listener,
/// with a bearer token.
struct DashboardOnly {
    base: String,
    client: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl DashboardOnly {
    const TOKEN: &str = "slots-token-3f1e9a";

    async fn start(h: &Harness) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hooks = Hooks {
            listener: Some(listener),
            dashboard_credentials: Some(Credentials {
                token: Some(Self::TOKEN.into()),
                ..Credentials::default()
            }),
            ..Hooks::default()
        };
        let roles = Roles {
            fleet: false,
            maintenance: false,
            scheduler: false,
            http: true,
            ingest: false,
            embedded_redis: false,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app::run(h.settings.clone(), roles, hooks, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Self {
            base,
            client,
            stop,
            task,
        }
    }

    fn get(&self, path: &str) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
        self.client
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", Self::TOKEN))
            .send()
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}
