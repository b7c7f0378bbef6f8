//! Rooms in the hub: the [`HubRooms`] handle (membership signals, room states, room
//! subscriptions) and what the hub has published of each room ([`RoomsPublished`]).
//!
//! # Ordering
//!
//! The tracker hands a room's events to the caller that caused them, each with the room's next
//! version, under the owner's lock; two callers' events of one room can still reach the hub in
//! either order (a thread preempted between the tracker and the hub's lock). The hub orders
//! rooms as it orders users: every event carries the whole member after it, so the hub keeps,
//! per member, the tracker's version of what it shows, drops an older event as old news, and
//! publishes each change it shows with the room's next version of its own, under the hub's
//! lock. A subscriber therefore sees every room's versions without a gap or a reordering, and
//! the room ends at the tracker's state.
//!
//! Events of a room history the hub does not show (the room was made anew, or the hub has not
//! shown the room yet) are checked against the tracker: if the history is the room's current
//! one, the hub shows the room as the tracker has it now (which covers the event) with a new
//! epoch, and sends its subscribers that state; if the history ended, the event is old news.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use presence_tracker::{
    Clock, Error, Id, Metadata, Presence, PresenceTracker, RoomChange, RoomEvent, RoomView,
};
use tokio::sync::broadcast;

use super::listing::Listing;
use super::room_feed::{RoomItem, RoomSubscription};
use super::{new_epoch, Hub};
use crate::wire::Encoded;
use crate::wire::{
    Member, MemberChange, MemberIds, MemberSession, Occupancy, RoomOccupancy, RoomState,
    RoomUpdate, RoomWindow, Window,
};

/// A hub's rooms, from [`Hub::rooms`]: a session joins, updates and leaves rooms through it
/// (each change published to the room's subscribers), and anyone may read a room's state or
/// subscribe to one room.
///
/// What a room's subscriber receives is in [`RoomSubscription`]; the wire's rule for rooms is
/// in [`wire`](crate::wire#rooms).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use presence_tracker::{Activity, ManualClock, Policy, Presence, PresenceTracker};
/// use presence_tracker_server::{Hub, HubConfig, Meta, RoomDelivery};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let clock = ManualClock::new();
/// let tracker: PresenceTracker<String, String, ManualClock, String, Meta> =
///     PresenceTracker::with_clock(Policy::default(), clock.clone());
/// let hub = Hub::new(tracker, HubConfig::default());
/// let mut doc = hub.rooms().subscribe("doc-42".to_string())?;
/// let Some(RoomDelivery::State(empty)) = doc.recv().await else { panic!("a state first") };
/// assert!(empty.members.is_empty());
///
/// hub.connect("ada".into(), "tab-1".into(), "socket-1", Activity::Active)?;
/// let meta = Meta::from_json(r#"{"name":"Ada","section":1}"#).unwrap();
/// hub.rooms().join("tab-1", "doc-42".into(), meta)?;
/// // The room's history starts: its subscribers get its first state.
/// let Some(RoomDelivery::State(state)) = doc.recv().await else { panic!("the room began") };
/// assert_eq!(state.members[0].presence, Presence::Active);
///
/// // A metadata change is one update, never a leave and a join (at most one per 50 ms).
/// clock.advance(Duration::from_millis(50));
/// hub.rooms().update("tab-1", "doc-42", Meta::from_json(r#"{"name":"Ada","section":2}"#).unwrap())?;
/// let Some(RoomDelivery::Updates(batch)) = doc.recv().await else { panic!("an update") };
/// assert_eq!((batch.from(), batch.to()), (state.version + 1, state.version + 1));
/// # Ok::<(), presence_tracker::Error>(())
/// # }).unwrap();
/// ```
pub struct HubRooms<'a, U, S, C, R, M> {
    hub: &'a Hub<U, S, C, R, M>,
}

impl<U, S, C, R, M> fmt::Debug for HubRooms<'_, U, S, C, R, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubRooms").finish_non_exhaustive()
    }
}

impl<U, S, C, R, M> Clone for HubRooms<'_, U, S, C, R, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<U, S, C, R, M> Copy for HubRooms<'_, U, S, C, R, M> {}

