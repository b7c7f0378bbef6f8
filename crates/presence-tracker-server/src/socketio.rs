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
//! | client → server | `subscribe` | `{"users":["ada","bob"]}`: send me these users only (replacing the list before), or `{"all_users":true}` where the hub's all-users feed is on; the hello's `users` and `all_users` do the same from the start |
//! | client → server | `join` | `{"room":"doc-1","meta":{..}}`: the session joins the room, or takes this metadata there |
//! | client → server | `update` | `{"room":"doc-1","meta":{..}}`: the session's metadata in the room |
//! | client → server | `leave_room` | `{"room":"doc-1"}` |
//! | client → server | `watch`, `unwatch` | `{"room":"doc-1"}`: the room's messages without being in it (users and watchers) |
//! | client → server | `room_resync` | `{"room":"doc-1"}`: send me the room's state again |
//! | server → client | `presence` | a [`ServerMessage`]: `{"type":"state",..}` first, then `{"type":"updates",..}`; for each room the socket is in or watches `{"type":"room_state",..}` then `{"type":"room_updates",..}` |
//! | server → client | `refused` | a [`Refusal`]: a message that changed nothing (naming its `room` if it named one) |
//!
//! The hello may name the session's rooms (`"rooms":[{"room":"doc-1","meta":{..}}]`, see
//! [`Hello::rooms`]); socket.io-client sends its `auth` again at every reconnect, so a
//! reconnect that names the same rooms changes nothing anyone sees.
//!
//! A refused handshake (the [`Authenticate`] hook said no, a bad hello, a session of another
//! user) is answered with Socket.IO's `connect_error`, whose message is the refusal's JSON.
//!
//! On a hub that is a node of a cluster (feature `redis`), the cluster may refuse a session
//! after its handshake (another node claimed it since, another user owns its id): the socket is
//! sent the `refused` event (`session_superseded`, `session_taken`) and disconnected.
//!
//! # Ordering
//!
//! socketioxide runs each event handler as its own task, so two heartbeats sent back to back
//! could be applied in either order. The handlers registered here do their work before that
//! task is spawned, in the order the socket received the events, so a connection's signals
//! reach the tracker in the order it sent them.
//!
//! # Rooms: fan-out through socketioxide's rooms
//!
//! A socket in a presence room, as a member or a watcher, is in the socketioxide room
//! `presence-room:<room>` of the namespace, and only those sockets are sent the room's
//! messages: one task per room with sockets here reads the room's
//! [`RoomSubscription`] and broadcasts what it gathers within the
//! linger to the socketioxide room, serialised once for all of them. The same task sends a
//! socket that joins the room state (so a socket never misses an update between its state and
//! the room's next broadcast), and a fresh state to the whole room when its subscription fell
//! behind or a socket's buffer was full. The prefix keeps the application's own rooms apart.
//!
//! Who may join or watch which room is the [`Authenticate`] hook's
//! [`authorize_room`](Authenticate::authorize_room); a watcher (no session) may watch rooms and
//! join none.
//!
//! # Encoding
//!
//! Each state and update of the users is serialised once, whatever number of sockets are sent
//! it ([`Delivery::to_json`](crate::Delivery::to_json)), and handed to socketioxide as that
//! JSON (a [`RawValue`]): each socket's packet copies those bytes instead of serialising the
//! message again. Room messages are broadcast to a socketioxide room, which encodes once.
//!
//! # Backpressure
//!
//! Each socket has its own [`Subscription`]. Its forwarding task gathers what is published
//! within [`SocketIoOptions::linger`] of the first update into one `presence` message (the
//! latest state of each user changed), so a burst of transitions is one message per client: it
//! neither fills a healthy client's buffer (which would make its pings fail) nor loses an
//! update. A subscriber that falls behind the hub's backlog all the same gets a fresh state; a
//! socket whose buffer is full (a client that stopped reading) is sent a state once it can.

mod admit;
mod compact;

/// The largest message a presence client sends over Socket.IO's WebSocket transport, in bytes,
/// with its Engine.IO and Socket.IO framing: a hello naming several rooms, or a join with
/// metadata at the policy's default limit of 4 KiB, fits many times over.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// `builder` bounded as a public presence endpoint wants it (the client's messages are small):
///
/// | setting | socketioxide's default | here |
/// |---|---|---|
/// | `ws_max_message_size`, `ws_max_frame_size` | 64 MiB, 16 MiB | [`MAX_CLIENT_MESSAGE`] (64 KiB): a bigger message closes the connection |
/// | `max_buffer_size` | 128 packets | 64 packets a socket: the forwarding and room tasks send a socket whose buffer is full the whole state once it has room |
/// | `connect_timeout` | 45 s | 10 s: an Engine.IO session (a polling handshake that is never polled, say) that has not connected to a namespace by then is closed |
/// | `ws_read_buffer_size` | 4 KiB | 1 KiB a socket |
///
/// `max_payload` (100 KB by default) is left as it is: socketioxide applies it to the packets
/// it sends over HTTP long polling too, and a packet over it is never sent there; keep it above
/// the largest state a connection is sent (a room state is about 120 bytes a member plus its
/// metadata, up to [`HubConfig::big_room`](crate::HubConfig::big_room) members).
///
/// Socketioxide bounds each socket's queue in packets, not bytes, and a write that blocks holds
/// its queue: serve through [`net::GuardedListener`](crate::net::GuardedListener) (feature
/// `axum`), whose write timeout closes a connection whose client does not read, with
/// [`ConnectInfo`](axum::extract::ConnectInfo) of [`net::Peer`](crate::net::Peer)
/// (`app.into_make_service_with_connect_info::<Peer>()`), by which [`attach`] sends no room
/// state to a socket whose connection is blocked (a client asking for a room again and again
/// without reading would otherwise hold a copy of it per second until it is closed).
///
/// # Examples
///
/// ```
/// use presence_tracker_server::socketio;
/// use socketioxide::SocketIo;
///
/// let (layer, io) = socketio::bounded(SocketIo::builder()).build_layer();
/// # let _ = (layer, io);
/// ```
pub fn bounded<A: socketioxide::adapter::Adapter>(
    builder: socketioxide::SocketIoBuilder<A>,
) -> socketioxide::SocketIoBuilder<A> {
    builder
        .ws_max_message_size(MAX_CLIENT_MESSAGE)
        .ws_max_frame_size(MAX_CLIENT_MESSAGE)
        .max_buffer_size(64)
        .connect_timeout(Duration::from_secs(10))
        .ws_read_buffer_size(1024)
}

