//! Switchboard: `AskProAI`'s background job engine.
//!
//! Layout (see `ARCHITECTURE.md` in the shared docs for the why):
//! * [`app`]: the composition root; builds Redis, roles and runs them until shutdown.
//! * [`config`]: the typed, validated settings tree.
//! * [`queue`]: Switchboard's Redis queue and its apalis backend.
//! * [`ingest`]: the webhook endpoint: verify, dedupe, enqueue.
//! * [`fleet`]: supervisors and workers.
//! * [`dashboard`]: the operator pages and their JSON API.
//! * [`maintenance`]: promoter, rescuer, pruner, gauges, leader lease, cron scheduler.
//! * [`admin`], [`schedule`] and [`bench`]: what the CLI's operator, schedule and benchmark
//!   commands do.
//! * [`telemetry`]: logs and metric names.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod dashboard;
pub mod dev;
pub mod fleet;
mod http;
pub mod ingest;
pub mod instance;
pub mod maintenance;
pub mod queue;
pub mod shutdown;
pub mod telemetry;