/// # Rooms
impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> Hub<U, S, C, R, M> {
    /// The rooms: see [`HubRooms`].
    pub fn rooms(&self) -> HubRooms<'_, U, S, C, R, M> {
        HubRooms { hub: self }
    }
}

impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> HubRooms<'_, U, S, C, R, M> {
    /// The session joins `room` with `meta` (already in it: its metadata there is replaced),
    /// and what changed is published. See [`Rooms::join`](presence_tracker::Rooms::join).
    ///
    /// # Errors
    ///
    /// As [`Rooms::join`](presence_tracker::Rooms::join); nothing is published.
    pub fn join<Q>(&self, session: &Q, room: R, meta: M) -> Result<(), Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let t = self.hub.inner.tracker.rooms().join(session, room, meta)?;
        self.hub.publish(&t);
        Ok(())
    }

    /// The session's metadata in `room` becomes `meta`, published as one update. See
    /// [`Rooms::update`](presence_tracker::Rooms::update).
    ///
    /// # Errors
    ///
    /// As [`Rooms::update`](presence_tracker::Rooms::update) (`NotInRoom`, `MetadataTooLarge`,
    /// `MetadataTooFrequent` ...); nothing is published.
    pub fn update<Q, QR>(&self, session: &Q, room: &QR, meta: M) -> Result<(), Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        R: Borrow<QR>,
        QR: Hash + Eq + ?Sized,
    {
        let t = self.hub.inner.tracker.rooms().update(session, room, meta)?;
        self.hub.publish(&t);
        Ok(())
    }

    /// The session leaves `room`, and what changed is published. See
    /// [`Rooms::leave`](presence_tracker::Rooms::leave).
    ///
    /// # Errors
    ///
    /// As [`Rooms::leave`](presence_tracker::Rooms::leave) (`NotInRoom` ...); nothing is
    /// published.
    pub fn leave<Q, QR>(&self, session: &Q, room: &QR) -> Result<(), Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        R: Borrow<QR>,
        QR: Hash + Eq + ?Sized,
    {
        let t = self.hub.inner.tracker.rooms().leave(session, room)?;
        self.hub.publish(&t);
        Ok(())
    }

    /// The session is in exactly `rooms` afterwards, with the metadata given: it leaves the
    /// rooms it is in that are not named, joins those it is not in, and takes the metadata
    /// given where it differs from what the room shows (a room it is in with the same metadata
    /// publishes nothing). What a connection's hello does, so that a reload or a reconnect
    /// naming the same rooms changes nothing anyone sees. A room named twice takes the last.
    ///
    /// Returns the rooms refused, each with why (the others are done).
    pub fn set(&self, session: &S, rooms: impl IntoIterator<Item = (R, M)>) -> Vec<(R, Error)>
    where
        M: PartialEq,
    {
        let mut wanted: Vec<(R, M)> = Vec::new();
        for (room, meta) in rooms {
            wanted.retain(|(r, _)| *r != room);
            wanted.push((room, meta));
        }
        let tracker = &self.hub.inner.tracker;
        let Some(user) = tracker.session(session).map(|v| v.user) else {
            return wanted
                .into_iter()
                .map(|(r, _)| (r, Error::UnknownSession))
                .collect();
        };
        let current = tracker.rooms().of_session(session);
        let mut refused = Vec::new();
        // Leaves first: they free places for the joins.
        for room in current
            .iter()
            .filter(|r| !wanted.iter().any(|(w, _)| w == *r))
        {
            match self.leave(session, room) {
                Ok(()) | Err(Error::NotInRoom) => {}
                Err(e) => refused.push((room.clone(), e)),
            }
        }
        for (room, meta) in wanted {
            if current.contains(&room) && self.shows(&room, &user, session, &meta) {
                continue;
            }
            if let Err(e) = self.join(session, room.clone(), meta) {
                refused.push((room, e));
            }
        }
        refused
    }

    /// The metadata `room` shows for `session` of `user`.
    pub(crate) fn meta_of(&self, room: &R, user: &U, session: &S) -> Option<M>
    where
        M: Clone,
    {
        if self.hub.is_clustered() {
            return self.own_meta(room, user, session).map(|m| M::clone(&m));
        }
        let published = self.hub.inner.published.lock();
        published
            .rooms
            .shown
            .get(room)
            .and_then(|r| r.members.get(user))
            .and_then(|m| m.sessions.iter().find(|s| s.session == *session))
            .map(|s| M::clone(&s.meta))
    }

    /// Whether `room` shows `session` of `user` with `meta`.
    pub(crate) fn shows(&self, room: &R, user: &U, session: &S, meta: &M) -> bool
    where
        M: PartialEq,
    {
        if self.hub.is_clustered() {
            // What the cluster shows of this node's session is what the tracker wrote.
            return self
                .own_meta(room, user, session)
                .is_some_and(|m| *m == *meta);
        }
        let published = self.hub.inner.published.lock();
        published
            .rooms
            .shown
            .get(room)
            .and_then(|r| r.members.get(user))
            .and_then(|m| m.sessions.iter().find(|s| s.session == *session))
            .is_some_and(|s| *s.meta == *meta)
    }

    /// The session's metadata in `room` as this node's tracker has it.
    fn own_meta(&self, room: &R, user: &U, session: &S) -> Option<Arc<M>> {
        let view = self.hub.inner.tracker.rooms().get(room)?;
        let member = view.members.into_iter().find(|m| m.user == *user)?;
        member
            .sessions
            .into_iter()
            .find(|s| s.session == *session)
            .map(|s| s.meta)
    }

    /// The room as published: its members with their metadata, at its epoch and version
    /// (epoch 0 and no members for a room nobody is in). Made once per version and shared.
    pub fn state<QR>(&self, room: &QR) -> Arc<RoomState<U, S, R, M>>
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ToOwned<Owned = R> + ?Sized,
    {
        let mut published = self.hub.inner.published.lock();
        #[cfg(feature = "redis")]
        if let Some(node) = &self.hub.inner.cluster {
            return published.rooms.cluster_state(node, &room.to_owned());
        }
        published.rooms.state(&self.hub.inner.tracker, room)
    }

    /// The room's occupancy as published, and whether it is big, without its members: what a
    /// connection that is sent a big room's counts is sent first.
    pub fn occupancy<QR>(&self, room: &QR) -> RoomOccupancy<R>
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ToOwned<Owned = R> + ?Sized,
    {
        let mut published = self.hub.inner.published.lock();
        #[cfg(feature = "redis")]
        if let Some(node) = &self.hub.inner.cluster {
            return published.rooms.cluster_occupancy(node, &room.to_owned());
        }
        published.rooms.occupancy(&self.hub.inner.tracker, room)
    }

    /// A window of the room's members (see [`RoomWindow`] for the order): the same `Arc` for
    /// every caller until a change within the window, so its JSON is made once.
    pub fn window<QR>(&self, room: &QR, window: Window) -> Arc<RoomWindow<U, S, R, M>>
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ToOwned<Owned = R> + ?Sized,
    {
        let mut published = self.hub.inner.published.lock();
        #[cfg(feature = "redis")]
        if let Some(node) = &self.hub.inner.cluster {
            return published
                .rooms
                .cluster_window(node, &room.to_owned(), window);
        }
        published
            .rooms
            .window(&self.hub.inner.tracker, room, window)
    }

    /// A subscription to one room: its [`RoomState`] first, then its updates in version order
    /// (see [`RoomSubscription`]). Anyone may subscribe to any room, members or not: who may
    /// watch which room is the application's decision, taken before it subscribes (the
    /// integrations ask [`Authenticate::authorize_room`](crate::Authenticate::authorize_room)).
    ///
    /// # Errors
    ///
    /// [`Error::EmptyId`] and [`Error::IdTooLong`] for a room id the tracker would refuse.
    pub fn subscribe(&self, room: R) -> Result<RoomSubscription<U, S, C, R, M>, Error> {
        self.check_id(&room)?;
        let (state, rx) = self.hub.room_state_and_receiver(&room);
        Ok(RoomSubscription::new(
            self.hub.clone(),
            room,
            Some(state),
            rx,
        ))
    }

    /// A subscription to one room that starts with the updates after the current state,
    /// without handing that state out: for a forwarder that sends each of its clients the
    /// state itself (the integrations' fan-outs).
    #[cfg(any(feature = "socketioxide", feature = "axum"))]
    pub(crate) fn subscribe_updates(&self, room: R) -> RoomSubscription<U, S, C, R, M> {
        let (_, rx) = self.hub.room_state_and_receiver(&room);
        RoomSubscription::new(self.hub.clone(), room, None, rx)
    }

    /// Refuses a room id the tracker would refuse.
    pub(crate) fn check_id(&self, room: &R) -> Result<(), Error> {
        let max = self.hub.inner.tracker.policy().max_id_len();
        match room.byte_len() {
            Some(0) => Err(Error::EmptyId),
            Some(len) if len > max => Err(Error::IdTooLong { len, max }),
            _ => Ok(()),
        }
    }
}

impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> Hub<U, S, C, R, M> {
    /// The room's state and a receiver of exactly the room's versions after it: both under the
    /// lock that orders the room's sends.
    pub(super) fn room_state_and_receiver(&self, room: &R) -> StateAndReceiver<U, S, R, M> {
        let mut published = self.inner.published.lock();
        let rooms = &mut published.rooms;
        let backlog = self.inner.config.room_backlog.max(1);
        #[cfg(feature = "redis")]
        if let Some(node) = &self.inner.cluster {
            let rx = rooms
                .feeds
                .entry(room.clone())
                .or_insert_with(|| broadcast::channel(backlog).0)
                .subscribe();
            return (rooms.cluster_hold(node, room), rx);
        }
        let state = rooms.state(&self.inner.tracker, room);
        let rx = rooms
            .feeds
            .entry(room.clone())
            .or_insert_with(|| broadcast::channel(backlog).0)
            .subscribe();
        (state, rx)
    }

    /// A room subscription is gone: its room's channel goes too if it was the last receiver.
    pub(super) fn room_unsubscribed(&self, room: &R) {
        let mut published = self.inner.published.lock();
        let rooms = &mut published.rooms;
        // The departing receiver still counts.
        if rooms
            .feeds
            .get(room)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            rooms.feeds.remove(room);
            #[cfg(feature = "redis")]
            rooms.held.remove(room);
        }
    }
}

