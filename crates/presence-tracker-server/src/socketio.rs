//! Presence over Socket.IO ([`socketioxide`]): one call registers everything on a namespace.
//!
//! The wire, on the namespace:
//!
//! | direction | event | payload |
//! |---|---|---|
//! | client → server | handshake `auth` | a [`Hello`] (`{"protocol":1,"session":"<tab id>","activity":"idle","token":..}`; no `session` for a watcher) |
//! | client → server | `heartbeat` | `{"activity":"active"}` (or just `"active"`) |
//! | client → server | `leave` | none: the tab is going away (`pagehide`, logout) |
//! | client → server | `resync` | none: send me the whole state again |
//! | server → client | `presence` | a [`ServerMessage`](crate::wire::ServerMessage): `{"type":"state",..}` first, then `{"type":"updates",..}` |
//! | server → client | `refused` | a [`Refusal`]: a signal that changed nothing |
//!
//! A refused handshake (the [`Authenticate`] hook said no, a bad hello, a session of another
//! user) is answered with Socket.IO's `connect_error`, whose message is the refusal's JSON.
//!
//! # Ordering
//!
//! socketioxide runs each event handler as its own task, so two heartbeats sent back to back
//! could be applied in either order. The handlers registered here do their work before that
//! task is spawned, in the order the socket received the events, so a connection's signals
//! reach the tracker in the order it sent them.
//!
//! # Backpressure
//!
//! Each socket has its own [`Subscription`]. Its forwarding task gathers what is published
//! within [`SocketIoOptions::linger`] of the first update into one `presence` message (the
//! latest state of each user changed), so a burst of transitions is one message per client: it
//! neither fills a healthy client's buffer (which would make its pings fail) nor loses an
//! update. A subscriber that falls behind the hub's backlog all the same gets a fresh state; a
//! socket whose buffer is full (a client that stopped reading) is sent a state once it can.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use presence_tracker::{Activity, Clock, ConnectionId, DisconnectKind, Id};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;
use socketioxide::{SendError, SocketError, SocketIo};
use tokio::sync::Notify;

use crate::wire::{Hello, Refusal, PROTOCOL};
use crate::{Authenticate, Handshake, Hub, Identity, Subscription};

/// How [`attach`] serves sockets.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SocketIoOptions {
    /// How long a forwarder gathers updates after the first before sending them as one message
    /// (default 50 ms): the most a presence change is delayed, and what turns a burst into one
    /// message per client.
    pub linger: Duration,
    /// How long to wait before sending a state to a socket whose buffer was full (default
    /// 250 ms).
    pub full_buffer_retry: Duration,
}

impl Default for SocketIoOptions {
    fn default() -> Self {
        SocketIoOptions {
            linger: Duration::from_millis(50),
            full_buffer_retry: Duration::from_millis(250),
        }
    }
}

/// What a socket is to the hub, kept in its extensions.
#[derive(Clone)]
struct Conn<U, S> {
    /// The user and the session it carries; `None` for a watcher.
    session: Option<(U, S)>,
    connection: ConnectionId,
    /// Wakes the forwarding task when the socket disconnects.
    closed: Arc<Notify>,
}

