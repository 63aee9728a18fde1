//! Key names. Every key of one queue carries the hash tag `{<prefix>:<queue>}`, so a queue
//! lives in one Redis Cluster slot and its Lua scripts touch only that slot.

/// The keys of one queue.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    /// The queue's name, e.g. `webhooks`.
    pub name: String,
    tag: String,
    /// LIST of ready items; producers LPUSH, workers pop from the right (FIFO).
    pub pending: String,
    /// ZSET item -> due time (ms): scheduled jobs and retries waiting for their time.
    pub delayed: String,
    /// HASH id -> item of jobs that failed for good, with their last error.
    pub dead: String,
    /// ZSET id -> time of death (ms); orders and trims `dead`.
    pub dead_at: String,
    /// ZSET id -> finish time (ms) of recently completed jobs, trimmed by window and count.
    pub completed: String,
    /// HASH id -> item of jobs that expired before they started (never run, not dead).
    pub expired: String,
    /// ZSET id -> time of expiry (ms); orders and trims `expired`.
    pub expired_at: String,
    /// HASH of counters: running, processed, failed, retried, dead, rescued.
    pub stats: String,
    /// HASH minute number (ms since the epoch / 60,000) -> jobs completed in that minute; the
    /// pruner drops minutes older than two hours.
    pub throughput: String,
    /// STRING present while the queue is paused.
    pub paused: String,
    /// ZSET worker id -> lease expiry (ms) of the workers fetching from this queue.
    pub workers: String,
}

impl QueueKeys {
    /// Keys of `queue` under `prefix` (the prefix isolates deployments and tests).
    pub fn new(prefix: &str, queue: &str) -> Self {
        let tag = format!("{{{prefix}:{queue}}}");
        let key = |name: &str| format!("{tag}:{name}");
        Self {
            name: queue.to_owned(),
            pending: key("pending"),
            delayed: key("delayed"),
            dead: key("dead"),
            dead_at: key("dead_at"),
            completed: key("completed"),
            expired: key("expired"),
            expired_at: key("expired_at"),
            stats: key("stats"),
            throughput: key("throughput"),
            paused: key("paused"),
            workers: key("workers"),
            tag,
        }
    }

    /// HASH id -> item of the jobs `worker` holds.
    pub fn leased(&self, worker: &str) -> String {
        format!("{}:leased:{worker}", self.tag)
    }

    /// LIST where `worker`'s blocking fetch lands a job before it is leased.
    pub fn inbox(&self, worker: &str) -> String {
        format!("{}:inbox:{worker}", self.tag)
    }

    /// STRING: the JSON result a completed job recorded, expiring with the completed window.
    pub fn result(&self, id: &str) -> String {
        format!("{}:result:{id}", self.tag)
    }

    /// HASH set name (`dead`, `expired`) -> the death or expiry time (ms) up to which the
    /// pruner has looked for jobs of personal kinds, so each job is looked at about once.
    pub fn personal_cursor(&self) -> String {
        format!("{}:personal_cursor", self.tag)
    }

    /// HASH of a schedule's state: `last_tick` (ms, the newest tick handled by any
    /// instance), `last_fired_ms`, `last_job`.
    pub fn schedule(&self, name: &str) -> String {
        format!("{}:schedule:{name}", self.tag)
    }

    /// STRING claim of one tick of a schedule, with a TTL: whoever sets it enqueues.
    pub fn schedule_claim(&self, name: &str, tick_ms: i64) -> String {
        format!("{}:schedule:{name}:{tick_ms}", self.tag)
    }

    /// STRING dedupe key -> first job id.
    pub fn unique(&self, key: &str) -> String {
        format!("{}:unique:{key}", self.tag)
    }

    /// LIST of one sequence: the id of the job that is out, then the waiting successors.
    pub fn sequence(&self, key: &str) -> String {
        format!("{}{key}", self.sequence_prefix())
    }

    /// What every sequence key of this queue starts with (the scripts append the key).
    pub fn sequence_prefix(&self) -> String {
        format!("{}:seq:", self.tag)
    }

    /// Pattern matching every key of this queue (for SCAN in tests and tools).
    pub fn pattern(&self) -> String {
        // `{` and `}` are not glob specials, `[` and `]` would be; queue names exclude them.
        format!("{}:*", self.tag)
    }
}

/// STRING: the maintenance leader lease under a prefix (holder token, with a TTL).
pub fn leader_key(prefix: &str) -> String {
    format!("{prefix}:leader")
}

/// The set of queue names known under a prefix, so `status` can list queues nobody works.
pub fn registry_key(prefix: &str) -> String {
    format!("{prefix}:queues")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_hash_tag() {
        let k = QueueKeys::new("sb", "webhooks");
        for key in [
            &k.pending,
            &k.delayed,
            &k.dead,
            &k.dead_at,
            &k.completed,
            &k.stats,
            &k.throughput,
            &k.paused,
            &k.workers,
        ] {
            assert!(key.starts_with("{sb:webhooks}:"), "{key}");
        }
        assert_eq!(k.leased("w1"), "{sb:webhooks}:leased:w1");
        assert_eq!(k.unique("evt_1"), "{sb:webhooks}:unique:evt_1");
    }
}