pub use admit::{AdmissionLayer, Admit};
pub use compact::{CompactRequest, CompactRequestLayer};

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use presence_tracker::{Activity, Clock, ConnectionId, DisconnectKind, Id, Metadata};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::{DisconnectReason, Sid};
use socketioxide::{BroadcastError, SendError, SocketError, SocketIo};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use bytes::Bytes;

use crate::link::{Admitted, Fanout, Link, Outcome, Sent};
use crate::wire::{
    ClientMessage, Hello, Refusal, RoomOccupancy, RoomWindow, ServerMessage, Window, PROTOCOL,
};
use crate::{
    Admission, Authenticate, Handshake, Hub, Identity, Interest, RefusalWatch, RoomDelivery,
    RoomSubscription, Subscription,
};

/// The client → server events whose payload is an object: the room messages and `subscribe`
/// (every event but `heartbeat`, `leave` and `resync`).
const OBJECT_EVENTS: [&str; 7] = [
    "join",
    "update",
    "leave_room",
    "watch",
    "unwatch",
    "room_resync",
    "subscribe",
];

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
    /// How many rooms one socket may watch (default 32).
    pub max_watched_rooms: usize,
    /// How many new sockets the namespace lets in per second (default: no limit). Over it, a
    /// handshake is refused with `connect_error`, refusal `busy` with `retry_after_ms`, before
    /// its hello is authenticated. [`AdmissionLayer`] refuses earlier and for less (before the
    /// Engine.IO session and the upgrade), with a 503; use one or the other.
    pub admission: Option<Admission>,
}

impl Default for SocketIoOptions {
    fn default() -> Self {
        SocketIoOptions {
            linger: Duration::from_millis(50),
            full_buffer_retry: Duration::from_millis(250),
            max_watched_rooms: 32,
            admission: None,
        }
    }
}

impl SocketIoOptions {
    /// With this admission of new sockets (see [`Admission`]).
    pub fn admission(mut self, admission: Admission) -> Self {
        self.admission = Some(admission);
        self
    }
}

/// What a socket is to the hub, kept in its extensions.
#[derive(Clone)]
struct Conn<U, S, M> {
    link: Arc<Mutex<Link<U, S, M>>>,
    /// What the hello could not do (rooms refused), sent once the socket is connected.
    refusals: Arc<Mutex<Vec<Refusal>>>,
    /// Wakes the forwarding task when the socket disconnects.
    closed: Arc<Notify>,
    /// Fires if the cluster refuses the socket's session (taken by its forwarding task).
    refusal: Arc<Mutex<Option<RefusalWatch>>>,
    /// What the forwarding task is asked to do besides forwarding.
    control: Arc<Control<U>>,
}

/// A socket's requests to its forwarding task: the users to send it from now on (the last
/// asked replaces any not yet taken, as a subscription replaces the one before), a fresh
/// state.
struct Control<U> {
    interest: Mutex<Option<Interest<U>>>,
    resync: AtomicBool,
    notify: Notify,
}

