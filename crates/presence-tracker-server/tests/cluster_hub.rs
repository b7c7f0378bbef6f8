//! Hubs that are nodes of one cluster (`Hub::with_cluster`), against a real redis-server:
//! every node publishes the cluster's users in its own gap-free order and the cluster's rooms
//! at the cluster's epoch and version, heartbeats that change nothing write nothing, and a
//! session the cluster refuses has its connection told (and, over a WebSocket, closed).
//! Redis keeps real time, so convergence is awaited by polling against explicit deadlines.

#![cfg(feature = "redis")]

mod support {
    pub mod cluster;
    #[allow(unreachable_pub, dead_code)]
    pub mod redis;
}

use std::collections::HashMap;
use std::time::Duration;

use presence_tracker::{
    Activity, ConnectionId, ManualClock, Policy, Presence, PresenceTracker, RoomChange,
};
use presence_tracker_server::cluster::ClusterNode;
use presence_tracker_server::{
    Delivery, Hub, HubConfig, RoomDelivery, RoomSubscription, Subscription,
};
use support::cluster::{config, eventually, Cluster, CONVERGE};
use support::redis::RedisServer;

type TestHub = Hub<String, String, ManualClock, String, String>;
/// A room as a hub publishes it: epoch, version, members with their sessions' metadata.
type Shown = (u64, u64, Vec<(String, Presence, Vec<String>)>);

/// One node: a hub over a tracker on its own clock, fed to its cluster node.
struct Node {
    hub: TestHub,
    clock: ManualClock,
    cluster: Cluster,
}

impl Node {
    async fn start(redis: &RedisServer) -> Node {
        let clock = ManualClock::new();
        let cluster: Cluster = ClusterNode::start(config(redis))
            .await
            .expect("node starts");
        let tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
        let hub = Hub::with_cluster(tracker, HubConfig::default(), cluster.clone());
        Node {
            hub,
            clock,
            cluster,
        }
    }

    fn connect(&self, user: &str, session: &str, connection: &str) {
        self.hub
            .connect(user.into(), session.into(), connection, Activity::Active)
            .expect("connects locally");
    }

    /// The user as this hub publishes it.
    fn shows(&self, user: &str) -> (Presence, usize) {
        self.hub
            .state()
            .users
            .iter()
            .find(|u| u.user == user)
            .map_or((Presence::Offline, 0), |u| (u.presence, u.sessions))
    }

    /// The room as this hub publishes it: (epoch, version, members with their metadata).
    fn room(&self, room: &str) -> Shown {
        let state = self.hub.rooms().state(room);
        let mut members: Vec<_> = state
            .members
            .iter()
            .map(|m| {
                let mut metas: Vec<String> = m.sessions.iter().map(|s| (*s.meta).clone()).collect();
                metas.sort();
                (m.user.clone(), m.presence, metas)
            })
            .collect();
        members.sort();
        (state.epoch, state.version, members)
    }

    /// The room's (epoch, version) as the cluster node has it.
    fn cluster_room(&self, room: &str) -> Option<(u64, u64)> {
        self.cluster
            .room(&room.to_string())
            .map(|r| (r.epoch, r.version))
    }

    async fn flush(&self) {
        self.cluster
            .flush(Duration::from_secs(5))
            .await
            .expect("writes reach redis");
    }
}

async fn three(redis: &RedisServer) -> (Node, Node, Node) {
    (
        Node::start(redis).await,
        Node::start(redis).await,
        Node::start(redis).await,
    )
}

/// What a client of a hub's users holds, by the wire's rule, with every user's chain of
/// (presence, sessions) as it was shown.
#[derive(Default)]
struct Users {
    epoch: u64,
    version: u64,
    shown: HashMap<String, (Presence, usize, u64)>,
    chains: HashMap<String, Vec<(Presence, usize)>>,
}

