//! [`ClusterNode`]: one node's handle on the cluster, and the state its tasks share.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use presence_tracker::{Presence, Subject, Timestamp, Transitions};
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;

use super::config::ClusterConfig;
use super::feed::View;
use super::id::{encode, ClusterId};
use super::keys::Keys;
use super::mirror::Mirror;
use super::redis_io::{text, Io};
use super::rooms::encode_meta;
use super::rooms::RoomView;
use super::status::{Counters, Part};
use super::{
    ClusterError, ClusterEvent, ClusterMeta, ClusterRoom, ClusterUser, Diagnostic, Health, Stats,
};

/// How many events a subscriber may fall behind before it misses some (it is told, by
/// `RecvError::Lagged`, and reads [`ClusterNode::online`] again).
const FEED_BACKLOG: usize = 4096;

/// Who this node is in Redis now: its id changes when it registers again.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) node: String,
    pub(crate) generation: String,
}

/// What the node's tasks share.
pub(crate) struct Shared<U, S, R, M> {
    pub(crate) config: ClusterConfig,
    pub(crate) keys: Keys,
    pub(crate) io: Io,
    pub(crate) client: redis::Client,
    pub(crate) counters: Arc<Counters>,
    pub(crate) identity: RwLock<Identity>,
    pub(crate) mirror: Mutex<Mirror<U, S>>,
    pub(crate) view: Mutex<View<U>>,
    pub(crate) rooms: Mutex<RoomView<U, S, R, M>>,
    pub(crate) events: broadcast::Sender<ClusterEvent<U, S, R, M>>,
    pub(crate) wake_writer: Notify,
    pub(crate) written: Notify,
    pub(crate) kick_feed: Notify,
    /// Whether the last renewal succeeded: only then does the node look for cleanups.
    pub(crate) lease_ok: AtomicBool,
    /// Notified after every full read of the users.
    pub(crate) synced: Notify,
    /// Until when the node acts stalled (a drill), as `Instant` nanos after `origin`; 0: not.
    stalled_until: AtomicU64,
    /// Until when the lease is surely valid in Redis: the send time of the last successful
    /// renewal (or registration) plus the lease TTL, as nanos after `origin`.
    valid_until: AtomicU64,
    /// Notified after every successful renewal.
    pub(crate) renewed: Notify,
    origin: Instant,
}

impl<U, S, R, M> Shared<U, S, R, M> {
    pub(crate) fn node(&self) -> String {
        self.identity.read().node.clone()
    }

    pub(crate) fn failed(&self, part: Part, reason: String) {
        if self.counters.fail(part, reason.clone()) {
            self.config.diagnose(Diagnostic::Degraded { reason });
        }
    }

    pub(crate) fn recovered(&self, part: Part) {
        if self.counters.ok(part) {
            self.config.diagnose(Diagnostic::Recovered);
        }
    }

    /// Records a successful renewal or registration sent at `sent`.
    pub(crate) fn lease_valid_from(&self, sent: Instant) {
        let until = (sent + self.config.lease_ttl).saturating_duration_since(self.origin);
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.valid_until.fetch_max(nanos, Ordering::AcqRel);
        self.renewed.notify_waiters();
    }

    /// Waits until a write sent now lands while the lease is surely valid: a node that may
    /// have been declared dead writes nothing until its renewal has told it (and it has
    /// registered again), so no entry is ever written under an id whose cleanup is done.
    pub(crate) async fn until_lease_valid(&self) {
        loop {
            let renewed = self.renewed.notified();
            tokio::pin!(renewed);
            renewed.as_mut().enable();
            let until =
                self.origin + Duration::from_nanos(self.valid_until.load(Ordering::Acquire));
            if Instant::now() + self.config.response_timeout < until {
                return;
            }
            let _ = tokio::time::timeout(self.config.renew_interval(), renewed).await;
        }
    }

    /// Waits out a stall drill, if one is on.
    pub(crate) async fn unless_stalled(&self) {
        let until = self.stalled_until.load(Ordering::Acquire);
        if until != 0 {
            let until = self.origin + Duration::from_nanos(until);
            tokio::time::sleep_until(until.into()).await;
        }
    }
}

/// A new random node id (32 hex digits): never the id of an earlier run.
pub(crate) fn random_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let a = RandomState::new().hash_one((nanos, n, std::process::id()));
    let b = RandomState::new().hash_one((a, n));
    format!("{a:016x}{b:016x}")
}

/// One node's membership of the cluster: fed the node's transitions and connects, it writes
/// them to Redis and keeps the cluster-wide presence of every user (see the
/// [module](super) docs for the protocol).
///
/// Cheap to clone. Feeding it never blocks and never fails: writes go out from a task, each
/// session's latest intent only. Dropping the last clone without
/// [`shutdown`](Self::shutdown) stops its tasks at once, which the cluster sees as a crash:
/// the node's lease lapses and another node cleans up.
pub struct ClusterNode<U, S, R = String, M = ()> {
    shared: Arc<Shared<U, S, R, M>>,
    tasks: Arc<Tasks>,
}