impl<U> Control<U> {
    fn new(interest: Interest<U>) -> Self {
        Control {
            interest: Mutex::new(Some(interest)),
            resync: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }
}

/// Registers presence on the namespace `path` of `io`: authentication, the session's connect
/// (and its rooms), the `heartbeat`, `leave` and `resync` events, the room events, the
/// disconnect (Socket.IO's reasons mapped to [`DisconnectKind::Clean`] or
/// [`DisconnectKind::Lost`]), a task per socket that sends it the state and the updates, and a
/// task per room with sockets that sends them the room's.
///
/// `U` and `S` must serialise (they are on the wire); `S` and `M` come from the clients.
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
pub fn attach<U, S, C, M, A>(
    io: &SocketIo,
    path: impl Into<Cow<'static, str>>,
    hub: Hub<U, S, C, String, M>,
    auth: A,
) where
    U: Id + Serialize + DeserializeOwned,
    S: Id + Serialize + DeserializeOwned,
    C: Clock + 'static,
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
    A: Authenticate<U>,
{
    attach_with(io, path, hub, auth, SocketIoOptions::default());
}

/// [`attach`] with options.
pub fn attach_with<U, S, C, M, A>(
    io: &SocketIo,
    path: impl Into<Cow<'static, str>>,
    hub: Hub<U, S, C, String, M>,
    auth: A,
    options: SocketIoOptions,
) where
    U: Id + Serialize + DeserializeOwned,
    S: Id + Serialize + DeserializeOwned,
    C: Clock + 'static,
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
    A: Authenticate<U>,
{
    let path = path.into();
    let auth = Arc::new(auth);
    let options = Arc::new(options);
    let rooms = Arc::new(RoomFanout {
        io: io.clone(),
        path: path.clone(),
        hub: hub.clone(),
        options: Arc::clone(&options),
        tasks: Mutex::new(HashMap::new()),
    });
    let admit = {
        let hub = hub.clone();
        let auth = Arc::clone(&auth);
        let options = Arc::clone(&options);
        move |socket: SocketRef, TryData(hello): TryData<Hello<S, String, M, U>>| {
            let result = admit(&socket, hello.ok(), &hub, auth.as_ref(), &options);
            std::future::ready(result)
        }
    };
    let on_connect = move |socket: SocketRef| {
        serve(&socket, &hub, &auth, &options, &rooms);
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

/// The handshake: who the socket is, its session's connect and rooms. Runs before the socket
/// is connected; an `Err` is the client's `connect_error`.
fn admit<U, S, C, M, A>(
    socket: &SocketRef,
    hello: Option<Hello<S, String, M, U>>,
    hub: &Hub<U, S, C, String, M>,
    auth: &A,
    options: &SocketIoOptions,
) -> Result<(), Refused>
where
    U: Id,
    S: Id,
    C: Clock + 'static,
    M: Metadata + Default + PartialEq + Clone,
    A: Authenticate<U>,
{
    if let Some(Err(busy)) = options.admission.as_ref().map(Admission::try_admit) {
        return Err(Refused(Refusal::busy(busy)));
    }
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
    crate::link::check_watcher(hub, &identity).map_err(Refused)?;
    let connection = ConnectionId::from(socket.id.as_str());
    let mut refusal = None;
    let mut bucket = None;
    let session = match (&identity, hello.session) {
        (Identity::User(user), Some(session)) => {
            // The session's rate first: a reconnect loop is refused before it connects.
            bucket = crate::link::session_hello(hub, &session).map_err(Refused)?;
            // Before the connect: a cluster's refusal may come as soon as it is written.
            refusal = Some(hub.watch_refusal(connection));
            hub.connect(user.clone(), session.clone(), connection, hello.activity)
                .map_err(|e| Refused(Refusal::from_error(&e)))?;
            Some((user.clone(), session))
        }
        // A user without a session id, or a watcher: it only watches.
        _ => None,
    };
    let mut link = Link::new(
        identity,
        session,
        connection,
        options.max_watched_rooms,
        hub.config().max_window,
    )
    .with_session_bucket(bucket);
    let mut refusals = link.hello_rooms(hub, auth, hello.rooms);
    let (interest, refused) = link.hello_interest(hub, auth, hello.users, hello.all_users);
    refusals.extend(refused);
    socket.extensions.insert(Conn {
        link: Arc::new(Mutex::new(link)),
        refusals: Arc::new(Mutex::new(refusals)),
        closed: Arc::new(Notify::new()),
        refusal: Arc::new(Mutex::new(refusal)),
        control: Arc::new(Control::new(interest)),
    });
    Ok(())
}

/// A connected socket: its event handlers, its rooms and its forwarding task.
fn serve<U, S, C, M, A>(
    socket: &SocketRef,
    hub: &Hub<U, S, C, String, M>,
    auth: &Arc<A>,
    options: &Arc<SocketIoOptions>,
    rooms: &Arc<RoomFanout<U, S, C, M>>,
) where
    U: Id + Serialize + DeserializeOwned,
    S: Id + Serialize + DeserializeOwned,
    C: Clock + 'static,
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
    A: Authenticate<U>,
{
    let Some(conn) = socket.extensions.get::<Conn<U, S, M>>() else {
        return; // admitted sockets always have one
    };
    if let Some(outflow) = Outflow::of(socket) {
        socket.extensions.insert(outflow);
    }
    // Runs the message through the link, in the handler (so in the order the socket received
    // it), then tells the client what was refused and changes the room fan-out.
    let handle = {
        let (hub, auth, rooms, link, control) = (
            hub.clone(),
            Arc::clone(auth),
            Arc::clone(rooms),
            Arc::clone(&conn.link),
            Arc::clone(&conn.control),
        );
        move |socket: &SocketRef, message: Result<ClientMessage<S, String, M, U>, Refusal>| {
            let admitted = link.lock().admit(&hub);
            match admitted {
                Admitted::Yes => {}
                Admitted::Refuse(refusal) => {
                    let _ = socket.emit("refused", &refusal);
                    return;
                }
                Admitted::Drop => return,
                Admitted::Close => {
                    // A flood: no client of the protocol sends one.
                    let _ = socket.clone().disconnect();
                    return;
                }
            }
            let outcome = match message {
                Ok(message) => link.lock().handle(&hub, auth.as_ref(), message),
                Err(refusal) => Outcome::refused(refusal),
            };
            if let Some(interest) = outcome.interest {
                *control.interest.lock() = Some(interest);
                control.notify.notify_one();
            }
            for refusal in &outcome.refusals {
                // Gone already: then there is no one to tell.
                let _ = socket.emit("refused", refusal);
            }
            for fanout in outcome.fanout {
                let view = link.lock().view(fanout.room()).unwrap_or_default();
                rooms.apply(socket, fanout, view);
            }
        }
    };
    {
        let handle = handle.clone();
        socket.on(
            "heartbeat",
            move |socket: SocketRef, TryData(payload): TryData<Value>| {
                let message = match payload.ok().as_ref().and_then(activity_of) {
                    Some(activity) => Ok(ClientMessage::Heartbeat { activity }),
                    None => Err(Refusal::new(
                        "bad_message",
                        "a heartbeat is {\"activity\":\"active\"|\"idle\"|\"background\"}",
                    )),
                };
                handle(&socket, message);
                std::future::ready(())
            },
        );
    }
    {
        let handle = handle.clone();
        socket.on("leave", move |socket: SocketRef| {
            handle(&socket, Ok(ClientMessage::Leave));
            std::future::ready(())
        });
    }
    for event in OBJECT_EVENTS {
        let handle = handle.clone();
        socket.on(
            event,
            move |socket: SocketRef, TryData(payload): TryData<Value>| {
                handle(&socket, object_message(event, payload.ok()));
                std::future::ready(())
            },
        );
    }
    {
        let hub = hub.clone();
        let rooms = Arc::clone(rooms);
        let conn = conn.clone();
        socket.on_disconnect(move |socket: SocketRef, reason: DisconnectReason| {
            conn.closed.notify_one();
            let link = conn.link.lock();
            let sent = link
                .rooms()
                .into_iter()
                .map(|room| {
                    let sent = link.view(&room).unwrap_or_default();
                    (room, sent)
                })
                .collect();
            rooms.closed(socket.id, sent);
            if let Some((_, session)) = link.session() {
                // Only a Socket.IO disconnect says goodbye; a transport that closed without one
                // (a network change, a killed tab) may come back: the long grace.
                let kind = match reason {
                    DisconnectReason::ClientNSDisconnect | DisconnectReason::ServerNSDisconnect => {
                        DisconnectKind::Clean
                    }
                    _ => DisconnectKind::Lost,
                };
                // Unknown: it expired meanwhile; nothing to record.
                let _ = hub.disconnect(session, link.connection(), kind);
            }
            std::future::ready(())
        });
    }
    let interest = conn
        .control
        .interest
        .lock()
        .take()
        .unwrap_or(Interest::Users(Vec::new()));
    let feed = hub.subscribe_to(interest);
    {
        let control = Arc::clone(&conn.control);
        let (hub, link) = (hub.clone(), Arc::clone(&conn.link));
        socket.on("resync", move |socket: SocketRef| {
            let admitted = link.lock().admit(&hub);
            match admitted {
                Admitted::Yes => {}
                Admitted::Refuse(refusal) => {
                    let _ = socket.emit("refused", &refusal);
                    return std::future::ready(());
                }
                Admitted::Drop => return std::future::ready(()),
                Admitted::Close => {
                    let _ = socket.disconnect();
                    return std::future::ready(());
                }
            }
            control.resync.store(true, Ordering::Release);
            control.notify.notify_one();
            std::future::ready(())
        });
    }
    // Its session's handle before anything it could be in.
    let welcome = conn.link.lock().welcome(hub);
    if let Some(welcome) = welcome {
        let _ = socket.emit(
            "presence",
            &ServerMessage::<U, S, String, M>::Welcome(welcome),
        );
    }
    let refusal = conn
        .refusal
        .lock()
        .take()
        .unwrap_or_else(RefusalWatch::never);
    tokio::spawn(forward(
        socket.clone(),
        feed,
        Arc::clone(&conn.closed),
        Arc::clone(&conn.control),
        refusal,
        Arc::clone(options),
    ));
    // The users' state goes first (the forwarder's first delivery), then the rooms'.
    let opened: Vec<(String, Sent)> = {
        let link = conn.link.lock();
        link.rooms()
            .into_iter()
            .map(|room| {
                let view = link.view(&room).unwrap_or_default();
                (room, view)
            })
            .collect()
    };
    for (room, view) in opened {
        rooms.apply(socket, Fanout::Open(room), view);
    }
    for refusal in std::mem::take(&mut *conn.refusals.lock()) {
        let _ = socket.emit("refused", &refusal);
    }
}

/// An event's object payload as the client message of that type.
fn object_message<S, M, U>(
    event: &str,
    payload: Option<Value>,
) -> Result<ClientMessage<S, String, M, U>, Refusal>
where
    S: DeserializeOwned,
    M: DeserializeOwned + Default,
    U: DeserializeOwned,
{
    let mut fields = match payload {
        Some(Value::Object(fields)) => fields,
        _ => {
            return Err(Refusal::new(
                "bad_message",
                format!("a {event} is an object: {{\"room\":..}}"),
            ))
        }
    };
    fields.insert("type".into(), Value::String(event.into()));
    serde_json::from_value(Value::Object(fields))
        .map_err(|e| Refusal::new("bad_message", format!("{event}: {e}")))
}

/// Sends a socket its deliveries until it disconnects, coalescing a backlog into a state; if
/// the cluster refuses its session, sends it the refusal and disconnects it.
async fn forward<U, S, C, M>(
    socket: SocketRef,
    mut feed: Subscription<U, S, C, String, M>,
    closed: Arc<Notify>,
    control: Arc<Control<U>>,
    mut refusal: RefusalWatch,
    options: Arc<SocketIoOptions>,
) where
    U: Id + Serialize,
    S: Id,
    C: Clock + 'static,
    M: Metadata,
{
    loop {
        let delivery = tokio::select! {
            () = closed.notified() => return,
            refused = refusal.refused() => {
                // The client is told why, then disconnected: a Socket.IO disconnect from the
                // server, which socket.io-client does not retry.
                let _ = socket.emit("refused", &refused);
                let _ = socket.disconnect();
                return;
            }
            () = control.notify.notified() => {
                if let Some(interest) = control.interest.lock().take() {
                    // A state of the new interest comes next.
                    feed.set_interest(interest);
                } else if control.resync.swap(false, Ordering::AcqRel) {
                    feed.resync_later();
                }
                continue;
            }
            delivery = feed.recv_gathered(options.linger) => delivery,
        };
        let Some(delivery) = delivery else { return };
        // The delivery's JSON is made once for every socket sent it; the packet copies it.
        let Ok(json) = delivery.to_json() else { return };
        let Ok(raw) = raw_json(&json) else { return };
        match socket.emit("presence", raw) {
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

/// Our own JSON as a [`RawValue`], which serialises as those bytes: checked, not parsed into
/// values or copied.
fn raw_json(json: &[u8]) -> Result<&RawValue, serde_json::Error> {
    serde_json::from_slice(json)
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

/// The socketioxide room of a presence room's sockets sent it as `sent`.
fn key(room: &str, sent: Sent) -> String {
    match sent {
        Sent::Members => format!("presence-room:{room}"),
        Sent::Occupancy => format!("presence-occupancy:{room}"),
        Sent::Window(Window { limit, after }) => match after {
            Some(after) => format!("presence-window:{limit}:{after}:{room}"),
            None => format!("presence-window:{limit}:-:{room}"),
        },
    }
}

/// The rooms' fan-out on one namespace: a task per room with sockets here.
struct RoomFanout<U, S, C, M> {
    io: SocketIo,
    path: Cow<'static, str>,
    hub: Hub<U, S, C, String, M>,
    options: Arc<SocketIoOptions>,
    tasks: Mutex<HashMap<String, RoomTask>>,
}

/// A room's task, and how many of the namespace's sockets are in its socketioxide rooms.
struct RoomTask {
    sockets: usize,
    /// The windows of the room sockets here are sent, with how many sockets each.
    windows: Windows,
    /// Sockets to send the room's state (or occupancy, or window) to: new in the room, or
    /// asking again.
    send_state: Arc<StateQueue>,
    task: JoinHandle<()>,
}

/// The windows of a room in use on a namespace, with how many sockets each.
type Windows = Arc<Mutex<HashMap<Window, usize>>>;

impl RoomTask {
    /// A socket is sent the room as `sent` from now on.
    fn count(&self, sent: Sent) {
        if let Sent::Window(window) = sent {
            *self.windows.lock().entry(window).or_insert(0) += 1;
        }
    }

    /// A socket is no longer sent the room as `sent`.
    fn uncount(&self, sent: Sent) {
        if let Sent::Window(window) = sent {
            let mut windows = self.windows.lock();
            if let Some(n) = windows.get_mut(&window) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    windows.remove(&window);
                }
            }
        }
    }
}

impl<U, S, C, M> RoomFanout<U, S, C, M>
where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    /// Changes what `socket` is sent of a room; `sent` is how it is sent the room after.
    fn apply(&self, socket: &SocketRef, fanout: Fanout, sent: Sent) {
        let mut tasks = self.tasks.lock();
        match fanout {
            Fanout::Open(room) => {
                let task = tasks
                    .entry(room.clone())
                    .or_insert_with(|| self.spawn(room.clone()));
                task.sockets += 1;
                task.count(sent);
                socket.join(key(&room, sent));
                // The task sends the state: after every broadcast it made before, so nothing
                // reaches the socket out of order.
                task.send_state.push((socket.id, sent));
            }
            Fanout::Close(room, was) => {
                socket.leave(key(&room, was));
                if let Some(task) = tasks.get(&room) {
                    task.uncount(was);
                }
                Self::release(&mut tasks, &room);
            }
            Fanout::Resync(room, was) => {
                if let Some(task) = tasks.get(&room) {
                    // The view may have changed: the socket is in its socketioxide room only.
                    if was != sent {
                        socket.leave(key(&room, was));
                        task.uncount(was);
                        task.count(sent);
                    }
                    socket.join(key(&room, sent));
                    task.send_state.push((socket.id, sent));
                }
            }
        }
    }

    /// A socket that was sent `rooms` (each as it was sent) disconnected (socketioxide took it
    /// out of its socketioxide rooms).
    fn closed(&self, _socket: Sid, rooms: Vec<(String, Sent)>) {
        let mut tasks = self.tasks.lock();
        for (room, sent) in rooms {
            if let Some(task) = tasks.get(&room) {
                task.uncount(sent);
            }
            Self::release(&mut tasks, &room);
        }
    }

    fn release(tasks: &mut HashMap<String, RoomTask>, room: &str) {
        if let Some(task) = tasks.get_mut(room) {
            task.sockets = task.sockets.saturating_sub(1);
            if task.sockets == 0 {
                task.task.abort();
                tasks.remove(room);
            }
        }
    }

    fn spawn(&self, room: String) -> RoomTask {
        let send_state = Arc::new(StateQueue::default());
        let feed = self.hub.rooms().subscribe_updates(room.clone());
        let windows = Windows::default();
        let task = tokio::spawn(fan_out(
            self.io.clone(),
            self.path.clone(),
            self.hub.clone(),
            (feed, Arc::clone(&windows)),
            Arc::clone(&send_state),
            Arc::clone(&self.options),
        ));
        RoomTask {
            sockets: 0,
            windows,
            send_state,
            task,
        }
    }
}

/// The sockets a room's task is asked to send the room whole to, each in its view: a vector
/// and a wake-up, which cost nothing while empty (a channel would hold a block of 32 slots for
/// every room watched).
#[derive(Default)]
struct StateQueue {
    asks: Mutex<Vec<(Sid, Sent)>>,
    wake: Notify,
}

impl StateQueue {
    fn push(&self, ask: (Sid, Sent)) {
        self.asks.lock().push(ask);
        self.wake.notify_one();
    }
}

/// One room's task: broadcasts the room's deliveries to its socketioxide room of members (its
/// occupancy while the room is big), its occupancy (when it changed) to its rooms of occupancy
/// and window watchers, each window in use (when it changed) to its watchers, and sends its
/// state (or occupancy, or window) to the sockets that ask.
async fn fan_out<U, S, C, M>(
    io: SocketIo,
    path: Cow<'static, str>,
    hub: Hub<U, S, C, String, M>,
    (mut feed, windows): (RoomSubscription<U, S, C, String, M>, Windows),
    states: Arc<StateQueue>,
    options: Arc<SocketIoOptions>,
) where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    let room = feed.room().clone();
    let mut fan = Fan {
        members: key(&room, Sent::Members),
        watchers: key(&room, Sent::Occupancy),
        io: &io,
        path: &path,
        hub: &hub,
        room: &room,
        windows: &windows,
        counted: None,
        counted_for_members: false,
        // Sockets get the room as it is now from the state requests: listed unless it is big.
        listed: !hub.rooms().occupancy(room.as_str()).big,
        shown: HashMap::new(),
        broadcast: None,
        counts_interval: hub.config().big_room_counts,
        counts_after: None,
        counts_due: None,
    };
    // A broadcast some socket could not take: the room's sockets are told its version at this
    // time (`Fan::recover`).
    let mut state_for_all: Option<tokio::time::Instant> = None;
    // Sockets that asked for the room whole again as they were sent it a moment ago.
    let mut asked = Asked::default();
    let mut asked_due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = states.wake.notified() => {
                let now = tokio::time::Instant::now();
                let asks = std::mem::take(&mut *states.asks.lock());
                for (sid, sent) in asks {
                    if let Some(due) = asked.defer(sid, sent, now) {
                        asked_due = Some(asked_due.map_or(due, |d| d.min(due)));
                        continue;
                    }
                    if whole_to(&io, &path, &hub, &room, sid, sent) {
                        asked.hold(sid, sent, now + options.full_buffer_retry);
                        asked_due = asked.next_due();
                    }
                }
            }
            () = sleep_until(asked_due), if asked_due.is_some() => {
                let now = tokio::time::Instant::now();
                for (sid, sent) in asked.due(now) {
                    if whole_to(&io, &path, &hub, &room, sid, sent) {
                        asked.hold(sid, sent, now + options.full_buffer_retry);
                    }
                }
                asked_due = asked.next_due();
            }
            () = sleep_until(state_for_all), if state_for_all.is_some() => {
                state_for_all = None;
                if fan.recover().await {
                    state_for_all = Some(tokio::time::Instant::now() + options.full_buffer_retry);
                }
            }
            () = sleep_until(fan.counts_due), if fan.counts_due.is_some() => {
                fan.counts_due = None;
                if fan.counts_now().await && state_for_all.is_none() {
                    state_for_all = Some(tokio::time::Instant::now() + options.full_buffer_retry);
                }
            }
            delivery = feed.recv_gathered(options.linger) => {
                let Some(delivery) = delivery else { return };
                if fan.send(delivery).await && state_for_all.is_none() {
                    state_for_all = Some(tokio::time::Instant::now() + options.full_buffer_retry);
                }
            }
        }
    }
}

/// Sends one socket the room whole, as it is `sent` it: the state (or a big room's counts), the
/// counts, or the counts and its window; whether its buffer was full (it is to be sent the room
/// again).
fn whole_to<U, S, C, M>(
    io: &SocketIo,
    path: &str,
    hub: &Hub<U, S, C, String, M>,
    room: &str,
    sid: Sid,
    sent: Sent,
) -> bool
where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    let Some(socket) = io.of(path).and_then(|ns| ns.get_socket(sid)) else {
        return false;
    };
    if socket
        .extensions
        .get::<Outflow>()
        .is_some_and(|o| o.blocked())
    {
        // It does not read what it was sent: a copy more would wait in memory. Held, and
        // tried again (the room as it is then) until the connection drains or closes.
        return true;
    }
    // A big room's counts, without making its state.
    let occupancy = ServerMessage::<U, S, String, M>::RoomOccupancy(hub.rooms().occupancy(room));
    let big = matches!(&occupancy, ServerMessage::RoomOccupancy(o) if o.big);
    let mut sends = Vec::with_capacity(2);
    match sent {
        Sent::Members if !big => {
            let state = RoomDelivery::State(hub.rooms().state(room));
            sends.push(match state.to_json().as_deref().map(raw_json) {
                Ok(Ok(raw)) => socket.emit("presence", raw),
                _ => Ok(()),
            });
        }
        Sent::Members | Sent::Occupancy => sends.push(socket.emit("presence", &occupancy)),
        Sent::Window(window) => {
            sends.push(socket.emit("presence", &occupancy));
            let now = hub.rooms().window(room, window);
            sends.push(match now.to_json().as_deref().map(raw_json) {
                Ok(Ok(raw)) => socket.emit("presence", raw),
                _ => Ok(()),
            });
        }
    }
    sends
        .iter()
        .any(|s| matches!(s, Err(SendError::Socket(SocketError::InternalChannelFull))))
}

