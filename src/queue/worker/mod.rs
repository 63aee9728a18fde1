//! One worker's side of the queue. A worker owns parts that run side by side, each in its
//! own file:
//! * [`fetcher`]: leases jobs in batches for free credits; blocks while the queue is empty;
//! * [`backend`]: the apalis backend, handing leased jobs to apalis;
//! * [`settle`]: the middleware turning each run's result into a settlement;
//! * [`completer`]: writes settlements in batches;
//! * [`lease`]: renews the worker's lease, and fences the worker when it cannot;
//! * [`state`]: what they share, and the messages the completer takes;
//! * [`inline`]: the same parts driven by the caller, to run a queue until it is empty.
//!
//! Invariant: a credit is taken before a job is leased and returned only after its
//! settlement is committed in Redis, so the leased count never exceeds the credit total.

pub mod backend;
mod completer;
mod fetcher;
pub mod inline;
mod lease;
pub mod settle;
pub mod state;

pub use backend::{RedisBackend, WorkerHandle};
pub use state::{FetchCounters, WorkerOptions};
