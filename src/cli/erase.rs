//! `switchboard erase --phone <E.164> | --email <address>`: a person's erasure request
//! (GDPR art. 17).
//!
//! Order of work, so that a run that fails half-way can simply be run again:
//! 1. read who they are (their numbers, addresses and names) from the database, changing
//!    nothing ([`erasure::identify`]; a business's own number is refused here);
//! 2. anonymise or delete their jobs in Redis ([`jobs`]): the database still knows them,
//!    so a rerun after a failure here finds the same identifiers;
//! 3. anonymise their rows in one transaction ([`erasure::erase`]);
//! 4. print what was touched and append an audit record, whose detail names the person only
//!    by a short SHA-256 prefix.
//!
//! A job held by a running worker is not touched (it is reported): run erase again once it
//! finished. `--dry-run` does steps 1 to 3 without changing anything (the database part runs
//! in a transaction that is rolled back) and writes no audit record.

mod jobs;

use anyhow::Context as _;
use clap::Args;
use serde_json::json;
use sha2::{Digest, Sha256};
use switchboard_jobs::store::{
    Dialect, Store,
    erasure::{self, Report, Subject},
};

use crate::{
    app,
    audit::{self, AuditLog, Entry},
    config::Settings,
    queue::overview,
};
pub use jobs::{Counts, JobsReport, State};

/// `switchboard erase ...`
#[derive(Debug, Clone, Default, Args)]
pub struct EraseArgs {
    /// The person's phone number, E.164 (e.g. +4915123456789).
    #[arg(long)]
    pub phone: Option<String>,
    /// The person's email address (matched case-insensitively).
    #[arg(long)]
    pub email: Option<String>,
    /// List what would be touched; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    pub json: bool,
}

/// What one erasure touched.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `sha256:<12 hex>` of the subject (lowercase), as the audit record names it.
    pub subject: String,
    pub dry_run: bool,
    pub database: Report,
    pub jobs: JobsReport,
}

impl Outcome {
    /// Rows and jobs changed (or that would be), not counting running jobs.
    pub fn changed(&self) -> u64 {
        self.database.changed()
            + self
                .jobs
                .values()
                .map(|c| c.anonymised + c.deleted)
                .sum::<u64>()
    }

    /// Jobs of the person held by running workers, left alone.
    pub fn running(&self) -> u64 {
        self.jobs.values().map(|c| c.running).sum()
    }

    /// Jobs that changed between read and swap, left alone.
    pub fn skipped(&self) -> u64 {
        self.jobs.values().map(|c| c.skipped).sum()
    }
}

/// The subject named by the arguments: exactly one of `--phone` and `--email`, well-formed.
pub fn subject(args: &EraseArgs) -> anyhow::Result<Subject> {
    match (&args.phone, &args.email) {
        (Some(phone), None) => Ok(Subject::phone(phone)?),
        (None, Some(email)) => Ok(Subject::email(email)?),
        (None, None) => anyhow::bail!("name the person: --phone <E.164> or --email <address>"),
        (Some(_), Some(_)) => {
            anyhow::bail!("give --phone or --email, not both (erase runs once per identifier)")
        }
    }
}

/// Run `switchboard erase` and print its outcome.
pub async fn run(settings: &Settings, args: &EraseArgs) -> anyhow::Result<()> {
    let subject = subject(args)?;
    let store = Store::connect(&settings.database.url)
        .await
        .context("opening the database")?;
    if store.dialect() == Dialect::Sqlite {
        store.migrate().await?;
    }
    let queues = app::connect(settings, false).await?.0;
    let configured: Vec<String> = settings
        .fleet
        .supervisors
        .iter()
        .flat_map(|s| s.queues.clone())
        .collect();
    let outcome = erase(&queues, &store, &subject, &configured, args.dry_run).await?;
    print(&outcome, args.json)?;
    Ok(())
}