impl Users {
    /// Applies what the subscription has, asserting that versions come without a gap and that
    /// each user's `seq` rises.
    fn drain(&mut self, feed: &mut Subscription<String, String, ManualClock, String, String>) {
        while let Some(delivery) = feed.try_recv() {
            match delivery {
                Delivery::State(state) => {
                    self.epoch = state.epoch;
                    self.version = state.version;
                    self.shown = state
                        .users
                        .iter()
                        .map(|u| (u.user.clone(), (u.presence, u.sessions, u.seq)))
                        .collect();
                    for u in &state.users {
                        self.chains
                            .entry(u.user.clone())
                            .or_default()
                            .push((u.presence, u.sessions));
                    }
                }
                Delivery::Updates(batch) => {
                    assert_eq!(batch.epoch(), self.epoch, "one epoch");
                    assert_eq!(batch.from(), self.version + 1, "no version skipped");
                    self.version = batch.to();
                    for u in batch.users() {
                        if let Some(&(_, _, seq)) = self.shown.get(&u.user) {
                            assert!(u.seq > seq, "a user's seq rises: {u:?}");
                        }
                        if u.presence == Presence::Offline {
                            self.shown.remove(&u.user);
                        } else {
                            self.shown
                                .insert(u.user.clone(), (u.presence, u.sessions, u.seq));
                        }
                        self.chains
                            .entry(u.user.clone())
                            .or_default()
                            .push((u.presence, u.sessions));
                    }
                }
            }
        }
    }

    fn chain(&self, user: &str) -> &[(Presence, usize)] {
        self.chains.get(user).map_or(&[], Vec::as_slice)
    }
}

/// What a client of one room holds, by the wire's rule for rooms: (epoch, version, user ->
/// metadata of its sessions), and every member change it applied.
#[derive(Default)]
struct Room {
    epoch: u64,
    version: u64,
    members: HashMap<String, Vec<String>>,
    states: usize,
    changes: Vec<(String, RoomChange)>,
}

impl Room {
    fn drain(&mut self, feed: &mut RoomSubscription<String, String, ManualClock, String, String>) {
        while let Some(delivery) = feed.try_recv() {
            match delivery {
                RoomDelivery::State(state) => {
                    self.states += 1;
                    self.epoch = state.epoch;
                    self.version = state.version;
                    self.members = state
                        .members
                        .iter()
                        .map(|m| {
                            let mut metas: Vec<String> =
                                m.sessions.iter().map(|s| (*s.meta).clone()).collect();
                            metas.sort();
                            (m.user.clone(), metas)
                        })
                        .collect();
                }
                RoomDelivery::Updates(batch) => {
                    assert_eq!(batch.epoch(), self.epoch, "one history");
                    assert_eq!(batch.from(), self.version + 1, "no version skipped");
                    self.version = batch.to();
                    for m in batch.members() {
                        self.changes.push((m.user.clone(), m.change));
                        if m.presence == Presence::Offline {
                            self.members.remove(&m.user);
                        } else {
                            let mut metas: Vec<String> =
                                m.sessions.iter().map(|s| (*s.meta).clone()).collect();
                            metas.sort();
                            self.members.insert(m.user.clone(), metas);
                        }
                    }
                }
            }
        }
    }

