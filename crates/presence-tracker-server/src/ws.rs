//! Presence over a plain WebSocket ([`axum`]), with one JSON object per text message.
//!
//! | direction | message |
//! |---|---|
//! | client → server | a [`Hello`] first, within [`WsOptions::hello_timeout`]: `{"type":"hello","protocol":1,"session":"<tab id>","activity":"idle","token":..}` (no `session`: a watcher) |
//! | client → server | `{"type":"heartbeat","activity":"active"}`, `{"type":"leave"}`, `{"type":"resync"}` |
//! | server → client | [`ServerMessage`]s: `{"type":"state",..}` after the hello, then `{"type":"updates",..}`; `{"type":"refused",..}` for a signal that changed nothing |
//!
//! The server closes, with a close code and a reason a person can read:
//!
//! | code | when |
//! |---|---|
//! | 1003 | a binary frame |
//! | 1008 | the hello was refused (the [`Authenticate`] hook, another user's session, a limit): do not retry as is |
//! | 1009 | a message over [`WsOptions::max_message`] bytes |
//! | 4000 | no hello within the timeout, or a first message that is not one |
//! | 4002 | a protocol version this server does not speak |
//!
//! A close frame from the client is a clean disconnect; an error, the stream ending without a
//! close frame, or no pong within [`WsOptions::ping_interval`] + [`WsOptions::ping_timeout`]
//! is a lost one. Each connection's messages are handled in order by one task; what is
//! published within [`WsOptions::linger`] goes out as one message; a client that falls behind
//! on what it is sent gets a fresh state instead of a backlog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::{get, MethodRouter};
use presence_tracker::{Clock, ConnectionId, DisconnectKind, Id};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use crate::wire::{ClientMessage, Hello, Refusal, ServerMessage, PROTOCOL};
use crate::{Authenticate, Handshake, Hub, Identity, Subscription};

/// How [`route`] serves WebSockets.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WsOptions {
    /// How long a connection may take to send its hello (default 10 s).
    pub hello_timeout: Duration,
    /// The largest message accepted, in bytes (default 4 KiB: a hello with a token).
    pub max_message: usize,
    /// How often the server pings (default 25 s, Socket.IO's default).
    pub ping_interval: Duration,
    /// How long after a ping without a pong the connection counts as lost (default 20 s).
    pub ping_timeout: Duration,
    /// How long a connection gathers updates after the first before sending them as one
    /// message (default 50 ms): the most a presence change is delayed, and what turns a burst
    /// into one message per client.
    pub linger: Duration,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            hello_timeout: Duration::from_secs(10),
            max_message: 4096,
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            linger: Duration::from_millis(50),
        }
    }
}

impl WsOptions {
    /// With this hello timeout.
    pub fn hello_timeout(mut self, timeout: Duration) -> Self {
        self.hello_timeout = timeout;
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
/// use presence_tracker_server::{ws, Handshake, Hub, HubConfig, Identity};
///
/// # async fn run() -> std::io::Result<()> {
/// let hub: Hub<String, String> = Hub::new(PresenceTracker::new(Policy::default()), HubConfig::default());
/// tokio::spawn(hub.clone().run_ticker());
/// let auth = |h: &Handshake<'_>| match h.cookie("user") {
///     Some(user) => Ok(Identity::User(user.to_string())), // a signed cookie, checked for real
///     None => Ok(Identity::Watcher),
/// };
/// let app = axum::Router::new().route("/ws", ws::route(hub, auth));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
pub fn route<U, S, C, A, St>(hub: Hub<U, S, C>, auth: A) -> MethodRouter<St>
where
    U: Id + Serialize,
    S: Id + DeserializeOwned,
    C: Clock + 'static,
    A: Authenticate<U>,
    St: Clone + Send + Sync + 'static,
{
    route_with(hub, auth, WsOptions::default())
}

/// [`route`] with options.
pub fn route_with<U, S, C, A, St>(
    hub: Hub<U, S, C>,
    auth: A,
    options: WsOptions,
) -> MethodRouter<St>
where
    U: Id + Serialize,
    S: Id + DeserializeOwned,
    C: Clock + 'static,
    A: Authenticate<U>,
    St: Clone + Send + Sync + 'static,
{
    let shared = Arc::new(Shared {
        hub,
        auth,
        options,
        next_connection: AtomicU64::new(1),
    });
    get(move |ws: WebSocketUpgrade, headers: HeaderMap, uri: Uri| {
        let shared = Arc::clone(&shared);
        async move { upgrade(shared, ws, headers, uri) }
    })
}

struct Shared<U, S, C, A> {
    hub: Hub<U, S, C>,
    auth: A,
    options: WsOptions,
    /// Connection ids: a counter, fingerprinted (unique within the process).
    next_connection: AtomicU64,
}

fn upgrade<U, S, C, A>(
    shared: Arc<Shared<U, S, C, A>>,
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    uri: Uri,
) -> Response
where
    U: Id + Serialize,
    S: Id + DeserializeOwned,
    C: Clock + 'static,
    A: Authenticate<U>,
{
    let max = shared.options.max_message;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            Connection {
                socket,
                shared,
                headers,
                uri,
            }
            .run()
            .await;
        })
}

