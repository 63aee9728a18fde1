//! `switchboard bench`: the production path (same queue, same fleet, the built-in `noop` job)
//! measured end to end. Each command prints exactly one JSON line. Every run uses its own
//! key prefix and deletes its keys afterwards. [`mix`] spreads the jobs over sequence keys,
//! tenants and priorities; [`memory`] measures Redis bytes per pending job; [`e2e`] measures
//! the domain path (signed webhooks through ingest and the fleet into the database).

mod cpu;
mod e2e;
mod memory;
mod mix;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clap::Subcommand;
use serde_json::json;
use switchboard_jobs::{EnqueueOptions, noop::Noop};

use self::mix::Mix;

use crate::{
    config::{BackoffSettings, FleetSettings, Settings, SupervisorSettings},
    fleet::{Fleet, Observer},
    queue::{Queues, job},
};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Enqueue N noop jobs with C concurrent producers, in batches.
    Enqueue {
        /// How many jobs.
        #[arg(long, default_value_t = 200_000)]
        jobs: usize,
        /// Concurrent producers (or handler slots).
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Jobs per pipelined batch (1 = one LPUSH per job).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
    },
    /// Enqueue N jobs (untimed), then time the fleet until every one is acked.
    Drain {
        /// How many jobs.
        #[arg(long, default_value_t = 200_000)]
        jobs: usize,
        /// Concurrent producers (or handler slots).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Worker loops.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Put job i in line under sequence key i mod K (0: no keys); then also count jobs
        /// that started before an earlier job of their key.
        #[arg(long, default_value_t = 0)]
        keys: usize,
        /// Split the bench queue into this many partitions (`queue.partitions`).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        partitions: u16,
        /// Spread the jobs over N tenants, round robin (job i: tenant `t<i mod N>`; 0: none).
        #[arg(long, default_value_t = 0)]
        tenants: usize,
        /// Mix priorities: of every 4 jobs 1 runs high, 2 normal, 1 low.
        #[arg(long)]
        priorities: bool,
    },
    /// Enqueue N jobs that nothing fetches; Redis bytes per pending job (`INFO memory`).
    Memory {
        /// How many jobs.
        #[arg(long, default_value_t = 100_000)]
        jobs: usize,
        /// Spread the jobs over N tenants, round robin (0: none).
        #[arg(long, default_value_t = 0)]
        tenants: usize,
        /// Mix priorities: of every 4 jobs 1 high, 2 normal, 1 low.
        #[arg(long)]
        priorities: bool,
    },
    /// Enqueue at a steady rate into a running fleet; time from enqueue to handler start.
    Latency {
        /// Jobs enqueued per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Concurrent producers (or handler slots).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Run an idle fleet and count the Redis commands it issues.
    Idle {
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Worker loops.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Post N signed webhooks through ingest (queue paused, untimed), then time the fleet
    /// until the database holds every event; with the database's own insert ceiling.
    E2e(e2e::E2eArgs),
}

const QUEUE: &str = "bench";

/// Run one benchmark.
pub async fn run(settings: &Settings, which: BenchCommand) -> anyhow::Result<()> {
    let mut settings = settings.clone();
    settings.queue.prefix = format!("bench-{:08x}", rand::random::<u32>());
    if let BenchCommand::Drain { partitions, .. } = &which {
        settings
            .queue
            .partitions
            .insert(QUEUE.to_owned(), *partitions);
    }
    let queues = Queues::open(&settings.redis, settings.queue.clone()).await?;
    // The production path records metrics; so does the benchmark.
    let _metrics = crate::telemetry::init_metrics();
    let result = match which {
        BenchCommand::Enqueue {
            jobs,
            concurrency,
            batch,
        } => enqueue(&queues, jobs, concurrency, batch).await,
        BenchCommand::Drain {
            jobs,
            concurrency,
            workers,
            keys,
            partitions: _,
            tenants,
            priorities,
        } => {
            let mix = Mix {
                keys,
                tenants,
                priorities,
            };
            drain(&queues, jobs, concurrency, workers, mix).await
        }
        BenchCommand::Memory {
            jobs,
            tenants,
            priorities,
        } => {
            let mix = Mix {
                keys: 0,
                tenants,
                priorities,
            };
            memory::run(&queues, QUEUE, jobs, mix).await
        }
        BenchCommand::Latency {
            rate,
            secs,
            concurrency,
        } => latency(&queues, &settings, rate, secs, concurrency).await,
        BenchCommand::Idle { secs, workers } => idle(&queues, &settings, secs, workers).await,
        BenchCommand::E2e(args) => e2e::run(&queues, &settings, &args).await,
    };
    cleanup(&queues).await?;
    let mut result = result?;
    // Whether job payloads were sealed (SWITCHBOARD_PAYLOAD_KEYS), which every number includes.
    result["sealed"] = json!(queues.key_ring().is_some());
    result["redis_mode"] = json!(settings.redis.mode);
    result["partitions"] = json!(queues.partition_count(QUEUE));
    // The async runtime's threads (`[runtime]`): the drain figures depend on them.
    result["runtime_threads"] = json!(tokio::runtime::Handle::current().metrics().num_workers());
    println!("{result}");
    Ok(())
}

async fn enqueue(
    queues: &Queues,
    jobs: usize,
    concurrency: usize,
    batch: usize,
) -> anyhow::Result<serde_json::Value> {
    let per = jobs.div_ceil(concurrency.max(1));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency.max(1) {
        let queues = queues.clone();
        let n = per.min(jobs.saturating_sub(c * per));
        tasks.push(tokio::spawn(async move {
            let args = vec![Noop::default(); batch.max(1)];
            let mut left = n;
            while left > 0 {
                let take = left.min(batch.max(1));
                if take == 1 {
                    queues
                        .enqueue(&Noop::default(), EnqueueOptions::default().on_queue(QUEUE))
                        .await?;
                } else {
                    queues.enqueue_many(QUEUE, &args[..take], None).await?;
                }
                left -= take;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    let found = queues.stats(QUEUE).await?.pending;
    anyhow::ensure!(
        found == jobs as u64,
        "enqueued {jobs} but {found} are pending"
    );
    Ok(
        json!({"bench": "enqueue", "jobs": jobs, "seconds": round(seconds), "jobs_per_sec": (jobs as f64 / seconds).round()}),
    )
}

fn supervisor(concurrency: usize, workers: usize) -> FleetSettings {
    FleetSettings {
        shutdown_timeout_secs: 10,
        supervisors: vec![SupervisorSettings {
            name: "bench".into(),
            queues: vec![QUEUE.into()],
            concurrency,
            workers,
            prefetch: None,
            max_attempts: 3,
            timeout_secs: 10,
            backoff: BackoffSettings {
                base_ms: 1000,
                cap_ms: 10_000,
            },
            balance: crate::config::Balance::Off,
            min_slots: 1,
            max_slots: None,
            balance_max_shift: 1,
            balance_cooldown_secs: 3,
        }],
    }
}

async fn drain(
    queues: &Queues,
    jobs: usize,
    concurrency: usize,
    workers: usize,
    mix: Mix,
) -> anyhow::Result<serde_json::Value> {
    let keys = mix.keys;
    mix.enqueue(queues, QUEUE, jobs, true).await?;
    let runs: Arc<Vec<AtomicU8>> = Arc::new((0..jobs).map(|_| AtomicU8::new(0)).collect());
    // The order jobs started in (1-based; 0: never), to check each key's order afterwards.
    let started: Arc<Vec<AtomicU64>> = Arc::new((0..jobs).map(|_| AtomicU64::new(0)).collect());
    let clock = Arc::new(AtomicU64::new(0));
    let (counter, order) = (Arc::clone(&runs), Arc::clone(&started));
    let observer: Observer = Arc::new(move |job: &job::Job| {
        if let Some(i) = job
            .id
            .strip_prefix('b')
            .and_then(|n| n.parse::<usize>().ok())
            && let Some(slot) = counter.get(i)
        {
            slot.fetch_add(1, Ordering::Relaxed);
            if keys > 0 {
                order[i].store(clock.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
        }
    });
    let cpu = cpu::Cpu::now(queues).await?;
    let start = Instant::now();
    let fleet = Fleet::start(
        queues,
        Arc::new(switchboard_jobs::registry()),
        &supervisor(concurrency, workers),
        Some(observer),
    )
    .await?;
    wait_processed(queues, jobs as u64, Duration::from_secs(600)).await?;
    let seconds = start.elapsed().as_secs_f64();
    let (redis_us, process_us) = cpu.per_job_since(cpu::Cpu::now(queues).await?, jobs);
    let rss_mb = rss_mb();
    fleet.stop().await;
    let lost = runs
        .iter()
        .filter(|r| r.load(Ordering::Relaxed) == 0)
        .count();
    let duplicates = runs
        .iter()
        .filter(|r| r.load(Ordering::Relaxed) > 1)
        .count();
    // Job i + keys is the next job of i's key: it must not have started first.
    let out_of_order = (keys..jobs)
        .filter(|&i| started[i].load(Ordering::Relaxed) < started[i - keys].load(Ordering::Relaxed))
        .count();
    let mut line = json!({
        "bench": "drain", "jobs": jobs, "completed": jobs - lost, "lost": lost, "duplicates": duplicates,
        "out_of_order": out_of_order, "seconds": round(seconds), "jobs_per_sec": (jobs as f64 / seconds).round(),
        "rss_mb": round(rss_mb), "redis_cpu_us_per_job": redis_us, "process_cpu_us_per_job": process_us,
    });
    mix.describe(&mut line);
    Ok(line)
}

async fn latency(
    queues: &Queues,
    _settings: &Settings,
    rate: u64,
    secs: u64,
    concurrency: usize,
) -> anyhow::Result<serde_json::Value> {
    let samples = Arc::new(Mutex::new(Vec::<u64>::with_capacity(
        (rate * secs) as usize,
    )));
    let sink = Arc::clone(&samples);
    let observer: Observer = Arc::new(move |job: &job::Job| {
        let waited = job::now_us().saturating_sub(job.envelope.enq_us);
        sink.lock().expect("samples lock").push(waited);
    });
    let fleet = Fleet::start(
        queues,
        Arc::new(switchboard_jobs::registry()),
        &supervisor(concurrency, 1),
        Some(observer),
    )
    .await?;
    // Let workers reach their blocking fetch before measuring.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let options = EnqueueOptions::default().on_queue(QUEUE);
    for _ in 0..total {
        tick.tick().await;
        queues.enqueue(&Noop::default(), options.clone()).await?;
    }
    wait_processed(queues, total, Duration::from_secs(60)).await?;
    fleet.stop().await;
    let mut s = std::mem::take(&mut *samples.lock().expect("samples lock"));
    s.sort_unstable();
    let pct = |p: f64| {
        s.get(((s.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Ok(json!({
        "bench": "latency", "jobs": s.len(), "rate": rate,
        "p50_ms": round(pct(0.50)), "p90_ms": round(pct(0.90)), "p99_ms": round(pct(0.99)), "max_ms": round(pct(1.0)),
    }))
}

async fn idle(
    queues: &Queues,
    settings: &Settings,
    secs: u64,
    workers: usize,
) -> anyhow::Result<serde_json::Value> {
    let fleet = Fleet::start(
        queues,
        Arc::new(switchboard_jobs::registry()),
        &supervisor(8, workers),
        None,
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = commands_processed(queues).await?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let after = commands_processed(queues).await?;
    fleet.stop().await;
    // Our own two INFO calls are in the count; leave them out.
    let commands = after.saturating_sub(before).saturating_sub(1);
    Ok(json!({
        "bench": "idle", "workers": workers, "seconds": secs, "block_timeout_ms": settings.queue.block_timeout_ms,
        "redis_commands": commands, "commands_per_sec_per_worker": round(commands as f64 / secs as f64 / workers as f64),
    }))
}

async fn commands_processed(queues: &Queues) -> anyhow::Result<u64> {
    let mut conn = queues.conn();
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("INFO stats has no total_commands_processed"))
}

/// Wait until the bench queue's processed counter reaches `n`.
async fn wait_processed(queues: &Queues, n: u64, limit: Duration) -> anyhow::Result<()> {
    let stats: Vec<String> = queues
        .partition_names(QUEUE)
        .iter()
        .map(|p| queues.keys(p).map(|k| k.stats.clone()))
        .collect::<Result<_, _>>()?;
    let mut conn = queues.conn();
    let deadline = Instant::now() + limit;
    let seen = AtomicU64::new(0);
    loop {
        let mut total = 0;
        for key in &stats {
            let n: Option<u64> = redis::cmd("HGET")
                .arg(key)
                .arg("processed")
                .query_async(&mut conn)
                .await?;
            total += n.unwrap_or(0);
        }
        seen.store(total, Ordering::Relaxed);
        if total >= n {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} jobs processed in {limit:?}",
            seen.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Delete every key of the bench prefix.
async fn cleanup(queues: &Queues) -> anyhow::Result<()> {
    let mut conn = queues.conn();
    let pattern = format!("*{}*", queues.settings().prefix);
    // SCAN sees one server's keys: on a cluster, every master is scanned; UNLINK goes
    // through the shared connection, which splits it by slot there.
    for mut node in queues.each_master().await? {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut node)
                .await?;
            for key in keys {
                let () = redis::cmd("UNLINK").arg(key).query_async(&mut conn).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

/// Resident set size of this process in MB.
pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .map(|v| v.trim().trim_end_matches("kB").trim().to_owned())
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
