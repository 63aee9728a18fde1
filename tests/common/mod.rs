//! Shared test set-up: a real Redis, a key prefix of the test's own, and waiting helpers that
//! poll state with a deadline instead of sleeping.

#![allow(dead_code)]

pub mod cases;
pub mod cluster;
pub mod expo;
pub mod jobs;
pub mod running;
pub mod smtp_sink;
pub mod tcp_cut;
pub mod tools;

use std::{future::Future, sync::Arc, time::Duration};

use switchboard::{
    config::{BackoffSettings, FleetSettings, RedisMode, Settings, SupervisorSettings},
    fleet::{Fleet, Observer},
    queue::{Queues, admin::QueueStats},
};
use switchboard_jobs::Registry;

/// A TCP port on loopback that was free a moment ago (for child processes that bind it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Redis the suite runs against.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A supervisor as tests want one: `name` over `queues`, one worker loop of `concurrency`
/// slots leasing `prefetch` ahead, `max_attempts` with a 5-20 ms backoff, a 2 s timeout and
/// a fixed split (no balancing).
pub fn supervisor(
    name: &str,
    queues: &[&str],
    concurrency: usize,
    prefetch: usize,
    max_attempts: u32,
) -> SupervisorSettings {
    SupervisorSettings {
        name: name.into(),
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        concurrency,
        workers: 1,
        prefetch: Some(prefetch),
        max_attempts,
        timeout_secs: 2,
        backoff: BackoffSettings {
            base_ms: 5,
            cap_ms: 20,
        },
        balance: switchboard::config::Balance::Off,
        min_slots: 1,
        max_slots: None,
        balance_max_shift: 1,
        balance_cooldown_secs: 3,
    }
}

/// One test's isolated world: its own key prefix in the shared Redis.
pub struct Harness {
    pub settings: Settings,
    pub queues: Queues,
}

impl Harness {
    /// Defaults tuned for tests: a short lease and block timeout so crash recovery is quick.
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// Like [`Harness::new`], with `tune` applied to the settings first.
    pub async fn with(tune: impl FnOnce(&mut Settings)) -> Self {
        Self::on(RedisMode::Standalone, &redis_url(), tune).await
    }

    /// Like [`Harness::with`], on the Redis `url` in `mode` (a cluster's seeds, the
    /// Sentinels).
    pub async fn on(mode: RedisMode, url: &str, tune: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::defaults();
        settings.redis.url = url.to_owned();
        settings.redis.mode = mode;
        settings.queue.prefix = format!("t-{}", ulid::Ulid::new().to_string().to_lowercase());
        settings.queue.lease_secs = 3;
        settings.queue.block_timeout_ms = 200;
        settings.maintenance.promote_max_interval_ms = 20;
        settings.maintenance.rescue_interval_secs = 1;
        settings.fleet.shutdown_timeout_secs = 5;
        tune(&mut settings);
        let queues = Queues::open(&settings.redis, settings.queue.clone())
            .await
            .expect("tests need Redis at REDIS_URL (default redis://127.0.0.1:6379)");
        Self { settings, queues }
    }

