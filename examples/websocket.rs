//! Presence over a plain WebSocket (axum), with JSON messages: for clients that do not run
//! Socket.IO. The same demo page and browser client as the `socketio` example.
//!
//! ```text
//! cargo run --example websocket            # then open http://127.0.0.1:3000
//! ```
//!
//! The wire, at `/ws`, one JSON object per text message:
//!
//! | direction | message |
//! |---|---|
//! | client → server | `{"type":"hello","user":"ada","session":"<stable id of the tab>","activity":"idle"}` first (activity optional) |
//! | client → server | `{"type":"heartbeat","activity":"active"}` (`idle`, `background`) |
//! | client → server | `{"type":"leave"}`: the tab is going away |
//! | server → client | `{"type":"state","now":ms,"users":[..]}` after the hello |
//! | server → client | `{"type":"presence","event":{..},"view":{..}}`: a user transition |
//! | server → client | `{"type":"sessions","user":..,"view":{..}}`: tab count changed |
//! | server → client | `{"type":"error","message":..}`; a refused hello is then closed with 1008 |
//!
//! Each WebSocket gets a connection id from a counter. A close frame from the client is a
//! clean disconnect; a transport error, or the stream ending without a close frame, or no
//! answer to the server's pings, is a lost one.

#[path = "common/mod.rs"]
mod common;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use presence_tracker::{Activity, ConnectionId, DisconnectKind};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};

use common::config::Config;
use common::http::{self, Transport};
use common::hub::{Broadcast, Hub, Identity, PresenceState, PresenceUpdate, SessionsUpdate};

/// What a client sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ClientMessage {
    Hello {
        user: Option<String>,
        session: Option<String>,
        /// What the client is doing as it connects (a hidden tab reconnecting says `background`).
        activity: Option<String>,
    },
    Heartbeat {
        activity: String,
    },
    Leave,
}

