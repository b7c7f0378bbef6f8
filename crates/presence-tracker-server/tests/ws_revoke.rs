//! Access taken away: the application's `authorize_room` is asked again at a hello that names
//! no rooms (for the rooms its session is in), at each `update`, and when a session that
//! expired under an open connection joins its rooms again; a room it refuses is left, with a
//! `forbidden` refusal naming it.
#![cfg(feature = "axum")]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use presence_tracker::{ManualClock, Policy, PresenceTracker};
use presence_tracker_server::wire::Refusal;
use presence_tracker_server::ws::{self, WsOptions};
use presence_tracker_server::{
    Authenticate, Handshake, Hub, HubConfig, Identity, Meta, RoomAccess,
};
use serde_json::{json, Value};

mod support;
use support::{client, hello, next, send, sync, Client};

type TestHub = Hub<String, String, ManualClock, String, Meta>;

/// `user:NAME` signs in as NAME; the rooms in `revoked` are refused to everyone.
#[derive(Clone, Default)]
struct Revocable {
    revoked: Arc<Mutex<HashSet<String>>>,
}

impl Authenticate<String> for Revocable {
    fn authenticate(&self, h: &Handshake<'_>) -> Result<Identity<String>, Refusal> {
        match h.token.and_then(|t| t.strip_prefix("user:")) {
            Some(name) => Ok(Identity::User(name.to_string())),
            None => Err(Refusal::new("unauthorized", "bad token")),
        }
    }

    fn authorize_room(
        &self,
        _: &Identity<String>,
        room: &str,
        _: RoomAccess,
    ) -> Result<(), Refusal> {
        if self.revoked.lock().expect("not poisoned").contains(room) {
            return Err(Refusal::new("forbidden", "taken away"));
        }
        Ok(())
    }
}

async fn server(auth: Revocable) -> (TestHub, ManualClock, String) {
    let clock = ManualClock::new();
    let hub = Hub::new(
        PresenceTracker::with_clock(Policy::default(), clock.clone()),
        HubConfig::default(),
    );
    let options = WsOptions::default().hello_timeout(Duration::from_millis(300));
    let app = axum::Router::new().route("/ws", ws::route_with(hub.clone(), auth, options));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("ws://{}/ws", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hub, clock, url)
}

async fn tab(url: &str, rooms: Option<Value>) -> (Client, Vec<Value>) {
    let mut c = client(url).await;
    let mut h = hello(Some("user:ada"), Some("a-1"));
    if let Some(rooms) = rooms {
        h["rooms"] = rooms;
    }
    send(&mut c, h).await;
    let seen = sync(&mut c).await;
    (c, seen)
}

fn rooms_of(hub: &TestHub) -> Vec<String> {
    hub.tracker().rooms().of_session(&"a-1".to_string())
}

fn forbidden_in(seen: &[Value], room: &str) -> bool {
    seen.iter()
        .any(|m| m["type"] == "refused" && m["code"] == "forbidden" && m["room"] == room)
}

#[tokio::test]
async fn a_hello_naming_no_rooms_leaves_the_rooms_taken_away() {
    let auth = Revocable::default();
    let (hub, _clock, url) = server(auth.clone()).await;
    let (first, _) = tab(&url, Some(json!([{"room": "doc-1"}, {"room": "doc-2"}]))).await;
    assert_eq!(rooms_of(&hub).len(), 2);
    drop(first);
    auth.revoked
        .lock()
        .expect("not poisoned")
        .insert("doc-1".into());
    // The tab comes back (a reconnect that names no rooms: the session stays where it is).
    let (_again, seen) = tab(&url, None).await;
    assert!(forbidden_in(&seen, "doc-1"), "{seen:?}");
    assert_eq!(rooms_of(&hub), ["doc-2"]);
}

#[tokio::test]
async fn an_update_in_a_room_taken_away_is_refused_and_changes_nothing() {
    let auth = Revocable::default();
    let (hub, clock, url) = server(auth.clone()).await;
    let (mut c, _) = tab(&url, Some(json!([{"room": "doc-1", "meta": {"s": 1}}]))).await;
    auth.revoked
        .lock()
        .expect("not poisoned")
        .insert("doc-1".into());
    clock.advance(Duration::from_secs(1));
    send(
        &mut c,
        json!({"type": "update", "room": "doc-1", "meta": {"s": 2}}),
    )
    .await;
    let seen = sync(&mut c).await;
    assert!(forbidden_in(&seen, "doc-1"), "{seen:?}");
    let state = serde_json::to_value(&*hub.rooms().state("doc-1")).expect("json");
    assert_eq!(state["members"][0]["sessions"][0]["meta"], json!({"s": 1}));
}

#[tokio::test]
async fn a_session_that_expired_joins_again_only_the_rooms_it_may() {
    let auth = Revocable::default();
    let (hub, clock, url) = server(auth.clone()).await;
    let (mut c, _) = tab(&url, Some(json!([{"room": "doc-1"}, {"room": "doc-2"}]))).await;
    // The session ends under the open connection (a laptop asleep past the TTL).
    clock.advance(Duration::from_secs(3600));
    hub.tick();
    assert!(hub.tracker().session("a-1").is_none());
    auth.revoked
        .lock()
        .expect("not poisoned")
        .insert("doc-2".into());
    send(&mut c, json!({"type": "heartbeat", "activity": "active"})).await;
    let seen = sync(&mut c).await;
    assert!(forbidden_in(&seen, "doc-2"), "{seen:?}");
    assert!(hub.tracker().session("a-1").is_some(), "connected again");
    assert_eq!(rooms_of(&hub), ["doc-1"]);
    // It is no longer sent doc-2's messages: the next room message is doc-1's.
    send(&mut c, json!({"type": "room_resync", "room": "doc-2"})).await;
    let refused = next(&mut c).await;
    assert_eq!(
        (refused["code"].as_str(), refused["room"].as_str()),
        (Some("not_in_room"), Some("doc-2"))
    );
}
