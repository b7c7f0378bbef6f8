//! The HTTP side both servers share: the demo page, the browser client, sign-in, and read-only
//! JSON endpoints.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the demo page |
//! | `GET /presence-client.js`, `/socket.io.js` | the browser client, socket.io-client's bundle |
//! | `POST /api/login` `{"user":"ada"}` | a signed token, also set as the `presence_token` cookie |
//! | `GET /api/presence` | the published state (every online user; no session ids) |
//! | `GET /api/events?after=V&limit=N` | the published updates after version `V`, oldest first, at most `N` (1,000 at most and by default) |
//! | `GET /api/sessions` | the caller's own sessions (by its cookie or bearer token), 401 otherwise |
//! | `GET /api/rooms/{room}` | a room as published: its members (sessions by handle) with their metadata, epoch, version |
//! | `GET /api/cluster` | with `--redis`: this node's id, health and Redis counters; `null` alone |
//!
//! Every `/api` route but the login asks the hook the sockets ask ([`Signer`]'s
//! `Authenticate`), by the cookie or a bearer token: a bad token is 401, as is a request
//! without a user where the server takes no watchers (`--watchers off`); the presence and its
//! events are 403 where the server does not send every user (`--all-users off`), a room where
//! `authorize_room` refuses to let the caller watch it, and the cluster's counters are for
//! signed-in users only.

use std::path::PathBuf;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use presence_tracker::{Activity, Presence, Timestamp};
use presence_tracker_server::wire::Refusal;
use presence_tracker_server::{Authenticate, Handshake, Identity, RoomAccess};
use serde::{Deserialize, Serialize};

use super::app::App;
use super::auth::{valid_name, COOKIE};

/// The demo page; `__TRANSPORT__` names the transport the page's client uses, `__ALL_USERS__`
/// whether the hub's all-users feed is on (`on`, `off`).
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

/// The routes above, for `app`.
pub(crate) fn routes(app: App, transport: Transport, socket_io_js: PathBuf) -> Router {
    let all_users = if app.hub.config().all_users_feed {
        "on"
    } else {
        "off"
    };
    let page = INDEX_HTML
        .replace(
            "__TRANSPORT__",
            match transport {
                Transport::SocketIo => "socketio",
                Transport::WebSocket => "websocket",
            },
        )
        .replace("__ALL_USERS__", all_users);
    let mut router = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/presence-client.js",
            get(|| async { javascript(CLIENT_JS.to_string()) }),
        )
        .route("/api/login", post(login))
        .route("/api/presence", get(presence))
        .route("/api/events", get(events))
        .route("/api/sessions", get(own_sessions))
        .route("/api/cluster", get(cluster))
        .route("/api/rooms/{room}", get(room_state));
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
    router.with_state(app)
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

#[derive(Serialize)]
struct Token {
    user: String,
    token: String,
}

/// Signs the demo user in: any valid name (a real application checks a password here).
async fn login(
    State(app): State<App>,
    body: Result<Json<Login>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(Login { user })) = body else {
        return (StatusCode::BAD_REQUEST, "expected {\"user\":\"NAME\"}").into_response();
    };
    if !valid_name(&user) {
        return (
            StatusCode::BAD_REQUEST,
            "a name is 1 to 64 characters, without control characters or . ; = ,",
        )
            .into_response();
    }
    let token = app.signer.token(&user);
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
    ([(header::SET_COOKIE, cookie)], Json(Token { user, token })).into_response()
}

/// A request the hook refused: its status, and the refusal as JSON.
struct Denied(StatusCode, Box<Refusal>);

impl Denied {
    fn new(status: StatusCode, code: &str, message: &str) -> Self {
        Denied(status, Box::new(Refusal::new(code, message)))
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        (self.0, Json(*self.1)).into_response()
    }
}

/// Who a request is, by the sockets' hook: 401 for a bad token, or for no user where the
/// server takes no watchers.
fn caller(app: &App, headers: &HeaderMap, uri: &Uri) -> Result<Identity<String>, Denied> {
    let identity = app
        .signer
        .authenticate(&Handshake::new(headers, uri, None))
        .map_err(|refusal| Denied(StatusCode::UNAUTHORIZED, Box::new(refusal)))?;
    if matches!(identity, Identity::Watcher) && !app.hub.config().watchers {
        return Err(Denied::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this server answers signed-in users only",
        ));
    }
    Ok(identity)
}

/// 403 where the server does not send every user (a connection may not ask for it either).
fn every_user(app: &App) -> Result<(), Denied> {
    if app.hub.config().all_users_feed {
        return Ok(());
    }
    Err(Denied::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this server does not send every user: subscribe to the users to show",
    ))
}

async fn presence(
    State(app): State<App>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Denied> {
    caller(&app, &headers, &uri)?;
    every_user(&app)?;
    Ok(json(&*app.hub.state()))
}

/// The most updates one `/api/events` answers.
const MAX_EVENTS: usize = 1000;

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn events(
    State(app): State<App>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Denied> {
    caller(&app, &headers, &uri)?;
    every_user(&app)?;
    let Ok(Query(query)) = query else {
        return Err(Denied::new(
            StatusCode::BAD_REQUEST,
            "bad_message",
            "expected ?after=VERSION&limit=N",
        ));
    };
    let limit = query.limit.unwrap_or(MAX_EVENTS).min(MAX_EVENTS);
    Ok(Json(app.events(query.after, limit)).into_response())
}

async fn room_state(
    State(app): State<App>,
    Path(room): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, Denied> {
    let identity = caller(&app, &headers, &uri)?;
    app.signer
        .authorize_room(&identity, &room, RoomAccess::Watch)
        .map_err(|refusal| Denied(StatusCode::FORBIDDEN, Box::new(refusal)))?;
    Ok(json(&*app.hub.rooms().state(room.as_str())))
}

async fn cluster(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Result<Response, Denied> {
    match caller(&app, &headers, &uri)? {
        Identity::User(_) => Ok(Json(app.cluster_status()).into_response()),
        _ => Err(Denied::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in to see the cluster",
        )),
    }
}

/// One of the caller's sessions.
#[derive(Serialize)]
struct OwnSession {
    session: String,
    presence: Presence,
    activity: Activity,
    last_seen: Timestamp,
    connected: bool,
    /// When it expires unless a signal comes.
    expires_at: Timestamp,
    /// The current connection's fingerprint, in hex (it changes on every reconnect).
    connection: String,
}

/// The caller's own sessions, by its cookie or bearer token: nobody else's session ids.
async fn own_sessions(State(app): State<App>, headers: HeaderMap, uri: Uri) -> Response {
    match caller(&app, &headers, &uri) {
        Ok(Identity::User(user)) => {
            let sessions: Vec<OwnSession> = app
                .hub
                .tracker()
                .user_sessions(&user)
                .into_iter()
                .map(|(session, v)| OwnSession {
                    session,
                    presence: v.presence,
                    activity: v.activity,
                    last_seen: v.last_seen,
                    connected: v.connected,
                    expires_at: v.expires_at,
                    connection: v.connection.to_string(),
                })
                .collect();
            Json(sessions).into_response()
        }
        _ => (StatusCode::UNAUTHORIZED, "sign in to see your sessions").into_response(),
    }
}

/// `value` as a JSON response (the hub's state is shared in an `Arc`: serialised in place).
fn json<T: Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn javascript(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        body,
    )
        .into_response()
}