/// What the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ServerMessage<'a> {
    State(&'a PresenceState),
    Presence(&'a PresenceUpdate),
    Sessions(&'a SessionsUpdate),
    Error { message: &'a str },
}

/// WebSocket close code for a refused hello (policy violation): the client should not retry.
const REFUSED: u16 = 1008;

/// The transport's own liveness check, the analogue of Socket.IO's ping/pong.
#[derive(Clone, Copy, Debug)]
struct Pings {
    interval: Duration,
    timeout: Duration,
}

/// What a connection does after one step.
enum Flow {
    /// Keep serving.
    Continue,
    /// The connection is over; record a disconnect of this kind if it had said hello.
    Closed(DisconnectKind),
    /// The hello was refused and the socket closed: nothing was recorded, nothing to undo.
    Refused,
}

/// One WebSocket and what it said so far.
struct Connection {
    socket: WebSocket,
    hub: Hub,
    connection: ConnectionId,
    /// Set by an accepted hello.
    identity: Option<Identity>,
    /// Broadcasts, from the accepted hello on.
    rx: Option<broadcast::Receiver<Broadcast>>,
}

impl Connection {
    /// Serves the WebSocket until it closes, then records the disconnect.
    async fn run(mut self, pings: Pings) {
        let mut ping = tokio::time::interval(pings.interval);
        ping.tick().await; // the first tick is immediate
        let mut last_heard = Instant::now();
        let flow = loop {
            let flow = tokio::select! {
                incoming = self.socket.recv() => match incoming {
                    Some(Ok(message)) => {
                        last_heard = Instant::now();
                        match message {
                            Message::Text(text) => self.on_text(text.as_str()).await,
                            Message::Close(_) => Flow::Closed(DisconnectKind::Clean),
                            // Pong, ping or binary: only proof of life.
                            _ => Flow::Continue,
                        }
                    }
                    // An error, or the stream ended without a close frame.
                    Some(Err(_)) | None => Flow::Closed(DisconnectKind::Lost),
                },
                update = next_broadcast(&mut self.rx) => self.on_broadcast(update).await,
                _ = ping.tick() => {
                    if last_heard.elapsed() > pings.interval + pings.timeout {
                        Flow::Closed(DisconnectKind::Lost)
                    } else {
                        self.send_raw(Message::Ping(Default::default())).await
                    }
                }
            };
            if !matches!(flow, Flow::Continue) {
                break flow;
            }
        };
        if let (Flow::Closed(kind), Some(id)) = (flow, &self.identity) {
            self.hub.disconnect(id, self.connection, kind);
        }
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let result = match serde_json::from_str::<ClientMessage>(text) {
            Err(e) => Err(format!("bad message: {e}")),
            Ok(ClientMessage::Hello {
                user,
                session,
                activity,
            }) => return self.on_hello(user, session, activity).await,
            Ok(ClientMessage::Heartbeat { activity }) => match &self.identity {
                None => Err("say hello first".to_string()),
                Some(id) => Activity::from_str(&activity)
                    .and_then(|activity| self.hub.heartbeat(id, self.connection, activity))
                    .map_err(|e| e.to_string()),
            },
            Ok(ClientMessage::Leave) => {
                if let Some(id) = &self.identity {
                    self.hub.leave(id);
                }
                Ok(())
            }
        };
        match result {
            Ok(()) => Flow::Continue,
            Err(message) => self.send(&ServerMessage::Error { message: &message }).await,
        }
    }

    async fn on_hello(
        &mut self,
        user: Option<String>,
        session: Option<String>,
        activity: Option<String>,
    ) -> Flow {
        if self.identity.is_some() {
            let message = "hello was already said on this connection";
            return self.send(&ServerMessage::Error { message }).await;
        }
        let accepted = Identity::from_claim(user, session).and_then(|id| {
            let activity = activity.as_deref().map(Activity::from_str).transpose();
            let connected = activity.and_then(|a| self.hub.connect(&id, self.connection, a));
            connected.map(|()| id).map_err(|e| e.to_string())
        });
        match accepted {
            Ok(id) => {
                self.identity = Some(id);
                self.rx = Some(self.hub.subscribe());
                self.send(&ServerMessage::State(&self.hub.state())).await
            }
            Err(message) => {
                self.send(&ServerMessage::Error { message: &message }).await;
                let frame = CloseFrame {
                    code: REFUSED,
                    reason: "refused".into(),
                };
                self.send_raw(Message::Close(Some(frame))).await;
                Flow::Refused
            }
        }
    }

    async fn on_broadcast(&mut self, update: Result<Broadcast, RecvError>) -> Flow {
        match &update {
            Ok(Broadcast::Presence(u)) => self.send(&ServerMessage::Presence(u)).await,
            Ok(Broadcast::Sessions(u)) => self.send(&ServerMessage::Sessions(u)).await,
            // Fell behind: start over from the full state.
            Err(RecvError::Lagged(_)) => self.send(&ServerMessage::State(&self.hub.state())).await,
            Err(RecvError::Closed) => Flow::Continue,
        }
    }

    async fn send(&mut self, message: &ServerMessage<'_>) -> Flow {
        match serde_json::to_string(message) {
            Ok(text) => self.send_raw(Message::Text(text.into())).await,
            Err(_) => Flow::Continue,
        }
    }

    async fn send_raw(&mut self, message: Message) -> Flow {
        match self.socket.send(message).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Closed(DisconnectKind::Lost),
        }
    }
}

/// The next broadcast, or never if the connection has not said hello yet.
async fn next_broadcast(
    rx: &mut Option<broadcast::Receiver<Broadcast>>,
) -> Result<Broadcast, RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[tokio::main]
async fn main() {
    let config = match Config::from_env_and_args("websocket") {
        Ok(Some(config)) => config,
        Ok(None) => return,
        Err(e) => {
            eprintln!("websocket: {e}");
            std::process::exit(2);
        }
    };
    let hub = Hub::new(config.policy.clone());
    tokio::spawn(hub.clone().drive_ticks());

    let pings = Pings {
        interval: config.ping_interval,
        timeout: config.ping_timeout,
    };
    let counter = Arc::new(AtomicU64::new(0));
    let ws = {
        let hub = hub.clone();
        get(move |upgrade: WebSocketUpgrade| {
            let hub = hub.clone();
            let connection = ConnectionId::from(counter.fetch_add(1, Ordering::Relaxed));
            let run = move |socket| {
                let conn = Connection {
                    socket,
                    hub,
                    connection,
                    identity: None,
                    rx: None,
                };
                conn.run(pings)
            };
            async move { upgrade.on_upgrade(run) }
        })
    };
    let app = http::routes(hub, Transport::WebSocket, config.socket_io_js.clone()).route("/ws", ws);
    println!("presence over WebSocket: {}", config.describe());
    if let Err(e) = http::serve(app, config.port).await {
        eprintln!("websocket: {e}");
        std::process::exit(1);
    }
}
