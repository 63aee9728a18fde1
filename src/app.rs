//! The composition root: all wiring happens here. Roles are flags; tests start the same
//! [`run`] with their own settings, a listener on port 0 and a shutdown future.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use switchboard_jobs::{
    Registry,
    clients::{
        mail::{Mailer, SmtpCredentials},
        sms::{SmsClient, SmsSettings},
        stripe::{StripeClient, StripeSettings},
    },
    services::{CalendarAccess, Services},
    store::{Dialect, Store},
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    banner,
    config::Settings,
    dashboard,
    dev::{self, embedded},
    edge,
    fleet::{Fleet, Observer},
    http,
    ingest::{self, Clock, WebhookSecrets},
    maintenance::{
        Maintainer, Prune, Pruner, Scheduler, Service as _, WaitWatch, WaitsConfig, waits::Notifier,
    },
    queue::{Queues, rate_limit::RedisRateLimiter},
    telemetry,
};

/// Which roles this process runs.
#[allow(clippy::struct_excessive_bools)] // roles are independent flags
#[derive(Debug, Clone, Copy, Default)]
pub struct Roles {
    /// Supervisors and workers.
    pub fleet: bool,
    /// Promoter; rescuer and pruner while this process holds the leader lease.
    pub maintenance: bool,
    /// The cron scheduler.
    pub scheduler: bool,
    /// HTTP: health, readiness, metrics (queue gauges are read at each scrape).
    pub http: bool,
    /// The webhook endpoint (on the HTTP listener).
    pub ingest: bool,
    /// Start a private Redis when none answers (serve's embedded default).
    pub embedded_redis: bool,
}

impl Roles {
    /// Everything in one process: `switchboard serve`.
    pub fn serve(settings: &Settings) -> Self {
        Self {
            fleet: true,
            maintenance: true,
            scheduler: true,
            http: true,
            ingest: true,
            embedded_redis: settings.redis.embedded,
        }
    }

    /// The cron scheduler alone: `switchboard schedule`.
    pub fn schedule() -> Self {
        Self {
            scheduler: true,
            ..Self::default()
        }
    }

    /// The webhook endpoint alone: `switchboard ingest`.
    pub fn ingest() -> Self {
        Self {
            http: true,
            ingest: true,
            ..Self::default()
        }
    }

    /// The fleet alone (with the maintenance it needs): `switchboard work`.
    pub fn work() -> Self {
        Self {
            fleet: true,
            maintenance: true,
            ..Self::default()
        }
    }
}

/// Extra wiring for tests and benchmarks.
#[derive(Default)]
pub struct Hooks {
    /// A bound listener to serve HTTP on instead of `http.listen`.
    pub listener: Option<TcpListener>,
    /// Called as each job starts.
    pub observer: Option<Observer>,
    /// The handler registry; the built-in one when `None`.
    pub registry: Option<Registry>,
    /// Webhook secrets; from `settings.secrets` when `None`.
    pub secrets: Option<WebhookSecrets>,
    /// Clock for signature windows; the system clock when `None`.
    pub clock: Option<Clock>,
    /// The handlers' dependencies; built from the settings (and their secrets) when `None`.
    pub services: Option<Arc<Services>>,
    /// Dashboard credentials; from `settings.secrets` when `None`.
    pub dashboard_credentials: Option<dashboard::Credentials>,
}

/// Connect to Redis, with serve's embedded fallback when asked.
pub async fn connect(
    settings: &Settings,
    embedded_redis: bool,
) -> anyhow::Result<(Queues, Option<tokio::process::Child>)> {
    let child = if embedded_redis && settings.redis.mode == crate::config::RedisMode::Standalone {
        embedded::ensure_redis(&settings.redis.url, &PathBuf::from("var")).await?
    } else {
        None
    };
    let queues = Queues::open(&settings.redis, settings.queue.clone())
        .await
        .with_context(|| format!("connecting to Redis at {}", redact(&settings.redis.url)))?;
    Ok((queues, child))
}

