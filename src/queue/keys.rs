//! Key names. Every key of one queue carries the hash tag `{<prefix>:<queue>}`, so a queue
//! lives in one Redis Cluster slot and its Lua scripts touch only that slot. A partitioned
//! queue has one tag per partition: `{<prefix>:<queue>}` for the first, `{<prefix>:<queue>#p}`
//! for partition p > 0, so its partitions spread over slots (and shards).

/// The keys of one queue.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    /// The queue's name, e.g. `webhooks` (the logical queue, for every partition).
    pub name: String,
    /// Which partition of the queue these keys are (0 when the queue is not partitioned).
    pub partition: u16,
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
    /// HASH id -> item of jobs cancelled before they started (never run).
    pub cancelled: String,
    /// ZSET id -> time of cancellation (ms); orders and trims `cancelled`.
    pub cancelled_at: String,
    /// HASH of counters: running, processed, failed, retried, dead, rescued.
    pub stats: String,
    /// HASH minute number (ms since the epoch / 60,000) -> jobs completed in that minute; the
    /// pruner drops minutes older than two hours.
    pub throughput: String,
    /// STRING present while the queue is paused.
    pub paused: String,
    /// ZSET worker id -> lease expiry (ms) of the workers fetching from this queue.
    pub workers: String,
    /// HASH id -> item of every job waiting to run (pending, in a lane, delayed, waiting
    /// behind its sequence): lookup and cancel by id without a scan. Fetch removes the entry.
    pub index: String,
    /// SET ids cancelled (or purged) while their item sat in a list; fetch and the sequence
    /// step drop them when they come up, so cancel never searches a list.
    pub tomb: String,
    /// HASH tenant -> jobs of that tenant leased now (the per-tenant concurrency cap).
    pub tenant_running: String,
    /// SET `<priority> <tenant>` taken out of their ring at the concurrency cap; a settled
    /// job of the tenant puts them back.
    pub blocked: String,
    /// ZSET `<priority> <tenant>` -> ms when the tenant's next rate window opens.
    pub throttled: String,
    /// LIST `<id> <finish ms> <kind> <tenant>` of recently completed jobs, newest first,
    /// capped like `completed` (browsing them by kind and tenant).
    pub done: String,
}

impl QueueKeys {
    /// Keys of `queue` under `prefix` (the prefix isolates deployments and tests).
    pub fn new(prefix: &str, queue: &str) -> Self {
        Self::partition(prefix, queue, 0)
    }

    /// Keys of partition `partition` of `queue` under `prefix`.
    pub fn partition(prefix: &str, queue: &str, partition: u16) -> Self {
        let tag = format!("{{{prefix}:{}}}", partition_name(queue, partition));
        let key = |name: &str| format!("{tag}:{name}");
        Self {
            name: queue.to_owned(),
            partition,
            pending: key("pending"),
            delayed: key("delayed"),
            dead: key("dead"),
            dead_at: key("dead_at"),
            completed: key("completed"),
            expired: key("expired"),
            expired_at: key("expired_at"),
            cancelled: key("cancelled"),
            cancelled_at: key("cancelled_at"),
            stats: key("stats"),
            throughput: key("throughput"),
            paused: key("paused"),
            workers: key("workers"),
            index: key("index"),
            tomb: key("tomb"),
            tenant_running: key("tenant_running"),
            blocked: key("blocked"),
            throttled: key("throttled"),
            done: key("done"),
            tag,
        }
    }

    /// What every key of this partition starts with (`{tag}:`); the scripts build the
    /// names of lanes, rings and rate windows from it.
    pub fn base(&self) -> String {
        format!("{}:", self.tag)
    }

    /// LIST of the ready items of one priority and tenant (`_`: none), FIFO.
    pub fn lane(&self, priority: &str, tenant: &str) -> String {
        format!("{}:lane:{priority}:{tenant}", self.tag)
    }

    /// LIST of the tenants with ready work at `priority`, served round robin.
    pub fn ring(&self, priority: &str) -> String {
        format!("{}:ring:{priority}", self.tag)
    }

    /// HASH id -> item of the jobs `worker` holds.
    pub fn leased(&self, worker: &str) -> String {
        format!("{}:leased:{worker}", self.tag)
    }

