//! Switchboard's domain: what a job is, what it carries and what it does.
//!
//! Every job kind is one typed, versioned argument struct implementing [`JobArgs`] with its
//! policy (queue, attempts, timeout) beside it, and one handler registered in a [`Registry`].
//! This crate never names Redis or HTTP servers: handlers that create follow-up work use the
//! [`Enqueuer`] capability carried by their [`JobContext`], which the runtime implements.

#![forbid(unsafe_code)]

mod args;
mod context;
mod error;
pub mod noop;
mod registry;
pub mod webhook;

pub use args::{EnqueueOptions, JobArgs};
pub use context::{EnqueueError, Enqueuer, JobContext, JobMeta};
pub use error::JobError;
pub use registry::{Handler, Registry};

/// The registry of every job kind this build knows, with its handler.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    registry.register::<noop::Noop, _, _>(noop::run);
    registry
}