/// Run `roles` until `shutdown` resolves, then stop gracefully.
#[allow(clippy::too_many_lines)] // the roles in start-up order, one after the other
pub async fn run(
    settings: Settings,
    roles: Roles,
    mut hooks: Hooks,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let creds = dashboard_access(&settings, roles, &mut hooks)?;
    let metrics = telemetry::init_metrics();
    let (queues, _redis_child) = connect(&settings, roles.embedded_redis).await?;
    let token = CancellationToken::new();
    let mut tasks = Vec::new();

    let names: Vec<String> = settings
        .fleet
        .supervisors
        .iter()
        .flat_map(|s| s.queues.clone())
        .collect();
    // On a cluster, every script of every queue this deployment names must touch one slot.
    let mut checked = names.clone();
    checked.push(settings.ingest.queue.clone());
    checked.extend(settings.schedule.iter().map(|s| s.queue.clone()));
    queues.check_slots(&checked).await?;
    // The handlers' dependencies, when this process runs handlers.
    let services = match (roles.fleet, hooks.services, &hooks.registry) {
        (true, Some(s), _) => Some(s),
        (true, None, None) => Some(build_services(&settings, &queues).await?),
        _ => None,
    };
    if roles.maintenance {
        let store = services.as_ref().map(|s| s.store.clone());
        let mut maintainer = Maintainer::new(&queues, &names, &settings.maintenance, store)
            .map_err(anyhow::Error::msg)?;
        if !settings.waits.is_empty() {
            maintainer = maintainer.with_waits(wait_watch(&settings, &queues)?);
        }
        tasks.extend(maintainer.spawn(&token));
    }
    if roles.scheduler {
        let scheduler = Scheduler::new(queues.clone(), &settings.schedule, &settings.scheduler)
            .map_err(anyhow::Error::msg)?;
        if let Err(e) = scheduler.register_queues().await {
            tracing::error!(error = %e, "registering the schedules' queues failed");
        }
        telemetry::known::scheduler(settings.schedule.iter().map(|s| s.name.as_str()));
        tracing::debug!("scheduler started");
        tasks.push(tokio::spawn(scheduler.run(token.clone())));
    }
    // The fleet starts before HTTP, so a ready endpoint means the whole process is up.
    let fleet = if roles.fleet {
        let registry = match hooks.registry {
            Some(r) => r,
            None => domain_registry(&settings, &queues, &names, services.as_ref())?,
        };
        telemetry::known::jobs(&telemetry::known::job_pairs(&settings, &registry));
        let registry = Arc::new(registry);
        Some(Fleet::start(&queues, registry, &settings.fleet, hooks.observer).await?)
    } else {
        None
    };

    let mut http_addr = None;
    if roles.http {
        let listener = match hooks.listener {
            Some(l) => l,
            None => TcpListener::bind(&settings.http.listen)
                .await
                .with_context(|| format!("binding http.listen {}", settings.http.listen))?,
        };
        http_addr = Some(listener.local_addr()?);
        tracing::debug!(addr = ?http_addr, "http listening");
        telemetry::known::circuits(&switchboard_jobs::catalogue());
        let mut router = http::router(queues.clone(), metrics);
        // Stand-ins (and their development webhook secrets) serve the whole path of `serve`;
        // `ingest` alone keeps the plain rule: a provider without a secret answers 404.
        let stand_ins = settings.dev.stand_ins && roles.fleet;
        if stand_ins {
            router = router.merge(dev::router(services.as_ref().map(|s| s.store.clone())));
        }
        if roles.ingest {
            queues.register_queue(&settings.ingest.queue).await?;
            telemetry::known::ingest();
            let secrets = hooks.secrets.unwrap_or_else(|| {
                let mut s = WebhookSecrets::new(&settings.secrets);
                if stand_ins {
                    s.with_dev_defaults(dev::RETELL_KEY, dev::CALCOM_SECRET, dev::STRIPE_SECRET);
                }
                s
            });
            let clock = hooks.clock.unwrap_or_else(ingest::system_clock);
            router = router.merge(ingest::router(
                queues.producer_acked(crate::queue::producer::Acked {
                    replicas: settings.ingest.min_replicas_acked,
                    timeout: Duration::from_millis(settings.ingest.replicas_timeout_ms),
                }),
                secrets,
                settings.ingest.clone(),
                clock,
            ));
        }
        router = router.merge(crate::api::router(queues.clone(), &settings));
        let dash = dashboard::router(queues.clone(), &settings, creds);
        router = router.merge(dash);
        // Every connection under the edge limits of [http]; the cap fits the descriptors.
        // Each request carries its client's address as `ConnectInfo<SocketAddr>` (the
        // dashboard's throttling per address reads it).
        let limits = edge::Limits::new(&settings.http, edge::fd_limit());
        tasks.push(tokio::spawn(edge::serve(
            listener,
            router,
            limits,
            token.clone(),
        )));
    }
    announce(&settings, roles, http_addr);
    shutdown.await;
    tracing::info!("shutdown requested");
    if let Some(fleet) = fleet {
        fleet.stop().await;
    }
    token.cancel();
    for s in tasks {
        let _ = s.await;
    }
    Ok(())
}