/// A room's state, and a receiver of the room's versions after it.
type StateAndReceiver<U, S, R, M> = (
    Arc<RoomState<U, S, R, M>>,
    broadcast::Receiver<RoomItem<U, S, R, M>>,
);

/// What the hub has published of the rooms (under the hub's lock).
pub(super) struct RoomsPublished<U, S, R, M> {
    shown: HashMap<R, ShownRoom<U, S, R, M>>,
    /// Each subscribed room's channel.
    pub(super) feeds: HashMap<R, broadcast::Sender<RoomItem<U, S, R, M>>>,
    /// In a cluster, instead of `shown`: the rooms with subscribers here, as the cluster has
    /// them.
    #[cfg(feature = "redis")]
    pub(super) held: HashMap<R, super::cluster_rooms::HeldRoom<U, S, R, M>>,
    /// Rooms that emptied, oldest first, with when (tracker ms): forgotten after the memory.
    emptied: VecDeque<(u64, R)>,
    /// How long (ms) members that left and rooms that emptied are remembered.
    memory: u64,
    /// Above how many members a room is big (see [`Listing`]).
    pub(super) big_room: usize,
    /// How sessions are shown to clients.
    pub(super) ids: MemberIds,
}

/// A room's updates, in version order.
type Updates<U, S, R, M> = Vec<Arc<RoomUpdate<U, S, R, M>>>;

/// A room as published.
struct ShownRoom<U, S, R, M> {
    /// The epoch clients see: new for every history the hub shows.
    epoch: u64,
    /// The tracker's epoch of the history shown.
    core_epoch: u64,
    /// The version clients see: one more per change published.
    version: u64,
    /// The tracker's version up to which a state read from the tracker covers every event.
    floor: u64,
    members: HashMap<U, Shown<S, M>>,
    /// Members that left: the tracker's version of their leaving, and when (ms).
    left: HashMap<U, (u64, u64)>,
    /// When the room last emptied (ms), while it is empty.
    emptied_at: Option<u64>,
    /// The state at `version`, made once and shared.
    state: Option<Arc<RoomState<U, S, R, M>>>,
    /// How many `members` holds, by presence: kept with each change.
    occupancy: Occupancy,
    /// The members in order, for windows.
    listing: Listing<U, S, R, M>,
}