/// The connection a socket's packets go out on, when the server knows it: served through
/// [`net::GuardedListener`](crate::net::GuardedListener) with
/// [`ConnectInfo`](axum::extract::ConnectInfo) of [`Peer`](crate::net::Peer), on a socket
/// that connected over WebSocket (a socket that began on HTTP long polling was handshaken on
/// another connection than the one it upgraded to).
#[derive(Clone)]
struct Outflow {
    #[cfg(feature = "axum")]
    peer: crate::net::Peer,
}

impl Outflow {
    #[cfg(feature = "axum")]
    fn of(socket: &SocketRef) -> Option<Self> {
        if socket.transport_type() != socketioxide::TransportType::Websocket {
            return None;
        }
        let parts = socket.req_parts();
        let axum::extract::ConnectInfo(peer) = parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::net::Peer>>()?;
        Some(Outflow { peer: peer.clone() })
    }

    #[cfg(not(feature = "axum"))]
    fn of(_: &SocketRef) -> Option<Self> {
        None
    }

    /// Whether a write to the connection is waiting for the client to read.
    fn blocked(&self) -> bool {
        #[cfg(feature = "axum")]
        return self.peer.write_blocked();
        #[cfg(not(feature = "axum"))]
        return false;
    }
}

/// How often one socket is sent a room whole in the same view: a request within this of the
/// last is held until then, and those held meanwhile are one (a client that asks for a room
/// again and again, reading or not, costs one state a second).
const SAME_WHOLE_INTERVAL: Duration = Duration::from_secs(1);

