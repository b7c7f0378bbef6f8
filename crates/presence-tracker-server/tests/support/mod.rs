//! Helpers the WebSocket tests share: a server on loopback over a `ManualClock`, and a client of
//! another stack (tungstenite) that sends and reads JSON.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use presence_tracker::{ManualClock, Metadata, Policy, PresenceTracker};
use presence_tracker_server::wire::Refusal;
use presence_tracker_server::ws::{self, WsOptions};
use presence_tracker_server::{Authenticate, Handshake, Hub, HubConfig, Identity, RoomAccess};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type TestHub<M = ()> = Hub<String, String, ManualClock, String, M>;

/// `user:NAME` signs in as NAME; no token watches; anything else is refused. Rooms named
/// `secret-*` are nobody's.
pub struct Auth;

impl Authenticate<String> for Auth {
    fn authenticate(&self, h: &Handshake<'_>) -> Result<Identity<String>, Refusal> {
        match h.token {
            None => Ok(Identity::Watcher),
            Some(token) => match token.strip_prefix("user:") {
                Some(name) => Ok(Identity::User(name.to_string())),
                None => Err(Refusal::new("unauthorized", "bad token")),
            },
        }
    }

    fn authorize_room(
        &self,
        _: &Identity<String>,
        room: &str,
        _: RoomAccess,
    ) -> Result<(), Refusal> {
        if room.starts_with("secret-") {
            return Err(Refusal::new("forbidden", "nobody's room"));
        }
        Ok(())
    }

    /// Users named `hidden-*` are shown to nobody.
    fn authorize_user(&self, _: &Identity<String>, user: &String) -> Result<(), Refusal> {
        if user.starts_with("hidden-") {
            return Err(Refusal::new("forbidden", "nobody sees them"));
        }
        Ok(())
    }
}

pub async fn server() -> (TestHub, ManualClock, String) {
    server_with(Policy::default()).await
}

/// A server whose sessions carry metadata `M` into rooms, under `policy`, with the all-users
/// feed on (what most of these tests are about).
pub async fn server_with<M>(policy: Policy) -> (TestHub<M>, ManualClock, String)
where
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
{
    server_config(policy, HubConfig::default().all_users_feed(true)).await
}

/// A server of `config`, with watchers taken (`Auth` makes a connection without a token one).
pub async fn server_config<M>(
    policy: Policy,
    config: HubConfig,
) -> (TestHub<M>, ManualClock, String)
where
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
{
    let options = WsOptions::default().hello_timeout(Duration::from_millis(300));
    server_options(policy, config.watchers(true), options).await
}

/// A server of `config` whose WebSocket route has `options`.
pub async fn server_options<M>(
    policy: Policy,
    config: HubConfig,
    options: WsOptions,
) -> (TestHub<M>, ManualClock, String)
where
    M: Metadata + Serialize + DeserializeOwned + Default + PartialEq + Clone,
{
    let clock = ManualClock::new();
    let hub = Hub::new(PresenceTracker::with_clock(policy, clock.clone()), config);
    let app = axum::Router::new().route("/ws", ws::route_with(hub.clone(), Auth, options));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("ws://{}/ws", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hub, clock, url)
}

pub async fn client(url: &str) -> Client {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("connects")
        .0
}

pub async fn send(c: &mut Client, v: Value) {
    c.send(Message::text(v.to_string())).await.expect("sends");
}

/// The next JSON message (skipping pings and the `welcome`, which `tests/ws_rooms.rs` reads);
/// panics after 5 s without one.
pub async fn next(c: &mut Client) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .expect("a message within 5 s")
            .expect("open")
            .expect("a frame");
        match m {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["type"] != "welcome" {
                    return v;
                }
            }
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => continue,
        }
    }
}

/// The close frame's code and reason, skipping anything before it.
pub async fn closed(c: &mut Client) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .expect("closes within 5 s")
        {
            Some(Ok(Message::Close(Some(f)))) => return (f.code, f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("closed without a close frame")
            }
            Some(Ok(_)) => continue,
        }
    }
}

pub fn hello(token: Option<&str>, session: Option<&str>) -> Value {
    json!({"type": "hello", "protocol": 1, "token": token, "session": session})
}

/// Waits until the server has read everything sent before (it answers a ping once it reads
/// it, after them); the JSON messages that came meanwhile.
pub async fn sync(c: &mut Client) -> Vec<Value> {
    c.send(Message::Ping(b"sync".to_vec().into()))
        .await
        .expect("sends");
    let mut seen = Vec::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .expect("the pong within 5 s")
            .expect("open")
            .expect("a frame");
        match m {
            Message::Pong(p) if p.as_ref() == b"sync" => return seen,
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["type"] != "welcome" {
                    seen.push(v);
                }
            }
            Message::Close(f) => panic!("closed: {f:?}"),
            _ => {}
        }
    }
}
