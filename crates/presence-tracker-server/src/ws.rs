//! Presence over a plain WebSocket ([`axum`]), with one JSON object per text message.
//!
//! | direction | message |
//! |---|---|
//! | client → server | a [`Hello`] first, within [`WsOptions::hello_timeout`]: `{"type":"hello","protocol":1,"session":"<tab id>","activity":"idle","token":..}` (no `session`: a watcher) |
//! | client → server | `{"type":"heartbeat","activity":"active"}`, `{"type":"leave"}`, `{"type":"resync"}` |
//! | client → server | interest: `{"type":"subscribe","users":["ada","bob"]}` (those users, replacing the list before), `{"type":"subscribe","all_users":true}` (where the hub's all-users feed is on); `"users":[..]` or `"all_users":true` in the hello |
//! | client → server | rooms: `{"type":"join","room":"doc-1","meta":{..}}`, `{"type":"update","room":"doc-1","meta":{..}}`, `{"type":"leave_room","room":"doc-1"}`, `{"type":"watch","room":"doc-1"}`, `{"type":"unwatch","room":"doc-1"}`, `{"type":"room_resync","room":"doc-1"}` (and `rooms` in the hello) |
//! | server → client | [`ServerMessage`]s: `{"type":"state",..}` after the hello (of the users it asked for: see [interest](crate::wire#interest-which-users-a-connection-is-sent)) and after each `subscribe`, then `{"type":"updates",..}`; for each room the connection is in or watches `{"type":"room_state",..}` then `{"type":"room_updates",..}`; `{"type":"refused",..}` for a message that changed nothing (naming its `room` if it named one) |
//!
//! The server closes, with a close code and a reason a person can read:
//!
//! | code | when |
//! |---|---|
//! | 1003 | a binary frame |
//! | 1008 | the hello was refused (the [`Authenticate`] hook, another user's session, a limit), or, on a hub that is a node of a cluster, the cluster refused the session later (another node claimed it since, another user owns its id): after a `refused` message; do not retry as is |
//! | 1009 | a message over [`WsOptions::max_message`] bytes |
//! | 4000 | no hello within the timeout, or a first message that is not one |
//! | 4002 | a protocol version this server does not speak |
//!
//! A close frame from the client is a clean disconnect; an error, the stream ending without a
//! close frame, or nothing heard (a message or a pong) within [`WsOptions::ping_interval`] +
//! [`WsOptions::ping_timeout`] is a lost one. The server pings only a connection it has heard
//! nothing from for [`WsOptions::ping_interval`]: a client whose heartbeats come more often is
//! never pinged, since they prove what a pong would. Each connection's messages are handled in order by one task; what is
//! published within [`WsOptions::linger`] goes out as one message; a client that falls behind
//! on what it is sent gets a fresh state instead of a backlog.
//!
//! Each state and update of the users is serialised once, whatever number of connections are
//! sent it, and sent as those shared bytes ([`Delivery::to_json`]). A connection's read buffer
//! starts at [`WsOptions::read_buffer_size`]; there is no write buffer beyond the frame being
//! written (tungstenite keeps that one at the size of the largest frame the connection was
//! sent: with the all-users feed, the size of the state of every user).
//!
//! Each room with connections on the route has one task, which receives the room's deliveries
//! once and hands every connection sent the room the same bytes (its members, its counts, or a
//! window of it, as the connection watches it: see [`wire`](crate::wire#rooms)), so a connection
//! is sent its rooms' messages and no other room's. They go out through one small queue per
//! connection; a connection whose queue is full (a client that reads slowly) is not waited for:
//! it misses what comes, and is sent the room whole once its queue has room.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use presence_tracker::{Clock, ConnectionId, DisconnectKind, Id, Metadata};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use bytes::Bytes;

use crate::link::{Admitted, Fanout, Link, Sent};
use crate::wire::{ClientMessage, Hello, Refusal, ServerMessage, PROTOCOL};
use crate::{
    Admission, Authenticate, Delivery, Handshake, Hub, Identity, Interest, RefusalWatch,
    Subscription,
};

mod fan;

use fan::{ConnectionKey, Inbox, Outbox, RoomFan};

/// A connection's room messages on their way out: a few, then its rooms' tasks skip it (it
/// fell behind, which the room whole makes good).
const ROOM_QUEUE: usize = 16;

/// How long a connection whose room queue was full waits before it is sent the room whole.
const FULL_QUEUE_RETRY: Duration = Duration::from_millis(250);

