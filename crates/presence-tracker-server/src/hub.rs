//! [`Hub`]: the tracker, the published state in one total order, and its subscribers.

#[cfg(feature = "redis")]
mod cluster;
#[cfg(feature = "redis")]
mod cluster_rooms;
mod feed;
mod interest;
mod listing;
mod refusal;
mod room_feed;
mod rooms;

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use presence_tracker::{
    Activity, Clock, ConnectionId, DisconnectKind, Error, Event, Id, Metadata, Presence,
    PresenceTracker, SystemClock, Timestamp, Transitions,
};
use tokio::sync::{broadcast, Notify};

use crate::limit::{SessionBuckets, Taken, TokenBucket};
use crate::wire::{MemberIds, Scope, State, Update, UserState};
use crate::RateLimit;

pub use feed::{Batch, Delivery, Interest, Subscription};
use interest::Interests;
pub use refusal::RefusalWatch;
pub use room_feed::{RoomBatch, RoomDelivery, RoomSubscription};
pub use rooms::HubRooms;
use rooms::RoomsPublished;

/// How long a state made for one subscriber is handed to the next ones (if no update came
/// meanwhile): a connect storm shares it, and its `now` stays within this of the truth.
const STATE_REUSE: Duration = Duration::from_secs(1);

/// How a [`Hub`] is set up.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HubConfig {
    /// How many updates a subscriber may fall behind before it is sent a fresh state instead
    /// (default 1,024). Memory: one shared `Arc` per update in the window.
    pub backlog: usize,
    /// How the [driver](Hub::run_ticker) calls `tick` (default: at the tracker's deadlines,
    /// waking at least every second).
    pub ticking: Ticking,
    /// How long the hub remembers a user who went offline, to recognise an update that a
    /// preempted thread publishes late as old news (default 60 s; keep it under the policy's
    /// retention, after which a returning user's `seq` starts again).
    pub offline_memory: Duration,
    /// Whether the integrations send a connection every user ([`Interest::All`]) when it asks,
    /// or when its hello names no users (default `false`: a connection is sent the users it
    /// subscribes to, and none until it does).
    ///
    /// The all-users feed is for small deployments and demos: every connection holds every
    /// online user (about 85 bytes each on the wire) and is sent every user's transitions, so
    /// a node's traffic grows with the square of its users. Server-side code may always
    /// [`subscribe`](Hub::subscribe) to every user.
    pub all_users_feed: bool,
    /// The most users one connection may subscribe to (default 1,000); a subscription naming
    /// more is refused whole.
    pub max_interest: usize,
    /// Above how many members a room is big (default 1,000): the integrations then send its
    /// members only to connections that watch a [window](crate::wire::RoomView::Window) of it,
    /// and its [occupancy](crate::wire::RoomOccupancy) to every other connection sent the room,
    /// its members included. It stays big until it has three quarters of this or fewer.
    ///
    /// A room's state costs about 120 bytes per member on the wire plus its metadata, sent to
    /// every connection that joins or watches the room, and each join or leave goes to every
    /// one of them: listing a room of `n` members to all its members costs O(n²).
    pub big_room: usize,
    /// The most members a connection's [window](crate::wire::Window) of a room may hold
    /// (default 100); a watch asking for more is refused (`limit`).
    pub max_window: usize,
    /// The least time between two counts of a big room sent to a connection (default 1 s):
    /// the integrations send them at most this often, the latest when the time is up. A small
    /// room's counts go out once per gathering window in which they changed. A ramp or a storm
    /// of `n` connections into one big room sends each of them about one message per this
    /// interval instead of one per gathering window.
    pub big_room_counts: Duration,
    /// How many versions of a room its subscribers may fall behind before they are sent the
    /// room whole instead (default 16). Each room with a subscriber has a ring of this many
    /// slots (about 48 bytes a slot), allocated when its first subscriber comes and freed with
    /// its last. The integrations subscribe once per room (its task), and
    /// [`recv_gathered`](crate::RoomSubscription::recv_gathered) takes each version as it comes
    /// while it gathers, so a burst does not fill the ring; a subscriber that reads less often
    /// than the room changes wants a bigger one.
    pub room_backlog: usize,
    /// Whether the integrations take connections the [`Authenticate`](crate::Authenticate)
    /// hook names [`Identity::Watcher`](crate::Identity::Watcher) (default `false`: such a
    /// hello is refused `unauthorized`). A watcher has no user and may watch rooms and
    /// subscribe to users as the hook allows: turn it on for an anonymous status page or an
    /// authenticated dashboard, and decide what it may see in
    /// [`authorize_room`](crate::Authenticate::authorize_room) and
    /// [`authorize_user`](crate::Authenticate::authorize_user).
    pub watchers: bool,
    /// How fast one connection of the integrations may send messages after its hello
    /// (default 20 a second, bursts of 40; `None`: no limit). See [`RateLimit`].
    pub client_rate: Option<RateLimit>,
    /// How room states show sessions to clients (default: by opaque handles, under a key drawn
    /// for this hub). See [`MemberIds`].
    pub member_ids: MemberIds,
    /// How fast one session may send, over all its connections and across its reconnects:
    /// each hello naming it counts, and every message after it (default 20 a second, bursts
    /// of 40, as [`client_rate`](Self::client_rate); `None`: no limit). Without it, a client
    /// that reconnects gets a full bucket each time, and one that opens its session on several
    /// connections gets one bucket per connection. A hello over the rate is refused
    /// `rate_limited` with `retry_after_ms`.
    pub session_rate: Option<RateLimit>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            backlog: 1024,
            ticking: Ticking::default(),
            offline_memory: Duration::from_secs(60),
            all_users_feed: false,
            max_interest: 1000,
            big_room: 1000,
            max_window: 100,
            big_room_counts: Duration::from_secs(1),
            room_backlog: 16,
            watchers: false,
            client_rate: Some(RateLimit::default()),
            member_ids: MemberIds::opaque(),
            session_rate: Some(RateLimit::default()),
        }
    }
}

