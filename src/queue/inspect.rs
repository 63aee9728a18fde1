//! Looking at single jobs and recent history, for the dashboard: a job by id in whatever
//! state it is, and how many jobs finished or died within recent windows.
//!
//! Both stay cheap whatever the backlog: the windows read 61 per-minute completion counters
//! and one `ZCOUNT` over the `dead_at` sorted set (O(log n)); a lookup reads one field per place a job can be (per
//! worker: its leases and its one-item inbox) and scans at most [`FIND_SCAN_LIMIT`] pending and
//! delayed items (in Lua, by id prefix).

use serde::Serialize;

use super::{
    QueueError, Queues,
    job::{self, Envelope},
    scripts,
};

/// Most pending and most delayed items a lookup by id reads (each).
pub const FIND_SCAN_LIMIT: usize = 1000;

const HOUR_MS: u64 = 3_600_000;
const WEEK_MS: u64 = 7 * 24 * HOUR_MS;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Pending,
    /// Waiting for its time (scheduled, or a retry after backoff).
    Delayed,
    /// Leased to a worker.
    Running,
    /// Finished successfully (while the completed window remembers it).
    Completed,
    /// Failed for good; in the dead set.
    Dead,
    /// Passed its expiry before it started; never run.
    Expired,
    /// Cancelled before it started; never run.
    Cancelled,
}

impl JobState {
    /// The lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delayed => "delayed",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Dead => "dead",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One job as found. A completed job keeps only its finish time (and result, if it recorded
/// one): its item is gone by design, so kind and arguments are `None` then.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: String,
    pub queue: String,
    pub state: JobState,
    pub kind: Option<String>,
    /// Attempts already made.
    pub attempts: u32,
    /// Attempts allowed when the job sets its own limit.
    pub max_attempts: Option<u32>,
    /// The last error.
    pub error: Option<String>,
    /// Times in ms since the epoch.
    pub enqueued_at_ms: Option<u64>,
    pub run_at_ms: Option<u64>,
    pub failed_at_ms: Option<u64>,
    pub died_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// The worker holding a running job.
    pub worker: Option<String>,
    /// For a pending job: 1 = the next to run.
    pub position: Option<u64>,
    /// The dedupe key it was enqueued with.
    pub unique: Option<String>,
    /// The arguments as stored (redact before showing them).
    pub args: Option<serde_json::Value>,
    /// What a completed job recorded.
    pub result: Option<serde_json::Value>,
    /// The tenant it was enqueued for.
    pub tenant: Option<String>,
    /// `high` or `low`; `None` for normal (or when the item is gone).
    pub priority: Option<String>,
}

impl JobView {
    fn empty(queue: &str, id: &str, state: JobState) -> Self {
        Self {
            id: id.to_owned(),
            queue: queue.to_owned(),
            state,
            kind: None,
            attempts: 0,
            max_attempts: None,
            error: None,
            enqueued_at_ms: None,
            run_at_ms: None,
            failed_at_ms: None,
            died_at_ms: None,
            finished_at_ms: None,
            worker: None,
            position: None,
            unique: None,
            args: None,
            result: None,
            tenant: None,
            priority: None,
        }
    }

    /// The view of `item`, its arguments and error opened with `queues`' payload keys.
    fn from_item(queues: &Queues, queue: &str, id: &str, state: JobState, item: &str) -> Self {
        let mut view = Self::empty(queue, id, state);
        match job::decode(item) {
            Ok((_, env)) => {
                view.args = queues.plain_args(&env);
                view.error = queues.open_error(&env);
                view.fill(env);
            }
            // Shown rather than hidden: an operator should see what is really there.
            Err(e) => view.error = Some(e.to_string()),
        }
        view
    }

    fn fill(&mut self, env: Envelope) {
        self.kind = Some(env.kind);
        self.attempts = env.attempt;
        self.max_attempts = env.max;
        self.enqueued_at_ms = Some(env.enq_us / 1000);
        self.run_at_ms = env.run_at;
        self.failed_at_ms = env.failed_at;
        self.unique = env.unique;
        self.tenant = env.tn;
        self.priority = env.pr.map(|p| p.as_str().to_owned());
    }
}

/// Jobs finished and died within recent windows, on one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recent {
    /// Completed within the last 60 s (sliding over per-minute counters).
    pub completed_last_minute: u64,
    /// Completed within the last hour (sliding over per-minute counters).
    pub completed_last_hour: u64,
    /// Dead jobs still held that died within the last 7 days.
    pub dead_last_week: u64,
}

impl Queues {
    /// How many jobs of `queue` completed or died within the recent windows, one round trip.
    ///
    /// Completions come from the per-minute counters the ack script keeps; a window that
    /// starts inside a minute takes that minute's count in proportion (a sliding-window
    /// estimate, exact at minute boundaries).
    pub async fn recent(&self, queue: &str, now_ms: u64) -> Result<Recent, QueueError> {
        let mut total = Recent::default();
        for part in self.partition_names(queue) {
            let r = self.recent_one(&part, now_ms).await?;
            total.completed_last_minute += r.completed_last_minute;
            total.completed_last_hour += r.completed_last_hour;
            total.dead_last_week += r.dead_last_week;
        }
        Ok(total)
    }