/// The sockets a room's task sent the room whole lately, and the requests it holds.
#[derive(Default)]
struct Asked {
    /// When each socket was last sent the room whole, and in which view.
    sent: HashMap<Sid, (Sent, tokio::time::Instant)>,
    /// Held requests: the view, and when it is due.
    held: HashMap<Sid, (Sent, tokio::time::Instant)>,
}

impl Asked {
    /// Whether to hold the request (`Some(when it is due)`), or send it now (`None`: it is
    /// counted as sent now).
    fn defer(
        &mut self,
        sid: Sid,
        sent: Sent,
        now: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        if let Some(&(held, due)) = self.held.get(&sid) {
            if held == sent {
                return Some(due);
            }
        }
        match self.sent.get(&sid) {
            Some(&(last, at)) if last == sent && now < at + SAME_WHOLE_INTERVAL => {
                let due = at + SAME_WHOLE_INTERVAL;
                self.held.insert(sid, (sent, due));
                Some(due)
            }
            _ => {
                // A new view supersedes one held.
                self.held.remove(&sid);
                if self.sent.len() >= 64 {
                    self.sent
                        .retain(|_, (_, at)| now < *at + SAME_WHOLE_INTERVAL);
                }
                self.sent.insert(sid, (sent, now));
                None
            }
        }
    }