/// A member as published.
struct Shown<S, M> {
    /// The tracker's version of the event shown.
    core_version: u64,
    presence: Presence,
    sessions: Vec<MemberSession<S, M>>,
}

impl<U, S, R, M> RoomsPublished<U, S, R, M> {
    pub(super) fn new(memory: u64, big_room: usize, ids: MemberIds) -> Self {
        RoomsPublished {
            big_room,
            ids,
            shown: HashMap::new(),
            feeds: HashMap::new(),
            #[cfg(feature = "redis")]
            held: HashMap::new(),
            emptied: VecDeque::new(),
            memory,
        }
    }
}

impl<U: Id, S: Id, R: Id, M: Metadata> RoomsPublished<U, S, R, M> {
    /// Publishes room events, in the order given. Returns how many updates and states went out.
    pub(super) fn publish<'e, C: Clock>(
        &mut self,
        tracker: &PresenceTracker<U, S, C, R, M>,
        events: impl Iterator<Item = &'e RoomEvent<U, S, R, M>>,
    ) -> usize {
        let mut sent = 0;
        // A room's updates of one call go into its ring as one item: a tick in which hundreds
        // of a room's members change takes one slot, not hundreds (a subscriber behind the
        // ring is sent the room whole).
        let mut gathered: HashMap<R, Updates<U, S, R, M>> = HashMap::new();
        for event in events {
            if let Some(item) = self.apply(tracker, event) {
                sent += 1;
                match item {
                    RoomItem::Update(update) => {
                        gathered.entry(event.room.clone()).or_default().push(update);
                    }
                    item => {
                        // A state replaces the room: what was gathered for it goes first.
                        if let Some(updates) = gathered.remove(&event.room) {
                            self.send_updates(&event.room, updates);
                        }
                        self.send(&event.room, item);
                    }
                }
            }
        }
        for (room, updates) in gathered {
            self.send_updates(&room, updates);
        }
        sent
    }

    /// Sends a room's updates as one item of its ring.
    fn send_updates(&mut self, room: &R, mut updates: Updates<U, S, R, M>) {
        let item = match updates.len() {
            0 => return,
            1 => match updates.pop() {
                Some(update) => RoomItem::Update(update),
                None => return,
            },
            _ => RoomItem::Updates(updates.into()),
        };
        self.send(room, item);
    }

    /// What one event changes in what the room shows; the item to publish, if any.
    fn apply<C: Clock>(
        &mut self,
        tracker: &PresenceTracker<U, S, C, R, M>,
        e: &RoomEvent<U, S, R, M>,
    ) -> Option<RoomItem<U, S, R, M>> {
        let big_room = self.big_room;
        let Some(shown) = self
            .shown
            .get_mut(&e.room)
            .filter(|s| s.core_epoch == e.epoch)
        else {
            return self.reload(tracker, &e.room, Some(e.epoch));
        };
        let known = match (shown.members.get(&e.user), shown.left.get(&e.user)) {
            (Some(m), _) => m.core_version,
            (None, Some(&(version, _))) => version,
            (None, None) => 0,
        };
        if e.version <= shown.floor.max(known) {
            return None; // old news: a newer state of this member is out
        }
        let at = e.at.as_millis();
        let sessions: Vec<MemberSession<S, M>> = e
            .sessions
            .iter()
            .map(|s| MemberSession::shown(s.session.clone(), Arc::clone(&s.meta), &self.ids))
            .collect();
        let change = match (shown.members.get_mut(&e.user), e.to) {
            (None, Presence::Offline) => None, // never shown: nothing to take back
            (None, _) => Some(RoomChange::Joined),
            (Some(_), Presence::Offline) => Some(RoomChange::Left),
            (Some(before), to) if before.presence != to => Some(RoomChange::Presence),
            (Some(before), _) if same(&before.sessions, &sessions) => {
                before.core_version = e.version;
                return None;
            }
            (Some(_), _) => Some(RoomChange::Updated),
        };
        if e.to == Presence::Offline {
            if let Some(before) = shown.members.remove(&e.user) {
                shown
                    .occupancy
                    .remove(before.presence, before.sessions.len());
            }
            shown.listing.place(&e.user, None, big_room);
            shown.left.insert(e.user.clone(), (e.version, at));
            if shown.left.len() > 32 + 2 * shown.members.len() {
                let memory = self.memory;
                shown
                    .left
                    .retain(|_, &mut (_, t)| t.saturating_add(memory) > at);
            }
            if shown.members.is_empty() && change.is_some() {
                shown.emptied_at = Some(at);
                self.emptied.push_back((at, e.room.clone()));
            }
        } else {
            shown.left.remove(&e.user);
            shown.emptied_at = None;
            let before = shown.members.insert(
                e.user.clone(),
                Shown {
                    core_version: e.version,
                    presence: e.to,
                    sessions: sessions.clone(),
                },
            );
            if let Some(before) = before {
                shown
                    .occupancy
                    .remove(before.presence, before.sessions.len());
            }
            shown.occupancy.add(e.to, sessions.len());
            shown.listing.place(&e.user, Some(e.to), big_room);
        }
        let change = change?;
        shown.version += 1;
        shown.state = None;
        Some(RoomItem::Update(Arc::new(RoomUpdate {
            room: e.room.clone(),
            epoch: shown.epoch,
            member: MemberChange {
                version: shown.version,
                change,
                user: e.user.clone(),
                presence: e.to,
                sessions,
            },
            occupancy: shown.occupancy,
            big: shown.listing.big(),
            encoded: Encoded::default(),
        })))
    }

    /// Shows `room` as the tracker has it now if that is another history than the one shown,
    /// and returns the state to send its subscribers. For an event of history `event_epoch`,
    /// only if that history is the room's current one: otherwise it ended, and the event is old
    /// news.
    fn reload<C: Clock, QR>(
        &mut self,
        tracker: &PresenceTracker<U, S, C, R, M>,
        room: &QR,
        event_epoch: Option<u64>,
    ) -> Option<RoomItem<U, S, R, M>>
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ToOwned<Owned = R> + ?Sized,
    {
        let current = tracker.rooms().counts(room).map(|c| c.epoch);
        if event_epoch.is_some_and(|e| Some(e) != current) {
            return None;
        }
        let shown = self.shown.get(room).map(|s| s.core_epoch);
        if shown == current {
            return None;
        }
        let view = match current.and_then(|_| tracker.rooms().get(room)) {
            Some(view) => view,
            None => {
                // Nobody is in it any more (the leaving events are on their way): show it
                // empty at once.
                let was = self.shown.remove(room)?;
                if was.members.is_empty() {
                    return None;
                }
                return Some(RoomItem::State(Arc::new(RoomState {
                    room: room.to_owned(),
                    epoch: 0,
                    version: 0,
                    members: Vec::new(),
                    big: false,
                    encoded: Encoded::default(),
                })));
            }
        };
        if event_epoch.is_some_and(|e| e != view.epoch) {
            return None; // it ended meanwhile
        }
        let owned = room.to_owned();
        let shown = ShownRoom::from_view(view, self.big_room, &self.ids);
        self.shown.insert(owned.clone(), shown);
        Some(RoomItem::State(self.state_of(&owned)?))
    }

    /// The room's state, as published (after showing the tracker's if the hub shows another
    /// history: a room restored from a snapshot, or one whose events are late).
    pub(super) fn state<C: Clock, QR>(
        &mut self,
        tracker: &PresenceTracker<U, S, C, R, M>,
        room: &QR,
    ) -> Arc<RoomState<U, S, R, M>>
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ToOwned<Owned = R> + ?Sized,
    {
        if let Some(item) = self.reload(tracker, room, None) {
            self.send(room, item);
        }
        let owned = room.to_owned();
        self.state_of(&owned).unwrap_or_else(|| {
            Arc::new(RoomState {
                room: owned,
                epoch: 0,
                version: 0,
                members: Vec::new(),
                big: false,
                encoded: Encoded::default(),
            })
        })
    }

    /// The room's occupancy as published (after showing the tracker's if the hub shows
    /// another history).
    pub(super) fn occupancy<C: Clock, QR>(
        &mut self,
        tracker: &PresenceTracker<U, S, C, R, M>,
        room: &QR,
    ) -> RoomOccupancy<R>
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ToOwned<Owned = R> + ?Sized,
    {
        if let Some(item) = self.reload(tracker, room, None) {
            self.send(room, item);
        }
        match self.shown.get(room) {
            Some(shown) => {
                RoomOccupancy::new(room.to_owned(), shown.epoch, shown.version, shown.occupancy)
                    .with_big(shown.listing.big())
            }
            None => RoomOccupancy::new(room.to_owned(), 0, 0, Occupancy::default()),
        }
    }

    /// A window of the room as published (after showing the tracker's if the hub shows
    /// another history), made once per change within it.
    pub(super) fn window<C: Clock, QR>(
        &mut self,
        tracker: &PresenceTracker<U, S, C, R, M>,
        room: &QR,
        window: Window,
    ) -> Arc<RoomWindow<U, S, R, M>>
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ToOwned<Owned = R> + ?Sized,
    {
        if let Some(item) = self.reload(tracker, room, None) {
            self.send(room, item);
        }
        match self.shown.get_mut(room) {
            Some(shown) => {
                let members = &shown.members;
                shown.listing.window(
                    &room.to_owned(),
                    shown.epoch,
                    shown.version,
                    window,
                    |user| members.get(user).map(|m| (m.presence, &m.sessions[..])),
                )
            }
            None => Arc::new(RoomWindow::new(
                room.to_owned(),
                0,
                0,
                window,
                Vec::new(),
                false,
            )),
        }
    }

    /// The state of a room the hub shows, made once per version.
    fn state_of(&mut self, room: &R) -> Option<Arc<RoomState<U, S, R, M>>> {
        let shown = self.shown.get_mut(room)?;
        if let Some(state) = &shown.state {
            return Some(Arc::clone(state));
        }
        let state = Arc::new(RoomState {
            room: room.clone(),
            epoch: shown.epoch,
            version: shown.version,
            members: shown
                .members
                .iter()
                .map(|(user, m)| Member {
                    user: user.clone(),
                    presence: m.presence,
                    sessions: m.sessions.clone(),
                })
                .collect(),
            big: shown.listing.big(),
            encoded: Encoded::default(),
        });
        shown.state = Some(Arc::clone(&state));
        Some(state)
    }

    /// Sends `item` to the room's subscribers, if it has any.
    pub(super) fn send<QR>(&mut self, room: &QR, item: RoomItem<U, S, R, M>)
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ?Sized,
    {
        if let Some(tx) = self.feeds.get(room) {
            if tx.send(item).is_err() {
                self.feeds.remove(room); // nobody listens any more
            }
        }
    }

    /// Forgets rooms that emptied longer ago than the memory.
    pub(super) fn forget(&mut self, now: u64) {
        while let Some(&(at, _)) = self.emptied.front() {
            if at.saturating_add(self.memory) > now {
                break;
            }
            let Some((at, room)) = self.emptied.pop_front() else {
                break;
            };
            if self
                .shown
                .get(&room)
                .is_some_and(|s| s.members.is_empty() && s.emptied_at == Some(at))
            {
                self.shown.remove(&room);
            }
        }
    }
}

