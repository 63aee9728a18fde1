//! One typed configuration tree, layered as `config/default.toml` documents, validated at
//! start-up with one clear line per problem.
//!
//! A leaf: every `*Settings` type lives here (the schedules in [`schedule`], their cron
//! timetables in [`timetable`]), with the name rule queues and schedules share
//! ([`validate_name`]); nothing here imports another module of the runtime.

use std::{collections::HashSet, fmt, path::Path};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize};

pub mod runtime;
pub mod schedule;
pub mod secrets;
pub mod timetable;
pub mod waits;

pub use self::{
    runtime::RuntimeSettings,
    schedule::{CatchUp, ScheduleSettings, SchedulerSettings},
    secrets::{PayloadKey, Secrets},
    waits::AlertSettings,
};

/// The embedded defaults (the documented file itself).
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub redis: RedisSettings,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub ingest: IngestSettings,
    pub telemetry: TelemetrySettings,
    pub queue: QueueSettings,
    pub maintenance: MaintenanceSettings,
    pub fleet: FleetSettings,
    pub mail: switchboard_jobs::clients::mail::MailSettings,
    pub sms: switchboard_jobs::clients::sms::SmsSettings,
    pub calcom: CalcomConfig,
    pub stripe: switchboard_jobs::clients::stripe::StripeSettings,
    pub dev: DevSettings,
    pub scheduler: SchedulerSettings,
    /// The recurring jobs: `[[schedule]]` entries. A configuration file that lists any
    /// replaces the whole default list.
    #[serde(default)]
    pub schedule: Vec<ScheduleSettings>,
    pub dashboard: DashboardSettings,
    /// The app's enqueue API (`/api/v1/jobs`).
    #[serde(default)]
    pub api: ApiSettings,
    /// Long-wait thresholds, Horizon's `waits`: queue -> seconds its oldest pending job may
    /// wait before a notice goes out (see [`waits`]). Empty: nothing is watched.
    #[serde(default)]
    pub waits: std::collections::BTreeMap<String, u64>,
    /// Where and how often long-wait notices go.
    #[serde(default)]
    pub alerts: AlertSettings,
    /// The async runtime's threads.
    #[serde(default)]
    pub runtime: RuntimeSettings,
    /// Credentials, from the environment only (never a file): filled by [`Settings::load`],
    /// empty in [`Settings::defaults`].
    #[serde(skip)]
    pub secrets: Secrets,
}

/// See `[api]` in `config/default.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Whether `/api/v1/jobs` answers at all.
    pub enabled: bool,
    /// Kinds the API may enqueue: names or families (`notify.*`).
    pub kinds: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted in a request.
    pub max_json_depth: usize,
    /// Most jobs in one batch.
    pub max_batch: usize,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl_secs: u64,
    /// Default dedupe window of `unique_key` when `unique_for_secs` is not given.
    pub unique_for_secs: u64,
    /// How long a key's record is trusted before it is read again (revocation delay).
    pub key_cache_ms: u64,
    /// Replicas that must hold an accepted job before the answer (as `ingest`).
    pub min_replicas_acked: u32,
    /// How long to wait for them.
    pub replicas_timeout_ms: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            kinds: [
                "noop",
                "notify.*",
                "calendar.book",
                "calendar.cancel",
                "calendar.reschedule",
                "billing.report_usage",
            ]
            .map(str::to_owned)
            .to_vec(),
            max_body_bytes: 1_048_576,
            max_json_depth: 32,
            max_batch: 1000,
            idempotency_ttl_secs: 86_400,
            unique_for_secs: 86_400,
            key_cache_ms: 1000,
            min_replicas_acked: 0,
            replicas_timeout_ms: 500,
        }
    }
}

/// See `[dashboard]` in `config/default.toml`. The credentials themselves come from the
/// environment only (`crate::dashboard::Credentials`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardSettings {
    pub enabled: bool,
    pub username: String,
    pub session_ttl_secs: u64,
    pub secure_cookie: bool,
    pub refresh_secs: u64,
    pub login_attempts_per_minute: u32,
    /// Role of the shared credentials (token, `username`'s password): viewer, operator, admin.
    #[serde(default = "default_shared_role")]
    pub shared_role: String,
    /// Failed credentials per client address per minute before it is answered 429.
    #[serde(default = "default_auth_failures_per_ip")]
    pub auth_failures_per_minute_per_ip: u32,
    /// Failed credentials per minute across the deployment before every address that
    /// failed recently is answered 429.
    #[serde(default = "default_auth_failures")]
    pub auth_failures_per_minute: u32,
    /// Reverse proxies (IP addresses) whose `X-Forwarded-For` names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Newest audit entries kept in Redis.
    #[serde(default = "default_audit_max_entries")]
    pub audit_max_entries: u64,
}

