//! What the CLI's commands that are not roles do: operator commands ([`admin`]: status,
//! failed, pause, continue, enqueue), `schedule list|run` ([`schedule`]), the benchmarks
//! ([`bench`]) and the demo ([`demo`]). Each opens its own connections from the settings and
//! prints; none runs a role (roles start in [`crate::app`]).

pub mod admin;
pub mod bench;
pub mod demo;
pub mod erase;
pub mod schedule;
