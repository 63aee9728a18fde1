//! `bench memory`: Redis bytes per pending job. `INFO memory` `used_memory` (summed over the
//! masters) before and after enqueuing N jobs of a mix that nothing fetches, divided by N.
//! The figure is only as clean as the Redis is quiet: other clients' keys, or a fleet draining
//! at the same time, count in it.

use serde_json::json;

use super::mix::Mix;
use crate::queue::Queues;

/// Enqueue `jobs` pending jobs of `mix` on `queue` and measure what Redis holds for them.
pub async fn run(
    queues: &Queues,
    queue: &str,
    jobs: usize,
    mix: Mix,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(jobs > 0, "bench memory needs --jobs of at least 1");
    let before = used_memory(queues).await?;
    mix.enqueue(queues, queue, jobs, false).await?;
    let after = used_memory(queues).await?;
    let pending = queues.stats(queue).await?.pending;
    anyhow::ensure!(
        pending == jobs as u64,
        "enqueued {jobs} but {pending} are pending"
    );
    let bytes = after.saturating_sub(before);
    let mut line = json!({
        "bench": "memory", "jobs": jobs, "used_memory_before": before, "used_memory_after": after,
        "bytes_per_job": (bytes as f64 / jobs as f64 * 10.0).round() / 10.0,
        "path": if mix.is_plain() { "enqueue_many" } else { "enqueue" },
    });
    mix.describe(&mut line);
    Ok(line)
}

/// `used_memory` of `INFO memory`, summed over every master.
async fn used_memory(queues: &Queues) -> anyhow::Result<u64> {
    let mut total = 0;
    for mut node in queues.each_master().await? {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut node)
            .await?;
        total += info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("INFO memory has no used_memory"))?;
    }
    Ok(total)
}