fn default_shared_role() -> String {
    "admin".to_owned()
}

const fn default_auth_failures_per_ip() -> u32 {
    10
}

const fn default_auth_failures() -> u32 {
    100
}

const fn default_audit_max_entries() -> u64 {
    100_000
}

impl DashboardSettings {
    fn problems(&self) -> impl Iterator<Item = String> {
        [
            (self.username.is_empty() || self.username.contains(':')).then(|| {
                format!(
                    "dashboard.username {:?} must be non-empty without ':'",
                    self.username
                )
            }),
            (!(60..=2_592_000).contains(&self.session_ttl_secs)).then(|| {
                format!(
                    "dashboard.session_ttl_secs = {} must be between 60 and 2592000",
                    self.session_ttl_secs
                )
            }),
            (self.refresh_secs > 3600).then(|| {
                format!(
                    "dashboard.refresh_secs = {} must be at most 3600",
                    self.refresh_secs
                )
            }),
            (self.login_attempts_per_minute == 0)
                .then(|| "dashboard.login_attempts_per_minute must be at least 1".to_owned()),
            (!["viewer", "operator", "admin"].contains(&self.shared_role.as_str())).then(|| {
                format!(
                    "dashboard.shared_role {:?} must be \"viewer\", \"operator\" or \"admin\"",
                    self.shared_role
                )
            }),
            (self.auth_failures_per_minute_per_ip == 0 || self.auth_failures_per_minute == 0)
                .then(|| {
                    "dashboard.auth_failures_per_minute_per_ip and auth_failures_per_minute must be at least 1"
                        .to_owned()
                }),
            self.trusted_proxies
                .iter()
                .find(|p| p.parse::<std::net::IpAddr>().is_err())
                .map(|p| format!("dashboard.trusted_proxies entry {p:?} is not an IP address")),
            (self.audit_max_entries < 100)
                .then(|| "dashboard.audit_max_entries must be at least 100".to_owned()),
        ]
        .into_iter()
        .flatten()
    }
}

/// See `[dev]` in `config/default.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSettings {
    pub stand_ins: bool,
}

/// See `[calcom]` in `config/default.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalcomConfig {
    pub base_url: String,
    pub timeout_secs: u64,
    pub requests_per_minute: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// One URL (standalone), or a comma-separated list of seed nodes (cluster) or of the
    /// Sentinels (sentinel).
    pub url: String,
    pub embedded: bool,
    /// How `url` is read: one server, a Redis Cluster, or a master found through Sentinel.
    #[serde(default)]
    pub mode: RedisMode,
    /// The master's name the Sentinels know (`mode = "sentinel"`).
    #[serde(default = "default_sentinel_master")]
    pub sentinel_master: String,
}

/// The Redis topologies Switchboard runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server (or a primary behind a stable address).
    #[default]
    Standalone,
    /// A Redis Cluster: `url` lists seed nodes; every queue (partition) lives in one slot.
    Cluster,
    /// A primary and its replicas watched by Sentinels: `url` lists the Sentinels.
    Sentinel,
}

impl RedisSettings {
    /// The URLs in `url`, trimmed.
    pub fn urls(&self) -> Vec<&str> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect()
    }
}

fn default_sentinel_master() -> String {
    "switchboard".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    /// Apply pending migrations of a MariaDB/MySQL database at start (`serve --migrate`).
    #[serde(default)]
    pub migrate_on_start: bool,
}

/// See `[http]` in `config/default.toml`: the listen address and the edge limits every
/// connection of the HTTP listener is held to (`crate::edge`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: String,
    /// A new connection's first request head, and any later head once its first byte has
    /// arrived, must be complete within this long.
    pub header_read_timeout_ms: u64,
    /// A request body must be complete within this long of its head.
    pub body_read_timeout_ms: u64,
    /// After `body_grace_ms`, a body must keep arriving at this rate at least.
    pub body_min_bytes_per_sec: u64,
    /// How long a body may take before the minimum rate applies.
    pub body_grace_ms: u64,
    /// A keep-alive connection waiting for its next request is closed after this long.
    pub idle_timeout_secs: u64,
    /// A whole request, handler included, is answered (408 or 503) after this long.
    pub request_timeout_secs: u64,
    /// Open connections at most (lowered at start to fit the descriptor limit).
    pub max_connections: usize,
    /// Open connections from one client address at most.
    pub max_connections_per_ip: usize,
}

