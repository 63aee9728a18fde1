//! Following one demo run through the server until its whole path completed: the call as
//! the server's database holds it (`/dev/demo/calls/{call_id}`) and the run's jobs on the
//! dashboard API. Each step is reported once as it completes; a failure the server already
//! knows of (a dead job, a failed notification, usage Stripe refused) ends the run at once
//! with its reason, and the deadline is only the last resort, naming the step that did not
//! complete.

use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use super::{
    sample::Ids,
    server::{Accepted, Server},
};

/// The last resort: the path normally completes in a second or two.
const DEADLINE: Duration = Duration::from_secs(60);
/// How often the server is asked.
const POLL: Duration = Duration::from_millis(150);
/// The dead set is scanned every this many polls.
const DEAD_SCAN_EVERY: u32 = 4;

/// A step of the path and how the call's view shows it done.
struct Step {
    name: &'static str,
    done: fn(&Value) -> bool,
}

fn sent(view: &Value, channel: &str) -> bool {
    view["notifications"].as_array().is_some_and(|list| {
        list.iter()
            .any(|n| n["channel"] == channel && n["status"] == "sent")
    })
}

/// In the order they normally complete.
const STEPS: [Step; 7] = [
    Step {
        name: "call stored",
        done: |v| !v["call"].is_null(),
    },
    Step {
        name: "call analyzed",
        done: |v| v["call"]["stage"] == "analyzed",
    },
    Step {
        name: "usage recorded",
        done: |v| !v["usage"].is_null(),
    },
    Step {
        name: "appointment booked",
        done: |v| !v["appointment"].is_null(),
    },
    Step {
        name: "confirmation email sent",
        done: |v| sent(v, "email"),
    },
    Step {
        name: "confirmation SMS sent",
        done: |v| sent(v, "sms"),
    },
    Step {
        name: "usage reported to Stripe",
        done: |v| v["usage"]["reported"] == true,
    },
];

/// One completed step, with the time since the run began.
pub(super) fn step(started: Instant, what: &str) {
    eprintln!("  ok  {what:<28} {:.2} s", started.elapsed().as_secs_f64());
}

/// The name of the step that waits for every delivery's job.
const PROCESSED: &str = "deliveries processed";

/// Wait until every step is done; the run's summary.
pub(super) async fn follow(
    server: &Server,
    ids: &Ids,
    jobs: &[Accepted],
    started: Instant,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + DEADLINE;
    let dashboard = server.dead_jobs().await?.is_some();
    if !dashboard {
        eprintln!(
            "  --  the dashboard API is not readable (set SWITCHBOARD_DASHBOARD_TOKEN): dead jobs are not seen, only the database"
        );
    }
    let mut done = [false; STEPS.len()];
    let mut completed = vec![!dashboard; jobs.len()];
    let mut processed_reported = !dashboard;
    let mut round = 0_u32;
    loop {
        let view = server.call(&ids.call).await?;
        check_failures(&view)?;
        for (i, s) in STEPS.iter().enumerate() {
            if !done[i] && (s.done)(&view) {
                done[i] = true;
                step(started, s.name);
            }
        }
        if dashboard {
            check_jobs(server, jobs, &mut completed).await?;
            if round.is_multiple_of(DEAD_SCAN_EVERY) {
                check_dead_follow_ups(server, ids, &view).await?;
            }
            if !processed_reported && completed.iter().all(|c| *c) {
                processed_reported = true;
                step(started, PROCESSED);
            }
        }
        if done.iter().all(|d| *d) && processed_reported {
            return Ok(summary(ids, &view, jobs, started));
        }
        if Instant::now() >= deadline {
            let pending = STEPS
                .iter()
                .zip(done)
                .find(|(_, d)| !d)
                .map_or(PROCESSED, |(s, _)| s.name);
            bail!(
                "step `{pending}` did not complete within {} s (the server holds for call {}: {view}); see `switchboard status` and `switchboard failed list`",
                DEADLINE.as_secs(),
                ids.call
            );
        }
        round += 1;
        tokio::time::sleep(POLL).await;
    }
}

/// Failures the server's database already records for this call.
fn check_failures(view: &Value) -> anyhow::Result<()> {
    for n in view["notifications"].as_array().into_iter().flatten() {
        if n["status"] == "failed" {
            bail!(
                "the confirmation {} to {} failed: {}",
                n["channel"].as_str().unwrap_or("?"),
                n["recipient"].as_str().unwrap_or("?"),
                n["error"].as_str().unwrap_or("no error recorded")
            );
        }
    }
    if let Some(reason) = view["usage"]["unbillable"].as_str() {
        bail!("Stripe refused the call's usage for good: {reason}");
    }
    Ok(())
}

/// Mark the deliveries' jobs that completed; a dead one ends the run.
async fn check_jobs(
    server: &Server,
    jobs: &[Accepted],
    completed: &mut [bool],
) -> anyhow::Result<()> {
    for (job, done) in jobs.iter().zip(completed.iter_mut()) {
        if *done {
            continue;
        }
        let Some(view) = server.job(&job.job).await? else {
            continue;
        };
        match view["state"].as_str() {
            Some("completed") => *done = true,
            Some("dead") => bail!(
                "the job {} of delivery {} is dead: {}",
                job.job,
                job.what,
                view["error"].as_str().unwrap_or("no error recorded")
            ),
            _ => {}
        }
    }
    Ok(())
}

/// A dead follow-up of this run (booking, notification, usage report): its arguments name
/// the call or the appointment booked for it.
async fn check_dead_follow_ups(server: &Server, ids: &Ids, view: &Value) -> anyhow::Result<()> {
    let Some(dead) = server.dead_jobs().await? else {
        return Ok(());
    };
    let uid = view["appointment"]["uid"].as_str();
    for job in dead {
        let text = job.to_string();
        if text.contains(&ids.call) || uid.is_some_and(|u| text.contains(u)) {
            bail!(
                "the job {} ({}) on {} is dead: {}",
                job["id"].as_str().unwrap_or("?"),
                job["kind"].as_str().unwrap_or("?"),
                job["queue"].as_str().unwrap_or("?"),
                job["error"].as_str().unwrap_or("no error recorded")
            );
        }
    }
    Ok(())
}

fn summary(ids: &Ids, view: &Value, jobs: &[Accepted], started: Instant) -> Value {
    let notified: Vec<String> = view["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["status"] == "sent")
        .map(|n| {
            format!(
                "{} to {}",
                n["channel"].as_str().unwrap_or("?"),
                n["recipient"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let call = &view["call"];
    json!({
        "demo": "ok",
        "call": { "id": ids.call, "duration_ms": call["duration_ms"], "summary": call["summary"] },
        "appointment": view["appointment"],
        "notified": notified,
        "usage_reported": true,
        "jobs": jobs.iter().map(|j| j.job.as_str()).collect::<Vec<_>>(),
        "seconds": (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    })
}
