//! The HTTP listener's edge: our own accept loop over hyper's HTTP/1 connections, holding
//! every connection to the `[http]` limits so stalled or idle sockets cannot pin descriptors
//! or handlers (issue 13). [`serve`] is what `app::run` calls for its listener.
//!
//! * `table`: who is open, from where, and who goes when the listener is full (pure).
//! * `limits`: `[http]` as durations and the cap in force; the reasons for shedding.
//! * `activity`: what one connection is doing, and when it must be closed if idle.
//! * `conn`: one connection's socket and driver (hyper until it ends, times out or goes).
//! * `service`: `ConnectInfo`, the body deadline's 408, the request timeout.
//! * `body`: the request body under a deadline that follows its bytes.
//!
//! What must stay true: the table never holds more than the cap, and the cap stays below the
//! descriptor limit less [`FD_RESERVE`]; at the cap a new connection takes the place of the
//! one idle the longest, so a flood of idle sockets cannot starve real requests; accept
//! failures never spin; each episode of shedding is logged once when it starts and once when
//! it ends, and every shed connection is counted by reason.

mod activity;
mod body;
mod conn;
mod limits;
mod service;
mod table;

pub use self::limits::{FD_RESERVE, Limits, fd_limit};

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::{
    activity::Activity,
    conn::Ended,
    limits::Shed,
    service::EdgeService,
    table::{Admission, Episode, Refusal, Table},
};
use crate::telemetry::metric;

/// How long accept pauses after it failed (out of descriptors, or anything else).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(5);
/// Idle connections closed when accept finds no descriptor left.
const EVICT_ON_EMFILE: usize = 8;
/// An episode of shedding ends after this long without any.
const QUIET: Duration = Duration::from_secs(1);

/// The listener's shared state: what every connection is served with, the table and its
/// episodes.
struct Listener {
    router: Router,
    limits: Limits,
    stop: CancellationToken,
    tracker: TaskTracker,
    table: Mutex<Table<Arc<Activity>>>,
    episodes: Mutex<Episodes>,
}

#[derive(Default)]
struct Episodes {
    cap: Episode,
    per_ip: Episode,
    accept: Episode,
}

/// Serve `router` on `listener` under `limits` until `stop`; then stop accepting, let each
/// connection finish its request in flight, and return once all are closed.
pub async fn serve(listener: TcpListener, router: Router, limits: Limits, stop: CancellationToken) {
    tracing::info!(
        max_connections = limits.max_connections,
        max_connections_per_ip = limits.max_connections_per_ip,
        "http connection cap in force"
    );
    let shared = Arc::new(Listener {
        router,
        limits,
        stop: stop.clone(),
        tracker: TaskTracker::new(),
        table: Mutex::new(Table::new(
            limits.max_connections,
            limits.max_connections_per_ip,
        )),
        episodes: Mutex::new(Episodes::default()),
    });
    let mut tick = tokio::time::interval(QUIET);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => shared.end_quiet_episodes(),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => shared.admit(stream, peer),
                Err(e) => shared.accept_failed(&e).await,
            },
        }
    }
    drop(listener);
    shared.tracker.close();
    shared.tracker.wait().await;
    let left = shared.table().drain().len();
    metric::http_connections(-(left as f64));
}