impl HttpSettings {
    fn problems(&self) -> impl Iterator<Item = String> {
        [
            self.listen.parse::<std::net::SocketAddr>().is_err().then(|| {
                format!(
                    "http.listen {:?} is not an address like 127.0.0.1:8080",
                    self.listen
                )
            }),
            (!(100..=300_000).contains(&self.header_read_timeout_ms)).then(|| {
                format!(
                    "http.header_read_timeout_ms = {} must be between 100 and 300000",
                    self.header_read_timeout_ms
                )
            }),
            (!(100..=3_600_000).contains(&self.body_read_timeout_ms)).then(|| {
                format!(
                    "http.body_read_timeout_ms = {} must be between 100 and 3600000",
                    self.body_read_timeout_ms
                )
            }),
            (self.body_min_bytes_per_sec == 0)
                .then(|| "http.body_min_bytes_per_sec must be at least 1".to_owned()),
            (self.body_grace_ms > self.body_read_timeout_ms).then(|| {
                format!(
                    "http.body_grace_ms = {} must not exceed http.body_read_timeout_ms = {}",
                    self.body_grace_ms, self.body_read_timeout_ms
                )
            }),
            (!(1..=3600).contains(&self.idle_timeout_secs)).then(|| {
                format!(
                    "http.idle_timeout_secs = {} must be between 1 and 3600",
                    self.idle_timeout_secs
                )
            }),
            (!(1..=3600).contains(&self.request_timeout_secs)).then(|| {
                format!(
                    "http.request_timeout_secs = {} must be between 1 and 3600",
                    self.request_timeout_secs
                )
            }),
            (self.request_timeout_secs.saturating_mul(1000) <= self.body_read_timeout_ms).then(|| {
                format!(
                    "http.request_timeout_secs = {} must be longer than http.body_read_timeout_ms = {} (a slow body is answered 408, not cut by the request timeout)",
                    self.request_timeout_secs, self.body_read_timeout_ms
                )
            }),
            (self.max_connections < 16).then(|| {
                format!(
                    "http.max_connections = {} must be at least 16",
                    self.max_connections
                )
            }),
            (self.max_connections_per_ip == 0)
                .then(|| "http.max_connections_per_ip must be at least 1".to_owned()),
        ]
        .into_iter()
        .flatten()
    }
}

/// See `[ingest]` in `config/default.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub max_body_bytes: usize,
    pub dedupe_ttl_secs: u64,
    pub queue: String,
    pub enqueue_timeout_ms: u64,
    /// Replicas that must hold a delivery's job before it is answered 202 (0: the master's
    /// memory is enough).
    #[serde(default)]
    pub min_replicas_acked: u32,
    /// How long to wait for them before answering 503.
    #[serde(default = "default_replicas_timeout_ms")]
    pub replicas_timeout_ms: u64,
}

fn default_replicas_timeout_ms() -> u64 {
    500
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: String,
    pub log_level: String,
    /// A collector's OTLP/HTTP base URL (`http://collector:4318`); empty: no traces.
    #[serde(default)]
    pub otlp_endpoint: String,
    /// `service.name` of the exported traces.
    #[serde(default = "default_service_name")]
    pub service_name: String,
}

fn default_service_name() -> String {
    "switchboard".into()
}

impl TelemetrySettings {
    /// The OTLP traces URL for `otlp_endpoint` (a collector's base URL, as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; one that already ends in `/v1/traces` is kept), or why it
    /// is not a usable URL. `None` when the endpoint is empty (traces off).
    pub fn otlp_traces_url(&self) -> Result<Option<String>, String> {
        let endpoint = self.otlp_endpoint.trim();
        if endpoint.is_empty() {
            return Ok(None);
        }
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| format!("telemetry.otlp_endpoint {endpoint:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "telemetry.otlp_endpoint {endpoint:?}: an http:// or https:// URL with a host is needed"
            ));
        }
        let base = endpoint.trim_end_matches('/');
        Ok(Some(if base.ends_with("/v1/traces") {
            base.to_owned()
        } else {
            format!("{base}/v1/traces")
        }))
    }
}

