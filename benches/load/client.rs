//! One simulated client: a task that connects (from its own source address), says hello,
//! heartbeats, keeps what it is sent by the resync rule, and reconnects with jittered backoff
//! when the server goes away, until it is told to vanish or stop.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::held::{Applied, Held, Incoming};

/// How long a connect, its WebSocket handshake and the hello's answer may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// How a client talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// JSON text messages on `/ws`.
    WebSocket,
    /// Engine.IO v4 / Socket.IO v5 over a WebSocket, no polling.
    SocketIo,
}

/// What the run tells a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Stay connected, heartbeat, reconnect when the connection is lost.
    Run,
    /// Drop the TCP connection without a close frame, and stay away.
    Vanish,
    /// The run is over.
    Stop,
}

/// What every client of one server shares.
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) transport: Transport,
    pub(crate) server: SocketAddr,
    pub(crate) heartbeat: Duration,
    /// The reconnect backoff's bounds, in ms: each wait is drawn uniformly between them.
    pub(crate) backoff_ms: (u64, u64),
    /// Connects in flight at most during the ramp (a permit is held until the first state).
    pub(crate) ramp: Arc<Semaphore>,
    /// Heartbeats sent by all clients.
    pub(crate) heartbeats: AtomicU64,
    /// What each client sends after its hello to watch its room in a view of its own.
    pub(crate) watch: Option<String>,
}

/// Counters of one client, reset by the run between phases.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Stats {
    /// Presence messages received (states, updates, refusals).
    pub(crate) messages: u64,
    /// Payload bytes of the text frames received.
    pub(crate) bytes: u64,
    /// Room messages received (`room_*`), and their bytes (also in `bytes`).
    pub(crate) room_messages: u64,
    pub(crate) room_bytes: u64,
}

/// One client's state, shared between its task and the run.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) held: Held,
    pub(crate) stats: Stats,
    /// The size of the first state of the client's first connection.
    pub(crate) first_state_bytes: Option<u64>,
    /// Connections made (1 after the ramp).
    pub(crate) connections: u32,
    pub(crate) connected: bool,
    /// Connects or handshakes that failed.
    pub(crate) connect_errors: u64,
    /// Connections lost (not told to end).
    pub(crate) lost: u64,
    /// The latest failure, for a report.
    pub(crate) last_error: Option<String>,
    /// Connects the server answered "come back later" (503 with Retry-After, or `busy`).
    pub(crate) busy: u64,
    /// Refusals received, with the latest code.
    pub(crate) refused: u64,
    pub(crate) refusal: Option<String>,
}

/// A client as the run holds it.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) shared: Arc<Mutex<Shared>>,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

/// Who a client is and what it sends first.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) source: IpAddr,
    /// The hello's JSON: with `"type":"hello"` on a WebSocket, without it as Socket.IO's auth.
    pub(crate) hello: String,
}

/// Locks a client's state (a panicked task's state is still read).
pub(crate) fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Client {
    /// Starts a client with `held` as what it holds.
    pub(crate) fn spawn(setup: Arc<Setup>, identity: Identity, held: Held) -> Client {
        let shared = Arc::new(Mutex::new(Shared {
            held,
            stats: Stats::default(),
            first_state_bytes: None,
            connections: 0,
            connected: false,
            connect_errors: 0,
            lost: 0,
            last_error: None,
            busy: 0,
            refused: 0,
            refusal: None,
        }));
        let (mode, mode_rx) = watch::channel(Mode::Run);
        let task = tokio::spawn(run(setup, identity, Arc::clone(&shared), mode_rx));
        Client { shared, mode, task }
    }

    /// Tells the client to vanish or stop.
    pub(crate) fn tell(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Stops the client and waits for its task.
    pub(crate) async fn stop(self) {
        self.tell(Mode::Stop);
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            // Its task is gone with the runtime at the latest.
        }
    }
}

/// How a connection ended.
enum End {
    /// Told to vanish or stop: the client is done.
    Done,
    /// Lost (the server went away, or a protocol error): reconnect.
    Lost(String),
}

type Ws = WebSocketStream<TcpStream>;

