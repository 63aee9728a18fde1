//! One connection: the socket wrapper that tells its [`Activity`] when bytes arrive, and
//! [`drive`], which serves the connection with hyper until it ends, times out, is evicted or
//! is drained at shutdown.
//!
//! The head and idle timeouts are ours (`activity`) rather than hyper's
//! `header_read_timeout`: hyper's timer also runs while a keep-alive connection waits for
//! its next request, which would make `idle_timeout_secs` meaningless.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use super::{
    activity::Activity,
    limits::{Limits, Shed},
    service::EdgeService,
};

/// The client's socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The client closed it, hyper finished it, or shutdown drained it.
    Done,
    /// The listener evicted it to make room (already counted there).
    Evicted,
    /// An edge limit closed it.
    Shed(Shed),
}

/// Serve `stream` with `service` until the connection ends. On `stop` the connection is
/// drained: hyper finishes the request in flight and closes.
pub(crate) async fn drive(
    stream: TcpStream,
    peer: SocketAddr,
    activity: Arc<Activity>,
    service: EdgeService,
    limits: Limits,
    stop: &CancellationToken,
) -> Ended {
    let io = TokioIo::new(Watched {
        stream,
        activity: Arc::clone(&activity),
    });
    let mut builder = http1::Builder::new();
    // Our own head timeout (see the module doc); without a timer hyper runs none.
    builder.header_read_timeout(None::<std::time::Duration>);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&limits);
        let expiry = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "http connection ended with an error");
                }
                return Ended::Done;
            }
            () = activity.changed.notified() => {}
            () = expiry => {
                // Still due under the current state (a change may have raced the timer)?
                if let Some((at, why)) = activity.deadline(&limits)
                    && at <= Instant::now()
                {
                    tracing::debug!(%peer, reason = why.label(), "http connection closed");
                    return Ended::Shed(why);
                }
            }
            () = activity.evict.cancelled() => return Ended::Evicted,
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