/// Say once what runs where (see [`banner`]): one log event, a block of lines in the text
/// format.
fn announce(settings: &Settings, roles: Roles, http: Option<std::net::SocketAddr>) {
    let names: Vec<&str> = [
        ("fleet", roles.fleet),
        ("maintenance", roles.maintenance),
        ("scheduler", roles.scheduler),
        ("http", roles.http),
        ("ingest", roles.ingest && roles.http),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let text = banner::render(
        settings,
        &banner::Startup {
            roles: &names,
            http,
            ingest: roles.ingest && roles.http,
            fleet: roles.fleet,
            stand_ins: settings.dev.stand_ins && roles.fleet && roles.http,
            threads: (
                tokio::runtime::Handle::current().metrics().num_workers(),
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
        },
    );
    tracing::info!(target: "startup", "{text}");
}

/// The dashboard's credentials, after refusing (before anything starts) a dashboard that
/// would be open to the network without them.
fn dashboard_access(
    settings: &Settings,
    roles: Roles,
    hooks: &mut Hooks,
) -> anyhow::Result<dashboard::Credentials> {
    let credentials = match hooks.dashboard_credentials.take() {
        Some(c) => c,
        None => dashboard::Credentials::new(&settings.secrets, &settings.dashboard)
            .map_err(anyhow::Error::msg)?,
    };
    if roles.http {
        let addr = match &hooks.listener {
            Some(l) => l.local_addr()?,
            None => settings.http.listen.parse().context("http.listen")?,
        };
        dashboard::check_exposure(&settings.dashboard, addr, &credentials)
            .map_err(anyhow::Error::msg)?;
    }
    Ok(credentials)
}

/// Every job kind wired to `services`, with the `prune` job beside the domain's kinds.
fn domain_registry(
    settings: &Settings,
    queues: &Queues,
    names: &[String],
    services: Option<&Arc<Services>>,
) -> anyhow::Result<switchboard_jobs::Registry> {
    let services = services.context("the fleet needs its services")?;
    let mut registry = switchboard_jobs::domain_registry(services);
    let names = crate::maintenance::partitions(queues, names);
    let pruner = Pruner::new(queues.clone(), names, &settings.maintenance)
        .with_store(services.store.clone());
    registry.register::<Prune, _, _>(move |args, ctx| pruner.clone().handle(args, ctx));
    Ok(registry)
}

/// The handlers' dependencies: the database (the embedded `SQLite` is migrated here; a
/// MariaDB/MySQL database with `switchboard migrate`), mail and SMS transports.
pub async fn build_services(settings: &Settings, queues: &Queues) -> anyhow::Result<Arc<Services>> {
    let store = Store::connect(&settings.database.url)
        .await
        .with_context(|| {
            format!(
                "connecting to the database at {}",
                redact(&settings.database.url)
            )
        })?;
    if store.dialect() == Dialect::Sqlite || settings.database.migrate_on_start {
        store
            .migrate()
            .await
            .with_context(|| format!("migrating {}", redact(&settings.database.url)))?;
    } else {
        let pending = store
            .pending_migrations()
            .await
            .context("reading the database's migrations")?;
        if let Some(first) = pending.first() {
            anyhow::bail!(
                "the database at {} lacks {} migration(s) of this build (from {first}): run `switchboard migrate` first, or start with --migrate",
                redact(&settings.database.url),
                pending.len()
            );
        }
    }
    let secrets = &settings.secrets;
    let mailer = mailer(settings)?;
    let stand_ins = settings
        .dev
        .stand_ins
        .then(|| dev::base_url(&settings.http.listen));
    let mut sms = match (&secrets.sms_account_sid, &secrets.sms_auth_token) {
        (Some(sid), Some(token)) => Some(SmsClient::new(&settings.sms, sid.clone(), token.clone())),
        _ => None,
    };
    let mut stripe = secrets
        .stripe_secret_key
        .clone()
        .map(|key| StripeClient::new(&settings.stripe, key));
    let mut calcom_settings = settings.calcom_settings();
    let mut calcom_key = secrets.calcom_api_key.clone();
    if let Some(base) = &stand_ins {
        if sms.is_none() {
            let s = SmsSettings {
                base_url: format!("{base}/sms"),
                ..settings.sms.clone()
            };
            sms = Some(SmsClient::new(
                &s,
                dev::sms::ACCOUNT_SID.into(),
                dev::sms::AUTH_TOKEN.into(),
            ));
            tracing::debug!(
                "SMS goes to the development stand-in (no SMS_ACCOUNT_SID / SMS_AUTH_TOKEN)"
            );
        }
        if stripe.is_none() {
            let s = StripeSettings {
                base_url: format!("{base}/stripe"),
                ..settings.stripe.clone()
            };
            stripe = Some(StripeClient::new(&s, "sk_dev".into()));
            tracing::debug!("Stripe usage goes to the development stand-in (no STRIPE_SECRET_KEY)");
        }
        if calcom_key.is_none() {
            calcom_settings.base_url = format!("{base}/calcom/v2");
            calcom_key = Some("cal_dev".into());
            tracing::debug!("Cal.com calls go to the development stand-in (no CALCOM_API_KEY)");
        }
    }
    if sms.is_none() {
        tracing::warn!("SMS_ACCOUNT_SID / SMS_AUTH_TOKEN are not set: SMS notifications will fail");
    }
    if stripe.is_none() {
        tracing::warn!("STRIPE_SECRET_KEY is not set: usage reports will fail");
    }
    let calendar = CalendarAccess {
        settings: calcom_settings,
        default_key: calcom_key,
        requests_per_minute: settings.calcom.requests_per_minute,
    };
    let limiter = Arc::new(RedisRateLimiter::new(queues.clone()));
    Ok(Arc::new(Services {
        store,
        mailer,
        sms,
        calendar,
        stripe,
        limiter,
        faults: None,
    }))
}

/// A mailer for `[mail]` with the SMTP login of the environment.
fn mailer(settings: &Settings) -> anyhow::Result<Mailer> {
    let secrets = &settings.secrets;
    let login = SmtpCredentials::from_secrets(
        secrets.smtp_username.as_ref(),
        secrets.smtp_password.as_ref(),
    )
    .map_err(|e| anyhow::anyhow!("mail settings: {e}"))?;
    Mailer::new(&settings.mail, login).map_err(|e| anyhow::anyhow!("mail settings: {e}"))
}

/// The wait watch of `[waits]`, telling `[alerts]`' destinations (email through `[mail]`).
fn wait_watch(settings: &Settings, queues: &Queues) -> anyhow::Result<WaitWatch> {
    let mailer = if settings.alerts.email_to.is_empty() {
        None
    } else {
        Some(mailer(settings)?)
    };
    let notifier = Notifier::new(&settings.alerts, mailer).map_err(anyhow::Error::msg)?;
    let channels: Vec<&'static str> = [
        ("webhook", settings.alerts.webhook().is_some()),
        ("email", !settings.alerts.email_to.is_empty()),
    ]
    .into_iter()
    .filter_map(|(channel, on)| on.then_some(channel))
    .collect();
    telemetry::known::waits(settings.waits.keys().map(String::as_str), &channels);
    tracing::debug!(
        queues = settings.waits.len(),
        destinations = notifier.destinations().len(),
        "wait watch configured"
    );
    WaitWatch::new(queues.clone(), WaitsConfig::from(settings), notifier)
        .map_err(anyhow::Error::msg)
}

/// `switchboard migrate`: apply the migrations of the configured database.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database.url)
        .await
        .with_context(|| {
            format!(
                "connecting to the database at {}",
                redact(&settings.database.url)
            )
        })?;
    store.migrate().await.context("applying migrations")?;
    println!(
        "migrated {} ({:?})",
        redact(&settings.database.url),
        store.dialect()
    );
    Ok(())
}

/// A URL without its credentials, for logs.
pub fn redact(url: &str) -> String {
    crate::config::redact_url(url)
}