impl HubConfig {
    /// The default configuration.
    pub fn new() -> Self {
        HubConfig::default()
    }

    /// With a subscriber backlog of `backlog` updates (at least 1).
    pub fn backlog(mut self, backlog: usize) -> Self {
        self.backlog = backlog.max(1);
        self
    }

    /// With the driver ticking this way.
    pub fn ticking(mut self, ticking: Ticking) -> Self {
        self.ticking = ticking;
        self
    }

    /// With the all-users feed enabled or not (see [`all_users_feed`](Self::all_users_feed)).
    pub fn all_users_feed(mut self, enabled: bool) -> Self {
        self.all_users_feed = enabled;
        self
    }

    /// With at most `max` users per connection's subscription.
    pub fn max_interest(mut self, max: usize) -> Self {
        self.max_interest = max;
        self
    }

    /// With rooms big above `members` members (at least 1; see
    /// [`big_room`](Self::big_room)).
    pub fn big_room(mut self, members: usize) -> Self {
        self.big_room = members.max(1);
        self
    }

    /// With windows of at most `members` members (at least 1).
    pub fn max_window(mut self, members: usize) -> Self {
        self.max_window = members.max(1);
        self
    }

    /// With a big room's counts sent at most every `interval` (see
    /// [`big_room_counts`](Self::big_room_counts)).
    pub fn big_room_counts(mut self, interval: Duration) -> Self {
        self.big_room_counts = interval;
        self
    }

    /// With a room subscriber backlog of `versions` (at least 1; see
    /// [`room_backlog`](Self::room_backlog)).
    pub fn room_backlog(mut self, versions: usize) -> Self {
        self.room_backlog = versions.max(1);
        self
    }

    /// With connections without a user taken or not (see [`watchers`](Self::watchers)).
    pub fn watchers(mut self, enabled: bool) -> Self {
        self.watchers = enabled;
        self
    }

    /// With this limit on how fast a connection sends (`None`: no limit; see
    /// [`client_rate`](Self::client_rate)).
    pub fn client_rate(mut self, limit: Option<RateLimit>) -> Self {
        self.client_rate = limit;
        self
    }

    /// With this limit on how fast a session sends (`None`: no limit; see
    /// [`session_rate`](Self::session_rate)).
    pub fn session_rate(mut self, limit: Option<RateLimit>) -> Self {
        self.session_rate = limit;
        self
    }

    /// With sessions shown to clients this way (see [`member_ids`](Self::member_ids)).
    pub fn member_ids(mut self, ids: MemberIds) -> Self {
        self.member_ids = ids;
        self
    }
}

