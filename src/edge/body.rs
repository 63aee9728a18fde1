//! The request body under a deadline: [`TimedBody`] wraps every request body, so whichever
//! handler reads it (ingest with its size limit, a dashboard form) gets an error instead of
//! waiting on a client that sends nothing or dribbles. [`BodyWatch`] tells the service what
//! happened, so it answers 408 whatever the handler made of the error.
//!
//! The deadline follows the bytes: `head + grace + received / min_rate`, never later than
//! `head + timeout`. A client that keeps up the minimum rate after the grace is never cut
//! before the hard limit; one that stalls is cut a grace (or what its bytes earned) later.

use std::{
    future::Future as _,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// A body too slow for the edge limits.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(crate) struct BodyTimeout;

/// `[http]`'s body limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// The whole body within this long of the head.
    pub(crate) timeout: Duration,
    /// How long before the minimum rate applies.
    pub(crate) grace: Duration,
    /// Bytes per second the body must keep up after the grace.
    pub(crate) min_bytes_per_sec: u64,
}

impl BodyLimits {
    /// The body's deadline after `received` bytes of a request whose head came at `head`.
    pub(crate) fn deadline(&self, head: Instant, received: u64) -> Instant {
        let earned =
            Duration::from_secs_f64(received as f64 / self.min_bytes_per_sec.max(1) as f64);
        head + (self.grace + earned).min(self.timeout)
    }
}

/// What the service needs to know about its request's body.
#[derive(Debug, Default)]
pub(crate) struct BodyWatch {
    timed_out: AtomicBool,
    waiting: AtomicBool,
}

impl BodyWatch {
    /// The body missed its deadline.
    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// The handler is waiting for body bytes that have not come.
    pub(crate) fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }
}

pin_project! {
    /// A request body that fails with [`BodyTimeout`] once past its [`BodyLimits`] deadline.
    pub(crate) struct TimedBody<B> {
        #[pin]
        inner: B,
        limits: BodyLimits,
        head: Instant,
        received: u64,
        // Created at the first wait, so a body nobody reads costs no timer.
        timer: Option<Pin<Box<Sleep>>>,
        watch: Arc<BodyWatch>,
    }
}

impl<B> TimedBody<B> {
    /// `inner`, the body of a request whose head was parsed just now.
    pub(crate) fn new(inner: B, limits: BodyLimits, watch: Arc<BodyWatch>) -> Self {
        Self {
            inner,
            limits,
            head: Instant::now(),
            received: 0,
            timer: None,
            watch,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if this.watch.timed_out() {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        let polled = this.inner.poll_frame(cx);
        let Poll::Ready(frame) = polled else {
            let deadline = this.limits.deadline(*this.head, *this.received);
            let deadline = tokio::time::Instant::from_std(deadline);
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                this.watch.waiting.store(false, Ordering::Relaxed);
                this.watch.timed_out.store(true, Ordering::Relaxed);
                return Poll::Ready(Some(Err(BodyTimeout.into())));
            }
            this.watch.waiting.store(true, Ordering::Relaxed);
            return Poll::Pending;
        };
        this.watch.waiting.store(false, Ordering::Relaxed);
        Poll::Ready(match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.received += data.len() as u64;
                }
                Some(Ok(frame))
            }
            Some(Err(e)) => Some(Err(e.into())),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    // Passed on, so a declared length over a handler's limit is refused before any read.
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_a_grace_plus_what_the_bytes_earned_up_to_the_hard_limit() {
        let limits = BodyLimits {
            timeout: Duration::from_secs(30),
            grace: Duration::from_secs(2),
            min_bytes_per_sec: 1000,
        };
        let head = Instant::now();
        let after = |received| limits.deadline(head, received) - head;
        assert_eq!(
            after(0),
            Duration::from_secs(2),
            "a stalled body: the grace"
        );
        assert_eq!(after(500), Duration::from_millis(2500));
        assert_eq!(after(10_000), Duration::from_secs(12));
        assert_eq!(
            after(1_000_000),
            Duration::from_secs(30),
            "never past the limit"
        );
    }
}
