//! Operator commands: status (the dashboard's overview as a table), failed
//! list/retry/forget, pause/continue, enqueue.

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;
use switchboard_jobs::{EnqueueOptions, Priority};

use super::Refused;
use crate::{
    app,
    audit::{AuditLog, Entry},
    config::Settings,
    queue::overview::{self, Overview, Supervisor},
    queue::{
        Queues,
        admin::{Selection, WorkerInfo},
        check_tenant,
    },
};

/// `switchboard failed ...`
#[derive(Debug, Subcommand)]
pub enum FailedAction {
    /// List dead jobs, newest first.
    List {
        /// Only this queue's dead jobs (default: every queue).
        #[arg(long)]
        queue: Option<String>,
        /// Most jobs listed per queue.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Put dead jobs back on their queue with fresh attempts.
    Retry {
        /// Job id (omit with --all).
        id: Option<String>,
        /// Every dead job (of --queue, or of every queue).
        #[arg(long)]
        all: bool,
        /// Only this queue (default: every queue).
        #[arg(long)]
        queue: Option<String>,
    },
    /// Delete dead jobs for good.
    Forget {
        /// Job id (omit with --all).
        id: Option<String>,
        /// Every dead job (of --queue, or of every queue).
        #[arg(long)]
        all: bool,
        /// Only this queue (default: every queue).
        #[arg(long)]
        queue: Option<String>,
    },
}

pub(crate) async fn connect(settings: &Settings) -> anyhow::Result<Queues> {
    Ok(app::connect(settings, false).await?.0)
}

/// Record a change made from the CLI in the audit trail.
pub(crate) async fn audit(settings: &Settings, queues: &Queues, entry: Entry) {
    AuditLog::new(queues.clone(), settings.dashboard.audit_max_entries)
        .record_or_warn(&entry)
        .await;
}

/// The job ids a selection names (none for all).
fn ids(which: &Selection) -> Vec<String> {
    match which {
        Selection::Ids(ids) => ids.clone(),
        Selection::All => Vec::new(),
    }
}

/// Every queue worth showing: registered ones and the configured ones.
async fn all_queues(settings: &Settings, queues: &Queues) -> anyhow::Result<Vec<String>> {
    let configured: Vec<String> = settings
        .fleet
        .supervisors
        .iter()
        .flat_map(|s| s.queues.clone())
        .collect();
    Ok(overview::queue_names(queues, &configured).await?)
}

/// `status [--json]`: the dashboard's overview as a table (or JSON).
pub async fn status(settings: &Settings, as_json: bool, partitions: bool) -> anyhow::Result<()> {
    let queues = connect(settings).await?;
    let names = all_queues(settings, &queues).await?;
    let rows = if partitions {
        queues.with_partitions(&names)
    } else {
        names.clone()
    };
    let view = overview::overview(&queues, &rows).await?;
    let workers = overview::workers(&queues, &names).await?;
    let supervisors = overview::supervisors(&workers);
    if as_json {
        let mut summary = serde_json::to_value(&view)?;
        let rows = summary
            .as_object_mut()
            .and_then(|o| o.remove("queues"))
            .unwrap_or_default();
        println!(
            "{}",
            json!({ "overview": summary, "queues": rows, "supervisors": supervisors, "workers": workers })
        );
        return Ok(());
    }
    print!("{}", status_table(&view, &supervisors, &workers));
    Ok(())
}

/// The text `status` prints.
fn status_table(o: &Overview, supervisors: &[Supervisor], workers: &[WorkerInfo]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let past_hour = o.jobs_past_hour;
    let longest = o.longest_wait.as_ref().map_or_else(
        || "-".to_owned(),
        |w| format!("{:.1} s on {}", w.secs, w.queue),
    );
    let _ = writeln!(
        out,
        "status: {}   jobs/min: {}   jobs past hour: {}   failed past 7 days: {}\n\
         workers: {} in {} process(es)   supervisors: {}   longest wait: {}\n",
        o.status,
        o.jobs_per_minute,
        past_hour,
        o.failed_past_7_days,
        o.workers,
        o.processes,
        o.supervisors,
        longest
    );
    let _ = writeln!(
        out,
        "{:<16} {:>9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>11} {:>8} {:>10} {:>7}  paused",
        "queue",
        "pending",
        "delayed",
        "running",
        "dead",
        "in line",
        "expired",
        "jobs/min",
        "past hour",
        "processed",
        "failed",
        "wait (s)",
        "workers"
    );
    for r in &o.queues {
        let s = &r.stats;
        let _ = writeln!(
            out,
            "{:<16} {:>9} {:>8} {:>8} {:>7} {:>8} {:>8} {:>8} {:>9} {:>11} {:>8} {:>10.1} {:>7}  {}",
            s.name,
            s.pending,
            s.delayed,
            s.running,
            s.dead,
            s.waiting,
            s.expired,
            r.jobs_per_minute,
            r.jobs_past_hour,
            s.processed,
            s.failed,
            s.oldest_pending_secs,
            r.workers,
            if s.paused { "yes" } else { "no" }
        );
    }
    let _ = writeln!(out, "\n{} supervisor(s)", supervisors.len());
    for s in supervisors {
        let _ = writeln!(
            out,
            "  {}  host={} pid={} queues={} workers={} expired={} jobs held={}",
            s.name,
            s.host,
            s.pid,
            s.queues.join(","),
            s.workers,
            s.expired,
            s.leased
        );
    }
    let _ = writeln!(out, "\n{} worker(s)", workers.len());
    for w in workers {
        let _ = writeln!(
            out,
            "  {}  queue={} leased={} lease_left={:.0}s",
            w.id, w.queue, w.leased, w.lease_left_secs
        );
    }
    out
}

/// `failed list|retry|forget`.
pub async fn failed(settings: &Settings, action: FailedAction) -> anyhow::Result<()> {
    let queues = connect(settings).await?;
    let scope = |q: &Option<String>| {
        let q = q.clone();
        let queues = queues.clone();
        async move {
            match q {
                Some(q) => Ok::<_, anyhow::Error>(vec![q]),
                None => all_queues(settings, &queues).await,
            }
        }
    };
    match action {
        FailedAction::List {
            queue,
            limit,
            json: as_json,
        } => {
            let mut all = Vec::new();
            for q in scope(&queue).await? {
                for job in queues.dead_list(&q, limit).await? {
                    all.push((q.clone(), job));
                }
            }
            if as_json {
                let rows: Vec<_> = all
                    .iter()
                    .map(|(q, j)| json!({"queue": q, "job": j}))
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if all.is_empty() {
                println!("no dead jobs");
            } else {
                for (q, j) in &all {
                    println!(
                        "{}  queue={} kind={} attempts={} error={}",
                        j.id,
                        q,
                        j.kind,
                        j.attempts,
                        j.error.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        FailedAction::Retry { id, all, queue } => {
            let which = selection(id, all)?;
            let mut n = 0;
            let names = scope(&queue).await?;
            for q in &names {
                n += queues.dead_retry(q, which.clone()).await?;
            }
            refuse_unknown(&which, n)?;
            let action = if matches!(which, Selection::All) {
                "retry_all"
            } else {
                "retry"
            };
            let entry = Entry::cli(action).queues(names).jobs(ids(&which)).count(n);
            audit(settings, &queues, entry).await;
            println!("retried {n} job(s)");
        }
        FailedAction::Forget { id, all, queue } => {
            let which = selection(id, all)?;
            let mut n = 0;
            let names = scope(&queue).await?;
            for q in &names {
                n += queues.dead_forget(q, which.clone()).await?;
            }
            refuse_unknown(&which, n)?;
            let entry = Entry::cli("forget")
                .queues(names)
                .jobs(ids(&which))
                .count(n);
            audit(settings, &queues, entry).await;
            println!("forgot {n} job(s)");
        }
    }
    Ok(())
}

/// Every queue the configuration names: the supervisors', ingest's and the schedules'.
fn configured_queues(settings: &Settings) -> Vec<String> {
    let mut names: Vec<String> = settings
        .fleet
        .supervisors
        .iter()
        .flat_map(|s| s.queues.clone())
        .chain(std::iter::once(settings.ingest.queue.clone()))
        .chain(settings.schedule.iter().map(|s| s.queue.clone()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Refuse a queue neither configured nor registered in Redis.
pub(crate) async fn known_queue(
    settings: &Settings,
    queues: &Queues,
    queue: &str,
) -> anyhow::Result<()> {
    let mut known = configured_queues(settings);
    known.extend(queues.queue_names().await?);
    known.sort();
    known.dedup();
    if known.iter().any(|q| q == queue) {
        return Ok(());
    }
    Err(Refused(format!(
        "unknown queue {queue:?}: known queues are {}",
        known.join(", ")
    ))
    .into())
}

/// A job named by id that no queue held dead: say so, and fail.
fn refuse_unknown(which: &Selection, n: u64) -> anyhow::Result<()> {
    match which {
        Selection::Ids(ids) if n == 0 => anyhow::bail!(
            "no dead job {} on any queue (see `switchboard failed list`)",
            ids.join(", ")
        ),
        _ => Ok(()),
    }
}

fn selection(id: Option<String>, all: bool) -> anyhow::Result<Selection> {
    match (id, all) {
        (Some(id), false) => Ok(Selection::Ids(vec![id])),
        (None, true) => Ok(Selection::All),
        _ => anyhow::bail!("give either a job id or --all"),
    }
}

/// `pause QUEUE` / `continue QUEUE`.
pub async fn pause(settings: &Settings, queue: &str, paused: bool) -> anyhow::Result<()> {
    let queues = connect(settings).await?;
    known_queue(settings, &queues, queue).await?;
    if paused {
        queues.pause(queue).await?;
        println!("paused {queue}");
    } else {
        queues.resume(queue).await?;
        println!("continued {queue}");
    }
    let action = if paused { "pause" } else { "continue" };
    audit(
        settings,
        &queues,
        Entry::cli(action).queues([queue]).count(1),
    )
    .await;
    Ok(())
}

/// `switchboard enqueue QUEUE KIND JSON ...`
#[derive(Debug, Clone, clap::Args)]
pub struct EnqueueArgs {
    /// The queue, one of the configuration's (e.g. webhooks, calendar, notifications).
    pub queue: String,
    #[arg(help = "The job kind, e.g. billing.report_usage (see the README's job catalogue)")]
    pub kind: String,
    #[arg(help = r#"The kind's arguments as JSON, e.g. '{"call_id": "call_1"}'"#)]
    pub args: String,
    /// Run no earlier than this many seconds from now.
    #[arg(long)]
    pub delay_secs: Option<u64>,
    /// Dedupe key (kept for 24 h).
    #[arg(long)]
    pub unique: Option<String>,
    /// The tenant, e.g. the company id: served in turn with the queue's other tenants.
    #[arg(long)]
    pub tenant: Option<String>,
    /// high, normal or low (default: the kind's own).
    #[arg(long, value_parser = parse_priority)]
    pub priority: Option<Priority>,
}

fn parse_priority(text: &str) -> Result<Priority, String> {
    Priority::parse(text).ok_or_else(|| "use high, normal or low".to_owned())
}

/// `enqueue QUEUE KIND JSON`.
pub async fn enqueue(settings: &Settings, a: EnqueueArgs) -> anyhow::Result<()> {
    let EnqueueArgs {
        queue,
        kind,
        args,
        delay_secs,
        unique,
        tenant,
        priority,
    } = a;
    let (queue, kind) = (queue.as_str(), kind.as_str());
    if let Some(tenant) = &tenant {
        check_tenant(tenant).map_err(|e| Refused(e.to_string()))?;
    }
    let parsed: serde_json::Value = serde_json::from_str(&args)
        .map_err(|e| Refused(format!("the job arguments are not valid JSON: {e}")))?;
    let configured = configured_queues(settings);
    if !configured.iter().any(|q| q == queue) {
        return Err(Refused(format!(
            "queue {queue:?} is not in the configuration, so no worker would take the job: configured queues are {}",
            configured.join(", ")
        ))
        .into());
    }
    // The same check as the app's API (`/api/v1/jobs`), over every kind of this build.
    let info = match crate::api::jobs::checked_kind(&kinds(), kind, &parsed.to_string()) {
        Ok(info) => info,
        Err(e) => {
            return Err(Refused(if e.field == "kind" {
                e.message
            } else {
                format!(
                    "the arguments do not fit {kind}: {} ({})",
                    e.message, e.field
                )
            })
            .into());
        }
    };
    let queues = connect(settings).await?;
    queues.register_queue(queue).await?;
    let mut options = EnqueueOptions::default().priority(priority.unwrap_or(info.priority));
    if let Some(tenant) = tenant {
        options = options.tenant(tenant);
    }
    if let Some(secs) = delay_secs {
        options = options.run_in(Duration::from_secs(secs));
    }
    if let Some(key) = unique {
        options = options.unique(key, Duration::from_secs(86_400));
    }
    let out = queues
        .enqueue_json(kind, 1, parsed.to_string(), queue, options)
        .await?;
    let entry = Entry::cli("enqueue")
        .queues([queue])
        .jobs([out.id.clone()])
        .count(u64::from(!out.duplicate))
        .detail(format!("kind {kind}"));
    audit(settings, &queues, entry).await;
    println!("{}", json!({"id": out.id, "duplicate": out.duplicate}));
    Ok(())
}

/// `hash-password`: one line from stdin (the password) to an argon2id PHC string on stdout.
pub fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(
        !password.is_empty(),
        "no password on stdin: pipe one in, e.g. `read -rs P && printf '%s\\n' \"$P\" | switchboard hash-password`"
    );
    let hash = crate::dashboard::operators::hash_password(password).map_err(anyhow::Error::msg)?;
    println!("{hash}");
    Ok(())
}

/// Every kind a fleet of this build runs: the domain's and the pruner's.
fn kinds() -> Vec<switchboard_jobs::KindInfo> {
    let mut kinds = switchboard_jobs::catalogue();
    kinds.push(switchboard_jobs::KindInfo::of::<crate::maintenance::Prune>());
    kinds
}