/// When the [driver](Hub::run_ticker) calls [`tick`](PresenceTracker::tick).
///
/// The default, [`Ticking::Deadline`] waking at least every second, was measured against
/// intervals with the load test (`node e2e/load.mjs --clients 1000 --tick-ms N`, release build,
/// one run each on the project's 2-core VM, 3 s disconnect grace): the 500 vanished clients were
/// offline for the watcher after 3.3 s at the deadlines, 3.5 s ticking every 100 ms and up to
/// 4.1 s every second, for the same server CPU within the noise (0.74, 0.84 and 0.79 s over the
/// connect phase). A tracker with nothing due costs a tick nothing, so waking at the deadline is
/// both the earliest and the cheapest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ticking {
    /// At the tracker's [`next_deadline`](PresenceTracker::next_deadline), and again whenever a
    /// signal moves it earlier (the wake rule), but at least every `max_wait`. A transition is
    /// published when it is due, and a tracker with nothing due costs nothing.
    Deadline {
        /// The longest the driver sleeps.
        max_wait: Duration,
    },
    /// Every `period`, whatever is due: transitions are published up to a period late.
    Interval {
        /// The period.
        period: Duration,
    },
}

impl Default for Ticking {
    fn default() -> Self {
        Ticking::Deadline {
            max_wait: Duration::from_secs(1),
        }
    }
}

/// The server side of presence: the [`PresenceTracker`], the published state of every online
/// user in one total order (an epoch and a version), each room's in its own order, and the
/// subscribers it fans out to.
///
/// The type parameters are the tracker's: users `U`, sessions `S`, clock `C`, rooms `R` and
/// the sessions' metadata in rooms `M` (`()` by default; [`Meta`](crate::Meta) is JSON
/// metadata, what the integrations' clients send): `Hub<String, String, SystemClock, String,
/// Meta>` is a hub of rooms with JSON metadata.
///
/// Cheap to clone (an `Arc`). Handlers call its signals ([`connect`](Self::connect),
/// [`heartbeat`](Self::heartbeat), [`disconnect`](Self::disconnect), [`leave`](Self::leave)),
/// which record them in the tracker and publish what changed; a task runs
/// [`run_ticker`](Self::run_ticker); each connection [`subscribe`](Self::subscribe)s and
/// forwards what it receives. Publishing never waits for a subscriber: one that falls behind
/// by more than the backlog is sent a fresh [`State`] instead (see [`Delivery`]).
///
/// Updates are whole user states ([`UserState`]) with the user's `seq`: when two threads
/// publish changes of one user concurrently, the hub keeps the newer and drops the older as old
/// news, so the published state always ends at the tracker's. Rooms ([`rooms`](Self::rooms))
/// are published the same way, per room: whole members, each room with its own epoch and
/// versions, to the room's own subscribers.
///
/// # Examples
///
/// ```
/// use presence_tracker::{Activity, ManualClock, Policy, Presence, PresenceTracker};
/// use presence_tracker_server::{Delivery, Hub, HubConfig};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let tracker: PresenceTracker<String, String, _> =
///     PresenceTracker::with_clock(Policy::default(), ManualClock::new());
/// let hub = Hub::new(tracker, HubConfig::default());
/// let mut watcher = hub.subscribe();
/// let Some(Delivery::State(state)) = watcher.recv().await else { panic!("a state first") };
/// assert!(state.users.is_empty());
///
/// hub.connect("ada".into(), "tab-1".into(), "socket-1", Activity::Active)?;
/// let Some(Delivery::Updates(updates)) = watcher.recv().await else { panic!("then updates") };
/// assert_eq!(updates.from(), state.version + 1);
/// assert_eq!(updates.users().next().map(|u| u.presence), Some(Presence::Active));
/// # Ok::<(), presence_tracker::Error>(())
/// # }).unwrap();
/// ```
pub struct Hub<U, S, C = SystemClock, R = String, M = ()> {
    inner: Arc<Inner<U, S, C, R, M>>,
}