/// How [`route`] serves WebSockets.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WsOptions {
    /// How long a connection may take to send its hello (default 10 s).
    pub hello_timeout: Duration,
    /// The largest message accepted, in bytes (default 32 KiB: a join with metadata at the
    /// policy's default limit of 4 KiB, or a hello naming several rooms).
    pub max_message: usize,
    /// How often the server checks a connection (default 25 s, Socket.IO's default): it pings
    /// one it has heard nothing from for this long.
    pub ping_interval: Duration,
    /// How long after a ping without a pong the connection counts as lost (default 20 s).
    pub ping_timeout: Duration,
    /// How long a connection gathers updates after the first before sending them as one
    /// message (default 50 ms): the most a presence change is delayed, and what turns a burst
    /// into one message per client.
    pub linger: Duration,
    /// How many rooms one connection may watch (default 32).
    pub max_watched_rooms: usize,
    /// The capacity each connection's read buffer starts with, in bytes (default 1 KiB, where
    /// tungstenite's own default is 128 KiB: a connection's messages are small, a heartbeat
    /// about 40 bytes, and a larger one grows the buffer up to
    /// [`max_message`](Self::max_message)). Messages go out without
    /// a write buffer: each is written as it is sent.
    pub read_buffer_size: usize,
    /// How long a message may take to be written (default 20 s, the ping timeout): a client
    /// that does not read for this long is dropped as lost. A write that blocks holds the
    /// connection's task, so its pings wait too: without this bound, a client that never
    /// reads would never be found lost.
    pub write_timeout: Duration,
    /// How many bytes of room messages may wait for one connection (default 1 MiB; a message
    /// goes into an empty queue whatever its size). A connection that reads more slowly than
    /// its rooms change misses what does not fit, and is sent the room whole once it has room.
    /// The messages are shared with every other connection sent them, so this bounds what a
    /// client that does not read keeps alive, not a copy of its own.
    pub max_queued_bytes: usize,
    /// How many new connections the route lets in per second (default: no limit). Over it, an
    /// upgrade is answered `503 Service Unavailable` with `Retry-After`, before any work.
    pub admission: Option<Admission>,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            hello_timeout: Duration::from_secs(10),
            max_message: 32 * 1024,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            linger: Duration::from_millis(50),
            max_watched_rooms: 32,
            read_buffer_size: 1024,
            write_timeout: Duration::from_secs(20),
            max_queued_bytes: 1 << 20,
            admission: None,
        }
    }
}

impl WsOptions {
    /// With this hello timeout.
    pub fn hello_timeout(mut self, timeout: Duration) -> Self {
        self.hello_timeout = timeout;
        self
    }

    /// With this admission of new connections (see [`Admission`]).
    pub fn admission(mut self, admission: Admission) -> Self {
        self.admission = Some(admission);
        self
    }

    /// With this write timeout (see [`write_timeout`](Self::write_timeout)).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// With these ping interval and timeout.
    pub fn pings(mut self, interval: Duration, timeout: Duration) -> Self {
        self.ping_interval = interval.max(Duration::from_millis(1));
        self.ping_timeout = timeout;
        self
    }
}

/// A `GET` route that upgrades to a presence WebSocket: mount it with
/// `Router::new().route("/ws", ws::route(hub, auth))`.
///
/// # Examples
///
/// ```no_run
/// use presence_tracker::{Policy, PresenceTracker};
/// use presence_tracker_server::{wire::Refusal, ws, Handshake, Hub, HubConfig, Identity};
///
/// # async fn run() -> std::io::Result<()> {
/// let hub: Hub<String, String> = Hub::new(PresenceTracker::new(Policy::default()), HubConfig::default());
/// tokio::spawn(hub.clone().run_ticker());
/// let auth = |h: &Handshake<'_>| match h.cookie("user") {
///     Some(user) => Ok(Identity::User(user.to_string())), // a signed cookie, checked for real
///     None => Err(Refusal::new("unauthorized", "sign in first")),
/// };
/// let app = axum::Router::new().route("/ws", ws::route(hub, auth));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn route<U, S, C, M, A, St>(hub: Hub<U, S, C, String, M>, auth: A) -> MethodRouter<St>
where
    U: Id + Serialize + DeserializeOwned,
    S: Id + Serialize + DeserializeOwned,
    C: Clock + 'static,
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
    A: Authenticate<U>,
    St: Clone + Send + Sync + 'static,
{
    route_with(hub, auth, WsOptions::default())
}