    /// Holds a request until `due` (a socket whose buffer was full, asked again then).
    fn hold(&mut self, sid: Sid, sent: Sent, due: tokio::time::Instant) {
        self.held.insert(sid, (sent, due));
    }

    /// The held requests due at `now`, counted as sent now.
    fn due(&mut self, now: tokio::time::Instant) -> Vec<(Sid, Sent)> {
        let due: Vec<(Sid, Sent)> = self
            .held
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(sid, (sent, _))| (*sid, *sent))
            .collect();
        for (sid, sent) in &due {
            self.held.remove(sid);
            self.sent.insert(*sid, (*sent, now));
        }
        due
    }

    /// When the next held request is due.
    fn next_due(&self) -> Option<tokio::time::Instant> {
        self.held.values().map(|(_, at)| *at).min()
    }
}

/// What a room's task sent its socketioxide rooms last, and where it sends.
struct Fan<'a, U, S, C, M> {
    io: &'a SocketIo,
    path: &'a str,
    hub: &'a Hub<U, S, C, String, M>,
    room: &'a String,
    windows: &'a Windows,
    /// The socketioxide rooms of members and of occupancy watchers.
    members: String,
    watchers: String,
    /// The occupancy last broadcast: one that counts the same is not sent again.
    counted: Option<RoomOccupancy<String>>,
    /// Whether the members' socketioxide room was sent that occupancy (the room is big).
    counted_for_members: bool,
    /// Whether the members' socketioxide room holds the members (it is not big).
    listed: bool,
    /// The window last broadcast to each window's socketioxide room.
    shown: HashMap<Window, Arc<RoomWindow<U, S, String, M>>>,
    /// The room's epoch and version the members were last broadcast.
    broadcast: Option<(u64, u64)>,
    /// A big room's counts go out at most every `counts_interval`: not before `counts_after`;
    /// `counts_due` when counts that changed were held back.
    counts_interval: Duration,
    counts_after: Option<tokio::time::Instant>,
    counts_due: Option<tokio::time::Instant>,
}

