//! What the CLI's commands that are not roles do: operator commands ([`admin`]: status,
//! failed, pause, continue, enqueue; [`purge`]), `schedule list|run` ([`schedule`]), the
//! benchmarks ([`bench`]) and the demo ([`demo`]). Each opens its own connections from the settings and
//! prints; none runs a role (roles start in [`crate::app`]).

pub mod admin;
pub mod bench;
pub mod demo;
pub mod erase;
pub mod keys;
pub mod purge;
pub mod schedule;

/// A command refused before it did anything (an unknown queue or kind, arguments that do not
/// decode): the binary exits 2 with this one line, as for a mistyped argument.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}