async fn run(
    setup: Arc<Setup>,
    identity: Identity,
    shared: Arc<Mutex<Shared>>,
    mut mode: watch::Receiver<Mode>,
) {
    let mut first = true;
    loop {
        if *mode.borrow() != Mode::Run {
            return;
        }
        // The ramp's bound: only a first connect waits for a permit; a reconnect storm is not
        // held back (that is what it measures).
        let permit = if first {
            match Arc::clone(&setup.ramp).acquire_owned().await {
                Ok(permit) => Some(permit),
                Err(_) => return,
            }
        } else {
            None
        };
        let connected = tokio::select! {
            c = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect(&setup, &identity)) => {
                c.unwrap_or_else(|_| Err(Refused::plain("connect or handshake timed out")))
            }
            _ = mode.changed() => return,
        };
        // The server's own "come back later" (a 503's Retry-After, a `busy` refusal's
        // retry_after_ms), with up to as much again at random, as the browser client does.
        let mut told_wait = None;
        match connected {
            Ok(ws) => {
                first = false;
                {
                    let mut s = lock(&shared);
                    s.connections += 1;
                    s.connected = true;
                    s.held.await_state();
                }
                let end = session(&setup, ws, &shared, &mut mode, permit).await;
                let mut s = lock(&shared);
                s.connected = false;
                match end {
                    End::Done => return,
                    End::Lost(e) => {
                        s.lost += 1;
                        s.last_error = Some(e);
                    }
                }
            }
            Err(e) => {
                drop(permit);
                let mut s = lock(&shared);
                s.connect_errors += 1;
                if e.retry_after.is_some() {
                    s.busy += 1;
                }
                told_wait = e.retry_after;
                s.last_error = Some(e.error);
            }
        }
        let (min, max) = setup.backoff_ms;
        let wait = match told_wait {
            Some(after) => {
                after + Duration::from_millis(fastrand::u64(0..=after.as_millis() as u64))
            }
            None => Duration::from_millis(fastrand::u64(min..=max.max(min))),
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = mode.changed() => return,
        }
    }
}

/// Why a connect failed, and when the server said to come back, if it did.
#[derive(Debug)]
struct Refused {
    error: String,
    retry_after: Option<Duration>,
}

impl Refused {
    fn plain(error: impl Into<String>) -> Self {
        Refused {
            error: error.into(),
            retry_after: None,
        }
    }
}

impl From<String> for Refused {
    fn from(error: String) -> Self {
        Refused::plain(error)
    }
}

/// Connects from the client's source address and says hello; on Socket.IO, waits for the
/// namespace's answer.
async fn connect(setup: &Setup, identity: &Identity) -> Result<Ws, Refused> {
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    // Ports of earlier runs' connections may sit in TIME_WAIT on this address.
    socket
        .set_reuseaddr(true)
        .map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    socket
        .bind(SocketAddr::new(identity.source, 0))
        .map_err(|e| format!("bind {}: {e}", identity.source))?;
    let stream = socket
        .connect(setup.server)
        .await
        .map_err(|e| format!("connect {} from {}: {e}", setup.server, identity.source))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let url = match setup.transport {
        Transport::WebSocket => format!("ws://{}/ws", setup.server),
        Transport::SocketIo => {
            format!("ws://{}/socket.io/?EIO=4&transport=websocket", setup.server)
        }
    };
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| {
            // A 503 with Retry-After (seconds): the server's admission rate.
            let retry_after = match &e {
                tokio_tungstenite::tungstenite::Error::Http(response) => response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
                _ => None,
            };
            Refused {
                error: format!("WebSocket handshake: {e}"),
                retry_after,
            }
        })?;
    match setup.transport {
        Transport::WebSocket => {
            send(&mut ws, identity.hello.clone()).await?;
        }
        Transport::SocketIo => {
            // Engine.IO's open packet, then the namespace's connect with the hello as auth.
            let open = next_text(&mut ws).await?;
            if !open.starts_with('0') {
                return Err(format!("expected Engine.IO's open packet, got {open:?}").into());
            }
            send(&mut ws, format!("40{}", identity.hello)).await?;
            loop {
                let answer = next_text(&mut ws).await?;
                if answer == "2" {
                    send(&mut ws, "3".to_string()).await?;
                } else if answer.starts_with("40") {
                    break;
                } else if let Some(error) = answer.strip_prefix("44") {
                    // `{"code":"busy","retry_after_ms":..}`: the namespace's admission rate.
                    let retry_after = serde_json::from_str::<serde_json::Value>(error)
                        .ok()
                        .and_then(|v| v.get("retry_after_ms")?.as_u64())
                        .map(Duration::from_millis);
                    return Err(Refused {
                        error: format!("connect_error {error}"),
                        retry_after,
                    });
                } else {
                    return Err(format!("expected the namespace's answer, got {answer:?}").into());
                }
            }
        }
    }
    if let Some(watch) = &setup.watch {
        send(&mut ws, watch.clone()).await?;
    }
    Ok(ws)
}

async fn send(ws: &mut Ws, text: String) -> Result<(), String> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| format!("send: {e}"))
}

async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_string()),
            Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("connection ended".into()),
        }
    }
}