/// Erase `subject` from `store` and from the jobs of every queue (registered, `configured`,
/// or found under the prefix); audited unless `dry_run`.
pub async fn erase(
    queues: &crate::queue::Queues,
    store: &Store,
    subject: &Subject,
    configured: &[String],
    dry_run: bool,
) -> anyhow::Result<Outcome> {
    let needles = erasure::identify(store, subject).await?;
    let names = overview::queue_names(queues, configured).await?;
    let mut eraser = jobs::Eraser::new(queues, &needles, dry_run);
    eraser.run(&names).await.context("erasing queued jobs")?;
    let database = if dry_run {
        erasure::preview(store, subject).await?
    } else {
        erasure::erase(store, subject).await?
    };
    let outcome = Outcome {
        subject: fingerprint(subject),
        dry_run,
        database,
        jobs: eraser.report,
    };
    if !dry_run {
        let entry = Entry::cli("erase")
            .queues(touched_queues(&outcome))
            .count(outcome.changed())
            .detail(detail(&outcome));
        AuditLog::new(queues.clone(), audit::DEFAULT_MAX_ENTRIES)
            .record(&entry)
            .await
            .context("the person was erased, but writing the audit record failed")?;
    }
    Ok(outcome)
}

/// `sha256:<first 12 hex digits>` of the subject, lowercase: names the request in the audit
/// trail without holding the number or address.
pub fn fingerprint(subject: &Subject) -> String {
    let digest = Sha256::digest(subject.as_str().trim().to_lowercase().as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..12])
}

fn touched_queues(o: &Outcome) -> Vec<String> {
    let mut names: Vec<String> = o.jobs.keys().map(|(q, _)| q.clone()).collect();
    names.dedup();
    names
}

fn detail(o: &Outcome) -> String {
    let rows: Vec<String> = o
        .database
        .tables
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| format!("{t} {n}"))
        .collect();
    let (anonymised, deleted): (u64, u64) = o
        .jobs
        .values()
        .fold((0, 0), |(a, d), c| (a + c.anonymised, d + c.deleted));
    format!(
        "subject {}; rows: {}; jobs anonymised {anonymised}, deleted {deleted}, skipped {}, running {}",
        o.subject,
        if rows.is_empty() {
            "none".to_owned()
        } else {
            rows.join(", ")
        },
        o.skipped(),
        o.running()
    )
}

/// Print `o`: one line per table and per queue and state, or one JSON object.
pub fn print(o: &Outcome, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(&to_json(o))?);
        return Ok(());
    }
    let would = if o.dry_run { "would be " } else { "" };
    println!(
        "erase {}{}",
        o.subject,
        if o.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    for (table, n) in &o.database.tables {
        if *table == "usage_events" {
            println!(
                "database {table}: {n} rows {would}anonymised, {} rows of their calls kept whole for billing (seconds, company, call id)",
                o.database.usage_kept
            );
        } else {
            println!("database {table}: {n} rows {would}anonymised");
        }
    }
    for ((queue, state), c) in &o.jobs {
        let state = state.as_str();
        if c.running > 0 {
            println!(
                "queue {queue} {state}: {} jobs held by a running worker, not touched: run erase again once they finished",
                c.running
            );
        } else {
            let parts: Vec<String> = [
                (c.anonymised, format!("{would}anonymised")),
                (c.deleted, format!("{would}deleted")),
                (
                    c.skipped,
                    "skipped (taken by a worker meanwhile: run erase again)".to_owned(),
                ),
            ]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            println!("queue {queue} {state}: {}", parts.join(", "));
        }
    }
    if o.changed() == 0 && o.running() == 0 && o.skipped() == 0 {
        println!("nothing to erase: no row or job of this person was found");
    }
    Ok(())
}

fn to_json(o: &Outcome) -> serde_json::Value {
    let tables: serde_json::Map<String, serde_json::Value> = o
        .database
        .tables
        .iter()
        .map(|(t, n)| ((*t).to_owned(), json!(n)))
        .collect();
    let queues: Vec<serde_json::Value> = o
        .jobs
        .iter()
        .map(|((queue, state), c)| {
            json!({
                "queue": queue, "state": state, "anonymised": c.anonymised,
                "deleted": c.deleted, "skipped": c.skipped, "running": c.running,
            })
        })
        .collect();
    json!({
        "subject": o.subject,
        "dry_run": o.dry_run,
        "database": tables,
        "usage_events_kept": o.database.usage_kept,
        "queues": queues,
        "changed": o.changed(),
        "skipped": o.skipped(),
        "running": o.running(),
    })
}