/// Registers presence on the namespace `path` of `io`: authentication, the session's connect,
/// the `heartbeat`, `leave` and `resync` events, the disconnect (Socket.IO's reasons mapped to
/// [`DisconnectKind::Clean`] or [`DisconnectKind::Lost`]), and a task per socket that sends it
/// the state and the updates.
///
/// `U` must serialise (it is on the wire); `S` comes from the client's hello.
///
/// # Examples
///
/// ```no_run
/// use presence_tracker::{Policy, PresenceTracker};
/// use presence_tracker_server::{socketio, wire::Refusal, Handshake, Hub, HubConfig, Identity};
/// use socketioxide::SocketIo;
///
/// # async fn run() -> std::io::Result<()> {
/// let hub: Hub<String, String> = Hub::new(PresenceTracker::new(Policy::default()), HubConfig::default());
/// tokio::spawn(hub.clone().run_ticker());
/// let (layer, io) = SocketIo::new_layer();
/// socketio::attach(&io, "/", hub, |h: &Handshake<'_>| match h.bearer() {
///     Some(token) => Ok(Identity::User(format!("user-of-{token}"))), // verify it for real
///     None => Err(Refusal::new("unauthorized", "sign in first")),
/// });
/// let app = axum::Router::new().layer(layer);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn attach<U, S, C, A>(
    io: &SocketIo,
    path: impl Into<Cow<'static, str>>,
    hub: Hub<U, S, C>,
    auth: A,
) where
    U: Id + Serialize,
    S: Id + DeserializeOwned,
    C: Clock + 'static,
    A: Authenticate<U>,
{
    attach_with(io, path, hub, auth, SocketIoOptions::default());
}

/// [`attach`] with options.
pub fn attach_with<U, S, C, A>(
    io: &SocketIo,
    path: impl Into<Cow<'static, str>>,
    hub: Hub<U, S, C>,
    auth: A,
    options: SocketIoOptions,
) where
    U: Id + Serialize,
    S: Id + DeserializeOwned,
    C: Clock + 'static,
    A: Authenticate<U>,
{
    let auth = Arc::new(auth);
    let options = Arc::new(options);
    let admit = {
        let hub = hub.clone();
        move |socket: SocketRef, TryData(hello): TryData<Hello<S>>| {
            let result = admit(&socket, hello.ok(), &hub, auth.as_ref());
            std::future::ready(result)
        }
    };
    let on_connect = move |socket: SocketRef| {
        serve(&socket, &hub, &options);
        std::future::ready(())
    };
    io.ns(path, on_connect.with(admit));
}

/// The refusal of a handshake, as `connect_error`'s message: the refusal's JSON.
#[derive(Debug)]
struct Refused(Refusal);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_string(&self.0) {
            Ok(json) => f.write_str(&json),
            Err(_) => f.write_str(&self.0.message),
        }
    }
}

/// The handshake: who the socket is, and its session's connect. Runs before the socket is
/// connected; an `Err` is the client's `connect_error`.
fn admit<U, S, C, A>(
    socket: &SocketRef,
    hello: Option<Hello<S>>,
    hub: &Hub<U, S, C>,
    auth: &A,
) -> Result<(), Refused>
where
    U: Id,
    S: Id,
    C: Clock + 'static,
    A: Authenticate<U>,
{
    let Some(hello) = hello else {
        return Err(Refused(Refusal::new(
            "bad_message",
            "the handshake's auth must be a hello: {\"protocol\":1,\"session\":..}",
        )));
    };
    if hello.protocol != PROTOCOL {
        return Err(Refused(Refusal::new(
            "protocol",
            format!("this server speaks protocol {PROTOCOL}"),
        )));
    }
    let parts = socket.req_parts();
    let identity = auth
        .authenticate(&Handshake::new(
            &parts.headers,
            &parts.uri,
            hello.token.as_deref(),
        ))
        .map_err(Refused)?;
    let connection = ConnectionId::from(socket.id.as_str());
    let session = match (identity, hello.session) {
        (Identity::User(user), Some(session)) => {
            hub.connect(user.clone(), session.clone(), connection, hello.activity)
                .map_err(|e| Refused(Refusal::from_error(&e)))?;
            Some((user, session))
        }
        // A user without a session id, or a watcher: it only watches.
        _ => None,
    };
    socket.extensions.insert(Conn {
        session,
        connection,
        closed: Arc::new(Notify::new()),
    });
    Ok(())
}