    /// The ack script's keys (`ack.lua`), in its order, for the lease hash `leased`.
    pub fn ack_script_keys<'a>(&'a self, leased: &'a str) -> [&'a str; 10] {
        [
            leased,
            &self.stats,
            &self.completed,
            &self.delayed,
            &self.dead,
            &self.dead_at,
            &self.pending,
            &self.throughput,
            &self.expired,
            &self.expired_at,
        ]
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

    /// HASH of the jobs completed in minute `minute` (ms since the epoch / 60,000), per
    /// kind: `n:<kind>` -> how many, `us:<kind>` -> their run time in µs summed. Expires two
    /// hours after its last write ([`super::kind_metrics`]).
    pub fn kind_minute(&self, minute: u64) -> String {
        format!("{}:kinds:{minute}", self.tag)
    }

    /// ZSET kind -> the longest run (µs) of the kind's jobs completed in minute `minute`.
    pub fn kind_minute_max(&self, minute: u64) -> String {
        format!("{}:kinds_max:{minute}", self.tag)
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

    /// The partition's name as [`Queues::keys`](super::Queues::keys) takes it.
    pub fn partition_name(&self) -> String {
        partition_name(&self.name, self.partition)
    }

    /// One example of every key a script of this queue touches, for the start-up check
    /// that they share one cluster slot.
    pub fn script_keys(&self) -> Vec<String> {
        let mut keys = vec![
            self.pending.clone(),
            self.delayed.clone(),
            self.dead.clone(),
            self.dead_at.clone(),
            self.completed.clone(),
            self.expired.clone(),
            self.expired_at.clone(),
            self.cancelled.clone(),
            self.cancelled_at.clone(),
            self.stats.clone(),
            self.throughput.clone(),
            self.paused.clone(),
            self.workers.clone(),
            self.index.clone(),
            self.tomb.clone(),
            self.tenant_running.clone(),
            self.blocked.clone(),
            self.throttled.clone(),
            self.done.clone(),
            self.lane("high", "t"),
            self.ring("low"),
            format!("{}:trate:0", self.tag),
        ];
        keys.extend([
            self.leased("w"),
            self.inbox("w"),
            self.result("j"),
            self.personal_cursor(),
            self.schedule("s"),
            self.schedule_claim("s", 0),
            self.unique("u"),
            self.sequence("k"),
        ]);
        keys
    }

    /// Pattern matching every key of this queue (for SCAN in tests and tools).
    pub fn pattern(&self) -> String {
        // `{` and `}` are not glob specials, `[` and `]` would be; queue names exclude them.
        format!("{}:*", self.tag)
    }
}

/// The name of partition `p` of `queue`: the queue's own name for the first, `queue#p` for
/// the others (`#` never occurs in a queue name).
pub fn partition_name(queue: &str, p: u16) -> String {
    if p == 0 {
        queue.to_owned()
    } else {
        format!("{queue}#{p}")
    }
}

/// `queue` or `queue#p` split into the queue and the partition; `None` when `p` is not a
/// number. (`queue#0` names the first partition alone, where `queue` may mean them all.)
pub fn split_partition(name: &str) -> Option<(&str, u16)> {
    match name.split_once('#') {
        None => Some((name, 0)),
        Some((queue, p)) => p.parse().ok().map(|p| (queue, p)),
    }
}

/// The names that show `queue` partition by partition: `queue#0` ... `queue#<P-1>`, or just
/// `queue` when it has one partition.
pub fn partition_labels(queue: &str, partitions: u16) -> Vec<String> {
    if partitions <= 1 {
        return vec![queue.to_owned()];
    }
    (0..partitions).map(|p| format!("{queue}#{p}")).collect()
}

/// The partition (of `n`) a job with this sequence or dedupe key goes to: FNV-1a, stable
/// across processes and builds.
pub fn partition_of(key: &str, n: u16) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % u32::from(n.max(1))) as u16
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

    #[test]
    fn partitions_have_tags_of_their_own() {
        let first = QueueKeys::partition("sb", "webhooks", 0);
        let third = QueueKeys::partition("sb", "webhooks", 2);
        assert_eq!(first.pending, "{sb:webhooks}:pending");
        assert_eq!(third.pending, "{sb:webhooks#2}:pending");
        assert_eq!(third.name, "webhooks");
        assert_eq!(third.partition_name(), "webhooks#2");
        for key in third.script_keys() {
            assert!(key.starts_with("{sb:webhooks#2}:"), "{key}");
        }
        assert_eq!(split_partition("webhooks#2"), Some(("webhooks", 2)));
        assert_eq!(split_partition("webhooks"), Some(("webhooks", 0)));
        assert_eq!(split_partition("webhooks#0"), Some(("webhooks", 0)));
        assert_eq!(
            partition_labels("webhooks", 2),
            ["webhooks#0", "webhooks#1"]
        );
        assert_eq!(partition_labels("calendar", 1), ["calendar"]);
        assert_eq!(split_partition("webhooks#x"), None);
        let spread: std::collections::HashSet<u16> = (0..100)
            .map(|i| partition_of(&format!("call_{i}"), 3))
            .collect();
        assert_eq!(spread.len(), 3);
        assert_eq!(partition_of("call_7", 3), partition_of("call_7", 3));
    }
}
