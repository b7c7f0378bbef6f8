//! [`AdmissionLayer`]: new Engine.IO sessions over the node's rate refused before any work.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::Admission;

/// A [`Layer`] that lets new Engine.IO sessions in at the [`Admission`]'s rate and answers the
/// others `503 Service Unavailable` with `Retry-After`, before socketioxide sees them.
///
/// A new session is a request with an `EIO` query parameter and no `sid` (the polling handshake,
/// or a WebSocket straight away); the requests of sessions already open pass. A refused client
/// has cost the node an HTTP request's parse: no Engine.IO session, no WebSocket upgrade, no
/// task. socket.io-client takes the 503 as a transport error and tries again after its
/// reconnection delay (randomised, as the browser client sets it). This is the cheap place to
/// refuse; [`SocketIoOptions::admission`](super::SocketIoOptions::admission) refuses later, at
/// the namespace's connect, after the Engine.IO handshake and the upgrade were made.
///
/// Put it outside socketioxide's layer (with axum's `Router::layer`, after it):
///
/// ```no_run
/// use presence_tracker_server::socketio::AdmissionLayer;
/// use presence_tracker_server::Admission;
/// use socketioxide::SocketIo;
///
/// let (layer, io) = SocketIo::new_layer();
/// let app: axum::Router = axum::Router::new()
///     .layer(layer)
///     .layer(AdmissionLayer::new(Admission::new(1500, 300)));
/// # drop((app, io));
/// ```
#[derive(Debug, Clone)]
pub struct AdmissionLayer {
    admission: Admission,
}

impl AdmissionLayer {
    /// New sessions at `admission`'s rate (a handle: the WebSocket route may share it).
    pub fn new(admission: Admission) -> Self {
        AdmissionLayer { admission }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admit {
            inner,
            admission: self.admission.clone(),
        }
    }
}

/// The service of [`AdmissionLayer`].
#[derive(Debug, Clone)]
pub struct Admit<S> {
    inner: S,
    admission: Admission,
}

impl<S, B, RB> Service<Request<B>> for Admit<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if opens_a_session(request.uri().query()) {
            if let Err(busy) = self.admission.try_admit() {
                return Box::pin(std::future::ready(Ok(busy.response())));
            }
        }
        Box::pin(self.inner.call(request))
    }
}

/// Whether a request with this query opens an Engine.IO session: it names the protocol
/// (`EIO`) and no session (`sid`).
fn opens_a_session(query: Option<&str>) -> bool {
    let Some(query) = query else { return false };
    let mut eio = false;
    for pair in query.split('&') {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        match name {
            "EIO" => eio = true,
            "sid" => return false,
            _ => {}
        }
    }
    eio
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;

    use http::{HeaderValue, StatusCode};

    #[test]
    fn new_sessions_are_told_apart() {
        assert!(opens_a_session(Some("EIO=4&transport=websocket")));
        assert!(opens_a_session(Some("EIO=4&transport=polling&t=abc")));
        assert!(!opens_a_session(Some("EIO=4&transport=websocket&sid=xyz")));
        assert!(!opens_a_session(Some(
            "EIO=4&transport=polling&sid=xyz&t=1"
        )));
        assert!(!opens_a_session(Some("transport=websocket")));
        assert!(!opens_a_session(None));
        assert!(!opens_a_session(Some("")));
        // A parameter that only starts like one is not it.
        assert!(!opens_a_session(Some("EIOX=4")));
    }

    /// A service that answers 200 and counts its calls.
    #[derive(Clone, Default)]
    struct Ok200(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl Service<Request<()>> for Ok200 {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::future::ready(Ok(Response::new("ok".to_string())))
        }
    }

    fn request(uri: &str) -> Request<()> {
        Request::builder().uri(uri).body(()).expect("a request")
    }

    #[tokio::test]
    async fn over_the_rate_new_sessions_get_503_and_open_ones_pass() {
        let inner = Ok200::default();
        let calls = inner.0.clone();
        // One a second, two at once: the third new session within the second is refused.
        let mut service = AdmissionLayer::new(Admission::new(1, 2)).layer(inner);
        let new = "/socket.io/?EIO=4&transport=websocket";
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let response = service.call(request(new)).await.expect("infallible");
            statuses.push(response.status().as_u16());
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                assert_eq!(
                    response.headers().get(http::header::RETRY_AFTER),
                    Some(&HeaderValue::from_static("1"))
                );
                assert_eq!(response.body(), "", "an empty body");
            }
        }
        assert_eq!(statuses[..2], [200, 200]);
        assert_eq!(statuses[2], 503, "{statuses:?}");
        // An open session's requests, and other routes, are never refused.
        for uri in [
            "/socket.io/?EIO=4&transport=polling&sid=abc",
            "/api/rooms/doc-1",
        ] {
            let response = service.call(request(uri)).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::OK, "{uri}");
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 4);
    }
}