impl Listener {
    fn table(&self) -> std::sync::MutexGuard<'_, Table<Arc<Activity>>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn episodes(&self) -> std::sync::MutexGuard<'_, Episodes> {
        self.episodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admit (or close at once) one accepted connection and spawn its driver.
    fn admit(self: &Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let activity = Arc::new(Activity::new(Instant::now()));
        let admission = self.table().admit(peer.ip(), Arc::clone(&activity));
        let id = match admission {
            Admission::Admitted { id, evicted: None } => id,
            Admission::Admitted {
                id,
                evicted: Some(victim),
            } => {
                victim.evict.cancel();
                metric::http_connections(-1.0);
                Shed::Cap.count(1);
                self.note_cap(1, 0);
                id
            }
            Admission::Refused(why) => {
                // Dropping the stream closes it at once.
                drop(stream);
                match why {
                    Refusal::Full => {
                        Shed::Cap.count(1);
                        self.note_cap(0, 1);
                    }
                    Refusal::PerIp => {
                        Shed::PerIp.count(1);
                        if self.episodes().per_ip.record(Instant::now(), 0, 1) {
                            tracing::warn!(
                                client = %peer.ip(),
                                "http per-address connection cap reached: {} open from {}; closing its new connections",
                                self.limits.max_connections_per_ip,
                                peer.ip()
                            );
                        }
                    }
                }
                return;
            }
        };
        metric::http_connections(1.0);
        let service = EdgeService {
            router: self.router.clone(),
            peer,
            activity: Arc::clone(&activity),
            limits: self.limits,
        };
        let shared = Arc::clone(self);
        self.tracker.spawn(async move {
            let ended =
                conn::drive(stream, peer, activity, service, shared.limits, &shared.stop).await;
            shared.closed(id, ended);
        });
    }

    /// Count a connection cap shedding; warn when it starts an episode.
    fn note_cap(&self, evicted: u64, refused: u64) {
        if self.episodes().cap.record(Instant::now(), evicted, refused) {
            let open = self.table().len();
            if refused == 0 {
                tracing::warn!(
                    "http connection cap reached: {open} open; closing the connections idle the longest to make room"
                );
            } else {
                tracing::warn!(
                    "http connection cap reached: {open} open, none idle; closing new connections"
                );
            }
        }
    }

    /// A connection ended: out of the table (unless evicted already) and counted.
    fn closed(&self, id: u64, ended: Ended) {
        if self.table().remove(id).is_some() {
            metric::http_connections(-1.0);
        }
        if let Ended::Shed(why) = ended {
            why.count(1);
        }
    }

    /// Accept failed: when for lack of descriptors, close idle connections to get some
    /// back; in any case pause briefly instead of spinning on the error.
    async fn accept_failed(&self, error: &std::io::Error) {
        use rustix::io::Errno;
        let out_of_fds = matches!(
            Errno::from_io_error(error),
            Some(Errno::MFILE | Errno::NFILE)
        );
        if out_of_fds {
            let victims = self.table().evict_idle(EVICT_ON_EMFILE);
            for v in &victims {
                v.evict.cancel();
            }
            let closed = victims.len() as u64;
            metric::http_connections(-(closed as f64));
            // The failed accept and the idle connections closed to recover from it.
            Shed::AcceptError.count(closed + 1);
            let started = self.episodes().accept.record(Instant::now(), closed, 1);
            if started {
                let open = self.table().len();
                tracing::warn!(
                    error = %error,
                    "http accept failed: out of descriptors with {open} open; closed {closed} idle connections"
                );
            }
        } else {
            tracing::debug!(error = %error, "http accept failed");
        }
        crate::shutdown::sleep_or_stop(&self.stop, ACCEPT_BACKOFF).await;
    }

    /// Log the end of every episode that has gone quiet.
    fn end_quiet_episodes(&self) {
        let open = self.table().len();
        let now = Instant::now();
        let mut guard = self.episodes();
        let e = &mut *guard;
        for (what, episode, refused) in [
            ("http connection cap", &mut e.cap, "refused"),
            ("http per-address connection cap", &mut e.per_ip, "refused"),
            ("http accept failures", &mut e.accept, "failed accepts"),
        ] {
            if let Some(s) = episode.end_if_quiet(now, QUIET) {
                tracing::info!(
                    "{what}: episode over after {} ms: {open} open, {} idle closed, {} {refused}",
                    s.lasted.as_millis(),
                    s.evicted,
                    s.refused
                );
            }
        }
    }
}
