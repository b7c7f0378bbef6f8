//! The HTTP side both servers share: the demo page, the browser client, and the JSON endpoints
//! that tests read.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::hub::Hub;

/// The demo page; `__TRANSPORT__` names the transport the page's client uses.
const INDEX_HTML: &str = include_str!("../../assets/index.html");
/// The dependency-free browser client.
const CLIENT_JS: &str = include_str!("../../assets/presence-client.js");

/// Which transport the page should use.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // each example constructs one of the two
pub(crate) enum Transport {
    /// Socket.IO: the page loads `/socket.io.js` and connects with `io()`.
    SocketIo,
    /// A plain WebSocket at `/ws` with JSON messages.
    WebSocket,
}

/// The routes: `/`, `/presence-client.js`, `/socket.io.js` (Socket.IO only), `/api/presence`,
/// `/api/events`, `/api/sessions?user=`.
pub(crate) fn routes(hub: Hub, transport: Transport, socket_io_js: PathBuf) -> Router {
    let page = INDEX_HTML.replace(
        "__TRANSPORT__",
        match transport {
            Transport::SocketIo => "socketio",
            Transport::WebSocket => "websocket",
        },
    );
    let mut router = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/presence-client.js",
            get(|| async { javascript(CLIENT_JS.to_string()) }),
        )
        .route("/api/presence", {
            let hub = hub.clone();
            get(move || async move { Json(hub.state()) })
        })
        .route("/api/events", {
            let hub = hub.clone();
            get(move || async move { Json(hub.events()) })
        })
        .route(
            "/api/sessions",
            get(
                move |Query(query): Query<HashMap<String, String>>| async move {
                    match query.get("user") {
                        Some(user) => Json(hub.sessions(user)).into_response(),
                        None => (StatusCode::BAD_REQUEST, "missing ?user=").into_response(),
                    }
                },
            ),
        );
    if let Transport::SocketIo = transport {
        router = router.route(
            "/socket.io.js",
            get(move || async move {
                // Read per request, so --socket-io-js can point at a file that changes.
                match tokio::fs::read_to_string(&socket_io_js).await {
                    Ok(js) => javascript(js),
                    Err(e) => (
                        StatusCode::NOT_FOUND,
                        format!(
                            "socket.io-client's bundle is not at {} ({e}): pass --socket-io-js PATH",
                            socket_io_js.display()
                        ),
                    )
                        .into_response(),
                }
            }),
        );
    }
    router
}

fn javascript(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Binds 127.0.0.1:`port` (0 picks a free port), prints the URL and serves `router` forever.
///
/// # Errors
///
/// Binding or serving failed.
pub(crate) async fn serve(router: Router, port: u16) -> std::io::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let addr = listener.local_addr()?;
    // Tests read this line to learn the port.
    println!("listening on http://{addr}");
    axum::serve(listener, router).await
}
