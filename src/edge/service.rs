//! The hyper service of one connection: every request gets the client's address as
//! [`ConnectInfo`] (as `into_make_service_with_connect_info` would give it), its body under
//! [`TimedBody`], and an answer within `request_timeout`: 408 when the body was too slow (or
//! still awaited when time ran out), 503 when the handler was; both close the connection,
//! since what is left of the request on the wire is unknown.
//!
//! The connection counts as busy from the head until the response body has been written
//! (the [`InFlight`] guard rides in the response body).

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Request, Response, StatusCode, header},
};
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::ServiceExt as _;

use super::{
    activity::{Activity, InFlight},
    body::{BodyWatch, TimedBody},
    limits::{Limits, Shed},
};

/// One connection's service over the listener's router.
#[derive(Clone)]
pub(crate) struct EdgeService {
    pub(crate) router: Router,
    pub(crate) peer: SocketAddr,
    pub(crate) activity: Arc<Activity>,
    pub(crate) limits: Limits,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for EdgeService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.request_started();
        let watch = Arc::new(BodyWatch::default());
        let body_limits = self.limits.body;
        let mut request =
            request.map(|body| Body::new(TimedBody::new(body, body_limits, Arc::clone(&watch))));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let router = self.router.clone();
        let timeout = self.limits.request;
        let peer = self.peer;
        Box::pin(async move {
            let answered = tokio::time::timeout(timeout, router.oneshot(request)).await;
            let response = match answered {
                Ok(Ok(response)) if !watch.timed_out() => response,
                Ok(Err(never)) => match never {},
                // Answered after its body timed out, or out of time while waiting for it.
                _ if watch.timed_out() || watch.waiting() => refuse(Shed::BodyTimeout, peer),
                _ => refuse(Shed::RequestTimeout, peer),
            };
            Ok(response.map(|body| {
                Body::new(Guarded {
                    inner: body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// The answer to a request cut by an edge limit, counted; its connection closes after it.
fn refuse(why: Shed, peer: SocketAddr) -> Response<Body> {
    why.count(1);
    let (status, text) = match why {
        Shed::BodyTimeout => (
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time\n",
        ),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long; retry later\n",
        ),
    };
    tracing::info!(%peer, reason = why.label(), status = status.as_u16(), "http request cut by an edge limit");
    Response::builder()
        .status(status)
        .header(header::CONNECTION, "close")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(text))
        .expect("a static response is valid")
}

pin_project! {
    /// A response body that keeps its request in flight until hyper drops it (written).
    struct Guarded {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
