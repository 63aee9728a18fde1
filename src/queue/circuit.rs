//! Circuits per provider, shared by the whole fleet through Redis (`circuit.lua`).
//!
//! A job kind names its provider in its policy (`Policy::circuit`). When that provider's
//! jobs keep failing transiently (`queue.circuit_failures` in a row), the circuit opens: for
//! `queue.circuit_open_secs` every job of the provider snoozes without running, so a
//! 30-minute outage costs each job a few snoozes instead of its attempts, and the provider
//! is not hammered. Then one job runs as the probe: its success closes the circuit, its
//! failure keeps it open for another stretch. A job that finds Redis unreachable for the
//! check runs anyway (the circuit spares attempts; it must never stop work on its own).

use std::time::Duration;

use serde::Serialize;

use super::{QueueError, Queues, job, scripts};

/// What a job may do, as its provider's circuit says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Closed; `failures` transient failures in a row counted so far.
    Closed { failures: u64 },
    /// Open until its time is up, then this job is the probe: run it.
    Probe,
    /// Open: wait this long (snooze; no attempt used).
    Open(Duration),
}

/// One circuit as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CircuitState {
    /// Provider name (`smtp`, `sms`, `calcom`, `stripe`, `database`).
    pub name: String,
    /// Whether its jobs are held now.
    pub open: bool,
    /// Seconds until the next probe may run (0 when closed).
    pub open_for_secs: u64,
    /// Transient failures in a row.
    pub failures: u64,
    /// Times it has opened since it last closed.
    pub opened: u64,
    /// The last failure's error.
    pub last_error: Option<String>,
}

impl Queues {
    fn circuit_key(&self, name: &str) -> String {
        format!("{{{}:circuit}}:{name}", self.settings().prefix)
    }

    fn circuit_names_key(&self) -> String {
        format!("{{{}:circuit}}:names", self.settings().prefix)
    }

    /// Ask `name`'s circuit whether a job may call the provider now.
    pub async fn circuit_check(&self, name: &str) -> Result<Gate, QueueError> {
        let open_ms = self.settings().circuit_open_secs * 1000;
        let (wait_ms, failures): (i64, i64) = scripts::CIRCUIT
            .key(self.circuit_key(name))
            .key(self.circuit_names_key())
            .arg("check")
            .arg(job::now_ms())
            .arg(name)
            .arg(open_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match (wait_ms, failures) {
            (w, _) if w > 0 => Gate::Open(Duration::from_millis(w.unsigned_abs())),
            (_, f) if f < 0 => Gate::Probe,
            (_, f) => Gate::Closed {
                failures: f.unsigned_abs(),
            },
        })
    }

    /// Record how a call to `name` went: `Ok` closes the circuit, `Err(text)` counts a
    /// transient failure. Returns whether this failure opened it.
    pub async fn circuit_record(
        &self,
        name: &str,
        outcome: Result<(), &str>,
    ) -> Result<bool, QueueError> {
        let s = self.settings();
        let (op, error) = match outcome {
            Ok(()) => ("ok", ""),
            Err(text) => ("fail", text),
        };
        let opened: i64 = scripts::CIRCUIT
            .key(self.circuit_key(name))
            .key(self.circuit_names_key())
            .arg("record")
            .arg(job::now_ms())
            .arg(name)
            .arg(op)
            .arg(s.circuit_failures)
            .arg(s.circuit_open_secs * 1000)
            .arg(error.chars().take(300).collect::<String>())
            .invoke_async(&mut self.conn())
            .await?;
        if opened == 1 {
            tracing::warn!(
                circuit = name,
                failures = s.circuit_failures,
                open_secs = s.circuit_open_secs,
                error,
                "circuit opened: the provider's jobs wait until a probe succeeds"
            );
        }
        Ok(opened == 1)
    }

    /// Every circuit that has seen a failure, by name.
    pub async fn circuits(&self) -> Result<Vec<CircuitState>, QueueError> {
        let mut conn = self.conn();
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.circuit_names_key())
            .query_async(&mut conn)
            .await?;
        names.sort();
        let now = job::now_ms();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let (failures, open_until, opened, last_error): (
                Option<u64>,
                Option<u64>,
                Option<u64>,
                Option<String>,
            ) = redis::cmd("HMGET")
                .arg(self.circuit_key(&name))
                .arg(&["failures", "open_until", "opened", "last_error"])
                .query_async(&mut conn)
                .await?;
            let open_until = open_until.unwrap_or(0);
            out.push(CircuitState {
                name,
                open: open_until > 0,
                open_for_secs: open_until.saturating_sub(now).div_ceil(1000),
                failures: failures.unwrap_or(0),
                opened: opened.unwrap_or(0),
                last_error,
            });
        }
        Ok(out)
    }
}