    async fn recent_one(&self, queue: &str, now_ms: u64) -> Result<Recent, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let current = now_ms / 60_000;
        let minutes: Vec<u64> = (0..=60).map(|back| current.saturating_sub(back)).collect();
        let since = format!("({}", now_ms.saturating_sub(WEEK_MS));
        let (counts, week): (Vec<Option<u64>>, u64) = redis::pipe()
            .cmd("HMGET")
            .arg(&k.throughput)
            .arg(&minutes)
            .zcount(&k.dead_at, since, "+inf")
            .query_async(&mut conn)
            .await?;
        let count = |back: usize| counts.get(back).copied().flatten().unwrap_or(0) as f64;
        // The share of the oldest minute that still lies inside the window.
        let tail = 1.0 - (now_ms % 60_000) as f64 / 60_000.0;
        let minute = count(0) + count(1) * tail;
        let hour = (0..60).map(count).sum::<f64>() + count(60) * tail;
        Ok(Recent {
            completed_last_minute: minute.round() as u64,
            completed_last_hour: hour.round() as u64,
            dead_last_week: week,
        })
    }

    /// Cancel job `id` of `queue` if it has not started (pending or delayed, among the first
    /// [`FIND_SCAN_LIMIT`] of each, in any partition): it never runs and is recorded as
    /// cancelled. False when it is in neither place (running, finished, unknown).
    pub async fn cancel(&self, queue: &str, id: &str) -> Result<bool, QueueError> {
        for part in self.partition_names(queue) {
            let k = self.keys(&part)?;
            let cancelled: i64 = scripts::CANCEL
                .key(&k.pending)
                .key(&k.delayed)
                .key(&k.cancelled)
                .key(&k.cancelled_at)
                .key(&k.stats)
                .arg(id)
                .arg(FIND_SCAN_LIMIT)
                .arg(job::now_ms())
                .arg(self.settings().completed_max)
                .arg(k.sequence_prefix())
                .invoke_async(&mut self.conn())
                .await?;
            if cancelled == 1 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Find job `id` on `queue`: among the first [`FIND_SCAN_LIMIT`] pending and delayed
    /// jobs, running (leased, or landed in a worker's inbox), completed or dead. `None` when it
    /// is in none of these.
    ///
    /// The places are read one after another, in the order a job moves through them, so a
    /// job that moves on while we look is found at its next place; a job that moved back (a
    /// retry, a rescue) between two reads is looked for once more before saying "not found".
    pub async fn find_job(&self, queue: &str, id: &str) -> Result<Option<JobView>, QueueError> {
        for _ in 0..2 {
            for part in self.partition_names(queue) {
                if let Some(view) = self.find_once(&part, id).await? {
                    return Ok(Some(view));
                }
            }
        }
        Ok(None)
    }

    async fn find_once(&self, queue: &str, id: &str) -> Result<Option<JobView>, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let found: Option<(String, String, f64)> = scripts::FIND
            .key(&k.pending)
            .key(&k.delayed)
            .arg(id)
            .arg(FIND_SCAN_LIMIT)
            .invoke_async(&mut conn)
            .await?;
        if let Some((state, item, n)) = found {
            let delayed = state == "delayed";
            let state = if delayed {
                JobState::Delayed
            } else {
                JobState::Pending
            };
            let mut view = JobView::from_item(self, queue, id, state, &item);
            if delayed {
                view.run_at_ms = Some(n as u64);
            } else {
                view.position = Some(n as u64);
            }
            return Ok(Some(view));
        }
        if let Some(view) = self.find_running(queue, id).await? {
            return Ok(Some(view));
        }
        #[allow(clippy::type_complexity)]
        let (finished, dead, died, expired, cancelled): (
            Option<f64>,
            Option<String>,
            Option<f64>,
            Option<String>,
            Option<String>,
        ) = redis::pipe()
            .zscore(&k.completed, id)
            .hget(&k.dead, id)
            .zscore(&k.dead_at, id)
            .hget(&k.expired, id)
            .hget(&k.cancelled, id)
            .query_async(&mut conn)
            .await?;
        if let Some(item) = cancelled {
            return Ok(Some(JobView::from_item(
                self,
                queue,
                id,
                JobState::Cancelled,
                &item,
            )));
        }
        if let Some(item) = expired {
            return Ok(Some(JobView::from_item(
                self,
                queue,
                id,
                JobState::Expired,
                &item,
            )));
        }
        if let Some(ms) = finished {
            let mut view = JobView::empty(queue, id, JobState::Completed);
            view.finished_at_ms = Some(ms as u64);
            view.result = self.job_result(queue, id).await?;
            return Ok(Some(view));
        }
        Ok(dead.map(|item| {
            let mut view = JobView::from_item(self, queue, id, JobState::Dead, &item);
            view.died_at_ms = died.map(|ms| ms as u64);
            view
        }))
    }

    /// The worker holding `id`, if any: its leases and its inbox (a job its blocking fetch
    /// took but has not leased yet, a few ms at most), one pipeline over all workers.
    async fn find_running(&self, queue: &str, id: &str) -> Result<Option<JobView>, QueueError> {
        let k = self.keys(queue)?;
        let mut conn = self.conn();
        let workers: Vec<String> = redis::cmd("ZRANGE")
            .arg(&k.workers)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        if workers.is_empty() {
            return Ok(None);
        }
        let mut pipe = redis::pipe();
        for w in &workers {
            pipe.lrange(k.inbox(w), 0, -1).hget(k.leased(w), id);
        }
        let held: Vec<(Vec<String>, Option<String>)> = pipe.query_async(&mut conn).await?;
        let prefix = format!("{id} ");
        Ok(workers
            .into_iter()
            .zip(held)
            .find_map(|(worker, (inbox, leased))| {
                let item = leased.or_else(|| inbox.into_iter().find(|i| i.starts_with(&prefix)))?;
                let mut view = JobView::from_item(self, queue, id, JobState::Running, &item);
                view.worker = Some(worker);
                Some(view)
            }))
    }
}