impl<U, S, R, M> Clone for ClusterNode<U, S, R, M> {
    fn clone(&self) -> Self {
        ClusterNode {
            shared: Arc::clone(&self.shared),
            tasks: Arc::clone(&self.tasks),
        }
    }
}

impl<U, S, R, M> fmt::Debug for ClusterNode<U, S, R, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterNode")
            .field("node", &self.shared.node())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// The node's tasks, stopped when the last handle goes.
struct Tasks(Mutex<Vec<JoinHandle<()>>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in self.0.get_mut().drain(..) {
            task.abort();
        }
    }
}

/// # Starting and stopping
impl<U: ClusterId, S: ClusterId, R: ClusterId, M: ClusterMeta> ClusterNode<U, S, R, M> {
    /// Joins the cluster: connects, checks the eviction policy, registers a new node id with
    /// a lease, and starts the writer, lease renewal, cleanup and feed tasks on
    /// the current tokio runtime. Returns once the feed has read every user, so
    /// [`user`](Self::user) answers from the start.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidConfig`] for a configuration that cannot work,
    /// [`ClusterError::Redis`] if Redis cannot be reached now (later outages are survived),
    /// [`ClusterError::EvictionPolicy`] or [`ClusterError::PolicyUnknown`] unless Redis is
    /// known not to evict keys.
    pub async fn start(config: ClusterConfig) -> Result<Self, ClusterError> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let (io, client) = Io::connect(&config, Arc::clone(&counters)).await?;
        if config.require_noeviction {
            check_policy(&io).await?;
        }
        let keys = Keys::new(&config.prefix);
        let (events, _) = broadcast::channel(FEED_BACKLOG);
        let shared = Arc::new(Shared {
            identity: RwLock::new(Identity {
                node: random_id(),
                generation: String::new(),
            }),
            config,
            keys,
            io,
            client,
            counters,
            mirror: Mutex::new(Mirror::new()),
            view: Mutex::new(View::new()),
            rooms: Mutex::new(RoomView::new()),
            events,
            wake_writer: Notify::new(),
            written: Notify::new(),
            kick_feed: Notify::new(),
            synced: Notify::new(),
            lease_ok: AtomicBool::new(true),
            stalled_until: AtomicU64::new(0),
            valid_until: AtomicU64::new(0),
            renewed: Notify::new(),
            origin: Instant::now(),
        });
        shared.register().await?;
        let waiter = Arc::clone(&shared);
        let synced = waiter.synced.notified();
        tokio::pin!(synced);
        synced.as_mut().enable();
        let tasks = vec![
            tokio::spawn(Arc::clone(&shared).run_writer()),
            tokio::spawn(Arc::clone(&shared).run_lease()),
            tokio::spawn(Arc::clone(&shared).run_reaper()),
            tokio::spawn(Arc::clone(&shared).run_feed()),
        ];
        let node = ClusterNode {
            shared,
            tasks: Arc::new(Tasks(Mutex::new(tasks))),
        };
        // The feed subscribes, then reads every user: from then on nothing is missed.
        let within = node.shared.config.response_timeout * 10;
        if tokio::time::timeout(within, synced).await.is_err() {
            let reason = match node.health() {
                Health::Degraded { reason, .. } => reason,
                Health::Healthy => "no reply".into(),
            };
            return Err(ClusterError::Redis(format!(
                "the feed did not read the users within {within:?}: {reason}"
            )));
        }
        Ok(node)
    }

    /// Leaves the cluster gracefully: writes what is pending (for at most four response
    /// timeouts), gives this node's sessions the disconnect grace in Redis (no presence
    /// changes: nothing is published) and turns its lease into a cleanup due at the grace.
    /// Clients that reconnect to other nodes meanwhile flap nothing; the others go offline
    /// once, at the grace. Stops the node's tasks.
    ///
    /// # Errors
    ///
    /// [`ClusterError::Redis`] if Redis could not be reached: the node's lease then lapses
    /// and another node cleans up as after a crash.
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        let _ = self.flush(self.shared.config.response_timeout * 4).await;
        for task in self.tasks.0.lock().drain(..) {
            task.abort();
        }
        let node = self.shared.node();
        self.shared.reap_node(&node).await?;
        let grace = super::config::millis(self.shared.config.disconnect_grace);
        self.shared.lease_call("retire", &node, grace).await?;
        Ok(())
    }

    /// Waits until every write fed so far has reached Redis (or was refused).
    ///
    /// # Errors
    ///
    /// [`ClusterError::Timeout`] if that took longer than `within` (Redis unreachable: the
    /// writes stay pending and go out when it returns).
    pub async fn flush(&self, within: Duration) -> Result<(), ClusterError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let written = self.shared.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if self.shared.mirror.lock().idle() {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, written).await.is_err() {
                return Err(ClusterError::Timeout(within));
            }
        }
    }

    /// A fault drill: for `duration` the node neither renews its lease nor writes, as a
    /// process stopped by `SIGSTOP`, a long pause or a partition from Redis would. Its feed
    /// goes on. Other nodes declare it dead once its lease lapses; when the stall ends it
    /// finds out, registers again under a new id and re-publishes its sessions, and its late
    /// writes for sessions claimed elsewhere meanwhile are refused.
    pub fn stall(&self, duration: Duration) {
        let until = (Instant::now() + duration).duration_since(self.shared.origin);
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.shared.stalled_until.store(nanos, Ordering::Release);
    }
}

