//! The bench's job mix: which sequence key, tenant and priority job `b<i>` carries, and the
//! untimed enqueue of the whole mix. A plain mix goes through the batched producer
//! (`enqueue_many`); any key, tenant or priority goes through the one-job producer path with
//! those options set, as ingest and the API enqueue them.

use std::sync::Arc;

use switchboard_jobs::{EnqueueOptions, Priority, noop::Noop};

use crate::queue::Queues;

/// How the bench's jobs are spread over sequence keys, tenants and priorities.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mix {
    /// Job i waits in line under sequence key `k<i mod keys>` (0: no keys).
    pub keys: usize,
    /// Job i is served in tenant `t<i mod tenants>`'s turn (0: no tenant).
    pub tenants: usize,
    /// Of every 4 jobs, 1 runs `high`, 2 `normal` and 1 `low` (false: no priority set).
    pub priorities: bool,
}

/// Concurrent producers for the one-job path.
const PRODUCERS: usize = 64;
/// Jobs per `enqueue_many` call for a plain mix.
const CHUNK: usize = 10_000;

impl Mix {
    /// No key, tenant or priority: the batched path serves it.
    pub fn is_plain(self) -> bool {
        self.keys == 0 && self.tenants == 0 && !self.priorities
    }

    /// The priority of job `i`: 1 high : 2 normal : 1 low.
    pub fn priority(i: usize) -> Priority {
        match i % 4 {
            0 => Priority::High,
            3 => Priority::Low,
            _ => Priority::Normal,
        }
    }

    /// The enqueue options of job `i` on `queue`; with `numbered` its id is `b<i>`.
    pub fn options(self, queue: &str, i: usize, numbered: bool) -> EnqueueOptions {
        let mut options = EnqueueOptions::default().on_queue(queue);
        if numbered {
            options = options.with_id(format!("b{i}"));
        }
        if self.keys > 0 {
            options = options.sequence(format!("k{}", i % self.keys));
        }
        if self.tenants > 0 {
            options = options.tenant(format!("t{}", i % self.tenants));
        }
        if self.priorities {
            options = options.priority(Self::priority(i));
        }
        options
    }

    /// Which producer enqueues job `i`: one producer owns each sequence key, so each key's
    /// jobs are enqueued in order of i.
    fn producer(self, i: usize) -> usize {
        let owner = if self.keys > 0 { i % self.keys } else { i };
        owner % PRODUCERS
    }

    /// Enqueue `jobs` noop jobs on `queue` with this mix: with `numbered` they are `b0 ..
    /// b<jobs>` (the drain counts runs by id), else their ids are generated as in production
    /// (the same length as real jobs' ids, which the memory bench needs).
    pub async fn enqueue(
        self,
        queues: &Queues,
        queue: &str,
        jobs: usize,
        numbered: bool,
    ) -> anyhow::Result<()> {
        if self.is_plain() {
            for start in (0..jobs).step_by(CHUNK) {
                let end = (start + CHUNK).min(jobs);
                let ids: Vec<String> = (start..end).map(|i| format!("b{i}")).collect();
                let args = vec![Noop::default(); end - start];
                queues
                    .enqueue_many(queue, &args, numbered.then_some(&ids[..]))
                    .await?;
            }
            return Ok(());
        }
        let queue: Arc<str> = queue.into();
        let mut tasks = Vec::with_capacity(PRODUCERS);
        for p in 0..PRODUCERS {
            let (queues, queue) = (queues.clone(), Arc::clone(&queue));
            tasks.push(tokio::spawn(async move {
                for i in (0..jobs).filter(|&i| self.producer(i) == p) {
                    queues
                        .enqueue(&Noop::default(), self.options(&queue, i, numbered))
                        .await?;
                }
                Ok::<_, anyhow::Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    }

    /// The mix as fields of a bench's JSON line.
    pub fn describe(self, line: &mut serde_json::Value) {
        line["keys"] = self.keys.into();
        line["tenants"] = self.tenants.into();
        line["priorities"] = if self.priorities {
            "1 high : 2 normal : 1 low".into()
        } else {
            serde_json::Value::Null
        };
    }
}
