//! Stopping: the process's shutdown signal and the one interruptible sleep every loop uses.
//! Shutdown is always passed in as a parameter (a future or a [`CancellationToken`]), never
//! read from a global.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Sleep for `d` unless `stop` fires first; true when stopped.
pub async fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(d) => false,
    }
}
