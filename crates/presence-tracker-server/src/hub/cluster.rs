//! A hub that is one node of a cluster (feature `redis`): [`Hub::with_cluster`].
//!
//! The node's signals go to its tracker as on a hub of its own, and the tracker's transitions go
//! to the [`ClusterNode`] (never published here); what the hub publishes is the cluster's: a
//! task reads the node's [`ClusterEvent`]s in the order the node applied them and publishes
//! them like a tracker's.
//!
//! - **Users**: in the hub's own total order (its epoch, its versions), as on a hub of its own;
//!   each update is the user's cluster-wide state (the highest presence over every node, its
//!   sessions on every node), and a user's `seq` is the hub version of its last update. The
//!   cluster's history and version of each user are kept, so an event older than what was read
//!   (the state at start, a re-read after a lag) is old news.
//! - **Rooms**: with the cluster's own epoch and version of each room, the same on every node.
//!   The hub holds the rooms that have subscribers here: the node's next event of a room
//!   (same epoch, version + 1) goes out as an update; anything else (a new history, a room the
//!   node read again after a gap in its versions) makes the hub read the room from the node
//!   and send its state, so a subscriber never sees a version skipped.
//! - **Refusals**: a session the cluster refused and the node gave up has the connection that
//!   carries it here told ([`Hub::watch_refusal`]), which the integrations close.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use presence_tracker::{Clock, Id, Metadata, Presence, PresenceTracker, Timestamp, Transitions};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;

use super::{Hub, HubConfig, Inner, Published, Shown};
use crate::cluster::{
    ClusterEvent, ClusterId, ClusterMeta, ClusterNode, ClusterRoom, ClusterRoomEvent, ClusterUser,
    ClusterUserEvent, Refusal as ClusterRefusal, RefusalReason,
};
use crate::wire::{Refusal, Update, UserState};

/// The cluster node as the hub uses it, its id types' bounds erased (the hub's own impl blocks
/// ask only for [`Id`]).
trait Replica<U, S, R, M>: Send + Sync {
    fn connected(
        &self,
        t: &Transitions<U, S, R, M>,
        user: &U,
        session: &S,
        presence: Presence,
        last_seen: Timestamp,
    );
    fn record(&self, t: &Transitions<U, S, R, M>);
    fn user(&self, user: &U) -> Option<ClusterUser>;
    fn online(&self) -> Vec<(U, ClusterUser)>;
    fn room(&self, room: &R) -> Option<ClusterRoom<U, S, M>>;
}

impl<U: ClusterId, S: ClusterId, R: ClusterId, M: ClusterMeta> Replica<U, S, R, M>
    for ClusterNode<U, S, R, M>
{
    fn connected(
        &self,
        t: &Transitions<U, S, R, M>,
        user: &U,
        session: &S,
        presence: Presence,
        last_seen: Timestamp,
    ) {
        ClusterNode::connected(self, t, user, session, presence, last_seen);
    }

    fn record(&self, t: &Transitions<U, S, R, M>) {
        ClusterNode::record(self, t);
    }

    fn user(&self, user: &U) -> Option<ClusterUser> {
        ClusterNode::user(self, user)
    }

    fn online(&self) -> Vec<(U, ClusterUser)> {
        ClusterNode::online(self)
    }

    fn room(&self, room: &R) -> Option<ClusterRoom<U, S, M>> {
        ClusterNode::room(self, room)
    }
}

/// The hub's cluster node, and the task that publishes what the node hands out (stopped with
/// the hub).
pub(super) struct Node<U, S, R, M> {
    replica: Box<dyn Replica<U, S, R, M>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl<U, S, R, M> Drop for Node<U, S, R, M> {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().take() {
            task.abort();
        }
    }
}

impl<U, S, R, M> Node<U, S, R, M> {
    pub(super) fn connected(
        &self,
        t: &Transitions<U, S, R, M>,
        user: &U,
        session: &S,
        presence: Presence,
        last_seen: Timestamp,
    ) {
        self.replica
            .connected(t, user, session, presence, last_seen);
    }

    pub(super) fn record(&self, t: &Transitions<U, S, R, M>) {
        self.replica.record(t);
    }

    pub(super) fn room(&self, room: &R) -> Option<ClusterRoom<U, S, M>> {
        self.replica.room(room)
    }
}

/// The cluster's history and version of a user as the hub last applied them, and when it went
/// offline (tracker ms).
#[derive(Clone, Copy, Debug)]
pub(super) struct Seen {
    epoch: u64,
    version: u64,
    gone_at: Option<u64>,
}

impl Seen {
    /// Whether to keep it at `now`: online, or offline for less than `memory`.
    pub(super) fn kept(&self, now: u64, memory: u64) -> bool {
        self.gone_at
            .is_none_or(|at| at.saturating_add(memory) > now)
    }
}

