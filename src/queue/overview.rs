//! The numbers operators watch, gathered from Redis for the dashboard, its API and
//! `switchboard status`: throughput, failures, fleet status, the longest wait, the workload
//! per queue, and the supervisors and workers of the fleet.
//!
//! Every number is read per queue in O(1) or O(log n) (see `Queues::stats` and
//! `Queues::recent`); only the worker list is O(workers).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::queue::{
    QueueError, Queues,
    admin::{QueueStats, WorkerInfo},
    circuit::CircuitState,
    job,
};

/// Every queue worth showing: the registered ones and `configured`, sorted.
pub async fn queue_names(
    queues: &Queues,
    configured: &[String],
) -> Result<Vec<String>, QueueError> {
    let mut names: BTreeSet<String> = queues.queue_names().await?.into_iter().collect();
    names.extend(configured.iter().cloned());
    Ok(names.into_iter().collect())
}

/// One queue's workload.
#[derive(Debug, Clone, Serialize)]
pub struct QueueRow {
    #[serde(flatten)]
    pub stats: QueueStats,
    /// Jobs completed within the last minute.
    pub jobs_per_minute: u64,
    /// Jobs completed within the last hour (a lower bound when the completed window is full).
    pub jobs_past_hour: u64,
    /// Dead jobs held that died within the last 7 days.
    pub failed_past_7_days: u64,
    /// Live worker loops fetching from it.
    pub workers: usize,
}

/// The queue whose oldest pending job has waited longest.
#[derive(Debug, Clone, Serialize)]
pub struct LongestWait {
    pub queue: String,
    pub secs: f64,
}

/// A supervisor (one process's group of worker loops with one configuration).
#[derive(Debug, Clone, Serialize)]
pub struct Supervisor {
    pub name: String,
    pub host: String,
    pub pid: String,
    pub queues: Vec<String>,
    /// Worker loops registered (live or not).
    pub workers: usize,
    /// Worker loops whose lease has expired: the process is gone or stalled.
    pub expired: usize,
    /// Jobs its workers hold now.
    pub leased: u64,
}

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// `active` (live workers), `paused` (every queue with live workers is paused) or
    /// `inactive` (no live worker).
    pub status: &'static str,
    pub jobs_per_minute: u64,
    pub jobs_past_hour: u64,
    pub failed_past_7_days: u64,
    /// Live worker loops.
    pub workers: usize,
    pub supervisors: usize,
    /// Distinct processes (host and pid) with live workers.
    pub processes: usize,
    pub longest_wait: Option<LongestWait>,
    pub queues: Vec<QueueRow>,
    /// Provider circuits that have seen failures; an `open` one holds its provider's jobs.
    pub circuits: Vec<CircuitState>,
    pub generated_at_ms: u64,
}

/// Supervisors and workers.
#[derive(Debug, Clone, Serialize)]
pub struct FleetView {
    pub supervisors: Vec<Supervisor>,
    pub workers: Vec<WorkerInfo>,
}

/// Read every worker of `names`.
pub async fn workers(queues: &Queues, names: &[String]) -> Result<Vec<WorkerInfo>, QueueError> {
    let mut all = Vec::new();
    for name in names {
        all.extend(queues.workers(name).await?);
    }
    Ok(all)
}

