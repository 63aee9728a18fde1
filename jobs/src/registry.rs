//! Kind name -> handler. The fleet dispatches each fetched job through it.

use std::{collections::HashMap, future::Future, sync::Arc};

use futures::{FutureExt, future::BoxFuture};

use crate::{JobArgs, JobContext, JobError};

/// A type-erased handler: decodes its arguments and runs.
pub type Handler =
    Arc<dyn Fn(&str, JobContext) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync>;

/// Every known job kind and its handler.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<&'static str, (Handler, Option<u32>)>,
}

impl Registry {
    /// Register `handler` for the kind `A`. Arguments that do not decode are a permanent
    /// failure: retrying the same bytes cannot help.
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
        self.handlers.insert(A::KIND, (erased, A::MAX_ATTEMPTS));
    }

    /// The handler for `kind`, if registered.
    pub fn get(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind).map(|(h, _)| h)
    }

    /// The kind's own attempts limit, if it sets one.
    pub fn max_attempts(&self, kind: &str) -> Option<u32> {
        self.handlers.get(kind).and_then(|(_, m)| *m)
    }

    /// Registered kind names, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<_> = self.handlers.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }
}
