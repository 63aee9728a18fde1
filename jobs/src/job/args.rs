//! The payload contract: one typed, versioned argument struct per job kind.

use std::time::{Duration, SystemTime};

use serde::{Serialize, de::DeserializeOwned};

use super::Policy;

/// Arguments of one job kind. The struct is what travels on the queue (as JSON), so it is
/// the contract between producers and the handler: change it only by adding optional
/// fields, or bump [`JobArgs::VERSION`] and keep reading the old shape.
pub trait JobArgs: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Stable name of the kind, e.g. `webhook.stripe`; the handler registry is keyed by it.
    const KIND: &'static str;
    /// Queue the kind is enqueued on unless the caller says otherwise.
    const QUEUE: &'static str;
    /// Version of the argument shape, stored with every job.
    const VERSION: u16 = 1;
    /// Attempts, timeout, backoff and retry budget of the kind; the default takes all of them
    /// from the supervisor that runs it.
    const POLICY: Policy = Policy::DEFAULT;
    /// Priority of the kind's jobs unless the caller sets one: confirmations and
    /// cancellations run `High`, reminders and reconciliation `Low`.
    const PRIORITY: Priority = Priority::Normal;
}

/// How urgent a job is within its queue and tenant: a higher priority runs first, by weight
/// (8 high : 4 normal : 1 low per round), so waiting low-priority work ages in instead of
/// starving.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// The lowercase name, as stored and in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }

    /// The priority named `name` (`high`, `normal`, `low`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "high" => Some(Self::High),
            "normal" => Some(Self::Normal),
            "low" => Some(Self::Low),
            _ => None,
        }
    }
}

/// How a job is enqueued beyond its arguments.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// Queue override; `None` uses [`JobArgs::QUEUE`].
    pub queue: Option<String>,
    /// Caller-chosen job id (must be unique); `None` generates one.
    pub id: Option<String>,
    /// Earliest time the job may start; `None` means now.
    pub run_at: Option<SystemTime>,
    /// Dedupe key: while it lives, a second enqueue with the same key is suppressed and
    /// answered with the first job's id.
    pub unique: Option<(String, Duration)>,
    /// Attempts override for this one job.
    pub max_attempts: Option<u32>,
    /// Sequence key: jobs of one queue with the same key run one at a time, in enqueue
    /// order, fleet-wide (e.g. every event of one booking); other keys run in parallel.
    pub sequence: Option<String>,
    /// A job not started by this time is recorded as expired and never runs (e.g. a
    /// reminder after the appointment began).
    pub expires_at: Option<SystemTime>,
    /// An idempotency key with how long it is remembered: the same key again answers with
    /// the first job (and its first state) and enqueues nothing.
    pub idempotency: Option<(String, Duration)>,
    /// The tenant (for domain jobs the company id): a queue serves the tenants that have
    /// ready work round robin, so one tenant's backlog never holds up another's job.
    pub tenant: Option<String>,
    /// Priority within the queue and tenant; `None` takes the kind's [`JobArgs::PRIORITY`]
    /// (typed enqueue) or `normal`.
    pub priority: Option<Priority>,
}

impl EnqueueOptions {
    /// Run no earlier than `at`.
    #[must_use]
    pub fn run_at(mut self, at: SystemTime) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Run after `delay` from now.
    #[must_use]
    pub fn run_in(self, delay: Duration) -> Self {
        self.run_at(SystemTime::now() + delay)
    }

    /// Suppress duplicates with `key` for `ttl`.
    #[must_use]
    pub fn unique(mut self, key: impl Into<String>, ttl: Duration) -> Self {
        self.unique = Some((key.into(), ttl));
        self
    }

    /// Run one at a time, in enqueue order, with the other jobs of sequence `key`.
    #[must_use]
    pub fn sequence(mut self, key: impl Into<String>) -> Self {
        self.sequence = Some(key.into());
        self
    }

    /// Never start after `at`: a job still waiting then is recorded as expired.
    #[must_use]
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Answer a repeat of idempotency `key` within `ttl` with the first job, enqueue nothing.
    #[must_use]
    pub fn idempotency(mut self, key: impl Into<String>, ttl: Duration) -> Self {
        self.idempotency = Some((key.into(), ttl));
        self
    }

    /// Put the job on `queue` instead of the kind's own queue.
    #[must_use]
    pub fn on_queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// Serve the job in `tenant`'s turn (round robin over the tenants with ready work).
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Run at `priority` within the queue and tenant.
    #[must_use]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Use `id` as the job id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}
