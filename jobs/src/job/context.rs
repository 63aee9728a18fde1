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

    /// Enqueue typed follow-up work, at the kind's [`JobArgs::PRIORITY`] unless `options`
    /// name one.
    pub async fn enqueue<A: JobArgs>(
        &self,
        args: &A,
        mut options: EnqueueOptions,
    ) -> Result<String, EnqueueError> {
        options.priority.get_or_insert(A::PRIORITY);
        let json = serde_json::to_string(args).map_err(|e| EnqueueError(e.to_string()))?;
        let queue = options.queue.clone().unwrap_or_else(|| A::QUEUE.to_owned());
        self.enqueuer
            .enqueue_json(A::KIND, A::VERSION, json, &queue, options)
            .await
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::Priority;

    #[derive(Serialize, Deserialize)]
    struct Urgent;

    impl JobArgs for Urgent {
        const KIND: &'static str = "test.urgent";
        const QUEUE: &'static str = "test";
        const PRIORITY: Priority = Priority::High;
    }

    /// Records the options of every enqueue.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<EnqueueOptions>>);

    impl Enqueuer for Recorder {
        fn enqueue_json(
            &self,
            _: &str,
            _: u16,
            _: String,
            _: &str,
            options: EnqueueOptions,
        ) -> BoxFuture<'_, Result<String, EnqueueError>> {
            self.0.lock().unwrap().push(options);
            Box::pin(async { Ok("id".to_owned()) })
        }
    }

    #[tokio::test]
    async fn typed_enqueue_takes_the_kinds_priority_unless_told() {
        let recorder = Arc::new(Recorder::default());
        let meta = JobMeta {
            id: "j".into(),
            queue: "test".into(),
            kind: "test.urgent".into(),
            attempt: 1,
        };
        let ctx = JobContext::new(meta, Arc::clone(&recorder) as Arc<dyn Enqueuer>);
        ctx.enqueue(&Urgent, EnqueueOptions::default().tenant("7"))
            .await
            .unwrap();
        ctx.enqueue(&Urgent, EnqueueOptions::default().priority(Priority::Low))
            .await
            .unwrap();
        let seen = recorder.0.lock().unwrap();
        assert_eq!(seen[0].priority, Some(Priority::High));
        assert_eq!(seen[0].tenant.as_deref(), Some("7"));
        assert_eq!(seen[1].priority, Some(Priority::Low), "the caller's wins");
    }
}
