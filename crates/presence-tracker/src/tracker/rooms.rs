//! Rooms: joining, leaving and updating a session's membership, the room events a session's
//! transitions cause (`settle_rooms`, called by `settle`), and the room reads.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use super::room_table::{Change, RoomShard, RoomState};
use super::session_table::{Hasher, Padded};
use super::user_table::{Memberships, RoomIndex, UserShard};
use super::{Events, PresenceTracker, ROOM_SHARDS};
use crate::sync::{Mutex, Ordering};
use crate::{
    Clock, Error, Id, Metadata, Presence, RoomCounts, RoomSnapshot, RoomView, SessionSnapshot,
    Transitions,
};

/// Epochs stay below 2^53, so a JavaScript number holds them exactly.
const EPOCH_MASK: u64 = (1 << 53) - 1;

pub(crate) type RoomSlot<U, S, R, M> = Padded<Mutex<RoomShard<U, S, R, M>>>;

/// A tracker's rooms, from [`PresenceTracker::rooms`]: a session joins, updates and leaves
/// rooms; reads give a room's members with their metadata, its counts, and the rooms of a
/// session or a user.
///
/// A user's presence in a room is the highest published presence of its sessions there. Every
/// change a member sees is one [`RoomEvent`](crate::RoomEvent) with the room's next version,
/// returned by the call that caused it (a join, an update, a leave; or a signal or
/// [`tick`](PresenceTracker::tick) that changed a session's presence or ended it: a session
/// that expires leaves all its rooms).
///
/// Metadata belongs to a session's membership of a room, as Phoenix's metas belong to a
/// presence on a topic and Liveblocks' presence to a connection in a room: a tab shows its own
/// cursor or section in each document it has open. It is set by the join and changed by
/// [`update`](Self::update), at most once per the policy's
/// [`metadata_interval`](crate::Policy::metadata_interval).
///
/// Costs: a heartbeat that changes nothing never looks at rooms; a session's transition costs
/// O(rooms of that session); [`get`](Self::get) is O(members), [`counts`](Self::counts) O(1).
///
/// # Examples
///
/// ```
/// use presence_tracker::{Activity, ManualClock, Policy, Presence, PresenceTracker, RoomChange};
///
/// let tracker: PresenceTracker<&str, &str, _, &str, String> =
///     PresenceTracker::with_clock(Policy::default(), ManualClock::new());
/// let _ = tracker.connect("ada", "tab-1", "sid-1", Activity::Active)?;
/// let rooms = tracker.rooms();
/// let joined = rooms.join("tab-1", "doc-42", "Ada, editing §2".to_string())?;
/// let event = joined.rooms().next().expect("ada appeared in doc-42");
/// assert_eq!((event.change, event.to, event.version), (RoomChange::Joined, Presence::Active, 1));
///
/// let view = rooms.get("doc-42").expect("the room exists");
/// assert_eq!(view.members[0].sessions[0].meta.as_str(), "Ada, editing §2");
/// # Ok::<(), presence_tracker::Error>(())
/// ```
#[derive(Debug)]
pub struct Rooms<'a, U, S, C, R, M> {
    tracker: &'a PresenceTracker<U, S, C, R, M>,
}

impl<U, S, C, R, M> Clone for Rooms<'_, U, S, C, R, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<U, S, C, R, M> Copy for Rooms<'_, U, S, C, R, M> {}