/// # Many nodes (feature `redis`)
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
impl<U, S, C, R, M> Hub<U, S, C, R, M>
where
    U: ClusterId,
    S: ClusterId,
    C: Clock + 'static,
    R: ClusterId,
    M: ClusterMeta,
{
    /// A hub that is one node of a cluster: signals are recorded in `tracker` (this node's
    /// sessions: heartbeats stay here), its transitions are written to the cluster through
    /// `cluster`, and what the hub publishes to its subscribers, users and rooms, is the
    /// cluster's: every node's clients see the same users, with the same presence and session
    /// counts, and the same rooms at the same epoch and version.
    ///
    /// The users come in the hub's own order (its epoch, new at every start, and versions), so a
    /// client's resync rule is unchanged; each room comes with the cluster's own epoch and
    /// version. A session the cluster refuses (another node claimed it since, another user owns
    /// its id) has the connection that carries it told: see [`watch_refusal`](Self::watch_refusal).
    /// The `socketio` and `ws` integrations close it with the
    /// refusal (`session_superseded`, `session_taken`).
    ///
    /// Give it a tracker with no sessions: a node of a cluster does not restore a snapshot (its
    /// sessions were handed off by [`ClusterNode::shutdown`], and its clients claim them again
    /// as they reconnect; a restored session would take its id back from the node its client
    /// moved to). Keep a clone of `cluster` to shut it down gracefully.
    ///
    /// While Redis is unreachable the tracker goes on serving this node's sessions (nothing
    /// expires for want of Redis), and the hub's subscribers see the cluster as it was until
    /// the node converges again (see [`ClusterNode::health`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use presence_tracker::{Policy, PresenceTracker, SystemClock};
    /// use presence_tracker_server::cluster::{ClusterConfig, ClusterNode};
    /// use presence_tracker_server::{Hub, HubConfig, Meta};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = Policy::default();
    /// let config = ClusterConfig::new("redis://127.0.0.1:6379").policy(&policy);
    /// let cluster: ClusterNode<String, String, String, Meta> = ClusterNode::start(config).await?;
    /// let hub: Hub<String, String, SystemClock, String, Meta> =
    ///     Hub::with_cluster(PresenceTracker::new(policy), HubConfig::default(), cluster.clone());
    /// tokio::spawn(hub.clone().run_ticker());
    /// // ... serve: `socketio::attach(&io, "/", hub, auth)` or `ws::route(hub, auth)` ...
    /// cluster.shutdown().await?; // at the end: hand this node's sessions off
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns the task that publishes the cluster's events; the
    /// node itself needs one).
    pub fn with_cluster(
        tracker: PresenceTracker<U, S, C, R, M>,
        config: HubConfig,
        cluster: ClusterNode<U, S, R, M>,
    ) -> Self {
        // Subscribed before reading: an event after the read is queued, one before is old news.
        let events = cluster.subscribe();
        let read = cluster.online();
        let online = read
            .iter()
            .map(|(user, c)| {
                let shown = Shown {
                    presence: c.presence,
                    sessions: c.sessions,
                    last_seen: c.last_seen,
                    seq: 0,
                };
                (user.clone(), shown)
            })
            .collect();
        let node = Node {
            replica: Box::new(cluster),
            task: Mutex::new(None),
        };
        let hub = Self::build(tracker, config, online, Some(node));
        {
            let mut published = hub.inner.published.lock();
            for (user, c) in read {
                let seen = Seen {
                    epoch: c.epoch,
                    version: c.version,
                    gone_at: None,
                };
                published.cluster_users.insert(user, seen);
            }
        }
        let task = tokio::spawn(follow(Arc::downgrade(&hub.inner), events));
        if let Some(node) = &hub.inner.cluster {
            *node.task.lock() = Some(task);
        }
        hub
    }
}

/// Publishes what the node hands out until the hub is gone.
async fn follow<U: Id, S: Id, C: Clock, R: Id, M: Metadata>(
    hub: Weak<Inner<U, S, C, R, M>>,
    mut events: broadcast::Receiver<ClusterEvent<U, S, R, M>>,
) {
    loop {
        let event = events.recv().await;
        let Some(inner) = hub.upgrade() else { return };
        let hub = Hub { inner };
        match event {
            Ok(ClusterEvent::User(e)) => hub.cluster_user(e),
            Ok(ClusterEvent::Room(e)) => hub.cluster_room(e),
            Ok(ClusterEvent::Refused(r)) => hub.cluster_refused(&r),
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => hub.cluster_lagged(),
            Err(RecvError::Closed) => return,
        }
    }
}

/// A user's state as the cluster has it.
struct Now {
    presence: Presence,
    sessions: usize,
    last_seen: Timestamp,
    epoch: u64,
    version: u64,
}