impl<U, S, C, R, M> Clone for Hub<U, S, C, R, M> {
    fn clone(&self) -> Self {
        Hub {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<U: fmt::Debug, S: fmt::Debug, C: fmt::Debug, R: fmt::Debug, M: fmt::Debug> fmt::Debug
    for Hub<U, S, C, R, M>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("epoch", &self.inner.epoch)
            .field("version", &self.inner.published.lock().version)
            .field("tracker", &self.inner.tracker)
            .finish_non_exhaustive()
    }
}

struct Inner<U, S, C, R, M> {
    tracker: PresenceTracker<U, S, C, R, M>,
    config: HubConfig,
    epoch: u64,
    published: Mutex<Published<U, S, R, M>>,
    updates: broadcast::Sender<Arc<Update<U>>>,
    /// The subscriptions interested in each user: locked only under `published` (which orders
    /// what they are sent), or alone by a subscription that ends.
    interests: Arc<Mutex<Interests<U>>>,
    /// Wakes the driver: a signal moved the next deadline before the one it sleeps to.
    wake: Notify,
    /// The time (tracker ms) the driver sleeps until; `u64::MAX` when it is not sleeping on a
    /// deadline.
    sleeping_until: AtomicU64,
    /// Connections watching for the cluster to refuse their session.
    watches: refusal::Watches,
    /// Each session's messages against `config.session_rate`.
    session_buckets: SessionBuckets<S>,
    /// The cluster this hub is a node of: the tracker's transitions go there, and what the hub
    /// publishes comes from there (`None`: a hub on its own).
    #[cfg(feature = "redis")]
    cluster: Option<cluster::Node<U, S, R, M>>,
}

/// What the hub has published, under one lock: the order of versions is the order of sends.
struct Published<U, S, R, M> {
    version: u64,
    online: HashMap<U, Shown>,
    /// Users recently gone offline: their last seq and when (tracker ms) they went.
    gone: HashMap<U, (u64, u64)>,
    /// The state at `version`, made once and shared by every subscriber that asks before the
    /// next update and within [`STATE_REUSE`] (a connect storm makes it once, not once per
    /// client).
    state: Option<Arc<State<U>>>,
    /// The rooms as published, and their subscribers' channels.
    rooms: RoomsPublished<U, S, R, M>,
    /// In a cluster: the cluster's history and version of each user as last applied (offline
    /// ones for the memory), so that what was read and the events queued behind it apply once.
    #[cfg(feature = "redis")]
    cluster_users: HashMap<U, cluster::Seen>,
}

/// An online user as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shown {
    presence: Presence,
    sessions: usize,
    last_seen: Timestamp,
    seq: u64,
}

impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> Hub<U, S, C, R, M> {
    /// A hub over `tracker`. Its epoch is new: different from every earlier hub's, so clients
    /// of a restarted server ask for the state again.
    ///
    /// A tracker restored from a snapshot is published as it stands: its online users are in
    /// the first state, and its rooms in their first room states.
    pub fn new(tracker: PresenceTracker<U, S, C, R, M>, config: HubConfig) -> Self {
        let online = tracker
            .online()
            .into_iter()
            .map(|(user, view)| {
                let shown = Shown {
                    presence: view.presence,
                    sessions: view.sessions,
                    last_seen: view.last_seen.unwrap_or(Timestamp::EPOCH),
                    // Any event of the user after this has a higher seq.
                    seq: 0,
                };
                (user, shown)
            })
            .collect();
        Self::build(
            tracker,
            config,
            online,
            #[cfg(feature = "redis")]
            None,
        )
    }

    /// A hub showing `online` first.
    fn build(
        tracker: PresenceTracker<U, S, C, R, M>,
        config: HubConfig,
        online: HashMap<U, Shown>,
        #[cfg(feature = "redis")] cluster: Option<cluster::Node<U, S, R, M>>,
    ) -> Self {
        let (updates, _) = broadcast::channel(config.backlog.max(1));
        let memory = u64::try_from(config.offline_memory.as_millis()).unwrap_or(u64::MAX);
        let big_room = config.big_room.max(1);
        let ids = config.member_ids;
        let session_buckets = SessionBuckets::new(config.session_rate);
        Hub {
            inner: Arc::new(Inner {
                tracker,
                config,
                epoch: new_epoch(),
                published: Mutex::new(Published {
                    version: 0,
                    online,
                    gone: HashMap::new(),
                    state: None,
                    rooms: RoomsPublished::new(memory, big_room, ids),
                    #[cfg(feature = "redis")]
                    cluster_users: HashMap::new(),
                }),
                updates,
                interests: Arc::default(),
                wake: Notify::new(),
                sleeping_until: AtomicU64::new(u64::MAX),
                watches: refusal::Watches::default(),
                session_buckets,
                #[cfg(feature = "redis")]
                cluster,
            }),
        }
    }

    /// A hello naming `session`, against the session's rate: its bucket (for the messages
    /// after it) and whether the hello is taken (`None`: no session rate).
    #[cfg_attr(not(any(feature = "axum", feature = "socketioxide")), allow(dead_code))]
    pub(crate) fn session_hello(
        &self,
        session: &S,
    ) -> Option<(Arc<parking_lot::Mutex<TokenBucket>>, Taken)> {
        let now = self.inner.tracker.now();
        self.inner.session_buckets.hello(session, now)
    }

    /// Whether this hub is a node of a cluster (`with_cluster`, feature `redis`).
    pub fn is_clustered(&self) -> bool {
        #[cfg(feature = "redis")]
        {
            self.inner.cluster.is_some()
        }
        #[cfg(not(feature = "redis"))]
        {
            false
        }
    }

    /// Watches for the cluster refusing the session that `connection` carries: what an
    /// integration does for each connection with a session, *before* it connects the session
    /// (so that a refusal that comes at once is not missed), and keeps until the connection
    /// ends. See [`RefusalWatch::refused`].
    ///
    /// In a cluster the tracker accepts a connect at once, and the cluster decides later (a
    /// write through Redis): when it refuses the session (another node claimed it since,
    /// another user owns its id) the watch of the connection that carries it fires. A hub on
    /// its own returns a watch that never fires.
    pub fn watch_refusal(&self, connection: ConnectionId) -> RefusalWatch {
        if self.is_clustered() {
            RefusalWatch::new(&self.inner.watches, connection)
        } else {
            RefusalWatch::never()
        }
    }

    /// The tracker, for reads. Signals recorded on it directly are not published: record them
    /// through the hub.
    pub fn tracker(&self) -> &PresenceTracker<U, S, C, R, M> {
        &self.inner.tracker
    }

    /// The epoch: new at every start.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// The version of the last published update.
    pub fn version(&self) -> u64 {
        self.inner.published.lock().version
    }

    /// Records a connect and publishes what changed. See [`PresenceTracker::connect`].
    ///
    /// # Errors
    ///
    /// As [`PresenceTracker::connect`]; nothing is published.
    pub fn connect(
        &self,
        user: U,
        session: S,
        connection: impl Into<ConnectionId>,
        activity: Activity,
    ) -> Result<(), Error> {
        #[cfg(feature = "redis")]
        if let Some(cluster) = &self.inner.cluster {
            let t =
                self.inner
                    .tracker
                    .connect(user.clone(), session.clone(), connection, activity)?;
            match self.inner.tracker.session(&session) {
                Some(view) => cluster.connected(&t, &user, &session, view.presence, view.last_seen),
                // Gone already (a preempted caller, a zero grace): nothing to claim.
                None => cluster.record(&t),
            }
            self.wake_driver(&t, true);
            return Ok(());
        }
        let t = self
            .inner
            .tracker
            .connect(user, session, connection, activity)?;
        self.after_signal(&t, true);
        Ok(())
    }

    /// Records a heartbeat and publishes what changed. See [`PresenceTracker::heartbeat`].
    ///
    /// # Errors
    ///
    /// As [`PresenceTracker::heartbeat`]; nothing is published.
    pub fn heartbeat<Q>(&self, session: &Q, activity: Activity) -> Result<(), Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let t = self.inner.tracker.heartbeat(session, activity)?;
        // A heartbeat that changes nothing re-arms nothing (deadlines are lazy): no wake.
        self.after_signal(&t, false);
        Ok(())
    }

    /// A heartbeat from a connection that knows its user: if the session expired while the
    /// connection stayed open (a laptop asleep past the TTL whose socket survived), the session
    /// is connected again on that connection, with the heartbeat's activity (never `active` on
    /// the way to `idle`). The session expired out of its rooms: joining them again is the
    /// caller's (the integrations join it again to the rooms the connection had joined, with
    /// the metadata it last set).
    ///
    /// # Errors
    ///
    /// As [`PresenceTracker::connect`] when the session had to be connected again (its id was
    /// taken by another user meanwhile, a limit); nothing is published.
    pub fn heartbeat_or_reconnect(
        &self,
        user: &U,
        session: &S,
        connection: ConnectionId,
        activity: Activity,
    ) -> Result<(), Error> {
        match self.heartbeat(session, activity) {
            Err(Error::UnknownSession) => {
                self.connect(user.clone(), session.clone(), connection, activity)
            }
            done => done,
        }
    }

    /// Records a disconnect and publishes what changed. See [`PresenceTracker::disconnect`].
    ///
    /// # Errors
    ///
    /// As [`PresenceTracker::disconnect`]; nothing is published.
    pub fn disconnect<Q>(
        &self,
        session: &Q,
        connection: impl Into<ConnectionId>,
        kind: DisconnectKind,
    ) -> Result<(), Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let t = self.inner.tracker.disconnect(session, connection, kind)?;
        self.after_signal(&t, true);
        Ok(())
    }

    /// Records a leave and publishes what changed. See [`PresenceTracker::leave`].
    ///
    /// # Errors
    ///
    /// As [`PresenceTracker::leave`]; nothing is published.
    pub fn leave<Q>(&self, session: &Q, connection: impl Into<ConnectionId>) -> Result<(), Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let t = self.inner.tracker.leave(session, connection)?;
        self.after_signal(&t, true);
        Ok(())
    }

    /// Ticks the tracker once and publishes what changed; what the driver does. Returns how
    /// many updates it published.
    pub fn tick(&self) -> usize {
        let t = self.inner.tracker.tick();
        let published = self.publish(&t);
        self.forget_gone();
        published
    }

    /// Publishes a signal's transitions, and applies the wake rule: a signal that may have
    /// moved the next deadline before the one the driver sleeps to wakes it.
    fn after_signal(&self, t: &Transitions<U, S, R, M>, may_rearm: bool) {
        self.publish(t);
        self.wake_driver(t, may_rearm);
    }

    /// The wake rule, after a signal that returned `t`.
    fn wake_driver(&self, t: &Transitions<U, S, R, M>, may_rearm: bool) {
        if may_rearm || !t.is_empty() {
            let sleeping_until = self.inner.sleeping_until.load(Ordering::Acquire);
            if self
                .inner
                .tracker
                .next_deadline()
                .is_some_and(|d| d.as_millis() < sleeping_until)
            {
                self.inner.wake.notify_one();
            }
        }
    }

    /// Publishes `t`: one update per user whose shown presence or session count changed,
    /// unless a newer state of that user was already published, and one room update per room
    /// event that changed what the room shows (see [`HubRooms`]). Returns how many.
    pub(crate) fn publish(&self, t: &Transitions<U, S, R, M>) -> usize {
        if t.is_empty() {
            return 0;
        }
        #[cfg(feature = "redis")]
        if let Some(cluster) = &self.inner.cluster {
            // The cluster publishes: what this node changed comes back from there.
            cluster.record(t);
            return 0;
        }
        let mut sent = 0;
        let mut published = self.inner.published.lock();
        if t.rooms().len() > 0 {
            sent += published.rooms.publish(&self.inner.tracker, t.rooms());
        }
        let mut events = t.iter().peekable();
        while let Some(first) = events.next() {
            // A user's events of one call are contiguous: fold them into its new state.
            let user = first.user();
            let mut run = vec![first];
            while let Some(next) = events.next_if(|e| e.user() == user) {
                run.push(next);
            }
            if let Some(update) = published.apply(user, &run, self.inner.epoch) {
                sent += 1;
                self.send_locked(&published, update);
            }
        }
        sent
    }

    /// Forgets users that went offline, rooms that emptied, and members that left rooms,
    /// longer ago than the configured memory.
    fn forget_gone(&self) {
        let now = self.inner.tracker.now().as_millis();
        let memory =
            u64::try_from(self.inner.config.offline_memory.as_millis()).unwrap_or(u64::MAX);
        let mut published = self.inner.published.lock();
        published
            .gone
            .retain(|_, &mut (_, at)| at.saturating_add(memory) > now);
        published.rooms.forget(now);
        #[cfg(feature = "redis")]
        published
            .cluster_users
            .retain(|_, seen| seen.kept(now, memory));
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Sends a published update, under the lock that ordered it: to the subscriptions
    /// interested in its user, and on the ring of every update.
    fn send_locked(&self, _published: &Published<U, S, R, M>, update: Update<U>) {
        let update = Arc::new(update);
        self.inner.interests.lock().deliver(&update);
        // No receiver is not an error: nobody is listening.
        let _ = self.inner.updates.send(update);
    }

    /// A subscription that starts with the current [`State`] of every user and then receives
    /// every update after it, in version order: [`subscribe_to`](Self::subscribe_to)
    /// [`Interest::All`]. Server-side code may always subscribe so, whatever
    /// [`HubConfig::all_users_feed`] says of connections.
    pub fn subscribe(&self) -> Subscription<U, S, C, R, M> {
        self.subscribe_to(Interest::All)
    }

    /// A subscription of `interest`: every user, or the users named. It starts with the
    /// [`State`] of those users and then receives their updates, in version order; what it
    /// costs to publish an update grows with the subscriptions interested in its user, never
    /// with every subscription. See [`Subscription::set_interest`] to change it.
    ///
    /// # Examples
    ///
    /// ```
    /// use presence_tracker::{Activity, ManualClock, Policy, PresenceTracker};
    /// use presence_tracker_server::{wire::Scope, Delivery, Hub, HubConfig, Interest};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let tracker: PresenceTracker<String, String, _> =
    ///     PresenceTracker::with_clock(Policy::default(), ManualClock::new());
    /// let hub = Hub::new(tracker, HubConfig::default());
    /// let mut contacts = hub.subscribe_to(Interest::Users(vec!["ada".into()]));
    /// let Some(Delivery::State(state)) = contacts.recv().await else { panic!("a state first") };
    /// assert_eq!(state.scope, Scope::Users);
    ///
    /// hub.connect("bob".into(), "tab-9".into(), "socket-9", Activity::Active)?;
    /// hub.connect("ada".into(), "tab-1".into(), "socket-1", Activity::Active)?;
    /// // Bob is none of this subscription's business: Ada's update is the next delivery.
    /// let Some(Delivery::Updates(updates)) = contacts.recv().await else { panic!("updates") };
    /// assert_eq!(updates.users().map(|u| u.user.as_str()).collect::<Vec<_>>(), ["ada"]);
    /// # Ok::<(), presence_tracker::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn subscribe_to(&self, interest: Interest<U>) -> Subscription<U, S, C, R, M> {
        Subscription::new(self.clone(), interest)
    }

    /// The current state of every user, shared: made once per version.
    pub fn state(&self) -> Arc<State<U>> {
        let mut published = self.inner.published.lock();
        self.state_locked(&mut published)
    }

    fn state_locked(&self, published: &mut Published<U, S, R, M>) -> Arc<State<U>> {
        let now = self.inner.tracker.now();
        if let Some(state) = &published.state {
            // Its `now` is what clients set their clock offset by: keep it within a second.
            if now.saturating_duration_since(state.now) < STATE_REUSE {
                return Arc::clone(state);
            }
        }
        let users = published
            .online
            .iter()
            .map(|(user, s)| {
                UserState::new(user.clone(), s.presence, s.sessions, s.last_seen, s.seq)
            })
            .collect();
        let state = Arc::new(State::new(
            self.inner.epoch,
            published.version,
            now,
            Scope::All,
            users,
        ));
        published.state = Some(Arc::clone(&state));
        state
    }

    /// The state of `users`: those of them online, at the published version. O(`users`).
    fn users_state_locked(&self, published: &Published<U, S, R, M>, users: &[U]) -> Arc<State<U>> {
        let users = users
            .iter()
            .filter_map(|user| {
                let s = published.online.get(user)?;
                Some(UserState::new(
                    user.clone(),
                    s.presence,
                    s.sessions,
                    s.last_seen,
                    s.seq,
                ))
            })
            .collect();
        Arc::new(State::new(
            self.inner.epoch,
            published.version,
            self.inner.tracker.now(),
            Scope::Users,
            users,
        ))
    }

    /// Runs the tick driver until the hub's last clone is dropped... or forever: spawn it as
    /// a task and abort it at shutdown.
    ///
    /// With [`Ticking::Deadline`] it sleeps until the tracker's next deadline (at most
    /// `max_wait`) and is woken earlier when a signal moves that deadline before it (the wake
    /// rule of [`PresenceTracker::next_deadline`]). With [`Ticking::Interval`] it ticks every
    /// period.
    pub async fn run_ticker(self) {
        match self.inner.config.ticking {
            Ticking::Interval { period } => {
                let mut interval = tokio::time::interval(period.max(Duration::from_millis(1)));
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    self.tick();
                }
            }
            Ticking::Deadline { max_wait } => loop {
                let tracker = &self.inner.tracker;
                let now = tracker.now();
                let wait = tracker
                    .next_deadline()
                    .map_or(max_wait, |d| d.saturating_duration_since(now))
                    .min(max_wait);
                self.inner
                    .sleeping_until
                    .store((now + wait).as_millis(), Ordering::Release);
                if !wait.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = self.inner.wake.notified() => {}
                    }
                }
                self.inner.sleeping_until.store(u64::MAX, Ordering::Release);
                self.tick();
            },
        }
    }
}