/// See `[queue]` in `config/default.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub prefix: String,
    pub lease_secs: u64,
    pub block_timeout_ms: u64,
    pub fetch_batch: usize,
    pub completed_retention_secs: u64,
    pub completed_max: u64,
    pub dead_retention_secs: u64,
    pub dead_max: u64,
    pub max_rescues: u32,
    /// A job that keeps snoozing (rate limits, an open circuit) fails after this long.
    #[serde(default = "default_max_snooze_secs")]
    pub max_snooze_secs: u64,
    /// Consecutive transient failures of one provider that open its circuit.
    #[serde(default = "default_circuit_failures")]
    pub circuit_failures: u32,
    /// How long an open circuit holds its provider's jobs before one probe may run.
    #[serde(default = "default_circuit_open_secs")]
    pub circuit_open_secs: u64,
    /// Dead and expired jobs of the [`personal_kinds`](Self::personal_kinds) are kept this
    /// long only (or `dead_retention_secs`, when that is shorter).
    #[serde(default = "default_personal_dead_retention_secs")]
    pub personal_dead_retention_secs: u64,
    /// Job kinds whose arguments carry personal data; `family.*` names a whole family.
    #[serde(default = "default_personal_kinds")]
    pub personal_kinds: Vec<String>,
    /// The keys that seal job payloads in Redis, current first; empty: stored in clear.
    /// From `SWITCHBOARD_PAYLOAD_KEYS` only ([`Settings::load`] copies them here from
    /// [`Secrets`]); no file can set them.
    #[serde(skip)]
    pub payload_keys: Vec<PayloadKey>,
    /// Queues split into partitions (queue -> P, default 1), each its own hash tag.
    #[serde(default)]
    pub partitions: std::collections::BTreeMap<String, u16>,
    /// Most jobs of one tenant leased at once on a queue, fleet-wide (queue -> cap; absent:
    /// no cap). A tenant at its cap is skipped by fetch, holding no worker slot.
    #[serde(default)]
    pub tenant_concurrency: std::collections::BTreeMap<String, u32>,
    /// Most jobs of one tenant started per minute on a queue, fleet-wide (queue -> rate;
    /// absent: no limit). A tenant over it waits for the next minute, holding no slot.
    #[serde(default)]
    pub tenant_rate_per_minute: std::collections::BTreeMap<String, u32>,
    /// Replicas that must hold a job enqueued by the CLI, the scheduler or a handler before
    /// the enqueue counts as done (0: the master's memory is enough).
    #[serde(default)]
    pub min_replicas_acked: u32,
    /// How long such an enqueue waits for them before failing.
    #[serde(default = "default_replicas_timeout_ms")]
    pub replicas_timeout_ms: u64,
    /// Whether workers record per-kind completions and run time per minute in Redis for the
    /// dashboard's metrics pages (one pipelined round trip per ack batch).
    #[serde(default = "default_kind_metrics")]
    pub kind_metrics: bool,
}

impl QueueSettings {
    /// Whether jobs of `kind` carry personal data (a name in `personal_kinds`, or a family
    /// `family.*` it belongs to).
    pub fn is_personal(&self, kind: &str) -> bool {
        self.personal_kinds
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(family) => kind.starts_with(family),
                None => p == kind,
            })
    }

    fn personal_problems(&self) -> impl Iterator<Item = String> {
        let bad_kind = |p: &String| {
            let name = p.strip_suffix(".*").unwrap_or(p);
            validate_name(name).is_err()
        };
        [
            (self.personal_dead_retention_secs < 60).then(|| {
                format!(
                    "queue.personal_dead_retention_secs = {} must be at least 60",
                    self.personal_dead_retention_secs
                )
            }),
            self.personal_kinds.iter().find(|p| bad_kind(p)).map(|p| {
                format!(
                    "queue.personal_kinds: {p:?} must be a job kind or a family `name.*` (letters, digits, '-', '_' and '.')"
                )
            }),
        ]
        .into_iter()
        .flatten()
    }
}

const fn default_personal_dead_retention_secs() -> u64 {
    172_800
}

fn default_personal_kinds() -> Vec<String> {
    [
        "webhook.retell",
        "webhook.calcom",
        "webhook.stripe",
        "notify.email",
        "notify.sms",
        "calendar.book",
        "calendar.cancel",
        "calendar.reschedule",
    ]
    .map(str::to_owned)
    .to_vec()
}

const fn default_kind_metrics() -> bool {
    true
}

const fn default_max_snooze_secs() -> u64 {
    86_400
}

const fn default_circuit_failures() -> u32 {
    5
}

