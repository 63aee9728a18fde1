//! The contract between the queue and the domain: what a job kind is ([`JobArgs`], with its
//! [`Policy`]), what its handler receives ([`JobContext`]: facts, the [`Enqueuer`] and
//! [`RateLimiter`] capabilities) and returns ([`JobError`]), and the [`Registry`] the fleet
//! dispatches through. Nothing here knows a provider, a table or Redis.

mod args;
mod catalogue;
mod context;
mod error;
mod limiter;
mod policy;
mod registry;

pub use args::{EnqueueOptions, JobArgs, Priority};
pub use catalogue::{ArgsError, KindInfo};
pub use context::{EnqueueError, Enqueuer, JobContext, JobMeta};
pub use error::JobError;
pub use limiter::RateLimiter;
pub use policy::{Backoff, Policy};
pub use registry::{Handler, Registry};
