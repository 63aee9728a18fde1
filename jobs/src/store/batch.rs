//! Group commit for concurrent handlers: each handler hands one item to a [`Batcher`] and
//! waits for its own result; a few flusher tasks each take whatever items are waiting (up to
//! a maximum) and write them together, in one transaction of a few multi-row statements.
//! Under light load a batch is one item and nothing waits for company; under load, items
//! queue up while a flush runs, so the next flush takes many and commits once for all.
//!
//! What must stay true: every item gets exactly one answer (its own result, or the error of
//! its batch); a handler whose answer never comes (the flusher died) gets an error, never a
//! hang; the order items arrived in is the order they are handed to the flush.

use std::{future::Future, pin::Pin, sync::Arc};

use tokio::sync::{Mutex, mpsc, oneshot};

/// One item and where its answer goes.
struct Slot<I, O> {
    item: I,
    answer: oneshot::Sender<O>,
}

/// A flush: the items of one batch in, one answer per item out, in the same order.
pub(crate) type Flush<I, O> =
    Arc<dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Vec<O>> + Send>> + Send + Sync>;

/// Hands items to the flusher tasks.
pub(crate) struct Batcher<I, O> {
    queue: mpsc::UnboundedSender<Slot<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Start `flushers` tasks on the current runtime, each flushing up to `max` items at once.
    pub(crate) fn start(flushers: usize, max: usize, flush: &Flush<I, O>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel::<Slot<I, O>>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..flushers.max(1) {
            let (rx, flush) = (Arc::clone(&rx), Arc::clone(flush));
            tokio::spawn(async move {
                while let Some(slots) = take(&rx, max.max(1)).await {
                    let (items, answers): (Vec<I>, Vec<_>) =
                        slots.into_iter().map(|s| (s.item, s.answer)).unzip();
                    let results = flush(items).await;
                    for (answer, result) in answers.into_iter().zip(results) {
                        // The handler may have given up waiting (its job timed out): the
                        // write stands, and its retry finds it done.
                        let _ = answer.send(result);
                    }
                }
            });
        }
        Self { queue }
    }

    /// Hand `item` over and wait for its answer; `None` when the flushers are gone.
    #[tracing::instrument(level = "debug", name = "db", skip_all, fields(otel.name = "db batch.submit", otel.kind = "client", db.operation.name = "batch.submit"))]
    pub(crate) async fn submit(&self, item: I) -> Option<O> {
        let (answer, result) = oneshot::channel();
        self.queue.send(Slot { item, answer }).ok()?;
        result.await.ok()
    }
}

/// Wait for one item, then take every item already waiting, up to `max`; `None` when every
/// sender is gone.
async fn take<I, O>(
    rx: &Mutex<mpsc::UnboundedReceiver<Slot<I, O>>>,
    max: usize,
) -> Option<Vec<Slot<I, O>>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut slots = vec![first];
    while slots.len() < max {
        match rx.try_recv() {
            Ok(slot) => slots.push(slot),
            Err(_) => break,
        }
    }
    Some(slots)
}
