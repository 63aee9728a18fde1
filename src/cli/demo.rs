//! `switchboard demo`: drive the whole path of a running `serve` with the sample webhooks.
//!
//! Everything goes through the server, never through a database or files under the current
//! directory, so the demo works from any directory and against any `database.url`: it seeds
//! the demo business (`POST /dev/demo/seed`), posts the sample Retell call (started, ended,
//! analysed asking for an appointment), a Cal.com booking and a Stripe invoice, signed with
//! the configured (or development) secrets, then follows its own call in the server's
//! database (`GET /dev/demo/calls/{call_id}`, [`crate::dev::demo`]) and its deliveries' jobs
//! on the dashboard API until the call is stored, the appointment is booked, the customer is
//! notified and the minutes are reported to Stripe. One line per step on stderr as it
//! completes, one JSON summary on stdout.
//!
//! What must stay true: every run posts fresh ids (call, Cal.com booking, Stripe event and
//! invoice), so no delivery is a duplicate of an earlier run's and nothing an earlier run
//! stored can pass for this run's; a duplicate answer, a dead job, a missing schema or an
//! unreachable server ends the run at once with the reason.

mod follow;
mod sample;
mod server;

use std::time::Instant;

use crate::config::Settings;

use self::{
    follow::step,
    sample::{Ids, deliveries},
    server::Server,
};

/// Run the demo against the server at `url`.
pub async fn run(settings: &Settings, url: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let server = Server::new(settings, url)?;
    server.seed().await?;
    step(started, "demo business seeded");
    let ids = Ids::fresh();
    let mut jobs = Vec::new();
    for delivery in deliveries(settings, &ids)? {
        jobs.push(server.deliver(&delivery).await?);
    }
    step(started, &format!("{} deliveries accepted", jobs.len()));
    let summary = follow::follow(&server, &ids, &jobs, started).await?;
    println!("{summary}");
    Ok(())
}