/// A connected socket: its event handlers and its forwarding task.
fn serve<U, S, C>(socket: &SocketRef, hub: &Hub<U, S, C>, options: &Arc<SocketIoOptions>)
where
    U: Id + Serialize,
    S: Id + DeserializeOwned,
    C: Clock + 'static,
{
    let Some(conn) = socket.extensions.get::<Conn<U, S>>() else {
        return; // admitted sockets always have one
    };
    {
        let hub = hub.clone();
        let conn = conn.clone();
        socket.on(
            "heartbeat",
            move |socket: SocketRef, TryData(payload): TryData<Value>| {
                let result = match (&conn.session, payload.ok().as_ref().and_then(activity_of)) {
                    (None, _) => Err(Refusal::new("watch_only", "a watcher sends no heartbeat")),
                    (_, None) => Err(Refusal::new(
                        "bad_message",
                        "a heartbeat is {\"activity\":\"active\"|\"idle\"|\"background\"}",
                    )),
                    (Some((user, session)), Some(activity)) => hub
                        .heartbeat_or_reconnect(user, session, conn.connection, activity)
                        .map_err(|e| Refusal::from_error(&e)),
                };
                if let Err(refusal) = result {
                    // Gone already: then there is no one to tell.
                    let _ = socket.emit("refused", &refusal);
                }
                std::future::ready(())
            },
        );
    }
    {
        let hub = hub.clone();
        let conn = conn.clone();
        socket.on("leave", move |socket: SocketRef| {
            if let Some((_, session)) = &conn.session {
                if let Err(e) = hub.leave(session, conn.connection) {
                    let _ = socket.emit("refused", &Refusal::from_error(&e));
                }
            }
            std::future::ready(())
        });
    }
    {
        let hub = hub.clone();
        let conn = conn.clone();
        socket.on_disconnect(move |reason: DisconnectReason| {
            conn.closed.notify_one();
            if let Some((_, session)) = &conn.session {
                // Only a Socket.IO disconnect says goodbye; a transport that closed without one
                // (a network change, a killed tab) may come back: the long grace.
                let kind = match reason {
                    DisconnectReason::ClientNSDisconnect | DisconnectReason::ServerNSDisconnect => {
                        DisconnectKind::Clean
                    }
                    _ => DisconnectKind::Lost,
                };
                // Unknown: it expired meanwhile; nothing to record.
                let _ = hub.disconnect(session, conn.connection, kind);
            }
            std::future::ready(())
        });
    }
    let feed = hub.subscribe();
    let resync = Arc::new(Notify::new());
    {
        let resync = Arc::clone(&resync);
        socket.on("resync", move || {
            resync.notify_one();
            std::future::ready(())
        });
    }
    tokio::spawn(forward(
        socket.clone(),
        feed,
        conn.closed,
        resync,
        Arc::clone(options),
    ));
}

/// Sends a socket its deliveries until it disconnects, coalescing a backlog into a state.
async fn forward<U, S, C>(
    socket: SocketRef,
    mut feed: Subscription<U, S, C>,
    closed: Arc<Notify>,
    resync: Arc<Notify>,
    options: Arc<SocketIoOptions>,
) where
    U: Id + Serialize,
    S: Id,
    C: Clock + 'static,
{
    loop {
        let delivery = tokio::select! {
            () = closed.notified() => return,
            () = resync.notified() => {
                feed.resync_later();
                continue;
            }
            delivery = feed.recv_gathered(options.linger) => delivery,
        };
        let Some(delivery) = delivery else { return };
        match socket.emit("presence", &delivery) {
            Ok(()) => {}
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                feed.resync_later();
                tokio::select! {
                    () = closed.notified() => return,
                    () = tokio::time::sleep(options.full_buffer_retry) => {}
                }
            }
            Err(_) => return,
        }
    }
}

/// The activity of a heartbeat's payload: `{"activity":"idle"}` or `"idle"`.
fn activity_of(payload: &Value) -> Option<Activity> {
    let text = match payload {
        Value::String(text) => text.as_str(),
        Value::Object(fields) => fields.get("activity")?.as_str()?,
        _ => return None,
    };
    Activity::from_str(text).ok()
}