impl<U, S, C, M> Fan<'_, U, S, C, M>
where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    /// Everything goes whole with the next delivery.
    fn forget(&mut self) {
        self.counted = None;
        self.shown.clear();
    }

    /// Some socket missed a broadcast (its buffer was full): the members are sent a version
    /// check, the others the counts and windows as they are now. Whether some socket missed
    /// these too.
    ///
    /// The check is a `room_updates` from `version + 1` to `version` with no members: by the
    /// rooms' rule a client that holds the version ignores it (`to <= V`), and one behind asks
    /// for the room again (`from > V + 1`), which its socket alone is sent. The room whole to
    /// every socket instead would cost each member a copy of the state whenever one socket
    /// does not read.
    async fn recover(&mut self) -> bool {
        let (io, path) = (self.io, self.path);
        let mut missed = false;
        // The version the members were last broadcast, not the room's (which may be ahead by
        // an update the task has not taken yet: every member would then ask for the room).
        if let Some((epoch, version)) = self.listed.then_some(self.broadcast).flatten() {
            let check = version_check(self.room, epoch, version);
            missed |= broadcast_json(io, path, &self.members, Ok(Bytes::from(check))).await;
        }
        self.forget();
        missed |= self.counts_now().await;
        let windows: Vec<Window> = self.windows.lock().keys().copied().collect();
        for window in windows {
            let now = self.hub.rooms().window(self.room.as_str(), window);
            missed |= broadcast_json(
                io,
                path,
                &key(self.room, Sent::Window(window)),
                now.to_json(),
            )
            .await;
            self.shown.insert(window, now);
        }
        missed
    }

    /// Broadcasts the room's counts now, if they changed since the last sent, to the sockets
    /// sent them (the members while the room is big); whether some socket missed them.
    async fn counts_now(&mut self) -> bool {
        let occupancy = self.hub.rooms().occupancy(self.room.as_str());
        if self
            .counted
            .as_ref()
            .is_some_and(|c| c.counts_as(&occupancy))
        {
            return false;
        }
        if occupancy.big {
            self.counts_after = Some(tokio::time::Instant::now() + self.counts_interval);
        }
        self.counted = Some(occupancy.clone());
        let message = ServerMessage::<U, S, String, M>::RoomOccupancy(occupancy);
        let (io, path) = (self.io, self.path);
        let mut missed = false;
        if self.counted_for_members {
            missed |= broadcast(io, path, &self.members, &message).await;
        }
        missed |= broadcast(io, path, &self.watchers, &message).await;
        let windows: Vec<Window> = self.windows.lock().keys().copied().collect();
        for window in windows {
            missed |= broadcast(io, path, &key(self.room, Sent::Window(window)), &message).await;
        }
        missed
    }

    /// Broadcasts what a delivery changes; whether some socket's buffer was full (it missed it).
    async fn send(&mut self, delivery: RoomDelivery<U, S, String, M>) -> bool {
        let (io, path) = (self.io, self.path);
        let mut missed = false;
        let occupancy = delivery.occupancy();
        let mut recount = !self
            .counted
            .as_ref()
            .is_some_and(|c| c.counts_as(&occupancy));
        // A big room's counts are paced, but for the members' switch to them.
        let switching = delivery.big() && !self.counted_for_members;
        let now = tokio::time::Instant::now();
        if recount && occupancy.big && !switching && self.counts_after.is_some_and(|t| now < t) {
            self.counts_due = self.counts_after;
            recount = false;
        }
        if recount {
            if occupancy.big {
                self.counts_after = Some(now + self.counts_interval);
            }
            self.counted = Some(occupancy.clone());
        }
        let message = ServerMessage::<U, S, String, M>::RoomOccupancy(occupancy);
        if delivery.big() {
            if recount || switching {
                missed |= broadcast(io, path, &self.members, &message).await;
            }
            self.counted_for_members = true;
            self.listed = false;
        } else {
            let whole = if self.listed || matches!(delivery, RoomDelivery::State(_)) {
                delivery
            } else {
                // The room was big and is not any more: the members, whole.
                RoomDelivery::State(self.hub.rooms().state(self.room.as_str()))
            };
            let last = whole.occupancy();
            missed |= broadcast_json(io, path, &self.members, whole.to_json()).await;
            self.broadcast = Some((last.epoch, last.version));
            self.counted_for_members = false;
            self.listed = true;
        }
        if recount {
            missed |= broadcast(io, path, &self.watchers, &message).await;
        }
        let windows: Vec<(Window, usize)> =
            self.windows.lock().iter().map(|(w, n)| (*w, *n)).collect();
        self.shown
            .retain(|w, _| windows.iter().any(|(x, _)| x == w));
        for (window, _) in windows {
            let sent = Sent::Window(window);
            if recount {
                missed |= broadcast(io, path, &key(self.room, sent), &message).await;
            }
            let now = self.hub.rooms().window(self.room.as_str(), window);
            if self
                .shown
                .get(&window)
                .is_some_and(|s| Arc::ptr_eq(s, &now))
            {
                continue;
            }
            missed |= broadcast_json(io, path, &key(self.room, sent), now.to_json()).await;
            self.shown.insert(window, now);
        }
        missed
    }
}

