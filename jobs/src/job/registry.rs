//! Kind name -> handler and policy. The fleet dispatches each fetched job through it.

use std::{future::Future, sync::Arc};

use futures::{FutureExt, future::BoxFuture};

use super::{JobArgs, JobContext, JobError, Policy};
use crate::names::NameMap;

/// A type-erased handler: decodes its arguments and runs.
pub type Handler =
    Arc<dyn Fn(&str, JobContext) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

/// One registered kind.
#[derive(Clone)]
struct Entry {
    handler: Handler,
    /// The kind's [`JobArgs::POLICY`], recorded at registration.
    policy: Policy,
    /// The kind's [`JobArgs::QUEUE`]: where its jobs go unless told otherwise.
    queue: &'static str,
}

/// Every known job kind, its handler and its policy.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: NameMap<&'static str, Entry>,
}

impl Registry {
    /// Register `handler` for the kind `A`, with `A::POLICY`. Arguments that do not decode
    /// are a permanent failure: retrying the same bytes cannot help.
    pub fn register<A, F, Fut>(&mut self, handler: F)
    where
        A: JobArgs,
        F: Fn(A, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Handler = Arc::new(
            move |json: &str, ctx: JobContext| match serde_json::from_str::<A>(json) {
                Ok(args) => handler(args, ctx).boxed(),
                Err(e) => {
                    let err =
                        JobError::permanent(format!("arguments of {} do not decode: {e}", A::KIND));
                    futures::future::ready(Err(err)).boxed()
                }
            },
        );
        let entry = Entry {
            handler: erased,
            policy: A::POLICY,
            queue: A::QUEUE,
        };
        self.kinds.insert(A::KIND, entry);
    }

    /// The handler for `kind`, if registered.
    pub fn get(&self, kind: &str) -> Option<&Handler> {
        self.kinds.get(kind).map(|e| &e.handler)
    }

    /// The policy of `kind`; [`Policy::DEFAULT`] (all from the supervisor) for a kind not
    /// registered here.
    pub fn policy(&self, kind: &str) -> Policy {
        self.kinds.get(kind).map_or(Policy::DEFAULT, |e| e.policy)
    }

    /// The default queue of `kind` ([`JobArgs::QUEUE`]), if registered.
    pub fn queue(&self, kind: &str) -> Option<&'static str> {
        self.kinds.get(kind).map(|e| e.queue)
    }

    /// Registered kind names, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.kinds.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Patient;

    impl JobArgs for Patient {
        const KIND: &'static str = "test.patient";
        const QUEUE: &'static str = "test";
        const POLICY: Policy = Policy::DEFAULT
            .max_attempts(7)
            .timeout(Duration::from_secs(90))
            .retry_budget(Duration::from_secs(3600));
    }

    #[derive(Serialize, Deserialize)]
    struct Plain;

    impl JobArgs for Plain {
        const KIND: &'static str = "test.plain";
        const QUEUE: &'static str = "test";
    }

    #[test]
    fn the_registry_keeps_each_kinds_policy() {
        let mut registry = Registry::default();
        registry.register::<Patient, _, _>(|_, _| async { Ok(()) });
        registry.register::<Plain, _, _>(|_, _| async { Ok(()) });
        assert_eq!(registry.policy("test.patient"), Patient::POLICY);
        assert_eq!(registry.policy("test.patient").max_attempts, Some(7));
        assert_eq!(
            registry.policy("test.patient").retry_budget,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(registry.policy("test.plain"), Policy::DEFAULT);
        assert_eq!(
            registry.policy("test.unknown"),
            Policy::DEFAULT,
            "an unknown kind defers to the supervisor"
        );
        assert_eq!(registry.kinds(), ["test.patient", "test.plain"]);
        assert_eq!(registry.queue("test.plain"), Some("test"));
        assert_eq!(registry.queue("test.unknown"), None);
    }

    /// An enqueuer for handlers that never enqueue.
    struct NoEnqueue;

    impl crate::Enqueuer for NoEnqueue {
        fn enqueue_json(
            &self,
            _: &str,
            _: u16,
            _: String,
            _: &str,
            _: crate::EnqueueOptions,
        ) -> BoxFuture<'_, Result<String, crate::EnqueueError>> {
            unreachable!("these handlers enqueue nothing")
        }
    }

    #[test]
    fn a_re_registered_kind_runs_the_new_handler_and_bad_arguments_are_permanent() {
        let mut registry = Registry::default();
        registry.register::<Patient, _, _>(|_, _| async { Err(JobError::retry("first")) });
        registry.register::<Patient, _, _>(|_, _| async { Ok(()) });
        assert_eq!(registry.kinds(), ["test.patient"]);
        let ctx = || {
            let meta = crate::JobMeta {
                id: "j1".into(),
                queue: "test".into(),
                kind: Patient::KIND.into(),
                attempt: 1,
            };
            JobContext::new(meta, Arc::new(NoEnqueue))
        };
        let handler = registry.get("test.patient").unwrap();
        assert!(futures::executor::block_on(handler("null", ctx())).is_ok());
        let bad = futures::executor::block_on(handler("{\"not\": \"unit\"}", ctx()));
        assert!(
            matches!(&bad, Err(JobError::Permanent(r)) if r.contains("test.patient")),
            "{bad:?}"
        );
        assert!(registry.get("test.unknown").is_none());
    }
}
