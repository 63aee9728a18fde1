//! `bench e2e`: the domain path measured end to end. In one process, as `serve` runs them:
//! ingest on a port of its own and the fleet's `webhooks` supervisor over the run's own key
//! prefix, storing into the database of `--database-url`. N distinct signed deliveries of a
//! mix ([`deliveries`]) are posted while the queue is paused (untimed); then the queue is let
//! go and the fleet is timed until the database holds every event as `processed` in
//! `webhook_events` (read from the database, never from counters) or the rest are dead.
//! Before that, the database's own single-row insert ceiling is measured ([`ceiling`]), so one
//! line holds both numbers of the same run.
//!
//! What must stay true: only the `webhooks` queue is worked (follow-ups such as billing jobs
//! stay pending, counted, never sent anywhere); every delivery must be answered 202 (a
//! duplicate or a refusal ends the run at once); the rows the run leaves are its own (tagged
//! businesses, unique ids), so a database that holds an earlier run's rows only adds to them.

mod ceiling;
mod deliveries;
mod profile;
mod seed;

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::json;
use switchboard_jobs::store::{Store, calls, usage_events, webhook_events};

use self::deliveries::{Keys, Kind, Mix, delivery};
use crate::{
    app::{self, Hooks, Roles},
    config::Settings,
    ingest::{SecretList, WebhookSecrets},
    queue::Queues,
};

/// The flags of `bench e2e`.
#[derive(Debug, clap::Args)]
pub struct E2eArgs {
    /// How many distinct signed deliveries.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Comma-separated kinds, dealt round robin: `call_started`, `call_ended`,
    /// `call_analyzed`, `booking_created`, `invoice_paid` (the Retell kinds of one round are one
    /// call).
    #[arg(long, default_value = "call_ended", value_parser = Mix::parse)]
    pub mix: Mix,
    /// The database to store into (sqlx URL; best a fresh one); `database.url` when absent.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Handler slots per worker loop of the `webhooks` supervisor; as configured when absent.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Worker loops of the `webhooks` supervisor; as configured when absent.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Businesses the deliveries are spread over, round robin.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub businesses: u16,
    /// Concurrent HTTP posters (the posting is not timed).
    #[arg(long, default_value_t = 32)]
    pub posters: usize,
    /// How long the insert ceiling is measured, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub ceiling_secs: f64,
    /// Give up when the fleet has not stored every event after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

/// Run `bench e2e` on `queues` (the run's own prefix, which `settings` names too).
pub async fn run(
    queues: &Queues,
    settings: &Settings,
    args: &E2eArgs,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(args.events > 0, "bench e2e needs --events of at least 1");
    let mut settings = settings.clone();
    if let Some(url) = &args.database_url {
        settings.database.url.clone_from(url);
    }
    let url = settings.database.url.clone();
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("connecting to {}", crate::app::redact(&url)))?;
    store.migrate().await.context("migrating the database")?;
    let tag_number = rand::random::<u32>();
    let tag = format!("{tag_number:08x}");
    let ceiling = ceiling::measure(&url, &tag, args.ceiling_secs).await?;
    let businesses =
        seed::businesses(&store, &tag, tag_number, usize::from(args.businesses)).await?;
    let queue = settings.ingest.queue.clone();
    let supervisor = webhooks_only(&mut settings, &queue, args)?;
    let before = webhook_events::count_status(&store, "processed").await?;
    queues.register_queue(&queue).await?;
    queues.pause(&queue).await?;

    let keys = Keys::fresh();
    let server = Server::start(&settings, &keys).await?;
    let posted = post_all(&server, args, &tag, &businesses, &keys).await;
    let drained = match posted {
        Ok(()) => drain(queues, &store, &queue, args, before).await,
        Err(e) => Err(e),
    };
    server.stop().await?;
    let drained = drained?;

    let mut line = json!({
        "bench": "e2e", "events": args.events, "stored": drained.stored, "dead": drained.dead,
        "seconds": super::round(drained.seconds),
        "events_per_sec": (drained.stored as f64 / drained.seconds).round(),
        "mix": args.mix.to_string(), "database": format!("{:?}", store.dialect()).to_lowercase(),
        "ceiling_inserts_per_sec": ceiling.round(), "ceiling_concurrency": ceiling::CONCURRENCY,
        "percent_of_ceiling": super::round(100.0 * drained.stored as f64 / drained.seconds / ceiling),
        "concurrency": supervisor.0, "workers": supervisor.1, "businesses": args.businesses,
        "pool_connections": store_connections(&url)?,
    });
    rows(&store, queues, &businesses, args, &mut line).await?;
    if let Some(profile) = drained.profile {
        line["profile"] = profile;
    }
    store.pool().close().await;
    Ok(line)
}

/// Keep only the supervisor of the ingest queue, with the flags' concurrency and workers;
/// returns them.
fn webhooks_only(
    settings: &mut Settings,
    queue: &str,
    args: &E2eArgs,
) -> anyhow::Result<(usize, usize)> {
    settings
        .fleet
        .supervisors
        .retain(|s| s.queues.iter().any(|q| q == queue));
    let supervisor = settings
        .fleet
        .supervisors
        .first_mut()
        .with_context(|| format!("no supervisor works the {queue} queue"))?;
    supervisor.queues = vec![queue.to_owned()];
    if let Some(c) = args.concurrency {
        supervisor.concurrency = c;
        supervisor.prefetch = Some(c);
    }
    if let Some(w) = args.workers {
        supervisor.workers = w;
    }
    settings.fleet.supervisors.truncate(1);
    let s = &settings.fleet.supervisors[0];
    Ok((s.concurrency, s.workers))
}