const fn default_circuit_open_secs() -> u64 {
    30
}

/// See `[maintenance]` in `config/default.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSettings {
    pub promote_max_interval_ms: u64,
    pub rescue_interval_secs: u64,
    pub prune_interval_secs: u64,
    pub webhook_events_retention_secs: u64,
    pub leader_lease_secs: u64,
}

/// See `[fleet]` in `config/default.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    pub shutdown_timeout_secs: u64,
    pub supervisors: Vec<SupervisorSettings>,
}

/// One `[[fleet.supervisors]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSettings {
    pub name: String,
    pub queues: Vec<String>,
    pub concurrency: usize,
    #[serde(default = "one")]
    pub workers: usize,
    #[serde(default)]
    pub prefetch: Option<usize>,
    pub max_attempts: u32,
    pub timeout_secs: u64,
    pub backoff: BackoffSettings,
    /// `off`: each queue gets `concurrency` slots per worker loop. `auto`: the supervisor's
    /// `concurrency` slots are shared by its queues and follow the backlog.
    #[serde(default)]
    pub balance: Balance,
    /// With `auto`: fewest and most slots one queue may hold.
    #[serde(default = "one")]
    pub min_slots: usize,
    #[serde(default)]
    pub max_slots: Option<usize>,
    /// With `auto`: at most this many slots move per `balance_cooldown_secs`.
    #[serde(default = "one")]
    pub balance_max_shift: usize,
    #[serde(default = "default_balance_cooldown_secs")]
    pub balance_cooldown_secs: u64,
}

/// How a supervisor splits its slots over its queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// A fixed split: every queue `concurrency` slots per worker loop.
    #[default]
    Off,
    /// Slots move toward the queue with the longest time to clear (backlog × run time).
    Auto,
}

const fn one() -> usize {
    1
}

