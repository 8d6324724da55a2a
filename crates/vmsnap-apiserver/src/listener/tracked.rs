//! The router, as served on one connection: it counts the requests in flight on the connection
//! (a request is in flight until its response body has been sent or dropped) and when the
//! connection was last active, so that the connection bound closes only idle connections.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use tower::{Service, ServiceExt};

use super::{Connection, millis_since};

/// [`Router`] with per-connection accounting.
#[derive(Clone)]
pub struct Tracked {
    app: Router,
    connection: Arc<Connection>,
    epoch: tokio::time::Instant,
}

impl Tracked {
    /// Serves `app` on `connection`.
    pub fn new(app: Router, connection: Arc<Connection>, epoch: tokio::time::Instant) -> Tracked {
        Tracked { app, connection, epoch }
    }
}

/// Marks a request of a connection in flight until dropped.
struct InFlight {
    connection: Arc<Connection>,
    epoch: tokio::time::Instant,
}

impl InFlight {
    fn start(connection: Arc<Connection>, epoch: tokio::time::Instant) -> InFlight {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        connection.last_active.store(millis_since(epoch), Ordering::Release);
        InFlight { connection, epoch }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.connection.last_active.store(millis_since(self.epoch), Ordering::Release);
        self.connection.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<B> Service<Request<B>> for Tracked
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let guard = InFlight::start(self.connection.clone(), self.epoch);
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request.map(Body::new)).await?;
            Ok(response.map(|body| Body::new(Guarded { body, _guard: guard })))
        })
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
struct Guarded {
    body: Body,
    _guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