/// Gather the overview of `names`.
pub async fn overview(queues: &Queues, names: &[String]) -> Result<Overview, QueueError> {
    let now = job::now_ms();
    let all_workers = workers(queues, names).await?;
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        let stats = queues.stats(name).await?;
        let recent = queues.recent(name, now).await?;
        let live = all_workers
            .iter()
            .filter(|w| &w.queue == name && w.lease_left_secs > 0.0)
            .count();
        rows.push(QueueRow {
            stats,
            jobs_per_minute: recent.completed_last_minute,
            jobs_past_hour: recent.completed_last_hour,
            failed_past_7_days: recent.dead_last_week,
            workers: live,
        });
    }
    let live: Vec<&WorkerInfo> = all_workers
        .iter()
        .filter(|w| w.lease_left_secs > 0.0)
        .collect();
    let status = if live.is_empty() {
        "inactive"
    } else if rows
        .iter()
        .filter(|r| r.workers > 0)
        .all(|r| r.stats.paused)
    {
        "paused"
    } else {
        "active"
    };
    let processes: BTreeSet<(String, String)> = live
        .iter()
        .map(|w| {
            let p = WorkerId::parse(&w.id, &w.queue);
            (p.host, p.pid)
        })
        .collect();
    let longest_wait = rows
        .iter()
        .filter(|r| r.stats.pending > 0)
        .max_by(|a, b| {
            a.stats
                .oldest_pending_secs
                .total_cmp(&b.stats.oldest_pending_secs)
        })
        .map(|r| LongestWait {
            queue: r.stats.name.clone(),
            secs: r.stats.oldest_pending_secs,
        });
    Ok(Overview {
        status,
        jobs_per_minute: rows.iter().map(|r| r.jobs_per_minute).sum(),
        jobs_past_hour: rows.iter().map(|r| r.jobs_past_hour).sum(),
        failed_past_7_days: rows.iter().map(|r| r.failed_past_7_days).sum(),
        workers: live.len(),
        supervisors: supervisors(&all_workers)
            .iter()
            .filter(|s| s.expired < s.workers)
            .count(),
        processes: processes.len(),
        longest_wait,
        queues: rows,
        circuits: queues.circuits().await?,
        generated_at_ms: now,
    })
}

/// Group workers into their supervisors, by host, pid and supervisor name.
pub fn supervisors(workers: &[WorkerInfo]) -> Vec<Supervisor> {
    let mut groups: BTreeMap<(String, String, String), Supervisor> = BTreeMap::new();
    for w in workers {
        let id = WorkerId::parse(&w.id, &w.queue);
        let entry = groups
            .entry((id.host.clone(), id.pid.clone(), id.supervisor.clone()))
            .or_insert_with(|| Supervisor {
                name: id.supervisor,
                host: id.host,
                pid: id.pid,
                queues: Vec::new(),
                workers: 0,
                expired: 0,
                leased: 0,
            });
        if !entry.queues.contains(&w.queue) {
            entry.queues.push(w.queue.clone());
        }
        entry.workers += 1;
        entry.expired += usize::from(w.lease_left_secs <= 0.0);
        entry.leased += w.leased;
    }
    groups.into_values().collect()
}

/// The parts of a worker id `<host>:<pid>:<supervisor>:<queue>:<n>:<random>`. A supervisor
/// name may itself hold `:`, so the parts are taken from both ends.
struct WorkerId {
    host: String,
    pid: String,
    supervisor: String,
}

impl WorkerId {
    fn parse(id: &str, queue: &str) -> Self {
        let parts: Vec<&str> = id.split(':').collect();
        // host, pid, supervisor (1 or more parts), queue, n, random
        if parts.len() >= 6 && parts[parts.len() - 3] == queue {
            Self {
                host: parts[0].to_owned(),
                pid: parts[1].to_owned(),
                supervisor: parts[2..parts.len() - 3].join(":"),
            }
        } else {
            Self {
                host: "?".into(),
                pid: "?".into(),
                supervisor: id.to_owned(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, queue: &str, leased: u64, left: f64) -> WorkerInfo {
        WorkerInfo {
            id: id.into(),
            queue: queue.into(),
            leased,
            lease_left_secs: left,
        }
    }

    #[test]
    fn workers_group_into_supervisors_per_process() {
        let all = [
            worker("h1:10:mail:notifications:0:aa", "notifications", 2, 5.0),
            worker("h1:10:mail:notifications:1:bb", "notifications", 1, 5.0),
            worker("h1:10:mail:reminders:0:cc", "reminders", 0, 5.0),
            worker("h2:7:mail:notifications:0:dd", "notifications", 0, -1.0),
            worker("h1:10:a:b:webhooks:0:ee", "webhooks", 0, 5.0),
        ];
        let sups = supervisors(&all);
        assert_eq!(sups.len(), 3);
        let a = sups
            .iter()
            .find(|s| s.name == "a:b")
            .expect("a name with ':'");
        assert_eq!((a.host.as_str(), a.pid.as_str()), ("h1", "10"));
        let mail = sups
            .iter()
            .find(|s| s.name == "mail" && s.host == "h1")
            .unwrap();
        assert_eq!(mail.queues, ["notifications", "reminders"]);
        assert_eq!((mail.workers, mail.leased, mail.expired), (3, 3, 0));
        let gone = sups.iter().find(|s| s.host == "h2").unwrap();
        assert_eq!((gone.workers, gone.expired), (1, 1));
    }
}
