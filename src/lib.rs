//! Switchboard: `AskProAI`'s background job engine.
//!
//! Layout, one line per room (the domain, job kinds and their handlers, is the
//! `switchboard-jobs` crate in `jobs/`; this crate is the runtime around it):
//! * `main.rs` (the binary): CLI parse, load the settings, call [`app`] or [`cli`].
//! * [`app`]: the composition root; builds Redis, the database and the roles, runs them until
//!   shutdown. Only it and [`cli`] may import from every layer.
//! * [`cli`]: the commands that are not roles: `status`, `failed`, `pause`, `enqueue`,
//!   `schedule list|run`, `bench`, `demo`.
//! * [`dev`]: `serve`'s embedded defaults: a private Redis, stand-ins for the providers.
//! * [`config`]: a leaf: every `*Settings`, the schedules' timetables, the name rule, the
//!   secrets loaded once from the environment.
//! * [`shutdown`] and [`instance`]: the shutdown signal and interruptible sleep; host name,
//!   worker ids and the leader token.
//! * [`telemetry`]: logs and metric names.
//! * [`queue`]: Switchboard's Redis queue: keys, Lua scripts (called from here only), the
//!   producer, retry policy, upkeep rounds, operator actions, inspection, overview numbers,
//!   rate limits; [`queue::worker`] is one worker's side (fetcher, backend, settle layer,
//!   completer, inline drain).
//! * [`ingest`]: the webhook endpoint: verify, dedupe, enqueue through an enqueue-only
//!   [`queue::Producer`].
//! * [`fleet`]: supervisors and workers; the dispatcher applies each kind's timeout.
//! * [`maintenance`]: the background services of one shape: promoter, rescuer, pruner,
//!   leader lease, cron scheduler, wait watch (long-wait notices).
//! * `http.rs`: health, readiness, `/metrics` and the queue gauges read at each scrape.
//! * [`edge`]: the HTTP listener's accept loop and its limits (timeouts, connection caps).
//! * [`dashboard`]: the operator pages and their JSON API, roles, throttled credentials.
//! * [`audit`]: the audit trail of operator changes (a capped Redis stream).
//!
//! Layers, top to bottom: `app`/`cli` → `edge`, `dashboard`, `http`, `ingest`, `fleet`,
//! `maintenance` → `audit` → `queue` → `telemetry` → `config`, `shutdown`, `instance`, `dev`; nothing
//! imports a layer above it, and there is no import circle: `python3 scripts/import-cycles.py`
//! checks both crates.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod audit;
pub mod banner;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod dev;
pub mod edge;
pub mod fleet;
mod http;
pub mod ingest;
pub mod instance;
pub mod maintenance;
pub mod queue;
pub mod shutdown;
pub mod telemetry;