/// [`route`] with options.
pub fn route_with<U, S, C, M, A, St>(
    hub: Hub<U, S, C, String, M>,
    auth: A,
    options: WsOptions,
) -> MethodRouter<St>
where
    U: Id + Serialize + DeserializeOwned,
    S: Id + Serialize + DeserializeOwned,
    C: Clock + 'static,
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
    A: Authenticate<U>,
    St: Clone + Send + Sync + 'static,
{
    let rooms = Arc::new(RoomFan::new(hub.clone(), options.linger, FULL_QUEUE_RETRY));
    let shared = Arc::new(Shared {
        hub,
        auth,
        options,
        next_connection: AtomicU64::new(1),
        rooms,
    });
    get(move |ws: WebSocketUpgrade, headers: HeaderMap, uri: Uri| {
        let shared = Arc::clone(&shared);
        async move { upgrade(shared, ws, headers, uri) }
    })
}

struct Shared<U, S, C, M, A> {
    hub: Hub<U, S, C, String, M>,
    auth: A,
    options: WsOptions,
    /// Connection ids: a counter, fingerprinted (unique within the process).
    next_connection: AtomicU64,
    /// The rooms' fan-out: a task per room with connections here.
    rooms: Arc<RoomFan<U, S, C, M>>,
}

fn upgrade<U, S, C, M, A>(
    shared: Arc<Shared<U, S, C, M, A>>,
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    uri: Uri,
) -> Response
where
    U: Id + Serialize + DeserializeOwned,
    S: Id + Serialize + DeserializeOwned,
    C: Clock + 'static,
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
    A: Authenticate<U>,
{
    if let Some(Err(busy)) = shared.options.admission.as_ref().map(Admission::try_admit) {
        return busy.response();
    }
    let max = shared.options.max_message;
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(shared.options.read_buffer_size)
        .write_buffer_size(0)
        .on_upgrade(move |socket| async move {
            Connection {
                socket,
                shared,
                request: Some((headers, uri)),
            }
            .run()
            .await;
        })
}

/// A hello's link and refusals, with the users it is sent (`users` and `all_users` as the hello
/// asked): a refusal of those joins the others.
fn with_interest<U, S, C, M, A>(
    shared: &Shared<U, S, C, M, A>,
    link: Link<U, S, M>,
    mut refusals: Vec<Refusal>,
    (users, all_users): (Option<Vec<U>>, bool),
) -> (Link<U, S, M>, Vec<Refusal>, Interest<U>)
where
    U: Id,
    S: Id,
    C: Clock,
    M: Metadata + Default + PartialEq + Clone,
    A: Authenticate<U>,
{
    let (interest, refusal) = link.hello_interest(&shared.hub, &shared.auth, users, all_users);
    refusals.extend(refusal);
    (link, refusals, interest)
}

/// Why a connection ends.
#[derive(Clone, Copy)]
enum End {
    /// The client closed (clean) or vanished (lost).
    Gone(DisconnectKind),
    /// The server closes it, with this code and reason.
    Close(u16, &'static str),
    /// The cluster refused its session (the client was told): closed with 1008.
    Refused,
}

struct Connection<U, S, C, M, A> {
    socket: WebSocket,
    shared: Arc<Shared<U, S, C, M, A>>,
    /// The upgrade request's headers and URI, for the hello's authentication, then dropped:
    /// their values are slices of hyper's read buffer (8-16 KiB), which they would keep alive
    /// for the connection's whole life.
    request: Option<(HeaderMap, Uri)>,
}

/// Whether a connection is still there, from when it was last heard (any message or pong): one
/// heard within the ping interval needs no ping, since its heartbeats prove what a pong would;
/// one quiet that long is pinged; one that leaves the ping unanswered for the ping timeout is
/// lost. Checked at each tick of the ping interval.
#[derive(Debug)]
struct Liveness {
    interval: Duration,
    timeout: Duration,
    last_heard: Instant,
    /// When the unanswered ping went out: set by a ping, cleared by anything heard.
    pinged: Option<Instant>,
}

/// What a tick of [`Liveness`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing: heard within the interval, or a ping's answer is not due yet.
    Alive,
    /// Send a ping.
    Ping,
    /// The ping went unanswered for the timeout.
    Lost,
}