const fn default_balance_cooldown_secs() -> u64 {
    3
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffSettings {
    pub base_ms: u64,
    pub cap_ms: u64,
}

/// Configuration that failed to load or validate: one line per problem.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration:")?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// A URL without its credentials (`scheme://***@host...`), for logs and start-up lines.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A figment message in plain words: serde's list of expected names is already quoted, so
/// figment's extra quotes around it go, and the `default.` profile prefix of keys too.
fn tidy(message: &str) -> String {
    message
        .replace("``", "`")
        .replace("key \"default.", "key \"")
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Load the layers (defaults, `<dir>/<env>.toml`, an explicit file, environment) and validate.
    pub fn load(config_dir: &Path, extra_file: Option<&Path>) -> Result<Self, ConfigError> {
        let env = std::env::var("SWITCHBOARD_ENV").unwrap_or_else(|_| "development".to_owned());
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML))
            .merge(Toml::file(config_dir.join(format!("{env}.toml"))));
        if let Some(file) = extra_file {
            if !file.exists() {
                return Err(ConfigError(vec![format!(
                    "config file {} does not exist",
                    file.display()
                )]));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(
            Env::prefixed("SWITCHBOARD_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        // Environment values are read as literals, so `+4930...` would become a number: these
        // keys are strings whatever they look like (one pair of surrounding quotes is dropped).
        for (var, key) in [
            ("SWITCHBOARD_SMS__FROM", "sms.from"),
            ("SWITCHBOARD_DASHBOARD__USERNAME", "dashboard.username"),
        ] {
            if let Ok(value) = std::env::var(var) {
                let text = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(&value)
                    .to_owned();
                figment = figment.merge(Serialized::default(key, text));
            }
        }
        if let Ok(url) = std::env::var("REDIS_URL") {
            figment = figment.merge(Serialized::default("redis.url", url));
        }
        if let Ok(url) = std::env::var("DATABASE_URL") {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        let mut settings: Self = figment
            .extract()
            .map_err(|e| ConfigError(e.into_iter().map(|e| tidy(&e.to_string())).collect()))?;
        settings.secrets = Secrets::from_env();
        settings.validate()?;
        settings.queue.payload_keys = settings.secrets.payload_keys().unwrap_or_default();
        Ok(settings)
    }

    /// The embedded defaults alone (tests and tools start from these).
    pub fn defaults() -> Self {
        Figment::from(Toml::string(DEFAULT_TOML))
            .extract()
            .expect("the embedded defaults parse")
    }

    /// Check every field and the relations between them.
    #[allow(clippy::too_many_lines)] // one flat list of checks reads best
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, msg: String| {
            if !ok {
                problems.push(msg);
            }
        };
        // The default sender is a placeholder for the development stand-in: real messages
        // (stand-ins off, or a real gateway's credentials set) need the sender the gateway gave.
        let real_sms = !self.dev.stand_ins || self.secrets.sms_account_sid.is_some();
        check(
            !(real_sms && self.sms.from.trim() == switchboard_jobs::clients::sms::PLACEHOLDER_FROM),
            format!(
                "sms.from is the placeholder {}: set the sender number (E.164) or id your SMS gateway gave you (sms.from, or SWITCHBOARD_SMS__FROM)",
                switchboard_jobs::clients::sms::PLACEHOLDER_FROM
            ),
        );
        if let Err(e) = self.telemetry.otlp_traces_url() {
            check(false, e);
        }
        check(
            !self.telemetry.service_name.trim().is_empty(),
            "telemetry.service_name must not be empty".into(),
        );
        let q = &self.queue;
        let urls = self.redis.urls();
        check(
            !urls.is_empty()
                && urls.iter().all(|u| {
                    ["redis://", "rediss://", "unix://", "redis+unix://"]
                        .iter()
                        .any(|s| u.starts_with(s))
                }),
            format!(
                "redis.url {:?} must be one URL (or, for cluster and sentinel, a comma-separated list) starting with redis://, rediss:// or unix://",
                redact_url(&self.redis.url)
            ),
        );
        check(
            self.redis.mode != RedisMode::Standalone || urls.len() <= 1,
            "redis.url lists several servers: set redis.mode to \"cluster\" or \"sentinel\""
                .to_owned(),
        );
        check(
            self.redis.mode != RedisMode::Sentinel || !self.redis.sentinel_master.trim().is_empty(),
            "redis.sentinel_master must name the master the Sentinels watch".to_owned(),
        );
        for (queue, &p) in &q.partitions {
            check(
                validate_name(queue).is_ok() && (1..=64).contains(&p),
                format!("queue.partitions.{queue} = {p}: a queue name, and 1 to 64 partitions"),
            );
        }
        for (table, limits) in [
            ("tenant_concurrency", &q.tenant_concurrency),
            ("tenant_rate_per_minute", &q.tenant_rate_per_minute),
        ] {
            for (queue, &n) in limits {
                check(
                    validate_name(queue).is_ok() && n >= 1,
                    format!("queue.{table}.{queue} = {n}: a queue name, and at least 1"),
                );
            }
        }
        check(
            validate_name(&q.prefix).is_ok(),
            format!(
                "queue.prefix {:?} must be letters, digits, '-', '_' or '.'",
                q.prefix
            ),
        );
        check(
            q.lease_secs >= 3,
            format!("queue.lease_secs = {} must be at least 3", q.lease_secs),
        );
        check(
            (50..=q.lease_secs * 1000 / 3).contains(&q.block_timeout_ms),
            format!(
                "queue.block_timeout_ms = {} must be between 50 and a third of the lease ({} ms)",
                q.block_timeout_ms,
                q.lease_secs * 1000 / 3
            ),
        );
        check(
            (1..=1000).contains(&q.fetch_batch),
            format!(
                "queue.fetch_batch = {} must be between 1 and 1000",
                q.fetch_batch
            ),
        );
        check(
            q.completed_max >= 1,
            "queue.completed_max must be at least 1".into(),
        );
        check(q.dead_max >= 1, "queue.dead_max must be at least 1".into());
        check(
            q.max_rescues >= 1,
            "queue.max_rescues must be at least 1".into(),
        );
        check(
            q.max_snooze_secs >= 1,
            "queue.max_snooze_secs must be at least 1".into(),
        );
        check(
            q.circuit_failures >= 1,
            "queue.circuit_failures must be at least 1".into(),
        );
        check(
            (1..=3600).contains(&q.circuit_open_secs),
            format!(
                "queue.circuit_open_secs = {} must be between 1 and 3600",
                q.circuit_open_secs
            ),
        );
        check(
            ["text", "json"].contains(&self.telemetry.log_format.as_str()),
            format!(
                "telemetry.log_format {:?} must be \"text\" or \"json\"",
                self.telemetry.log_format
            ),
        );
        let i = &self.ingest;
        check(
            (1024..=64 << 20).contains(&i.max_body_bytes),
            format!(
                "ingest.max_body_bytes = {} must be between 1 KiB and 64 MiB",
                i.max_body_bytes
            ),
        );
        check(
            i.dedupe_ttl_secs >= 60,
            format!(
                "ingest.dedupe_ttl_secs = {} must be at least 60",
                i.dedupe_ttl_secs
            ),
        );
        check(
            validate_name(&i.queue).is_ok(),
            format!(
                "ingest.queue {:?} must be letters, digits, '-', '_' or '.'",
                i.queue
            ),
        );
        check(
            (10..=30_000).contains(&i.enqueue_timeout_ms),
            format!(
                "ingest.enqueue_timeout_ms = {} must be between 10 and 30000",
                i.enqueue_timeout_ms
            ),
        );
        let m = &self.maintenance;
        check(
            m.promote_max_interval_ms >= 10,
            "maintenance.promote_max_interval_ms must be at least 10".into(),
        );
        check(
            m.rescue_interval_secs >= 1,
            "maintenance.rescue_interval_secs must be at least 1".into(),
        );
        check(
            m.prune_interval_secs >= 1,
            "maintenance.prune_interval_secs must be at least 1".into(),
        );
        check(
            m.webhook_events_retention_secs >= 3600,
            "maintenance.webhook_events_retention_secs must be at least 3600".into(),
        );
        check(
            (3..=600).contains(&m.leader_lease_secs),
            format!(
                "maintenance.leader_lease_secs = {} must be between 3 and 600",
                m.leader_lease_secs
            ),
        );
        check(
            self.fleet.shutdown_timeout_secs >= 1,
            "fleet.shutdown_timeout_secs must be at least 1".into(),
        );
        let mut names = HashSet::new();
        for (i, s) in self.fleet.supervisors.iter().enumerate() {
            let at = format!("fleet.supervisors[{i}] ({})", s.name);
            check(!s.name.is_empty(), format!("{at}: name must not be empty"));
            check(
                names.insert(s.name.clone()),
                format!("{at}: name is used twice"),
            );
            check(
                !s.queues.is_empty(),
                format!("{at}: queues must name at least one queue"),
            );
            for queue in &s.queues {
                check(
                    validate_name(queue).is_ok(),
                    format!("{at}: queue {queue:?} must be letters, digits, '-', '_' or '.'"),
                );
            }
            check(
                (1..=10_000).contains(&s.concurrency),
                format!("{at}: concurrency = {} must be 1..=10000", s.concurrency),
            );
            check(
                (1..=64).contains(&s.workers),
                format!("{at}: workers = {} must be 1..=64", s.workers),
            );
            if s.balance == Balance::Auto {
                let max = s.max_slots.unwrap_or(s.concurrency);
                check(
                    s.min_slots >= 1
                        && s.min_slots <= max
                        && s.min_slots * s.queues.len() <= s.concurrency
                        && max <= s.concurrency,
                    format!(
                        "{at}: balance = \"auto\" needs 1 <= min_slots ({}) <= max_slots ({max}) <= concurrency ({}) and min_slots x {} queues <= concurrency",
                        s.min_slots,
                        s.concurrency,
                        s.queues.len()
                    ),
                );
                check(
                    s.balance_max_shift >= 1 && s.balance_cooldown_secs >= 1,
                    format!("{at}: balance_max_shift and balance_cooldown_secs must be at least 1"),
                );
            }
            check(
                s.max_attempts >= 1,
                format!("{at}: max_attempts must be at least 1"),
            );
            check(
                s.timeout_secs >= 1,
                format!("{at}: timeout_secs must be at least 1"),
            );
            check(
                s.timeout_secs < q.lease_secs,
                format!(
                    "{at}: timeout_secs = {} must be shorter than queue.lease_secs = {}",
                    s.timeout_secs, q.lease_secs
                ),
            );
            check(
                s.backoff.base_ms >= 1 && s.backoff.base_ms <= s.backoff.cap_ms,
                format!(
                    "{at}: backoff needs 1 <= base_ms ({}) <= cap_ms ({})",
                    s.backoff.base_ms, s.backoff.cap_ms
                ),
            );
        }
        problems.extend(self.http.problems());
        problems.extend(self.dashboard.problems());
        problems.extend(self.queue.personal_problems());
        problems.extend(self.secrets.payload_keys().err());
        problems.extend(schedule::problems(&self.scheduler, &self.schedule));
        problems.extend(waits::problems(&self.waits, &self.alerts));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems))
        }
    }
}