/// Why a connection ends.
#[derive(Clone, Copy)]
enum End {
    /// The client closed (clean) or vanished (lost).
    Gone(DisconnectKind),
    /// The server closes it, with this code and reason.
    Close(u16, &'static str),
}

struct Connection<U, S, C, A> {
    socket: WebSocket,
    shared: Arc<Shared<U, S, C, A>>,
    headers: HeaderMap,
    uri: Uri,
}

impl<U, S, C, A> Connection<U, S, C, A>
where
    U: Id + Serialize,
    S: Id + DeserializeOwned,
    C: Clock + 'static,
    A: Authenticate<U>,
{
    async fn run(mut self) {
        let connection = ConnectionId::from_fingerprint(
            self.shared.next_connection.fetch_add(1, Ordering::Relaxed),
        );
        let session = match self.hello(connection).await {
            Ok(session) => session,
            Err(end) => return self.finish(end).await,
        };
        let feed = self.shared.hub.subscribe();
        let end = self.serve(session.as_ref(), connection, feed).await;
        if let Some((_, session)) = &session {
            // Closed by the server (a protocol violation): the client did not say goodbye.
            let kind = match end {
                End::Gone(kind) => kind,
                End::Close(..) => DisconnectKind::Lost,
            };
            // Unknown: it expired meanwhile; nothing to record.
            let _ = self.shared.hub.disconnect(session, connection, kind);
        }
        self.finish(end).await;
    }

    /// Waits for the hello, authenticates it and connects its session (`None`: a watcher).
    async fn hello(&mut self, connection: ConnectionId) -> Result<Option<(U, S)>, End> {
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
        let hello: Hello<S> = match serde_json::from_str::<ClientMessage<S>>(&text) {
            Ok(ClientMessage::Hello(hello)) => hello,
            _ => return Err(End::Close(4000, "the first message must be a hello")),
        };
        if hello.protocol != PROTOCOL {
            return Err(End::Close(4002, "unsupported protocol version"));
        }
        let identity = self.shared.auth.authenticate(&Handshake::new(
            &self.headers,
            &self.uri,
            hello.token.as_deref(),
        ));
        let refused = match identity {
            Err(refusal) => refusal,
            Ok(Identity::User(user)) => match hello.session {
                Some(session) => {
                    match self.shared.hub.connect(
                        user.clone(),
                        session.clone(),
                        connection,
                        hello.activity,
                    ) {
                        Ok(()) => return Ok(Some((user, session))),
                        Err(e) => Refusal::from_error(&e),
                    }
                }
                None => return Ok(None),
            },
            Ok(_) => return Ok(None),
        };
        self.send(&ServerMessage::<U>::Refused(refused)).await;
        Err(End::Close(1008, "hello refused"))
    }

    /// Until the connection ends: the client's messages in order, the hub's deliveries, pings.
    async fn serve(
        &mut self,
        session: Option<&(U, S)>,
        connection: ConnectionId,
        mut feed: Subscription<U, S, C>,
    ) -> End {
        let options = self.shared.options.clone();
        let mut ping = tokio::time::interval(options.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                message = self.socket.recv() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(_)) => return End::Close(1009, "message too big, or not a websocket frame"),
                        None => return End::Gone(DisconnectKind::Lost),
                    };
                    last_heard = Instant::now();
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Binary(_) => return End::Close(1003, "binary frames are not accepted"),
                        Message::Close(_) => return End::Gone(DisconnectKind::Clean),
                        Message::Ping(_) | Message::Pong(_) => continue,
                    };
                    if let Some(refusal) = self.signal(&text, session, connection, &mut feed) {
                        self.send(&ServerMessage::<U>::Refused(refusal)).await;
                    }
                }
                delivery = feed.recv_gathered(options.linger) => {
                    let Some(delivery) = delivery else {
                        return End::Close(1001, "the server is going away");
                    };
                    if !self.send(&delivery).await {
                        return End::Gone(DisconnectKind::Lost);
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > options.ping_interval + options.ping_timeout {
                        return End::Gone(DisconnectKind::Lost);
                    }
                    if self.socket.send(Message::Ping(Default::default())).await.is_err() {
                        return End::Gone(DisconnectKind::Lost);
                    }
                }
            }
        }
    }

    /// Handles one text message after the hello; a refusal to send back if it changed nothing.
    fn signal(
        &self,
        text: &str,
        session: Option<&(U, S)>,
        connection: ConnectionId,
        feed: &mut Subscription<U, S, C>,
    ) -> Option<Refusal> {
        let hub = &self.shared.hub;
        let message = match serde_json::from_str::<ClientMessage<S>>(text) {
            Ok(message) => message,
            Err(e) => return Some(Refusal::new("bad_message", e.to_string())),
        };
        let result = match (message, session) {
            (ClientMessage::Resync, _) => {
                feed.resync_later();
                Ok(())
            }
            (ClientMessage::Hello(_), _) => {
                return Some(Refusal::new("bad_message", "hello was already said"))
            }
            (_, None) => return Some(Refusal::new("watch_only", "a watcher sends no signal")),
            (ClientMessage::Heartbeat { activity }, Some((user, session))) => {
                hub.heartbeat_or_reconnect(user, session, connection, activity)
            }
            (ClientMessage::Leave, Some((_, session))) => hub.leave(session, connection),
        };
        result.err().map(|e| Refusal::from_error(&e))
    }

    /// Sends one message as JSON; `false` if the connection is gone.
    async fn send<T: Serialize>(&mut self, message: &T) -> bool {
        match serde_json::to_string(message) {
            Ok(json) => self.socket.send(Message::Text(json.into())).await.is_ok(),
            Err(_) => false,
        }
    }

    /// Closes with the end's code and reason, if the server is the one closing.
    async fn finish(mut self, end: End) {
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            // The client may be gone already.
            let _ = self.socket.send(Message::Close(Some(frame))).await;
        }
    }
}