impl Liveness {
    fn new(now: Instant, interval: Duration, timeout: Duration) -> Self {
        Liveness {
            interval,
            timeout,
            last_heard: now,
            pinged: None,
        }
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.pinged = None;
    }

    fn check(&mut self, now: Instant) -> Check {
        if let Some(pinged) = self.pinged {
            if now.saturating_duration_since(pinged) >= self.timeout {
                return Check::Lost;
            }
            return Check::Alive;
        }
        if now.saturating_duration_since(self.last_heard) < self.interval {
            return Check::Alive;
        }
        self.pinged = Some(now);
        Check::Ping
    }
}

/// The rooms a connection is sent, through the route's [`RoomFan`], into one queue made when
/// the first room opens (a connection in no room pays for none).
struct Rooms<U, S, C, M> {
    fan: Arc<RoomFan<U, S, C, M>>,
    key: ConnectionKey,
    open: HashSet<String>,
    queue: Option<(Outbox, Inbox)>,
    /// The queue's bound in bytes.
    budget: usize,
}

impl<U, S, C, M> Rooms<U, S, C, M>
where
    U: Id + Serialize,
    S: Id + Serialize,
    C: Clock + 'static,
    M: Metadata + Serialize,
{
    /// Starts sending the connection `room` as it is `sent` it: whole now, then what changes
    /// (whole again if it was sent it already: its view may have changed).
    fn open(&mut self, room: String, sent: Sent) {
        let budget = self.budget;
        let (tx, _) = self
            .queue
            .get_or_insert_with(|| fan::queue(ROOM_QUEUE, budget));
        let tx = tx.clone();
        if self.open.contains(&room) {
            self.fan.close(&room, self.key);
        }
        self.fan.open(&room, self.key, sent, tx);
        self.open.insert(room);
    }
}

impl<U, S, C, M> Rooms<U, S, C, M> {
    fn close(&mut self, room: &str) {
        if self.open.remove(room) {
            self.fan.close(room, self.key);
        }
    }

    /// The next room message; pending for ever while no room was opened.
    async fn recv(&mut self) -> Option<Bytes> {
        match &mut self.queue {
            Some((_, rx)) => rx.recv().await,
            None => std::future::pending().await,
        }
    }
}

impl<U, S, C, M> Drop for Rooms<U, S, C, M> {
    fn drop(&mut self) {
        for room in std::mem::take(&mut self.open) {
            self.fan.close(&room, self.key);
        }
    }
}