impl<U: Id, S: Id, R, M> ShownRoom<U, S, R, M> {
    /// The room as the tracker has it, under a new epoch: it covers every event up to its
    /// version.
    fn from_view(view: RoomView<U, S, M>, big_room: usize, ids: &MemberIds) -> Self {
        let mut occupancy = Occupancy::default();
        let mut listing = Listing::default();
        let members = view
            .members
            .into_iter()
            .map(|m| {
                occupancy.add(m.presence, m.sessions.len());
                listing.place(&m.user, Some(m.presence), big_room);
                let shown = Shown {
                    core_version: view.version,
                    presence: m.presence,
                    sessions: m
                        .sessions
                        .into_iter()
                        .map(|s| MemberSession::shown(s.session, s.meta, ids))
                        .collect(),
                };
                (m.user, shown)
            })
            .collect();
        ShownRoom {
            epoch: new_epoch(),
            core_epoch: view.epoch,
            version: 0,
            floor: view.version,
            members,
            left: HashMap::new(),
            emptied_at: None,
            state: None,
            occupancy,
            listing,
        }
    }
}

/// The same sessions with the same metadata (the same `Arc`s: metadata is never copied).
fn same<S: PartialEq, M>(a: &[MemberSession<S, M>], b: &[MemberSession<S, M>]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.session == y.session && Arc::ptr_eq(&x.meta, &y.meta))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use presence_tracker::{Activity, ManualClock, Policy};

    use super::*;
    use crate::{HubConfig, RoomDelivery};

    /// What a subscriber holds: epoch, version, each member's sessions with their metadata.
    type Held = (u64, u64, HashMap<u64, Vec<(u64, String)>>);

    /// The members a room subscriber holds after applying everything it was sent, checking
    /// that versions come without a gap.
    fn apply(
        feed: &mut RoomSubscription<u64, u64, ManualClock, &'static str, String>,
        held: &mut Held,
    ) {
        while let Some(d) = feed.try_recv() {
            match d {
                RoomDelivery::State(s) => {
                    *held = (s.epoch, s.version, HashMap::new());
                    for m in &s.members {
                        let sessions = m.sessions.iter().map(|s| (s.session, (*s.meta).clone()));
                        held.2.insert(m.user, sessions.collect());
                    }
                }
                RoomDelivery::Updates(b) => {
                    assert_eq!((b.epoch(), b.from()), (held.0, held.1 + 1), "a gap");
                    held.1 = b.to();
                    for m in b.members() {
                        if m.presence == Presence::Offline {
                            held.2.remove(&m.user);
                        } else {
                            let sessions =
                                m.sessions.iter().map(|s| (s.session, (*s.meta).clone()));
                            held.2.insert(m.user, sessions.collect());
                        }
                    }
                }
            }
        }
    }

    /// Callers preempted between the tracker and the hub: a room's events reach the hub in
    /// any order, and across the room's histories. Older ones are old news; the subscriber
    /// sees no gap and ends at the tracker's room.
    #[test]
    fn late_room_events_are_old_news() {
        let clock = ManualClock::new();
        let hub: Hub<u64, u64, ManualClock, &'static str, String> = Hub::new(
            PresenceTracker::with_clock(Policy::default(), clock.clone()),
            HubConfig::default(),
        );
        let mut feed = hub.rooms().subscribe("doc").expect("an id");
        let mut held = (0, 0, HashMap::new());
        let tracker = hub.tracker();
        let step = || clock.advance(Duration::from_millis(100));
        let _ = tracker
            .connect(1, 10, "c1", Activity::Active)
            .expect("connects");
        let _ = tracker
            .connect(2, 20, "c2", Activity::Active)
            .expect("connects");
        let rooms = tracker.rooms();

        let joined = rooms.join(&10, "doc", "m1".into()).expect("joins");
        step();
        let updated = rooms.update(&10, "doc", "m2".into()).expect("updates");
        hub.publish(&updated); // the later first: the room is shown as the tracker has it
        hub.publish(&joined);
        apply(&mut feed, &mut held);
        assert_eq!(held.2[&1], [(10, "m2".to_string())]);

        let bob_in = rooms.join(&20, "doc", "b1".into()).expect("joins");
        step();
        let bob_moved = rooms.update(&20, "doc", "b2".into()).expect("updates");
        hub.publish(&bob_moved);
        hub.publish(&bob_in); // old news
        apply(&mut feed, &mut held);
        assert_eq!(held.2[&2], [(20, "b2".to_string())]);
        let version = held.1;

        // Both leave (the room ends), and ada comes back (a new history) before her own
        // leave reaches the hub.
        let ada_out = rooms.leave(&10, "doc").expect("in it");
        let bob_out = rooms.leave(&20, "doc").expect("in it");
        step();
        let ada_back = rooms.join(&10, "doc", "m3".into()).expect("joins");
        hub.publish(&bob_out);
        hub.publish(&ada_back);
        hub.publish(&ada_out); // a history that ended: old news
        hub.publish(&bob_in);
        apply(&mut feed, &mut held);
        assert_ne!(held.1, version + 3, "ada's late leave was not published");
        assert_eq!(held.2.len(), 1);
        assert_eq!(held.2[&1], [(10, "m3".to_string())]);
        let view = tracker.rooms().get("doc").expect("a room");
        assert_eq!(view.members.len(), 1);
        assert_eq!(hub.rooms().state(&"doc").members.len(), 1);
    }
}