impl<U: Id, S, R, M> Published<U, S, R, M> {
    /// Folds one user's events of one call into its shown state; the update to send if the
    /// presence or the session count changed and the events are newer than what was shown.
    fn apply(&mut self, user: &U, run: &[&Event<U, S>], epoch: u64) -> Option<Update<U>> {
        let seq = run.iter().map(|e| e.seq).max().unwrap_or(0);
        let before = self.online.get(user).copied();
        let known_seq = match (before, self.gone.get(user)) {
            (Some(shown), _) => shown.seq,
            (None, Some(&(gone_seq, _))) => gone_seq,
            (None, None) => 0,
        };
        if seq <= known_seq {
            return None; // old news: a newer state of this user is already out
        }
        let mut now = before.unwrap_or(Shown {
            presence: Presence::Offline,
            sessions: 0,
            last_seen: Timestamp::EPOCH,
            seq: 0,
        });
        let mut at = Timestamp::EPOCH;
        for e in run {
            // Every event carries the user's whole state as of its publication.
            now.presence = e.user_presence;
            now.sessions = e.sessions;
            now.last_seen = if e.is_user() {
                e.last_seen
            } else {
                now.last_seen.max(e.last_seen)
            };
            at = at.max(e.at);
        }
        now.seq = seq;
        let changed =
            before.map(|b| (b.presence, b.sessions)) != Some((now.presence, now.sessions));
        if now.presence == Presence::Offline {
            self.online.remove(user);
            self.gone.insert(user.clone(), (seq, at.as_millis()));
            // Never shown: nothing to take back.
            before?;
        } else {
            self.gone.remove(user);
            self.online.insert(user.clone(), now);
        }
        if !changed {
            return None;
        }
        self.version += 1;
        self.state = None;
        Some(Update::new(
            epoch,
            self.version,
            UserState::new(user.clone(), now.presence, now.sessions, now.last_seen, seq),
        ))
    }
}