/// # Feeding the node's transitions
impl<U: ClusterId, S: ClusterId, R: ClusterId, M: ClusterMeta> ClusterNode<U, S, R, M> {
    /// After every connect the tracker accepted, a new session or a re-attach (which returns
    /// no transitions), instead of [`record`](Self::record): records the connect's
    /// transitions and claims the session with a new epoch, so writes of the node it came
    /// from are refused from now on. `presence` and `last_seen` are the session's after the
    /// connect (`tracker.session(..)`).
    pub fn connected(
        &self,
        transitions: &Transitions<U, S, R, M>,
        user: &U,
        session: &S,
        presence: Presence,
        last_seen: Timestamp,
    ) {
        {
            let mut mirror = self.shared.mirror.lock();
            Self::apply(&mut mirror, transitions);
            mirror.connected(user, session, presence, last_seen.as_millis());
        }
        self.shared.wake_writer.notify_one();
    }

    /// After every call that returned transitions (signals, ticks, room joins, updates and
    /// leaves): the sessions' events are written (a presence change, or the session's end),
    /// and the rooms' (each session's membership and metadata); users' events are not, since
    /// the cluster derives users and rooms' members from sessions.
    pub fn record(&self, transitions: &Transitions<U, S, R, M>) {
        if Self::apply(&mut self.shared.mirror.lock(), transitions) {
            self.shared.wake_writer.notify_one();
        }
    }

    /// The sessions' and rooms' events into the mirror; whether there were any.
    fn apply(mirror: &mut Mirror<U, S>, transitions: &Transitions<U, S, R, M>) -> bool {
        let mut any = false;
        for e in transitions.sessions() {
            if let Subject::Session { user, session } = &e.subject {
                mirror.transition(user, session, e.from, e.to, e.last_seen.as_millis());
                any = true;
            }
        }
        for e in transitions.rooms() {
            let present: Vec<(S, String)> = e
                .sessions
                .iter()
                .map(|s| (s.session.clone(), encode_meta(&*s.meta)))
                .collect();
            mirror.room(&e.user, &encode(&e.room), &present);
            any = true;
        }
        any
    }
}

/// # Reading the cluster
impl<U: ClusterId, S: ClusterId, R: ClusterId, M: ClusterMeta> ClusterNode<U, S, R, M> {
    /// A user's cluster-wide state as this node knows it; `None` for a user it never saw
    /// (offline).
    pub fn user(&self, user: &U) -> Option<ClusterUser> {
        self.shared.view.lock().users.get(user).copied()
    }

    /// Every user online anywhere in the cluster.
    pub fn online(&self) -> Vec<(U, ClusterUser)> {
        self.shared
            .view
            .lock()
            .users
            .iter()
            .filter(|(_, u)| u.presence.is_online())
            .map(|(id, u)| (id.clone(), *u))
            .collect()
    }

    /// A room's members cluster-wide as this node knows it; `None` for a room it never saw.
    pub fn room(&self, room: &R) -> Option<ClusterRoom<U, S, M>> {
        self.shared.rooms.lock().get(room)
    }

    /// The cluster's transitions as this node applies them, and refusals of its writes.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent<U, S, R, M>> {
        self.shared.events.subscribe()
    }

    /// This node's id in Redis now (new at every start and every registration).
    pub fn node_id(&self) -> String {
        self.shared.node()
    }

    /// Whether writes, the lease, the cleanup and the feed reached Redis on their last try.
    pub fn health(&self) -> Health {
        self.shared.counters.health()
    }

    /// The node's counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.stats()
    }
}

/// Refuses a Redis that may evict keys.
async fn check_policy(io: &Io) -> Result<(), ClusterError> {
    let mut cmd = redis::cmd("CONFIG");
    cmd.arg("GET").arg("maxmemory-policy");
    let reply: redis::Value = io
        .cmd(&cmd)
        .await
        .map_err(|e| ClusterError::PolicyUnknown(e.to_string()))?;
    let policy = match &reply {
        redis::Value::Array(items) => text(items.get(1)),
        redis::Value::Map(pairs) => text(pairs.first().map(|(_, v)| v)),
        _ => None,
    }
    .ok_or_else(|| ClusterError::PolicyUnknown(format!("reply {reply:?}")))?;
    if policy != "noeviction" {
        return Err(ClusterError::EvictionPolicy { policy });
    }
    Ok(())
}