    fn sorted(&self) -> Vec<(String, Vec<String>)> {
        let mut members: Vec<_> = self.members.clone().into_iter().collect();
        members.sort();
        members
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_publishes_the_cluster_users_in_its_own_gap_free_order() {
    let redis = RedisServer::start();
    let (a, b, c) = three(&redis).await;
    let mut feed = c.hub.subscribe();
    let mut client = Users::default();
    a.connect("ada", "tab-1", "s1");
    b.connect("ada", "tab-2", "s2");
    b.connect("bob", "tab-b", "s3");
    for node in [&a, &b, &c] {
        eventually("ada on 2 tabs and bob on every hub", CONVERGE, || {
            node.shows("ada") == (Presence::Active, 2) && node.shows("bob") == (Presence::Active, 1)
        })
        .await;
    }
    client.drain(&mut feed);
    assert_eq!(client.chain("ada").first(), Some(&(Presence::Active, 1)));
    assert_eq!(client.chain("ada").last(), Some(&(Presence::Active, 2)));
    assert_eq!(client.chain("bob"), [(Presence::Active, 1)]);

    // Ada closes the tab on a: her other tab keeps her online everywhere, one tab less.
    a.hub.leave("tab-1", "s1").expect("live");
    a.clock
        .advance(Policy::default().leave_grace() + Duration::from_secs(1));
    a.hub.tick();
    eventually("ada down to 1 tab on c", CONVERGE, || {
        c.shows("ada") == (Presence::Active, 1)
    })
    .await;
    // Bob's only tab goes: offline, once, on every node.
    b.hub.leave("tab-b", "s3").expect("live");
    b.clock
        .advance(Policy::default().leave_grace() + Duration::from_secs(1));
    b.hub.tick();
    eventually("bob offline on a", CONVERGE, || {
        a.shows("bob").0 == Presence::Offline
    })
    .await;
    eventually("bob offline on c's client", CONVERGE, || {
        client.drain(&mut feed);
        client.chain("bob").last() == Some(&(Presence::Offline, 0))
    })
    .await;
    assert_eq!(
        client.chain("bob"),
        [(Presence::Active, 1), (Presence::Offline, 0)]
    );
    assert!(
        client
            .chain("ada")
            .iter()
            .all(|(p, _)| *p == Presence::Active),
        "ada never shown below active: {:?}",
        client.chain("ada")
    );
    assert_eq!(client.shown.len(), 1);
    assert_eq!(
        client.shown.get("ada").map(|&(p, n, _)| (p, n)),
        Some((Presence::Active, 1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_that_change_nothing_write_nothing() {
    let redis = RedisServer::start();
    let (a, b) = (Node::start(&redis).await, Node::start(&redis).await);
    for i in 0..100 {
        a.connect(&format!("u{i}"), &format!("tab-{i}"), &format!("s{i}"));
    }
    a.flush().await;
    eventually("b shows a's 100 users", CONVERGE, || {
        b.hub.state().users.len() == 100
    })
    .await;
    let (writes, version) = (a.cluster.stats().writes, b.hub.version());
    for round in 0..10 {
        for i in 0..100 {
            a.hub
                .heartbeat(&format!("tab-{i}"), Activity::Active)
                .expect("live");
        }
        assert_eq!(a.cluster.stats().writes, writes, "round {round}");
    }
    a.flush().await;
    assert_eq!(
        a.cluster.stats().writes,
        writes,
        "1,000 heartbeats wrote nothing"
    );
    assert_eq!(b.hub.version(), version, "and published nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_carry_the_cluster_epoch_and_version_on_every_node() {
    let redis = RedisServer::start();
    let (a, b, c) = three(&redis).await;
    let mut feed = c.hub.rooms().subscribe("doc".into()).expect("a room id");
    let mut client = Room::default();
    a.connect("ada", "tab-1", "s1");
    b.connect("bob", "tab-b", "s2");
    a.hub
        .rooms()
        .join("tab-1", "doc".into(), "ada §1".into())
        .expect("joins");
    b.hub
        .rooms()
        .join("tab-b", "doc".into(), "bob §1".into())
        .expect("joins");
    let both = vec![
        (
            "ada".to_string(),
            Presence::Active,
            vec!["ada §1".to_string()],
        ),
        (
            "bob".to_string(),
            Presence::Active,
            vec!["bob §1".to_string()],
        ),
    ];
    for node in [&a, &b, &c] {
        eventually("both in doc on every hub", CONVERGE, || {
            node.room("doc").2 == both
        })
        .await;
    }
    // One history, one version, on every node: the cluster's.
    eventually("the same epoch and version everywhere", CONVERGE, || {
        let (ea, va, _) = a.room("doc");
        [&b, &c].iter().all(|n| {
            let (e, v, _) = n.room("doc");
            (e, v) == (ea, va)
        }) && c.cluster_room("doc") == Some((ea, va))
    })
    .await;

    // A metadata change on a is one update on c's subscriber.
    client.drain(&mut feed);
    let before = client.changes.len();
    a.clock.advance(Duration::from_millis(100));
    a.hub
        .rooms()
        .update("tab-1", "doc", "ada §2".into())
        .expect("updates");
    eventually("c's client sees ada in §2", CONVERGE, || {
        client.drain(&mut feed);
        client.members.get("ada") == Some(&vec!["ada §2".to_string()])
    })
    .await;
    assert_eq!(
        client.changes[before..],
        [("ada".to_string(), RoomChange::Updated)]
    );
    // Bob leaves on b: one change, and the room as every node has it.
    b.hub.rooms().leave("tab-b", "doc").expect("in it");
    eventually("bob left on c's client", CONVERGE, || {
        client.drain(&mut feed);
        !client.members.contains_key("bob")
    })
    .await;
    assert_eq!(
        client.changes[before..],
        [
            ("ada".to_string(), RoomChange::Updated),
            ("bob".to_string(), RoomChange::Left)
        ]
    );
    let (epoch, version, members) = a.room("doc");
    eventually("a's room is c's client's", CONVERGE, || {
        client.drain(&mut feed);
        (client.epoch, client.version) == (epoch, version)
    })
    .await;
    let shown: Vec<(String, Vec<String>)> = members.into_iter().map(|(u, _, m)| (u, m)).collect();
    assert_eq!(client.sorted(), shown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_claimed_on_another_node_is_refused_on_its_old_one() {
    let redis = RedisServer::start();
    let (a, b, c) = three(&redis).await;
    let mut feed = c.hub.subscribe();
    let mut client = Users::default();
    let mut watch = a.hub.watch_refusal(ConnectionId::from("s1"));
    a.connect("ada", "tab-1", "s1");
    a.flush().await;
    // The same tab's session opened on b too (a duplicated tab): b claims it, newer.
    b.connect("ada", "tab-1", "s2");
    b.flush().await;
    // On a, the old connection's session hides: a write under the older claim, refused.
    a.hub
        .heartbeat("tab-1", Activity::Background)
        .expect("live");
    let refusal = tokio::time::timeout(CONVERGE, watch.refused())
        .await
        .expect("a's connection is told");
    assert_eq!(refusal.code, "session_superseded");
    // The session decays (away, then stale) and ends on a (its socket closed): nothing of it
    // is written again, so nothing claims it back from b.
    let writes = a.cluster.stats().writes;
    a.clock
        .advance(Policy::default().away() + Duration::from_secs(1));
    a.hub.tick();
    assert_eq!(
        a.hub.tracker().session("tab-1").map(|s| s.presence),
        Some(Presence::Stale)
    );
    a.clock.advance(Policy::default().ttl());
    a.hub.tick();
    a.flush().await;
    assert_eq!(a.cluster.stats().writes, writes, "nothing claimed back");
    b.flush().await;
    eventually("c's client holds ada, active, one tab", CONVERGE, || {
        client.drain(&mut feed);
        client.shown.get("ada").map(|&(p, n, _)| (p, n)) == Some((Presence::Active, 1))
    })
    .await;
    assert_eq!(client.chain("ada"), [(Presence::Active, 1)], "no flap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_id_of_another_user_is_refused_and_never_shown() {
    let redis = RedisServer::start();
    let (a, b, c) = three(&redis).await;
    a.connect("ada", "tab-x", "s1");
    a.flush().await;
    let mut watch = b.hub.watch_refusal(ConnectionId::from("s2"));
    b.connect("bob", "tab-x", "s2"); // b's tracker does not know tab-x: it accepts bob
    let refusal = tokio::time::timeout(CONVERGE, watch.refused())
        .await
        .expect("bob's connection is told");
    assert_eq!(refusal.code, "session_taken");
    b.flush().await;
    eventually("ada on c", CONVERGE, || {
        c.shows("ada") == (Presence::Active, 1)
    })
    .await;
    for node in [&a, &b, &c] {
        assert_eq!(node.shows("bob").0, Presence::Offline);
    }
}

#[cfg(feature = "axum")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_whose_session_the_cluster_refuses_is_closed_with_the_refusal() {
    use futures_util::{SinkExt, StreamExt};
    use presence_tracker_server::ws::{self, WsOptions};
    use presence_tracker_server::{Handshake, Identity};
    use serde_json::{json, Value};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;

    let redis = RedisServer::start();
    let (a, b) = (Node::start(&redis).await, Node::start(&redis).await);
    a.connect("ada", "tab-x", "s1");
    a.flush().await;
    let auth = |h: &Handshake<'_>| Ok(Identity::User(h.token.unwrap_or("anon").to_string()));
    let app = axum::Router::new().route(
        "/ws",
        ws::route_with(b.hub.clone(), auth, WsOptions::default()),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let url = format!("ws://{}/ws", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (mut bob, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("connects");
    let hello = json!({"type": "hello", "protocol": 1, "token": "bob", "session": "tab-x"});
    bob.send(Message::text(hello.to_string()))
        .await
        .expect("sends");
    let mut seen = Vec::new();
    let close = loop {
        let frame = tokio::time::timeout(CONVERGE, bob.next())
            .await
            .expect("a frame within the bound")
            .expect("open")
            .expect("a frame");
        match frame {
            Message::Text(text) => {
                let m: Value = serde_json::from_str(&text).expect("json");
                // The session's handle (`welcome`) aside.
                if m["type"] != "welcome" {
                    seen.push(m);
                }
            }
            Message::Close(frame) => break frame.expect("a close frame"),
            _ => {}
        }
    };
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(
        seen.first().map(|m| m["type"].clone()),
        Some("state".into())
    );
    let last = seen.last().expect("messages before the close");
    assert_eq!(
        (last["type"].as_str(), last["code"].as_str()),
        (Some("refused"), Some("session_taken"))
    );
    eventually("bob's session gone from b's tracker", CONVERGE, || {
        b.clock.advance(Duration::from_secs(1));
        b.hub.tick();
        b.hub.tracker().session("tab-x").is_none()
    })
    .await;
    assert_eq!(b.shows("bob").0, Presence::Offline);
}
