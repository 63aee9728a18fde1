//! `switchboard purge <QUEUE> [--kind K] [--tenant T] --yes`: withdraw a queue's waiting jobs
//! (pending and delayed), all of them or one kind's or one tenant's, for good. Without `--yes`
//! it refuses and changes nothing; a purge is written to the audit trail as `cli:<user>`.

use clap::Args;

use super::{
    Refused,
    admin::{audit, connect, known_queue},
};
use crate::{audit::Entry, config::Settings, queue::browse::PurgeFilter};

/// `purge`'s arguments.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// The queue, one of the configuration's (or one registered in Redis).
    pub queue: String,
    /// Only jobs of this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// Only jobs of this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Confirm: the purged jobs are gone for good and never run.
    #[arg(long)]
    pub yes: bool,
}

/// Purge, once confirmed; prints how many jobs went.
pub async fn run(settings: &Settings, args: &PurgeArgs) -> anyhow::Result<()> {
    if !args.yes {
        return Err(Refused(format!(
            "purge withdraws {}'s waiting jobs for good: add --yes to confirm",
            args.queue
        ))
        .into());
    }
    let filter = PurgeFilter {
        kind: args.kind.clone().filter(|k| !k.is_empty()),
        tenant: args.tenant.clone().filter(|t| !t.is_empty()),
    };
    if let Some(t) = filter.tenant.as_deref() {
        crate::queue::check_tenant(t).map_err(|e| Refused(e.to_string()))?;
    }
    let queues = connect(settings).await?;
    known_queue(settings, &queues, &args.queue).await?;
    let n = queues.purge(&args.queue, &filter).await?;
    let entry = Entry::cli("purge")
        .queues([args.queue.as_str()])
        .count(n)
        .detail(filter.to_string());
    audit(settings, &queues, entry).await;
    println!("purged {n} job(s) from {} ({filter})", args.queue);
    Ok(())
}