    /// The `switchboard` binary set up for this harness's Redis (URL, mode) and key prefix,
    /// logging warnings only.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(["--redis-url", &self.settings.redis.url])
            .env(
                "SWITCHBOARD_REDIS__MODE",
                match self.settings.redis.mode {
                    RedisMode::Standalone => "standalone",
                    RedisMode::Cluster => "cluster",
                    RedisMode::Sentinel => "sentinel",
                },
            )
            .env(
                "SWITCHBOARD_REDIS__SENTINEL_MASTER",
                &self.settings.redis.sentinel_master,
            )
            .env("SWITCHBOARD_QUEUE__PREFIX", self.prefix())
            .env("SWITCHBOARD_LOG", "warn");
        cmd
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.settings.queue.prefix
    }

    /// One supervisor over `queue`.
    pub fn fleet_settings(
        &self,
        queue: &str,
        concurrency: usize,
        prefetch: usize,
        max_attempts: u32,
    ) -> FleetSettings {
        FleetSettings {
            shutdown_timeout_secs: self.settings.fleet.shutdown_timeout_secs,
            supervisors: vec![supervisor(
                "test",
                &[queue],
                concurrency,
                prefetch,
                max_attempts,
            )],
        }
    }

    /// Start a fleet over `fleet` with `registry`.
    pub async fn fleet(
        &self,
        fleet: &FleetSettings,
        registry: Registry,
        observer: Option<Observer>,
    ) -> Fleet {
        Fleet::start(&self.queues, Arc::new(registry), fleet, observer)
            .await
            .expect("fleet starts")
    }

    /// Stats of `queue`.
    pub async fn stats(&self, queue: &str) -> QueueStats {
        self.queues.stats(queue).await.expect("stats")
    }

    /// Poll `check` every few ms until it holds; fail the test after `limit`.
    pub async fn wait_for<F, Fut>(&self, what: &str, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + limit;
        while !check().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Wait until `queue` has processed `n` jobs.
    pub async fn wait_processed(&self, queue: &str, n: u64, limit: Duration) {
        let queues = self.queues.clone();
        self.wait_for(&format!("{n} processed on {queue}"), limit, || {
            let queues = queues.clone();
            async move { queues.stats(queue).await.is_ok_and(|s| s.processed >= n) }
        })
        .await;
    }

    /// The items pending on `queue`, oldest first.
    pub async fn pending_items(&self, queue: &str) -> Vec<String> {
        let mut conn = self.conn();
        let mut items: Vec<String> = redis::cmd("LRANGE")
            .arg(&self.queues.keys(queue).unwrap().pending)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        items.reverse();
        items
    }

    /// Run a promoter over `queue` (retries and snoozed jobs come back) until the token is
    /// cancelled.
    pub fn start_promoter(&self, queue: &str) -> tokio_util::sync::CancellationToken {
        use switchboard::maintenance::Service as _;
        let token = tokio_util::sync::CancellationToken::new();
        let promoter = switchboard::maintenance::Promoter::new(
            self.queues.clone(),
            vec![queue.to_owned()],
            &self.settings.maintenance,
        );
        tokio::spawn(promoter.run(token.clone()));
        token
    }

    /// Take the next pending job of `queue` as a worker `worker` that then dies holding it
    /// (its lease never renewed); returns the item.
    pub async fn lease_to_a_dead_worker(&self, queue: &str, worker: &str) -> String {
        let k = self.queues.keys(queue).unwrap();
        let mut conn = self.conn();
        let item: String = redis::cmd("RPOP")
            .arg(&k.pending)
            .query_async(&mut conn)
            .await
            .unwrap();
        let id = item.split(' ').next().unwrap().to_owned();
        let () = redis::pipe()
            .hset(k.leased(worker), &id, &item)
            .zadd(&k.workers, worker, 1)
            .hincr(&k.stats, "running", 1)
            .query_async(&mut conn)
            .await
            .unwrap();
        item
    }

    /// A raw connection for checking Redis directly.
    pub fn conn(&self) -> switchboard::queue::Conn {
        self.queues.conn()
    }

    /// Every key under this test's prefix.
    pub async fn keys(&self) -> Vec<String> {
        let mut conn = self.conn();
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("*{}*", self.prefix()))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            out.extend(keys);
            if next == 0 {
                return out;
            }
            cursor = next;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // A cluster or Sentinel set of a test's own goes away with its processes.
        if self.settings.redis.mode != RedisMode::Standalone {
            return;
        }
        // Best-effort cleanup with a blocking client (Drop cannot await).
        let Ok(client) = redis::Client::open(redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let pattern = format!("*{}*", self.settings.queue.prefix);
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(&pattern)
            .query(&mut conn)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("UNLINK").arg(chunk).query(&mut conn);
        }
    }
}

/// Wait for `fut` at most `limit`, failing the test past it.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
}

/// The instant `ms` milliseconds after the epoch (maintenance rounds take a time).
pub fn at_ms(ms: u64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap()).unwrap()
}

/// Every development stand-in (`/dev/...`, validating requests as the providers do) served
/// on port 0; returns its base URL (`http://127.0.0.1:<port>/dev`).
pub async fn stand_ins() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, switchboard::dev::router(None)).await });
    format!("http://127.0.0.1:{port}/dev")
}

/// The development SMS gateway stand-in (`switchboard::dev::sms`) served on a port of its
/// own; returns its state and the `sms.base_url` that reaches it.
pub async fn sms_stand_in() -> (switchboard::dev::sms::Gateway, String) {
    let gateway = switchboard::dev::sms::Gateway::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = switchboard::dev::sms::router(gateway.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (gateway, format!("http://127.0.0.1:{port}/dev/sms"))
}