fn store_connections(url: &str) -> anyhow::Result<u32> {
    Ok(switchboard_jobs::store::default_connections(
        switchboard_jobs::store::Dialect::of(url)?,
    ))
}

/// Ingest and the fleet, running as `serve` runs them, on a port of their own.
struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(settings: &Settings, keys: &Keys) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hooks = Hooks {
            listener: Some(listener),
            secrets: Some(WebhookSecrets {
                retell: Some(SecretList::parse(&keys.retell)),
                calcom: Some(SecretList::parse(&keys.calcom)),
                stripe: Some(SecretList::parse(&keys.stripe)),
            }),
            ..Hooks::default()
        };
        let roles = Roles {
            scheduler: false,
            embedded_redis: false,
            ..Roles::serve(settings)
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app::run(settings.clone(), roles, hooks, async {
            let _ = stopped.await;
        }));
        let server = Self { addr, stop, task };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Wait until `/readyz` answers 200 (the fleet is up before HTTP is); fail when the
    /// server ended instead.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            anyhow::ensure!(
                !self.task.is_finished(),
                "the bench server stopped at start"
            );
            if let Ok(r) = client
                .get(format!("http://{}/readyz", self.addr))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "the bench server is not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await?
    }
}

/// Post every delivery with `args.posters` concurrent posters; each must be accepted (202).
async fn post_all(
    server: &Server,
    args: &E2eArgs,
    tag: &str,
    businesses: &[seed::Business],
    keys: &Keys,
) -> anyhow::Result<()> {
    let next = AtomicUsize::new(0);
    let client = reqwest::Client::new();
    let poster = || async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= args.events {
                return Ok::<_, anyhow::Error>(());
            }
            let now_ms = switchboard_jobs::store::now_ms();
            let d = delivery(&args.mix, i, tag, businesses, keys, now_ms);
            let answer = client
                .post(format!("http://{}/webhooks/{}", server.addr, d.provider))
                .header(d.header.0, &d.header.1)
                .body(d.body)
                .send()
                .await
                .with_context(|| format!("posting delivery {i}"))?;
            let status = answer.status();
            anyhow::ensure!(
                status == reqwest::StatusCode::ACCEPTED,
                "delivery {i} ({}) was answered {status}: {}",
                d.provider,
                answer.text().await.unwrap_or_default()
            );
        }
    };
    futures::future::try_join_all((0..args.posters.max(1)).map(|_| poster())).await?;
    Ok(())
}

/// How the timed part went.
struct Drained {
    stored: u64,
    dead: u64,
    seconds: f64,
    profile: Option<serde_json::Value>,
}

/// Let the queue go and wait until every event is processed in the database or dead.
async fn drain(
    queues: &Queues,
    store: &Store,
    queue: &str,
    args: &E2eArgs,
    before: i64,
) -> anyhow::Result<Drained> {
    let events = args.events as u64;
    let counters = profile::Counters::read(store).await?;
    let start = Instant::now();
    queues.resume(queue).await?;
    let deadline = start + Duration::from_secs(args.timeout_secs);
    let mut polls = 0u64;
    let (stored, dead) = loop {
        let stored = (webhook_events::count_status(store, "processed").await? - before) as u64;
        let dead = queues.stats(queue).await?.dead;
        polls += 1;
        if stored + dead >= events {
            break (stored, dead);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {stored} of {events} events stored ({dead} dead) after {} s",
            args.timeout_secs
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let seconds = start.elapsed().as_secs_f64();
    let profile = counters.delta(store, events, polls).await?;
    Ok(Drained {
        stored,
        dead,
        seconds,
        profile,
    })
}

/// What the run left: call and usage rows of its businesses, billing jobs waiting.
async fn rows(
    store: &Store,
    queues: &Queues,
    businesses: &[seed::Business],
    args: &E2eArgs,
    line: &mut serde_json::Value,
) -> anyhow::Result<()> {
    let (mut call_rows, mut usage_rows) = (0, 0);
    for b in businesses {
        call_rows += calls::count(store, b.company_id).await?;
        usage_rows += usage_events::count(store, b.company_id).await?;
    }
    let billing = queues.stats("billing").await?;
    line["calls"] = json!(call_rows);
    line["calls_expected"] = json!(args.mix.calls(args.events));
    line["usage_rows"] = json!(usage_rows);
    line["billing_jobs"] = json!(billing.pending + billing.delayed + billing.waiting);
    line["ended_calls_expected"] = json!(ended_calls(&args.mix, args.events));
    Ok(())
}

/// Calls whose usage must be recorded once: those with a `call_ended` or `call_analyzed`.
fn ended_calls(mix: &Mix, events: usize) -> usize {
    let ended = mix.count(Kind::CallEnded, events);
    ended.max(mix.count(Kind::CallAnalyzed, events))
}
