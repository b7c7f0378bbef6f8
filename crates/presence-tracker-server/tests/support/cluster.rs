//! Nodes of the cluster tests: a tracker on its own `ManualClock` and a `ClusterNode`, fed as
//! a server would; polling with deadlines; the Redis settings of the tests.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use super::redis::RedisServer;
use presence_tracker::{
    Activity, DisconnectKind, ManualClock, Policy, Presence, PresenceTracker, Transitions,
};
use presence_tracker_server::cluster::{
    ClusterConfig, ClusterEvent, ClusterNode, ClusterRoomEvent, ClusterUserEvent, RefusalReason,
};
use tokio::sync::broadcast;

pub const LEASE: Duration = Duration::from_millis(1000);
pub const GRACE: Duration = Duration::from_millis(1500);
pub const REAP: Duration = Duration::from_millis(100);
/// Slack on top of a stated bound: scheduling on a loaded 2-core machine.
pub const SLACK: Duration = Duration::from_millis(1500);

pub fn config(redis: &RedisServer) -> ClusterConfig {
    config_at(redis.url())
}

pub fn config_at(url: String) -> ClusterConfig {
    ClusterConfig::new(url)
        .lease_ttl(LEASE)
        .reap_interval(REAP)
        .disconnect_grace(GRACE)
        .response_timeout(Duration::from_millis(300))
        .max_backoff(Duration::from_millis(200))
        .on_diagnostic(|d| eprintln!("diag {:?}: {d:?}", Instant::now()))
}

/// String ids, rooms with string metadata.
pub type Tracker = PresenceTracker<String, String, ManualClock, String, String>;
pub type Cluster = ClusterNode<String, String, String, String>;
pub type Event = ClusterEvent<String, String, String, String>;

/// A room member as a test compares it: user, presence, (session, metadata) sorted.
pub type Member = (String, Presence, Vec<(String, String)>);

/// One node: a tracker on its own clock, and its cluster layer fed as a server would.
pub struct Node {
    pub tracker: Tracker,
    pub clock: ManualClock,
    pub cluster: Cluster,
    events: broadcast::Receiver<Event>,
    seen: Vec<Event>,
}

impl Node {
    pub async fn start(redis: &RedisServer) -> Node {
        let clock = ManualClock::new();
        let cluster = ClusterNode::start(config(redis))
            .await
            .expect("node starts");
        Node {
            tracker: PresenceTracker::with_clock(Policy::default(), clock.clone()),
            clock,
            events: cluster.subscribe(),
            cluster,
            seen: Vec::new(),
        }
    }

    pub fn feed(&self, t: &Transitions<String, String, String, String>) {
        self.cluster.record(t);
    }

    pub fn connect(&self, user: &str, session: &str, connection: &str) {
        let t = self
            .tracker
            .connect(user.into(), session.into(), connection, Activity::Active)
            .expect("connects locally");
        let view = self.tracker.session(session).expect("live");
        let (user, session) = (user.to_string(), session.to_string());
        self.cluster
            .connected(&t, &user, &session, view.presence, view.last_seen);
    }

    pub fn disconnect(&self, session: &str, connection: &str) {
        let t = self
            .tracker
            .disconnect(session, connection, DisconnectKind::Lost)
            .expect("known");
        self.feed(&t);
    }

    pub fn leave(&self, session: &str, connection: &str) {
        let t = self.tracker.leave(session, connection).expect("known");
        self.feed(&t);
    }

    /// Moves this node's clock and ticks: local decays and expiries reach the cluster.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
        let t = self.tracker.tick();
        self.feed(&t);
    }

    pub fn presence(&self, user: &str) -> (Presence, usize) {
        self.cluster
            .user(&user.to_string())
            .map_or((Presence::Offline, 0), |u| (u.presence, u.sessions))
    }

    /// Waits (bounded by [`CONVERGE`]) until this node sees each of `users` active on one
    /// session.
    pub async fn sees_online(&self, what: &str, users: &[&str]) {
        for &user in users {
            eventually(what, CONVERGE, || {
                self.presence(user) == (Presence::Active, 1)
            })
            .await;
        }
    }

    /// Everything received so far.
    pub fn drain(&mut self) -> &[Event] {
        while let Ok(e) = self.events.try_recv() {
            self.seen.push(e);
        }
        &self.seen
    }

    pub fn user_events(&mut self, user: &str) -> Vec<ClusterUserEvent<String>> {
        self.drain()
            .iter()
            .filter_map(|e| match e {
                ClusterEvent::User(u) if u.user == user => Some(u.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn join(&self, session: &str, room: &str, meta: &str) {
        let t = self
            .tracker
            .rooms()
            .join(session, room.into(), meta.into())
            .expect("joins");
        self.feed(&t);
    }

    pub fn update_room(&self, session: &str, room: &str, meta: &str) {
        let t = self
            .tracker
            .rooms()
            .update(session, room, meta.into())
            .expect("updates");
        self.feed(&t);
    }

    pub fn leave_room(&self, session: &str, room: &str) {
        let t = self.tracker.rooms().leave(session, room).expect("leaves");
        self.feed(&t);
    }

    /// A room's members as this node's cluster view has them: (user, presence, sessions with
    /// metadata), sorted.
    pub fn room(&self, room: &str) -> Vec<Member> {
        let mut members: Vec<_> = self
            .cluster
            .room(&room.to_string())
            .map(|r| {
                r.members
                    .into_iter()
                    .map(|(u, m)| {
                        let mut sessions: Vec<(String, String)> = m
                            .sessions
                            .iter()
                            .map(|(s, meta)| (s.clone(), meta.to_string()))
                            .collect();
                        sessions.sort();
                        (u, m.presence, sessions)
                    })
                    .collect()
            })
            .unwrap_or_default();
        members.sort();
        members
    }

    pub fn room_events(
        &mut self,
        room: &str,
    ) -> Vec<ClusterRoomEvent<String, String, String, String>> {
        self.drain()
            .iter()
            .filter_map(|e| match e {
                ClusterEvent::Room(r) if r.room == room => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn refusals(&mut self, reason: RefusalReason) -> usize {
        self.drain()
            .iter()
            .filter(|e| matches!(e, ClusterEvent::Refused(r) if r.reason == reason))
            .count()
    }

    pub async fn flush(&self) {
        self.cluster
            .flush(Duration::from_secs(5))
            .await
            .expect("writes reach redis");
    }
}

pub async fn three(redis: &RedisServer) -> (Node, Node, Node) {
    (
        Node::start(redis).await,
        Node::start(redis).await,
        Node::start(redis).await,
    )
}

/// Polls `cond` every 10 ms until it holds; panics past `within`. Prints and returns the time
/// it took.
pub async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if cond() {
            let took = start.elapsed();
            eprintln!("{what}: {took:?} (bound {within:?})");
            return took;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The presences a user's events went through, first `from` included.
pub fn chain(events: &[ClusterUserEvent<String>]) -> Vec<Presence> {
    let mut out: Vec<Presence> = events.first().map(|e| e.from).into_iter().collect();
    out.extend(events.iter().map(|e| e.to));
    out
}

pub const CONVERGE: Duration = Duration::from_secs(3);