impl From<ClusterUser> for Now {
    fn from(c: ClusterUser) -> Self {
        Now {
            presence: c.presence,
            sessions: c.sessions,
            last_seen: c.last_seen,
            epoch: c.epoch,
            version: c.version,
        }
    }
}

impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> Hub<U, S, C, R, M> {
    fn cluster_user(&self, e: ClusterUserEvent<U>) {
        let now = Now {
            presence: e.to,
            sessions: e.sessions,
            last_seen: e.last_seen,
            epoch: e.epoch,
            version: e.version,
        };
        let at = self.inner.tracker.now().as_millis();
        let mut published = self.inner.published.lock();
        if let Some(update) = published.apply_cluster(e.user, now, at, self.inner.epoch) {
            // Under the lock: the order of sends is the order of versions.
            self.send_locked(&published, update);
        }
    }

    fn cluster_room(&self, e: ClusterRoomEvent<U, S, R, M>) {
        let Some(node) = &self.inner.cluster else {
            return;
        };
        let room = e.room.clone();
        let mut published = self.inner.published.lock();
        if let Some(item) = published.rooms.cluster_event(node, e) {
            published.rooms.cluster_send(&room, item);
        }
    }

    /// Tells the connection that carries a refused session, if one still does here.
    fn cluster_refused(&self, r: &ClusterRefusal<U, S>) {
        let Some(view) = self.inner.tracker.session(&r.session) else {
            return;
        };
        if view.user != r.user {
            return; // the id is another user's here now
        }
        let refusal = match r.reason {
            RefusalReason::Taken => Refusal::new(
                "session_taken",
                "another user holds this session id in the cluster",
            ),
            _ => Refusal::new(
                "session_superseded",
                "this session was claimed on another node since: this connection no longer carries it",
            ),
        };
        if let Some(tx) = self.inner.watches.lock().remove(&view.connection) {
            let _ = tx.send(refusal);
        }
    }

    /// The hub fell behind the node's events: every user and every room held is read again
    /// from the node (the differences published).
    fn cluster_lagged(&self) {
        let Some(node) = &self.inner.cluster else {
            return;
        };
        let online: HashMap<U, ClusterUser> = node.replica.online().into_iter().collect();
        let at = self.inner.tracker.now().as_millis();
        let mut published = self.inner.published.lock();
        let gone: Vec<U> = published
            .online
            .keys()
            .filter(|u| !online.contains_key(*u))
            .cloned()
            .collect();
        let mut updates = Vec::new();
        for user in gone {
            let seen = published.cluster_users.get(&user).copied();
            let now = match node.replica.user(&user) {
                Some(c) => Now::from(c),
                None => Now {
                    presence: Presence::Offline,
                    sessions: 0,
                    last_seen: Timestamp::EPOCH,
                    epoch: seen.map_or(0, |s| s.epoch),
                    version: seen.map_or(0, |s| s.version),
                },
            };
            updates.extend(published.apply_cluster(user, now, at, self.inner.epoch));
        }
        for (user, c) in online {
            updates.extend(published.apply_cluster(user, Now::from(c), at, self.inner.epoch));
        }
        for update in updates {
            self.send_locked(&published, update);
        }
        let rooms: Vec<R> = published.rooms.held.keys().cloned().collect();
        for room in rooms {
            if let Some(item) = published.rooms.cluster_reload(node, &room) {
                published.rooms.cluster_send(&room, item);
            }
        }
    }
}

impl<U: Id, S, R, M> Published<U, S, R, M> {
    /// A user's cluster state, unless an older one than what was applied; the update to send
    /// if its presence or session count changed.
    fn apply_cluster(&mut self, user: U, now: Now, at: u64, epoch: u64) -> Option<Update<U>> {
        if let Some(seen) = self.cluster_users.get(&user) {
            if (now.epoch, now.version) < (seen.epoch, seen.version) {
                return None; // old news: a later state was applied
            }
        }
        let seen = Seen {
            epoch: now.epoch,
            version: now.version,
            gone_at: (!now.presence.is_online()).then_some(at),
        };
        self.cluster_users.insert(user.clone(), seen);
        if let Some(shown) = self.online.get_mut(&user) {
            if (shown.presence, shown.sessions) == (now.presence, now.sessions) {
                shown.last_seen = now.last_seen;
                return None;
            }
        }
        if now.presence.is_online() {
            let shown = Shown {
                presence: now.presence,
                sessions: now.sessions,
                last_seen: now.last_seen,
                seq: self.version + 1,
            };
            self.online.insert(user.clone(), shown);
        } else {
            // Never shown: nothing to take back.
            self.online.remove(&user)?;
        }
        self.version += 1;
        self.state = None;
        Some(Update::new(
            epoch,
            self.version,
            UserState::new(
                user,
                now.presence,
                now.sessions,
                now.last_seen,
                self.version,
            ),
        ))
    }
}