impl Settings {
    /// The Cal.com client settings.
    pub fn calcom_settings(&self) -> switchboard_jobs::clients::calcom::CalcomSettings {
        switchboard_jobs::clients::calcom::CalcomSettings {
            base_url: self.calcom.base_url.clone(),
            timeout_secs: self.calcom.timeout_secs,
        }
    }
}

impl SupervisorSettings {
    /// Jobs leased ahead of free slots (defaults to `concurrency`).
    pub fn prefetch(&self) -> usize {
        self.prefetch.unwrap_or(self.concurrency)
    }
}

/// A name that is not plain enough to be part of a Redis key or a metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid name {0:?}: use letters, digits, '-', '_' and '.'")]
pub struct InvalidName(pub String);

/// Queue and schedule names become part of keys and of metric labels: keep them plain.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(InvalidName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_otlp_endpoint_is_a_collector_base_url() {
        let url = |endpoint: &str| {
            let mut t = Settings::defaults().telemetry;
            t.otlp_endpoint = endpoint.into();
            t.otlp_traces_url()
        };
        assert_eq!(url(" ").unwrap(), None);
        assert_eq!(
            url("http://collector:4318").unwrap().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            url("https://otel.example/v1/traces/").unwrap().as_deref(),
            Some("https://otel.example/v1/traces")
        );
        for bad in [
            "collector:4318",
            "ftp://collector",
            "http//x",
            "unix:/tmp/otel",
        ] {
            let e = url(bad).unwrap_err();
            assert!(e.starts_with("telemetry.otlp_endpoint"), "{bad}: {e}");
        }
    }

    #[test]
    fn defaults_are_valid_and_name_the_five_queues() {
        let s = Settings::defaults();
        s.validate().unwrap();
        let queues: Vec<_> = s
            .fleet
            .supervisors
            .iter()
            .flat_map(|s| s.queues.clone())
            .collect();
        assert_eq!(
            queues,
            [
                "webhooks",
                "calendar",
                "billing",
                "notifications",
                "maintenance"
            ]
        );
    }

    #[test]
    fn every_problem_gets_its_own_line() {
        let mut s = Settings::defaults();
        s.queue.lease_secs = 10;
        s.queue.fetch_batch = 0;
        s.fleet.supervisors[0].timeout_secs = 20;
        s.fleet.supervisors[1].name = "webhooks".into();
        let err = s.validate().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("fetch_batch = 0"), "{text}");
        assert!(
            text.contains("timeout_secs = 20 must be shorter than queue.lease_secs = 10"),
            "{text}"
        );
        assert!(text.contains("name is used twice"), "{text}");
        assert!(err.0.len() >= 4, "{text}");
    }

    #[test]
    fn edge_limits_name_each_problem() {
        let mut s = Settings::defaults();
        s.http.header_read_timeout_ms = 0;
        s.http.body_min_bytes_per_sec = 0;
        s.http.body_grace_ms = s.http.body_read_timeout_ms + 1;
        s.http.request_timeout_secs = 1;
        s.http.max_connections_per_ip = 0;
        let err = s.validate().unwrap_err();
        let text = err.to_string();
        for needle in [
            "http.header_read_timeout_ms = 0",
            "http.body_min_bytes_per_sec must be at least 1",
            "http.body_grace_ms",
            "http.request_timeout_secs = 1 must be longer",
            "http.max_connections_per_ip must be at least 1",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert_eq!(err.0.len(), 5, "{text}");
    }

    #[test]
    fn personal_kinds_are_names_or_families_and_checked() {
        let mut s = Settings::defaults();
        let q = &s.queue;
        assert!(q.is_personal("webhook.retell") && q.is_personal("notify.sms"));
        assert!(!q.is_personal("billing.reconcile") && !q.is_personal("calendar.reconcile"));
        s.queue.personal_kinds = vec!["calendar.*".into(), "bad kind".into()];
        assert!(s.queue.is_personal("calendar.book") && !s.queue.is_personal("calendars"));
        s.queue.personal_dead_retention_secs = 10;
        let text = s.validate().unwrap_err().to_string();
        assert!(
            text.contains(r#"queue.personal_kinds: "bad kind""#),
            "{text}"
        );
        assert!(text.contains("personal_dead_retention_secs = 10"), "{text}");
    }

    #[test]
    fn real_providers_refuse_the_placeholder_sms_sender() {
        let mut s = Settings::defaults();
        s.validate().unwrap();
        s.dev.stand_ins = false;
        let err = s.validate().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("sms.from is the placeholder +10000000000") && err.0.len() == 1,
            "{text}"
        );
        s.sms.from = "+4930555000".into();
        s.validate().unwrap();
    }
}