/// A new epoch: the wall clock's nanoseconds mixed with this process's random hash seed, below
/// 2^53 so a JavaScript number holds it exactly.
fn new_epoch() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = RandomState::new().hash_one((nanos, COUNTER.fetch_add(1, Ordering::Relaxed)));
    (mixed >> 11).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use presence_tracker::{ManualClock, Policy};

    /// Two calls publish out of order (a thread preempted between the tracker and the hub's
    /// lock): the older is old news, and the hub ends where the tracker is.
    #[test]
    fn a_late_older_publication_is_dropped() {
        let clock = ManualClock::new();
        let hub: Hub<u64, u64, ManualClock> = Hub::new(
            PresenceTracker::with_clock(Policy::default(), clock.clone()),
            HubConfig::default(),
        );
        let tracker = hub.tracker();
        let came = tracker
            .connect(1, 10, "c", Activity::Active)
            .expect("connects");
        let hid = tracker.heartbeat(&10, Activity::Background).expect("live");
        let back = tracker.heartbeat(&10, Activity::Active).expect("live");
        hub.publish(&came);
        hub.publish(&back); // seq 3 first ...
        hub.publish(&hid); // ... then the older seq 2
        let state = hub.state();
        assert_eq!(state.users[0].presence, Presence::Active);
        assert_eq!(state.version, 1, "only the connect changed what is shown");

        // Gone offline, then a late older rise must not bring the user back.
        let left = tracker.leave(&10, "c").expect("live");
        assert!(left.is_empty());
        clock.advance(Duration::from_secs(6));
        let gone = tracker.tick();
        hub.publish(&gone);
        hub.publish(&back);
        assert!(hub.state().users.is_empty());
    }
}