/// # Rooms
impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> PresenceTracker<U, S, C, R, M> {
    /// The rooms: see [`Rooms`].
    pub fn rooms(&self) -> Rooms<'_, U, S, C, R, M> {
        Rooms { tracker: self }
    }

    fn room_slot<Q: Hash + ?Sized>(&self, room: &Q) -> &Mutex<RoomShard<U, S, R, M>> {
        let h = self.shard_hasher.hash_one(room);
        &self.rooms[(h >> 32) as usize & (ROOM_SHARDS - 1)].0
    }

    /// A new room history's epoch: distinct within this tracker, random across trackers.
    fn next_room_epoch(&self) -> u64 {
        self.room_epochs.fetch_add(1, Ordering::Relaxed) & EPOCH_MASK
    }

    /// A first room epoch for a new tracker: random (the hasher's seed), so a restarted
    /// server's rooms start histories its clients cannot mistake for the old ones.
    pub(super) fn first_room_epoch(hasher: &Hasher) -> u64 {
        hasher.hash_one(0x726f_6f6d_u64) & EPOCH_MASK
    }

    /// Publishes, in the rooms of `user`'s sessions, what `changed` (sessions whose published
    /// presence changed, with the new one) means there: a new presence, or, offline, leaving.
    /// Under the user's lock, from `settle`.
    pub(super) fn settle_rooms(
        &self,
        memberships: &mut RoomIndex<U, S, R>,
        user: &U,
        changed: &[(S, Presence)],
        now: u64,
        events: &mut Events<U, S, R, M>,
    ) {
        let Some(list) = memberships.get_mut(user) else {
            return;
        };
        for (session, to) in changed {
            for (_, room) in list.iter().filter(|(s, _)| s == session) {
                let change = if *to == Presence::Offline {
                    Change::Leave
                } else {
                    Change::Presence(*to)
                };
                let mut shard = self.room_slot(room).lock();
                if let Some(state) = shard.rooms.get_mut(room) {
                    if let Some(event) = state.apply(room, user, session, change, now) {
                        events.push_room(event);
                    }
                    if state.is_empty() {
                        shard.rooms.remove(room);
                    }
                }
            }
            if *to == Presence::Offline {
                list.retain(|(s, _)| s != session);
            }
        }
        if list.is_empty() {
            memberships.remove(user);
        }
    }

    /// A membership change of `session` in `room`, under its owner's lock: `op` decides, from
    /// what the session and the room hold, the change to make (or the error), before anything
    /// changes.
    fn change_membership<Q, QR>(
        &self,
        session: &Q,
        room: &QR,
        op: Op<R, M>,
    ) -> Result<Transitions<U, S, R, M>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        R: Borrow<QR>,
        QR: Hash + Eq + ?Sized,
    {
        let now = self.signal_time(self.clock.now())?;
        let (slot, hash) = self.locate(session);
        let user = {
            let map = slot.read();
            self.live_entry(&map, hash, session, now)?.user.clone()
        };
        let user_slot = self.user_slot(&user);
        let mut shard = user_slot.shard.lock();
        let now = self.ordered(now);
        // Again under the owner's lock: the session may have expired or changed hands.
        let (session, presence) = {
            let map = slot.read();
            match self.live_entry(&map, hash, session, now) {
                Ok(entry) if entry.user == user => (entry.session.clone(), entry.published()),
                _ => return Err(Error::UnknownSession),
            }
        };
        let list = shard.memberships.get(&user);
        let member_of =
            |r: &QR| list.is_some_and(|l| l.iter().any(|(s, x)| *s == session && x.borrow() == r));
        let joined = member_of(room);
        let mut events = Transitions::new();
        let room_slot = self.room_slot(room);
        let mut rooms = room_slot.lock();
        let state = rooms.rooms.get(room);
        let mut key = None;
        let change = match op {
            Op::Join(owned, meta) => {
                key = Some(owned);
                self.check_meta(&meta)?;
                if joined {
                    let at = state.and_then(|s| s.meta_at(&user, &session));
                    self.check_rate(at, now)?;
                } else {
                    let in_rooms =
                        list.map_or(0, |l| l.iter().filter(|(s, _)| *s == session).count());
                    if in_rooms >= self.policy.max_rooms_per_session {
                        return Err(Error::TooManyRooms {
                            max: self.policy.max_rooms_per_session,
                        });
                    }
                    let members = state.map_or(0, |s| s.members.len());
                    let member = state.is_some_and(|s| s.members.contains_key(&user));
                    if !member && members >= self.policy.max_members_per_room {
                        return Err(Error::RoomFull {
                            max: self.policy.max_members_per_room,
                        });
                    }
                }
                Change::Join {
                    presence,
                    meta: Arc::new(meta),
                    joined: None,
                }
            }
            Op::Update(meta) => {
                if !joined {
                    return Err(Error::NotInRoom);
                }
                self.check_meta(&meta)?;
                let at = state.and_then(|s| s.meta_at(&user, &session));
                self.check_rate(at, now)?;
                Change::Update(Arc::new(meta))
            }
            Op::Leave => {
                if !joined {
                    return Err(Error::NotInRoom);
                }
                Change::Leave
            }
        };
        // The room's id as the table holds it (a member's room exists).
        let owned = match key {
            Some(owned) => owned,
            None => match rooms.rooms.get_key_value(room) {
                Some((owned, _)) => owned.clone(),
                None => return Err(Error::NotInRoom),
            },
        };
        // Nothing refused: change.
        let leaving = matches!(change, Change::Leave);
        let epoch = if state.is_none() {
            Some(self.next_room_epoch())
        } else {
            None
        };
        let state = rooms
            .rooms
            .entry(owned.clone())
            .or_insert_with(|| RoomState::new(epoch.unwrap_or(0), &self.shard_hasher));
        if let Some(event) = state.apply(&owned, &user, &session, change, now) {
            events.push_room(event);
        }
        if state.is_empty() {
            rooms.rooms.remove(room);
        }
        drop(rooms);
        if leaving {
            if let Some(list) = shard.memberships.get_mut(&user) {
                list.retain(|(s, r)| !(*s == session && <R as Borrow<QR>>::borrow(r) == room));
                if list.is_empty() {
                    shard.memberships.remove(&user);
                }
            }
        } else if !joined {
            shard
                .memberships
                .entry(user, &self.shard_hasher)
                .push((session, owned));
        }
        Ok(events)
    }

    /// Copies the rooms of `user`'s sessions (`list`, under the user's lock) into their
    /// snapshots, with each session's metadata there.
    pub(crate) fn snapshot_rooms(
        &self,
        user: &U,
        list: &Memberships<S, R>,
        sessions: &mut [SessionSnapshot<S, R, M>],
    ) {
        for (session, room) in list {
            let shard = self.room_slot(room).lock();
            let meta = shard
                .rooms
                .get(room)
                .and_then(|state| state.members.get(user))
                .and_then(|m| m.sessions.iter().find(|s| s.session == *session))
                .map(|s| (Arc::clone(&s.meta), s.joined));
            drop(shard);
            if let (Some((meta, joined)), Some(snap)) =
                (meta, sessions.iter_mut().find(|s| s.session == *session))
            {
                snap.rooms.push(RoomSnapshot {
                    room: room.clone(),
                    meta,
                    joined,
                });
            }
        }
    }

    /// A restored session back in a room (under its user's lock; the snapshot was validated):
    /// the room made anew if needed, with a new epoch.
    pub(crate) fn restore_membership(
        &self,
        shard: &mut UserShard<U, S, R>,
        user: &U,
        session: &S,
        presence: Presence,
        room: RoomSnapshot<R, M>,
        now: u64,
    ) {
        let mut rooms = self.room_slot(&room.room).lock();
        let epoch = if rooms.rooms.contains_key(&room.room) {
            0
        } else {
            self.next_room_epoch()
        };
        let state = rooms
            .rooms
            .entry(room.room.clone())
            .or_insert_with(|| RoomState::new(epoch, &self.shard_hasher));
        let change = Change::Join {
            presence,
            meta: room.meta,
            // 0: a snapshot from before places were kept; after those already placed.
            joined: (room.joined != 0).then_some(room.joined),
        };
        // Restoring publishes nothing: clients load the room anew (its epoch is new).
        let _ = state.apply(&room.room, user, session, change, now);
        drop(rooms);
        shard
            .memberships
            .entry(user.clone(), &self.shard_hasher)
            .push((session.clone(), room.room));
    }

    fn check_meta(&self, meta: &M) -> Result<(), Error> {
        let size = meta.size();
        let max = self.policy.max_metadata_bytes;
        if size > max {
            return Err(Error::MetadataTooLarge { size, max });
        }
        Ok(())
    }

    /// Refuses a metadata change sooner than the policy's interval after the last (`at`).
    fn check_rate(&self, at: Option<u64>, now: u64) -> Result<(), Error> {
        let Some(at) = at else { return Ok(()) };
        let next = at.saturating_add(self.policy.metadata_interval_ms);
        if now < next {
            return Err(Error::MetadataTooFrequent {
                retry_after: Duration::from_millis(next - now),
            });
        }
        Ok(())
    }
}

