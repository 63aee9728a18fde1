//! Purge: withdraw the waiting jobs of a queue that match a filter, found through each
//! partition's `index` hash (`HSCAN`, [`PURGE_CHUNK`] at a time) and withdrawn by the `purge`
//! script in chunks of at most [`PURGE_CHUNK`] ids. Jobs enqueued while it runs may or may
//! not be purged; a job fetched meanwhile runs.

use super::{PURGE_CHUNK, PurgeFilter};
use crate::queue::{QueueError, Queues, job, keys::QueueKeys, scripts};

impl Queues {
    /// Withdraw the jobs of `queue` waiting to run (pending, in a lane, delayed, waiting
    /// behind a sequence) that match `f`, every partition; returns how many. Running jobs
    /// finish; dead and completed ones stay.
    pub async fn purge(&self, queue: &str, f: &PurgeFilter) -> Result<u64, QueueError> {
        let mut total = 0;
        for part in self.partition_names(queue) {
            let k = self.keys(&part)?;
            total += self.purge_one(&k, f).await?;
        }
        Ok(total)
    }

    async fn purge_one(&self, k: &QueueKeys, f: &PurgeFilter) -> Result<u64, QueueError> {
        let mut total = 0;
        let mut cursor = 0u64;
        loop {
            let (next, entries): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(&k.index)
                .arg(cursor)
                .arg("COUNT")
                .arg(PURGE_CHUNK)
                .query_async(&mut self.conn())
                .await?;
            let ids: Vec<&str> = entries
                .iter()
                .filter(|(_, item)| match job::decode(item) {
                    Ok((_, env)) => f.matches(&env.kind, env.tn.as_deref()),
                    // An item nobody can run goes with an unfiltered purge only.
                    Err(_) => *f == PurgeFilter::default(),
                })
                .map(|(id, _)| id.as_str())
                .collect();
            for chunk in ids.chunks(PURGE_CHUNK) {
                // Dying here leaves some jobs withdrawn and the rest waiting: a second purge
                // finishes the job (the script skips ids no longer in `index`).
                let n: u64 = scripts::PURGE
                    .key(&k.index)
                    .key(&k.delayed)
                    .key(&k.tomb)
                    .key(&k.stats)
                    .key(&k.pending)
                    .arg(k.base())
                    .arg(k.sequence_prefix())
                    .arg(job::now_ms())
                    .arg(chunk)
                    .invoke_async(&mut self.conn())
                    .await?;
                total += n;
            }
            if next == 0 {
                return Ok(total);
            }
            cursor = next;
        }
    }
}
