//! What one connection is doing ([`Activity`]): a request in flight, or idle since when, and
//! whether the next request head has begun; and from that, when the connection must be
//! closed and why. Shared by the connection's socket wrapper, its service and its driver.
//!
//! The head and idle clocks (see `conn` for why they are ours): a new connection's first
//! head must be complete within `header_read` of the accept; a keep-alive connection may
//! wait `idle` for its next request, whose head then must be complete within `header_read`
//! of its first byte. Bytes that arrive while a request is in flight (pipelined) do not
//! start the head clock; the idle clock covers them.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{
    limits::{Limits, Shed},
    table::Occupant,
};

/// What one connection is doing, shared by its socket wrapper, its service and its driver.
pub(crate) struct Activity {
    state: Mutex<State>,
    /// Wakes the driver to recompute its deadline after a change of state.
    pub(crate) changed: Notify,
    /// Cancelled when the listener closes this connection to make room.
    pub(crate) evict: CancellationToken,
}

struct State {
    /// Requests whose response has not been written (more than one only when pipelined).
    in_flight: u32,
    /// When the connection was accepted or its last response finished; meaningful while
    /// `in_flight == 0`.
    idle_since: Instant,
    /// When the first byte of the next request head arrived; `None` until then, and reset
    /// when that request starts.
    head_started: Option<Instant>,
    /// Requests started on this connection.
    served: u64,
}

impl Activity {
    /// A connection accepted at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: now,
                head_started: None,
                served: 0,
            }),
            changed: Notify::new(),
            evict: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain counters: one left by a panicking holder is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived from the client.
    pub(crate) fn on_read(&self) {
        let mut s = self.lock();
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A request head was parsed; the connection is busy until the guard drops (when its
    /// response has been written).
    pub(crate) fn request_started(self: &Arc<Self>) -> InFlight {
        let mut s = self.lock();
        s.in_flight += 1;
        s.served += 1;
        s.head_started = None;
        drop(s);
        self.changed.notify_one();
        InFlight(Arc::clone(self))
    }

    /// When this connection must be closed unless something happens first, and why; `None`
    /// while a request is in flight (the request and body timeouts cover that).
    pub(crate) fn deadline(&self, limits: &Limits) -> Option<(Instant, Shed)> {
        let s = self.lock();
        if s.in_flight > 0 {
            return None;
        }
        Some(match (s.served, s.head_started) {
            // The first head counts from the accept, however early its first byte came.
            (0, _) => (s.idle_since + limits.header_read, Shed::HeaderTimeout),
            (_, Some(first_byte)) => (first_byte + limits.header_read, Shed::HeaderTimeout),
            (_, None) => (s.idle_since + limits.idle, Shed::Idle),
        })
    }
}

impl Occupant for Arc<Activity> {
    fn idle_since(&self) -> Option<Instant> {
        let s = self.lock();
        (s.in_flight == 0).then_some(s.idle_since)
    }
}

/// A request in flight on a connection; dropped once its response has been written.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.idle_since = Instant::now();
        }
        drop(s);
        self.0.changed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Settings;

    #[test]
    fn the_first_head_counts_from_the_accept_then_idle_then_the_next_heads_first_byte() {
        let mut http = Settings::defaults().http;
        http.header_read_timeout_ms = 500;
        http.idle_timeout_secs = 60;
        let limits = Limits::new(&http, None);
        let accepted = Instant::now();
        let activity = Arc::new(Activity::new(accepted));
        let first = activity.deadline(&limits).unwrap();
        assert_eq!(first, (accepted + limits.header_read, Shed::HeaderTimeout));
        activity.on_read();
        assert_eq!(
            activity.deadline(&limits),
            Some(first),
            "a byte buys no time"
        );

        let request = activity.request_started();
        assert_eq!(
            activity.deadline(&limits),
            None,
            "busy: no connection deadline"
        );
        assert_eq!(activity.idle_since(), None);
        drop(request);
        let (at, why) = activity.deadline(&limits).unwrap();
        assert_eq!(why, Shed::Idle);
        assert!(at >= accepted + Duration::from_secs(60));

        activity.on_read();
        let (at, why) = activity.deadline(&limits).unwrap();
        assert_eq!(why, Shed::HeaderTimeout);
        assert!(
            at < accepted + Duration::from_secs(60),
            "the next head is on the clock"
        );
    }
}
