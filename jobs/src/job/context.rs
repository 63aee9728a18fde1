//! What a handler receives besides its arguments.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::{EnqueueOptions, JobArgs};

/// Facts about the running job.
#[derive(Debug, Clone)]
pub struct JobMeta {
    /// The job's id.
    pub id: String,
    /// The queue it was fetched from.
    pub queue: String,
    /// Kind name.
    pub kind: String,
    /// 1 on the first run, 2 on the first retry, ...
    pub attempt: u32,
}

/// Failure to enqueue follow-up work.
#[derive(Debug, thiserror::Error)]
#[error("enqueue failed: {0}")]
pub struct EnqueueError(pub String);

/// The capability to create jobs, implemented by the runtime's queue backend.
pub trait Enqueuer: Send + Sync {
    /// Enqueue a job of `kind` (arguments already serialized as JSON) and return its id,
    /// or the first job's id when a unique key suppressed it.
    fn enqueue_json(
        &self,
        kind: &str,
        version: u16,
        args_json: String,
        queue: &str,
        options: EnqueueOptions,
    ) -> BoxFuture<'_, Result<String, EnqueueError>>;
}

/// Everything a handler may use: job facts, the enqueue capability and a slot for the
/// job's result (what operators read back, e.g. a reconciliation's counts).
#[derive(Clone)]
pub struct JobContext {
    /// The running job.
    pub meta: JobMeta,
    enqueuer: Arc<dyn Enqueuer>,
    result: Arc<Mutex<Option<serde_json::Value>>>,
}

impl JobContext {
    /// A context for the job described by `meta`.
    pub fn new(meta: JobMeta, enqueuer: Arc<dyn Enqueuer>) -> Self {
        Self {
            meta,
            enqueuer,
            result: Arc::default(),
        }
    }

    /// Record the job's result; the runtime stores it with the completed job when the
    /// handler succeeds (kept for the completed-jobs window). A second call replaces it.
    pub fn set_result(&self, value: serde_json::Value) {
        *self
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(value);
    }

    /// The result recorded so far, if any.
    pub fn result(&self) -> Option<serde_json::Value> {
        self.result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Enqueue typed follow-up work.
    pub async fn enqueue<A: JobArgs>(
        &self,
        args: &A,
        options: EnqueueOptions,
    ) -> Result<String, EnqueueError> {
        let json = serde_json::to_string(args).map_err(|e| EnqueueError(e.to_string()))?;
        let queue = options.queue.clone().unwrap_or_else(|| A::QUEUE.to_owned());
        self.enqueuer
            .enqueue_json(A::KIND, A::VERSION, json, &queue, options)
            .await
    }
}