/// One connection's life: heartbeats, and what the server sends, until it ends.
async fn session(
    setup: &Setup,
    mut ws: Ws,
    shared: &Mutex<Shared>,
    mode: &mut watch::Receiver<Mode>,
    mut permit: Option<OwnedSemaphorePermit>,
) -> End {
    let heartbeat = match setup.transport {
        Transport::WebSocket => r#"{"type":"heartbeat","activity":"active"}"#,
        Transport::SocketIo => r#"42["heartbeat",{"activity":"active"}]"#,
    };
    let resync = match setup.transport {
        Transport::WebSocket => r#"{"type":"resync"}"#,
        Transport::SocketIo => r#"42["resync"]"#,
    };
    // Staggered: each client's first heartbeat at a random point of the period.
    let period = setup.heartbeat;
    let offset = Duration::from_millis(fastrand::u64(0..=period.as_millis() as u64));
    let mut beat = tokio::time::interval_at(Instant::now() + offset, period);
    beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() != Mode::Run {
                    // Vanish: the stream is dropped, the TCP connection closed without a close
                    // frame. Stop: the same (the run is over).
                    return End::Done;
                }
            }
            _ = beat.tick() => {
                if let Err(e) = send(&mut ws, heartbeat.to_string()).await {
                    return End::Lost(e);
                }
                setup.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(frame))) => return End::Lost(format!("closed: {frame:?}")),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return End::Lost(e.to_string()),
                    None => return End::Lost("connection ended".into()),
                };
                let text = text.as_str();
                let reply = match handle(setup.transport, text, shared) {
                    Ok(Reply::Nothing) => None,
                    Ok(Reply::Resync) => Some(resync),
                    Ok(Reply::Pong) => Some("3"),
                    Ok(Reply::StateArrived) => {
                        drop(permit.take());
                        None
                    }
                    Err(e) => return End::Lost(e),
                };
                if let Some(reply) = reply {
                    if let Err(e) = send(&mut ws, reply.to_string()).await {
                        return End::Lost(e);
                    }
                }
            }
        }
    }
}

/// What the client sends back.
enum Reply {
    Nothing,
    Resync,
    /// Engine.IO's pong.
    Pong,
    /// A state arrived (the ramp's permit is released).
    StateArrived,
}

/// Applies one text frame.
fn handle(transport: Transport, text: &str, shared: &Mutex<Shared>) -> Result<Reply, String> {
    let bytes = text.len() as u64;
    // A room's message (ours put the type first): counted, not parsed (its `users` are counts).
    let head = text.get(..48).unwrap_or(text);
    if head.contains(r#"{"type":"room_"#) {
        let mut s = lock(shared);
        s.stats.bytes += bytes;
        s.stats.room_messages += 1;
        s.stats.room_bytes += bytes;
        return Ok(Reply::Nothing);
    }
    let (message, refused_event) = match transport {
        Transport::WebSocket => (parse(text)?, false),
        Transport::SocketIo => match text.as_bytes().first() {
            Some(b'2') => {
                lock(shared).stats.bytes += bytes;
                return Ok(Reply::Pong);
            }
            Some(b'4') => match text.as_bytes().get(1) {
                Some(b'2') => {
                    let (event, message): (Cow<'_, str>, Incoming<'_>) =
                        serde_json::from_str(&text[2..])
                            .map_err(|e| format!("bad Socket.IO event: {e}"))?;
                    match event.as_ref() {
                        "presence" => (message, false),
                        "refused" => (message, true),
                        _ => {
                            lock(shared).stats.bytes += bytes;
                            return Ok(Reply::Nothing);
                        }
                    }
                }
                Some(b'1') => return Err("disconnected by the server (41)".into()),
                _ => {
                    lock(shared).stats.bytes += bytes;
                    return Ok(Reply::Nothing);
                }
            },
            Some(b'1') => return Err("closed by the server (Engine.IO 1)".into()),
            _ => {
                lock(shared).stats.bytes += bytes;
                return Ok(Reply::Nothing);
            }
        },
    };
    let mut s = lock(shared);
    s.stats.bytes += bytes;
    let applied = s.held.apply(&message, refused_event);
    if !matches!(applied, Applied::Other) {
        s.stats.messages += 1;
    }
    Ok(match applied {
        Applied::State => {
            if s.first_state_bytes.is_none() {
                s.first_state_bytes = Some(bytes);
            }
            Reply::StateArrived
        }
        Applied::Gap => Reply::Resync,
        Applied::Refused(code) => {
            s.refused += 1;
            s.refusal = Some(code);
            Reply::Nothing
        }
        Applied::Updates | Applied::Skipped | Applied::Other => Reply::Nothing,
    })
}

fn parse(text: &str) -> Result<Incoming<'_>, String> {
    serde_json::from_str(text).map_err(|e| format!("bad message: {e}"))
}