impl<U, S, C, M, A> Connection<U, S, C, M, A>
where
    U: Id + Serialize + DeserializeOwned,
    S: Id + Serialize + DeserializeOwned,
    C: Clock + 'static,
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
    A: Authenticate<U>,
{
    async fn run(mut self) {
        let key = self.shared.next_connection.fetch_add(1, Ordering::Relaxed);
        let connection = ConnectionId::from_fingerprint(key);
        // Before the hello's connect: a cluster's refusal may come as soon as it is written.
        let mut refusal = self.shared.hub.watch_refusal(connection);
        let (mut link, refusals, interest) = match self.hello(connection).await {
            Ok(hello) => hello,
            Err(end) => return self.finish(end).await,
        };
        let feed = self.shared.hub.subscribe_to(interest);
        let end = self
            .serve(&mut link, refusals, feed, &mut refusal, key)
            .await;
        if let Some((_, session)) = link.session() {
            // Closed by the server (a protocol violation): the client did not say goodbye.
            let kind = match end {
                End::Gone(kind) => kind,
                End::Close(..) => DisconnectKind::Lost,
                // The session is no longer this node's: nothing to wait for here.
                End::Refused => DisconnectKind::Clean,
            };
            // Unknown: it expired meanwhile; nothing to record.
            let _ = self.shared.hub.disconnect(session, connection, kind);
        }
        self.finish(end).await;
    }

    /// Waits for the hello, authenticates it, connects its session (none: a watcher) and puts
    /// it in the hello's rooms; the refusals of what it could not do, and the users it is sent.
    async fn hello(
        &mut self,
        connection: ConnectionId,
    ) -> Result<(Link<U, S, M>, Vec<Refusal>, Interest<U>), End> {
        let first = tokio::time::timeout(self.shared.options.hello_timeout, self.socket.recv())
            .await
            .map_err(|_| End::Close(4000, "no hello within the timeout"))?;
        let text = match first {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                return Err(End::Close(1003, "binary frames are not accepted"))
            }
            Some(Ok(Message::Close(_))) => return Err(End::Gone(DisconnectKind::Clean)),
            Some(Ok(_)) => return Err(End::Close(4000, "the first message must be a hello")),
            Some(Err(_)) => {
                return Err(End::Close(
                    1009,
                    "message too big, or not a websocket frame",
                ))
            }
            None => return Err(End::Gone(DisconnectKind::Lost)),
        };
        let hello: Hello<S, String, M, U> =
            match serde_json::from_str::<ClientMessage<S, String, M, U>>(&text) {
                Ok(ClientMessage::Hello(hello)) => hello,
                _ => return Err(End::Close(4000, "the first message must be a hello")),
            };
        if hello.protocol != PROTOCOL {
            return Err(End::Close(4002, "unsupported protocol version"));
        }
        let shared = Arc::clone(&self.shared);
        let (headers, uri) = self.request.take().unwrap_or_default();
        let identity =
            shared
                .auth
                .authenticate(&Handshake::new(&headers, &uri, hello.token.as_deref()));
        drop((headers, uri));
        let identity = identity.and_then(|identity| {
            crate::link::check_watcher(&shared.hub, &identity).map(|()| identity)
        });
        let max_watched = shared.options.max_watched_rooms;
        let max_window = shared.hub.config().max_window;
        let users = (hello.users, hello.all_users);
        let refused = match identity {
            Err(refusal) => refusal,
            Ok(Identity::User(user)) => match hello.session {
                Some(session) => {
                    // The session's rate first: a reconnect loop is refused before it connects.
                    let counted = crate::link::session_hello(&shared.hub, &session);
                    let connected = counted.and_then(|bucket| {
                        shared
                            .hub
                            .connect(user.clone(), session.clone(), connection, hello.activity)
                            .map(|()| bucket)
                            .map_err(|e| Refusal::from_error(&e))
                    });
                    match connected {
                        Ok(bucket) => {
                            let identity = Identity::User(user.clone());
                            let mut link = Link::new(
                                identity,
                                Some((user, session)),
                                connection,
                                max_watched,
                                max_window,
                            )
                            .with_session_bucket(bucket);
                            let refusals = link.hello_rooms(&shared.hub, &shared.auth, hello.rooms);
                            return Ok(with_interest(&shared, link, refusals, users));
                        }
                        Err(refusal) => refusal,
                    }
                }
                None => {
                    let mut link = Link::new(
                        Identity::User(user),
                        None,
                        connection,
                        max_watched,
                        max_window,
                    );
                    let refusals = link.hello_rooms(&shared.hub, &shared.auth, hello.rooms);
                    return Ok(with_interest(&shared, link, refusals, users));
                }
            },
            Ok(identity) => {
                let mut link = Link::new(identity, None, connection, max_watched, max_window);
                let refusals = link.hello_rooms(&shared.hub, &shared.auth, hello.rooms);
                return Ok(with_interest(&shared, link, refusals, users));
            }
        };
        self.send(&ServerMessage::<U, S, String, M>::Refused(refused))
            .await;
        Err(End::Close(1008, "hello refused"))
    }

    /// Until the connection ends: the client's messages in order, the hub's deliveries (the
    /// users' and the rooms'), pings.
    async fn serve(
        &mut self,
        link: &mut Link<U, S, M>,
        refusals: Vec<Refusal>,
        mut feed: Subscription<U, S, C, String, M>,
        refusal: &mut RefusalWatch,
        key: ConnectionKey,
    ) -> End {
        let options = self.shared.options.clone();
        let mut ping = tokio::time::interval(options.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut liveness =
            Liveness::new(Instant::now(), options.ping_interval, options.ping_timeout);
        let mut rooms = Rooms {
            fan: Arc::clone(&self.shared.rooms),
            key,
            open: HashSet::new(),
            queue: None,
            budget: options.max_queued_bytes,
        };
        // Its session's handle first, then the users' state, then the rooms', then what the
        // hello could not do.
        if let Some(welcome) = link.welcome(&self.shared.hub) {
            self.send(&ServerMessage::<U, S, String, M>::Welcome(welcome))
                .await;
        }
        if let Some(state) = feed.try_recv() {
            if !self.send_delivery(&state).await {
                return End::Gone(DisconnectKind::Lost);
            }
        }
        for room in link.rooms() {
            let sent = link.view(&room).unwrap_or_default();
            rooms.open(room, sent);
        }
        for refusal in refusals {
            self.send(&ServerMessage::<U, S, String, M>::Refused(refusal))
                .await;
        }
        loop {
            tokio::select! {
                message = self.socket.recv() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(_)) => return End::Close(1009, "message too big, or not a websocket frame"),
                        None => return End::Gone(DisconnectKind::Lost),
                    };
                    liveness.heard(Instant::now());
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Binary(_) => return End::Close(1003, "binary frames are not accepted"),
                        Message::Close(_) => return End::Gone(DisconnectKind::Clean),
                        Message::Ping(_) | Message::Pong(_) => continue,
                    };
                    match link.admit(&self.shared.hub) {
                        Admitted::Yes => {}
                        Admitted::Refuse(refusal) => {
                            self.send(&ServerMessage::<U, S, String, M>::Refused(refusal)).await;
                            continue;
                        }
                        Admitted::Drop => continue,
                        Admitted::Close => return End::Close(1008, "too many messages"),
                    }
                    for refusal in self.signal(&text, link, &mut feed, &mut rooms) {
                        self.send(&ServerMessage::<U, S, String, M>::Refused(refusal)).await;
                    }
                }
                delivery = feed.recv_gathered(options.linger) => {
                    let Some(delivery) = delivery else {
                        return End::Close(1001, "the server is going away");
                    };
                    if !self.send_delivery(&delivery).await {
                        return End::Gone(DisconnectKind::Lost);
                    }
                }
                Some(json) = rooms.recv() => {
                    if !self.send_json(json).await {
                        return End::Gone(DisconnectKind::Lost);
                    }
                }
                refused = refusal.refused(), if link.session().is_some() => {
                    self.send(&ServerMessage::<U, S, String, M>::Refused(refused)).await;
                    return End::Refused;
                }
                _ = ping.tick() => match liveness.check(Instant::now()) {
                    Check::Alive => {}
                    Check::Lost => return End::Gone(DisconnectKind::Lost),
                    Check::Ping => {
                        if !self.write(Message::Ping(Default::default())).await {
                            return End::Gone(DisconnectKind::Lost);
                        }
                    }
                },
            }
        }
    }

    /// Handles one text message after the hello; the refusals to send back.
    fn signal(
        &self,
        text: &str,
        link: &mut Link<U, S, M>,
        feed: &mut Subscription<U, S, C, String, M>,
        rooms: &mut Rooms<U, S, C, M>,
    ) -> Vec<Refusal> {
        let message = match serde_json::from_str::<ClientMessage<S, String, M, U>>(text) {
            Ok(message) => message,
            Err(e) => return vec![Refusal::new("bad_message", e.to_string())],
        };
        if let ClientMessage::Resync = message {
            feed.resync_later();
            return Vec::new();
        }
        let outcome = link.handle(&self.shared.hub, &self.shared.auth, message);
        if let Some(interest) = outcome.interest {
            feed.set_interest(interest);
        }
        for fanout in outcome.fanout {
            match fanout {
                Fanout::Open(room) | Fanout::Resync(room, _) => {
                    // Whole first: a new view, or the client asked for the room again.
                    let sent = link.view(&room).unwrap_or_default();
                    rooms.open(room, sent);
                }
                Fanout::Close(room, _) => rooms.close(&room),
            }
        }
        outcome.refusals
    }

    /// Sends our own JSON (shared, made once for every connection sent it) as a text message;
    /// `false` if the connection is gone.
    async fn send_json(&mut self, json: Bytes) -> bool {
        // Our own JSON is UTF-8; the check is a scan, not a copy.
        let Ok(text) = Utf8Bytes::try_from(json) else {
            return false;
        };
        self.write(Message::Text(text)).await
    }

    /// Sends a delivery of the users: its shared JSON (made once for every connection sent
    /// it); `false` if the connection is gone.
    async fn send_delivery(&mut self, delivery: &Delivery<U>) -> bool {
        let Ok(json) = delivery.to_json() else {
            return false;
        };
        // Our own JSON is UTF-8; the check is a scan, not a copy.
        let Ok(text) = Utf8Bytes::try_from(json) else {
            return false;
        };
        self.write(Message::Text(text)).await
    }

    /// Writes one message; `false` if the connection is gone, or did not take it within the
    /// write timeout (a client that does not read: the connection is then dropped).
    async fn write(&mut self, message: Message) -> bool {
        let timeout = self.shared.options.write_timeout;
        matches!(
            tokio::time::timeout(timeout, self.socket.send(message)).await,
            Ok(Ok(()))
        )
    }

    /// Sends one message as JSON; `false` if the connection is gone.
    async fn send<T: Serialize>(&mut self, message: &T) -> bool {
        match serde_json::to_string(message) {
            Ok(json) => self.write(Message::Text(json.into())).await,
            Err(_) => false,
        }
    }

    /// Closes with the end's code and reason, if the server is the one closing.
    async fn finish(mut self, end: End) {
        let end = match end {
            End::Refused => End::Close(1008, "session refused by the cluster"),
            end => end,
        };
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            // The client may be gone already.
            let _ = self.write(Message::Close(Some(frame))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(25);
    const TIMEOUT: Duration = Duration::from_secs(20);

    /// The checks at each tick (every `INTERVAL` from `start`) while the client is heard at the
    /// offsets in `heard`, until `ticks` ticks.
    fn checks(heard: &[Duration], ticks: u32) -> Vec<Check> {
        let start = Instant::now();
        let mut liveness = Liveness::new(start, INTERVAL, TIMEOUT);
        let mut heard = heard.iter().peekable();
        (1..=ticks)
            .map(|tick| {
                let now = start + INTERVAL * tick;
                while let Some(at) = heard.next_if(|&&at| start + at <= now) {
                    liveness.heard(start + *at);
                }
                liveness.check(now)
            })
            .collect()
    }

    #[test]
    fn a_client_heard_more_often_than_the_interval_is_never_pinged() {
        let every_5s: Vec<_> = (1..=60).map(|i| Duration::from_secs(5 * i)).collect();
        assert!(checks(&every_5s, 12).iter().all(|&c| c == Check::Alive));
    }

    #[test]
    fn a_silent_client_is_pinged_and_lost_when_it_does_not_answer() {
        assert_eq!(checks(&[], 2), [Check::Ping, Check::Lost]);
    }

    #[test]
    fn a_silent_client_that_answers_each_ping_stays() {
        let start = Instant::now();
        let mut liveness = Liveness::new(start, INTERVAL, TIMEOUT);
        let mut got = Vec::new();
        for tick in 1..=10 {
            let now = start + INTERVAL * tick;
            let check = liveness.check(now);
            if check == Check::Ping {
                // The pong, a second later.
                liveness.heard(now + Duration::from_secs(1));
            }
            got.push(check);
        }
        // Answered at a tick's second, quiet 24 s by the next: pinged every other tick.
        assert!(!got.contains(&Check::Lost), "{got:?}");
        assert_eq!(
            got.iter().filter(|&&c| c == Check::Ping).count(),
            5,
            "{got:?}"
        );
    }

    #[test]
    fn a_client_that_stops_is_lost_within_two_intervals_and_the_timeout() {
        // Heard every 5 s for a minute, then nothing.
        let minute: Vec<_> = (1..=12).map(|i| Duration::from_secs(5 * i)).collect();
        let got = checks(&minute, 6);
        let lost = got.iter().position(|&c| c == Check::Lost).expect("lost") as u32 + 1;
        let lost_at = INTERVAL * lost;
        assert!(
            lost_at <= Duration::from_secs(60) + INTERVAL * 2 + TIMEOUT,
            "{got:?}"
        );
        assert_eq!(
            got.iter().filter(|&&c| c == Check::Ping).count(),
            1,
            "{got:?}"
        );
    }

    #[test]
    fn a_timeout_longer_than_the_interval_waits_for_it() {
        let start = Instant::now();
        let mut liveness = Liveness::new(start, Duration::from_secs(5), Duration::from_secs(12));
        let at = |s| start + Duration::from_secs(s);
        assert_eq!(liveness.check(at(5)), Check::Ping);
        assert_eq!(liveness.check(at(10)), Check::Alive);
        assert_eq!(liveness.check(at(15)), Check::Alive);
        assert_eq!(liveness.check(at(17)), Check::Lost);
    }

    #[test]
    fn a_clock_that_reads_earlier_saturates() {
        let start = Instant::now() + Duration::from_secs(100);
        let mut liveness = Liveness::new(start, INTERVAL, TIMEOUT);
        assert_eq!(
            liveness.check(start - Duration::from_secs(50)),
            Check::Alive
        );
    }
}