/// What a membership call asks for.
enum Op<R, M> {
    /// The room's id, owned, and the metadata.
    Join(R, M),
    Update(M),
    Leave,
}

impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> Rooms<'_, U, S, C, R, M> {
    /// The session joins `room` with `meta`, which the room's members see with it. Already in
    /// the room: its metadata is replaced, as [`update`](Self::update) does.
    ///
    /// Publishes `Joined` if the user was not in the room, `Presence` if this session raises
    /// the user's presence there, `Updated` otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSession`] for a session that is not live; [`Error::TooManyRooms`],
    /// [`Error::RoomFull`], [`Error::MetadataTooLarge`] past the policy's limits;
    /// [`Error::MetadataTooFrequent`] for a re-join sooner than the policy's metadata interval
    /// after the last change; [`Error::TimeOutOfRange`]. An error changes nothing.
    pub fn join<Q>(&self, session: &Q, room: R, meta: M) -> Result<Transitions<U, S, R, M>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.tracker.check_id(&room)?;
        let key = room.clone();
        self.tracker
            .change_membership::<Q, R>(session, &key, Op::Join(room, meta))
    }

    /// The session's metadata in `room` becomes `meta`: one `Updated` event, never a leave and
    /// a join.
    ///
    /// # Errors
    ///
    /// [`Error::NotInRoom`] if the session is not in the room; [`Error::MetadataTooLarge`];
    /// [`Error::MetadataTooFrequent`] sooner than the policy's metadata interval after the
    /// last change (the error says when to try again); [`Error::UnknownSession`];
    /// [`Error::TimeOutOfRange`]. An error changes nothing.
    pub fn update<Q, QR>(
        &self,
        session: &Q,
        room: &QR,
        meta: M,
    ) -> Result<Transitions<U, S, R, M>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        R: Borrow<QR>,
        QR: Hash + Eq + ?Sized,
    {
        self.tracker
            .change_membership(session, room, Op::Update(meta))
    }

    /// The session leaves `room`: `Left` if it was the user's last session there, else
    /// `Presence` or `Updated`.
    ///
    /// # Errors
    ///
    /// [`Error::NotInRoom`] if the session is not in the room; [`Error::UnknownSession`];
    /// [`Error::TimeOutOfRange`].
    pub fn leave<Q, QR>(&self, session: &Q, room: &QR) -> Result<Transitions<U, S, R, M>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        R: Borrow<QR>,
        QR: Hash + Eq + ?Sized,
    {
        self.tracker.change_membership(session, room, Op::Leave)
    }

    /// The room's members as published, with their sessions' metadata (shared, not copied),
    /// and its epoch and version. `None` for a room nobody is in. O(members).
    pub fn get<QR>(&self, room: &QR) -> Option<RoomView<U, S, M>>
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ?Sized,
    {
        let shard = self.tracker.room_slot(room).lock();
        let state = shard.rooms.get(room)?;
        Some(RoomView {
            epoch: state.epoch,
            version: state.version,
            members: state
                .members
                .iter()
                .map(|(user, member)| RoomState::member_view(user, member))
                .collect(),
        })
    }

    /// The room's occupancy (members by presence, sessions), epoch and version, without the
    /// member list. `None` for a room nobody is in. O(1).
    pub fn counts<QR>(&self, room: &QR) -> Option<RoomCounts>
    where
        R: Borrow<QR>,
        QR: Hash + Eq + ?Sized,
    {
        let shard = self.tracker.room_slot(room).lock();
        shard.rooms.get(room).map(RoomState::counts)
    }

    /// The rooms a session is in, in the order it joined them. Empty for an unknown session.
    pub fn of_session<Q>(&self, session: &Q) -> Vec<R>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(user) = self.tracker.session(session).map(|s| s.user) else {
            return Vec::new();
        };
        let shard = self.tracker.user_slot(&user).shard.lock();
        shard.memberships.get(&user).map_or_else(Vec::new, |list| {
            list.iter()
                .filter(|(s, _)| s.borrow() == session)
                .map(|(_, r)| r.clone())
                .collect()
        })
    }

    /// The rooms any of a user's sessions is in, each once, in the order first joined.
    pub fn of_user<Q>(&self, user: &Q) -> Vec<R>
    where
        U: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.tracker.user_slot(user).shard.lock();
        let mut rooms: Vec<R> = Vec::new();
        if let Some(list) = shard.memberships.get(user) {
            for (_, r) in list {
                if !rooms.contains(r) {
                    rooms.push(r.clone());
                }
            }
        }
        rooms
    }
}
