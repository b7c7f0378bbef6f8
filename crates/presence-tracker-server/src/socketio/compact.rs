//! [`CompactRequestLayer`]: each request's URI and headers copied out of hyper's read buffer.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Uri};
use tower_layer::Layer;
use tower_service::Service;

/// A [`Layer`] that copies each request's URI and header values into allocations of their own
/// before the service it wraps sees the request.
///
/// hyper parses a request's URI and header values as slices of the connection's read buffer
/// (8 KiB to 16 KiB). Whoever keeps one of them keeps the whole buffer. socketioxide keeps every
/// socket's request parts (its `req_parts`) for the socket's life, so without this layer each
/// Socket.IO connection holds its HTTP connection's read buffer as long as it is open: about
/// 16 KB a connection, measured with heaptrack under the load generator (BENCHMARKS.md §13).
/// With it a socket keeps copies the size of what the client sent, usually a few hundred bytes.
///
/// Put it outside socketioxide's layer: with axum's [`Router::layer`], add it after the
/// `SocketIoLayer`, so it runs first:
///
/// ```no_run
/// use presence_tracker_server::socketio::CompactRequestLayer;
/// use socketioxide::SocketIo;
///
/// let (layer, io) = SocketIo::new_layer();
/// let app: axum::Router = axum::Router::new()
///     .layer(layer)
///     .layer(CompactRequestLayer::new());
/// # drop((app, io));
/// ```
///
/// axum's router stores each request's URI in the `OriginalUri` extension before the layers
/// given to [`Router::layer`] run; with this crate's `axum` feature the layer replaces that
/// copy too. Without the feature, wrap the whole router instead
/// (`CompactRequestLayer::new().layer(router)`), so axum makes its copy from the compact URI.
///
/// The cost is one copy of the URI and of each header value per request, on every route the
/// layer wraps: a few hundred bytes each, against the 8 KiB or more it lets go.
///
/// [`Router::layer`]: https://docs.rs/axum/0.8/axum/struct.Router.html#method.layer
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactRequestLayer {
    _private: (),
}

impl CompactRequestLayer {
    /// The layer.
    #[must_use]
    pub fn new() -> Self {
        CompactRequestLayer { _private: () }
    }
}

impl<S> Layer<S> for CompactRequestLayer {
    type Service = CompactRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CompactRequest { inner }
    }
}

/// The service of [`CompactRequestLayer`].
#[derive(Debug, Clone)]
pub struct CompactRequest<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CompactRequest<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        compact(&mut request);
        self.inner.call(request)
    }
}

/// Replaces the request's URI and header values by copies that share no buffer.
fn compact<B>(request: &mut Request<B>) {
    let uri = compact_uri(request.uri());
    #[cfg(feature = "axum")]
    if request
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .is_some()
    {
        let original = axum::extract::OriginalUri(uri.clone());
        request.extensions_mut().insert(original);
    }
    *request.uri_mut() = uri;
    let headers = std::mem::take(request.headers_mut());
    *request.headers_mut() = compact_headers(headers);
}

/// The URI, reparsed from its text in a buffer of exactly its length. A URI that does not
/// reparse (it parsed once, so it should) is kept as it is.
fn compact_uri(uri: &Uri) -> Uri {
    let text = bytes::Bytes::from(uri.to_string().into_bytes().into_boxed_slice());
    Uri::from_maybe_shared(text).unwrap_or_else(|_| uri.clone())
}

/// Each header value copied into a buffer of its own, in the same order, the names kept (a
/// standard name is a constant, another is already a copy).
fn compact_headers(headers: HeaderMap) -> HeaderMap {
    let mut compact = HeaderMap::with_capacity(headers.len());
    let mut name = None;
    for (next, value) in headers {
        if next.is_some() {
            name = next;
        }
        let Some(name) = &name else { continue };
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        compact.append(name.clone(), copy);
    }
    compact
}

#[cfg(test)]
mod tests {
    use super::*;

    use bytes::Bytes;

    /// A request whose URI and header values are slices of one buffer, as hyper makes them.
    fn request_over(buffer: &Bytes) -> Request<()> {
        let text = std::str::from_utf8(buffer).unwrap_or_default();
        let path_end = text.find(' ').unwrap_or(text.len());
        let uri = Uri::from_maybe_shared(buffer.slice(..path_end)).expect("a path");
        let value = buffer.slice(path_end + 1..);
        let mut request = Request::new(());
        *request.uri_mut() = uri;
        request.headers_mut().append(
            "cookie",
            HeaderValue::from_maybe_shared(value.clone()).expect("a value"),
        );
        request
            .headers_mut()
            .append("cookie", HeaderValue::from_static("second=2"));
        request.headers_mut().append(
            "x-custom",
            HeaderValue::from_maybe_shared(value).expect("a value"),
        );
        request
    }

    #[test]
    fn the_compacted_request_shares_no_buffer_and_keeps_every_header() {
        let buffer = Bytes::from(String::from(
            "/socket.io/?EIO=4&transport=websocket sid=abc",
        ));
        let mut request = request_over(&buffer);
        let before: Vec<_> = request
            .headers()
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        compact(&mut request);
        let after: Vec<_> = request
            .headers()
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        assert_eq!(before, after);
        assert_eq!(
            request.uri().to_string(),
            "/socket.io/?EIO=4&transport=websocket"
        );
        drop(before);
        drop(after);
        // The only other owner of the buffer was the request: once it lets go, the buffer is
        // unique again, and `try_into_mut` gives it back.
        assert!(
            buffer.try_into_mut().is_ok(),
            "the request still holds the buffer"
        );
    }

    #[test]
    fn a_request_that_is_not_compacted_holds_the_buffer() {
        let buffer = Bytes::from(String::from("/socket.io/?EIO=4 sid=abc"));
        let request = request_over(&buffer);
        assert!(buffer.try_into_mut().is_err());
        drop(request);
    }

    #[test]
    fn sensitive_values_stay_sensitive() {
        let mut request = Request::new(());
        let mut value = HeaderValue::from_static("Bearer secret");
        value.set_sensitive(true);
        request.headers_mut().insert("authorization", value);
        compact(&mut request);
        let value = request.headers().get("authorization").expect("kept");
        assert!(value.is_sensitive());
        assert_eq!(value, "Bearer secret");
    }

    #[cfg(feature = "axum")]
    #[test]
    fn axums_original_uri_is_replaced_by_the_copy() {
        let buffer = Bytes::from(String::from("/socket.io/?EIO=4 x"));
        let mut request = request_over(&buffer);
        let original = axum::extract::OriginalUri(request.uri().clone());
        request.extensions_mut().insert(original);
        compact(&mut request);
        request.headers_mut().clear();
        let kept = request
            .extensions()
            .get::<axum::extract::OriginalUri>()
            .expect("kept");
        assert_eq!(kept.0.to_string(), "/socket.io/?EIO=4");
        assert!(
            buffer.try_into_mut().is_ok(),
            "OriginalUri still holds the buffer"
        );
    }
}
