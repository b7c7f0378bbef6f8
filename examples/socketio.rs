//! Presence over Socket.IO: axum + socketioxide (protocol v5, so the official `socket.io-client`
//! 4.x connects), with a "who is online" demo page.
//!
//! ```text
//! cargo run --example socketio            # then open http://127.0.0.1:3000
//! cargo run --example socketio -- --help  # thresholds, port, ping timing
//! ```
//!
//! The wire, namespace `/`:
//!
//! | direction | event | payload |
//! |---|---|---|
//! | client → server | connect `auth` | `{ "user": "ada", "session": "<stable id of the tab>", "activity": "background" }` (activity optional) |
//! | client → server | `heartbeat` | `"active"`, `"idle"` or `"background"` (or `{ "activity": .. }`) |
//! | client → server | `leave` | none: the tab is going away (`pagehide`) |
//! | server → client | `state` | on connect: `{ "now": ms, "users": [{ "user", "presence", "sessions", "last_seen" }] }` |
//! | server → all | `presence` | a user transition: `{ "event": {subject, from, to, at, cause, seq}, "view": {..} }` |
//! | server → all | `sessions` | a user's tab count changed without a transition: `{ "user", "view" }` |
//! | server → client | `error` | `{ "message": .. }`: bad auth (then disconnected), bad heartbeat |
//!
//! A disconnect the client or server asked for (`ClientNSDisconnect`, `ServerNSDisconnect`) is
//! clean and gets the short leave grace; anything else (transport closed or failed, ping
//! timeout) is lost and gets the long disconnect grace. Presence itself only ever falls by age.

#[path = "common/mod.rs"]
mod common;

use std::str::FromStr;

use presence_tracker::{Activity, ConnectionId, DisconnectKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::extract::{Extension, SocketRef, State, TryData};
use socketioxide::socket::DisconnectReason;
use socketioxide::SocketIo;
use tokio::sync::broadcast::{self, error::RecvError};

use common::config::Config;
use common::http::{self, Transport};
use common::hub::{Broadcast, Hub, Identity};

/// The Socket.IO `auth` payload.
#[derive(Debug, Deserialize)]
struct Auth {
    user: Option<String>,
    session: Option<String>,
    /// What the client is doing as it connects (a hidden tab reconnecting says `background`).
    activity: Option<String>,
}

/// The `error` event's payload.
#[derive(Debug, Serialize)]
struct ErrorMessage<'a> {
    message: &'a str,
}

fn connection_of(socket: &SocketRef) -> ConnectionId {
    ConnectionId::from(socket.id.to_string())
}

fn send_error(socket: &SocketRef, message: &str) {
    // The socket may be gone already; then there is no one to tell.
    let _ = socket.emit("error", &ErrorMessage { message });
}

/// Refuses a connection: tells the client why, then disconnects it. Nothing was recorded.
fn reject(socket: SocketRef, message: &str) {
    send_error(&socket, message);
    let _ = socket.disconnect();
}

async fn on_connect(socket: SocketRef, State(hub): State<Hub>, TryData(auth): TryData<Auth>) {
    let claim = match auth {
        Ok(auth) => Identity::from_claim(auth.user, auth.session).and_then(|id| {
            let activity = auth.activity.as_deref().map(Activity::from_str).transpose();
            activity
                .map(|activity| (id, activity))
                .map_err(|e| e.to_string())
        }),
        Err(e) => Err(format!("bad auth payload: {e}")),
    };
    let (id, activity) = match claim {
        Ok(claim) => claim,
        Err(message) => return reject(socket, &message),
    };
    if let Err(e) = hub.connect(&id, connection_of(&socket), activity) {
        return reject(socket, &e.to_string());
    }
    socket.extensions.insert(id);
    socket.on("heartbeat", on_heartbeat);
    socket.on("leave", on_leave);
    socket.on_disconnect(on_disconnect);
    let _ = socket.emit("state", &hub.state());
}

/// The activity from a heartbeat's payload: `"idle"` or `{ "activity": "idle" }`.
fn activity_of(payload: &Value) -> Result<Activity, String> {
    let text = match payload {
        Value::String(text) => text.as_str(),
        Value::Object(fields) => fields
            .get("activity")
            .and_then(Value::as_str)
            .ok_or("heartbeat needs an activity")?,
        _ => return Err("heartbeat needs an activity".to_string()),
    };
    Activity::from_str(text).map_err(|e| e.to_string())
}

async fn on_heartbeat(
    socket: SocketRef,
    Extension(id): Extension<Identity>,
    State(hub): State<Hub>,
    TryData(payload): TryData<Value>,
) {
    let activity = match payload {
        Ok(payload) => activity_of(&payload),
        Err(e) => Err(format!("bad heartbeat payload: {e}")),
    };
    let result = activity.and_then(|activity| {
        hub.heartbeat(&id, connection_of(&socket), activity)
            .map_err(|e| e.to_string())
    });
    if let Err(message) = result {
        send_error(&socket, &message);
    }
}

async fn on_leave(Extension(id): Extension<Identity>, State(hub): State<Hub>) {
    hub.leave(&id);
}

async fn on_disconnect(
    socket: SocketRef,
    reason: DisconnectReason,
    Extension(id): Extension<Identity>,
    State(hub): State<Hub>,
) {
    let kind = match reason {
        DisconnectReason::ClientNSDisconnect | DisconnectReason::ServerNSDisconnect => {
            DisconnectKind::Clean
        }
        _ => DisconnectKind::Lost,
    };
    hub.disconnect(&id, connection_of(&socket), kind);
}

/// Sends every broadcast to every connected socket, in order.
async fn forward(io: SocketIo, mut rx: broadcast::Receiver<Broadcast>) {
    loop {
        let sent = match rx.recv().await {
            Ok(Broadcast::Presence(update)) => io.emit("presence", &update).await,
            Ok(Broadcast::Sessions(update)) => io.emit("sessions", &update).await,
            // Clients see the gap in `seq`; the page then reloads the state.
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        if let Err(e) = sent {
            eprintln!("socketio: broadcast failed: {e}");
        }
    }
}

#[tokio::main]
async fn main() {
    let config = match Config::from_env_and_args("socketio") {
        Ok(Some(config)) => config,
        Ok(None) => return,
        Err(e) => {
            eprintln!("socketio: {e}");
            std::process::exit(2);
        }
    };
    let hub = Hub::new(config.policy.clone());
    let (layer, io) = SocketIo::builder()
        .ping_interval(config.ping_interval)
        .ping_timeout(config.ping_timeout)
        .with_state(hub.clone())
        .build_layer();
    io.ns("/", on_connect);
    tokio::spawn(hub.clone().drive_ticks());
    tokio::spawn(forward(io, hub.subscribe()));

    let app = http::routes(hub, Transport::SocketIo, config.socket_io_js.clone()).layer(layer);
    println!("presence over Socket.IO: {}", config.describe());
    if let Err(e) = http::serve(app, config.port).await {
        eprintln!("socketio: {e}");
        std::process::exit(1);
    }
}