/// A `room_updates` that changes nothing and tells the room's version: from `version + 1` to
/// `version`, no members (see `Fan::recover`).
fn version_check(room: &str, epoch: u64, version: u64) -> String {
    format!(
        r#"{{"type":"room_updates","room":{},"epoch":{epoch},"from":{},"to":{version},"members":[]}}"#,
        Value::String(room.to_string()),
        version.saturating_add(1),
    )
}

/// Sends `message` to the sockets of the socketioxide room `key`; whether some socket's buffer
/// was full (it missed it).
async fn broadcast<T: Serialize + ?Sized>(
    io: &SocketIo,
    path: &str,
    key: &str,
    message: &T,
) -> bool {
    let Some(ns) = io.of(path) else { return false };
    matches!(
        ns.to(key.to_string()).emit("presence", message).await,
        Err(BroadcastError::Socket(_))
    )
}

/// Sends our own JSON to the sockets of the socketioxide room `key`, as it is (made once);
/// whether some socket's buffer was full.
async fn broadcast_json(
    io: &SocketIo,
    path: &str,
    key: &str,
    json: Result<Bytes, serde_json::Error>,
) -> bool {
    let Ok(json) = json else { return false };
    let Ok(raw) = raw_json(&json) else {
        return false;
    };
    broadcast(io, path, key, raw).await
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_check_is_ignored_by_a_client_that_holds_the_version_and_a_gap_to_one_behind() {
        let check: ServerMessage<String> =
            serde_json::from_str(&version_check("doc \"1\"", 7, 41)).expect("a server message");
        let ServerMessage::RoomUpdates(u) = check else {
            panic!("room_updates")
        };
        assert_eq!((u.room.as_str(), u.epoch), ("doc \"1\"", 7));
        assert!(u.members.is_empty());
        // The rooms' rule: ignored at 41 (`to <= V`), a gap at 40 (`from > V + 1`).
        let (held, behind) = (41u64, 40u64);
        assert!(u.to <= held);
        assert!(u.to > behind && u.from > behind + 1);
    }

    #[test]
    fn a_socket_asking_for_the_same_room_again_and_again_is_sent_it_once_a_second() {
        let mut asked = Asked::default();
        let (a, b) = (Sid::new(), Sid::new());
        let t0 = tokio::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(
            asked.defer(a, Sent::Members, ms(0)),
            None,
            "the first goes now"
        );
        assert_eq!(
            asked.defer(b, Sent::Members, ms(10)),
            None,
            "another socket too"
        );
        // A hundred more within the second: one held, due a second after the first.
        for i in 1..=100 {
            assert_eq!(asked.defer(a, Sent::Members, ms(i * 5)), Some(ms(1000)));
        }
        assert_eq!(asked.next_due(), Some(ms(1000)));
        assert!(asked.due(ms(999)).is_empty());
        assert_eq!(asked.due(ms(1000)), [(a, Sent::Members)]);
        assert_eq!(asked.next_due(), None);
        // Sent at 1 s: the next is held until 2 s.
        assert_eq!(asked.defer(a, Sent::Members, ms(1500)), Some(ms(2000)));
    }

    #[test]
    fn another_view_goes_at_once_and_replaces_the_one_held() {
        let mut asked = Asked::default();
        let a = Sid::new();
        let t0 = tokio::time::Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(asked.defer(a, Sent::Members, ms(0)), None);
        assert!(asked.defer(a, Sent::Members, ms(100)).is_some());
        // Paging a window: each new view is sent at once.
        assert_eq!(asked.defer(a, Sent::Occupancy, ms(200)), None);
        assert!(
            asked.due(ms(5000)).is_empty(),
            "the held members view was replaced"
        );
    }
}
