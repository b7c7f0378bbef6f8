//! [`PresenceTracker`]: records signals, derives presence, emits transitions.
//!
//! # Files
//!
//! This file holds the struct, its building and the small lookups every call makes. The calls:
//! `connect` (connect and its locking), `signals` (heartbeat, disconnect, leave), `batch`
//! (`heartbeat_batch`), `publish` (`settle`: every publication), `tick` (`tick`, the due users),
//! `read` (the reads), `rooms` (joining, leaving, updating a room; the room events a session's
//! transitions cause; the room reads); `snapshot` and `restore` are in the crate's `snapshot`.
//! The data: `session_table`, `user_table` (with each user's room memberships), `room_table`
//! (each room's members and version), `packed` (the words that pack two fields), `counters`
//! (for `census`), `wheel` (the deadline queue).
//!
//! # Locking
//!
//! | lock | guards | taken by | order |
//! |---|---|---|---|
//! | user shard (`UserSlot::shard`, a `Mutex`, `USER_SHARDS`) | its users: live entries (session list, published presence and seq, armed deadline), their gone records (`gone`: last seen of expired sessions, retention flag), retained users, the timing wheel, its `Counters`; and the right to change its users' session entries (below) | every signal except the heartbeat fast path: the owner's shard (a connect: the user's, and the expired session's owner's if another); `tick` (shard by shard); user reads; `online`; `snapshot` (all of them) | first. Several: in ascending index order (a connect's two; a snapshot's all). Never taken while a session shard's lock is held |
//! | session shard, read (`SessionSlot`, an `RwLock`, `SESSION_SHARDS`) | the entries exist and keep their owner, grace, connection and published presence; only `hot` moves | the heartbeat fast path and batch, the slow path's store, reads, a tick's quiet re-check, a connect's peek and live count | after any user locks; one session shard at a time; the batch releases its read lock before a slow path takes a user lock |
//! | session shard, write | inserting, replacing or removing an entry, its grace, connection and published presence; `hot` on a re-attach | with the owner's user-shard lock held: `settle` (every publication, every free), `close`, `connect` (with the connecting user's lock too) | as the read lock |
//! | room shard (`RoomSlot`, a `Mutex`, `ROOM_SHARDS`) | its rooms: members, their sessions there with presence and metadata, the room's epoch, version and counts | under the owner's user-shard lock: `settle_rooms` (a session's change, one room at a time), a join, update or leave; alone: the room reads; `snapshot` (under all user locks) | last: never held while another lock is taken. A room's events are versioned under its lock, so two users' changes in one room are ordered by it |
//!
//! Invariants, outside these critical sections:
//!
//! - A session is in user `u`'s list exactly when its entry exists and is owned by `u`. An
//!   entry owned by `o` is replaced or removed only under `o`'s user-shard lock and the session
//!   shard's write lock.
//! - A connect checks and changes a session's owner in one critical section of the session
//!   shard's write lock: it inserts a new id, re-attaches its user's own live session, refuses
//!   another user's live one, or replaces an expired one in place, and then only holding the
//!   expired owner's user-shard lock too (else it releases everything and starts again with
//!   that lock). The replaced entry's end is published for its owner from the entry as it was.
//! - A published presence changes only in `settle`, under the owner's lock and the write lock.
//!   The heartbeat fast path compares the published presence and stores `hot` under the read
//!   lock, so no publication falls in between.
//! - Every listed session is published online, and a live user is published at the highest of
//!   its sessions (what `restore` checks).
//! - The session total counts the entries: a connect that inserts one increments it (refused at
//!   the policy's maximum), `settle` decrements it when it frees one; a takeover leaves it.
//!
//! # Atomics
//!
//! - `SessionEntry::hot` (`last_seen` and the activity in one word): written under a session
//!   shard's read lock by `SessionEntry::touch`, one
//!   compare-and-swap loop that never lowers `last_seen`, so of concurrent heartbeats the one
//!   with the latest time wins whatever order they store in (a heartbeat reads its time before
//!   it finds the session); under the write lock by a re-attach, which no store can race. Relaxed:
//!   what `hot` must agree with (the published presence, grace, owner) is ordered by the lock,
//!   and its own monotonicity is a property of one location (coherence).
//! - `high_water`, the latest time any call has seen: `fetch_max`, so it never goes back, and
//!   clamped to `Timestamp::MAX`. Relaxed: it orders nothing else. Calls that publish re-read
//!   it under a lock (`ordered`); a later holder of the lock sees at least what an earlier holder
//!   had stored (the lock's happens-before and coherence), so one user's events never go back
//!   in time, nor one session's across owners (a connect re-reads it under the session's write
//!   lock).
//! - `earliest[i]`, user shard `i`'s earliest deadline (the 64 words side by side, eight cache
//!   lines, so an idle tick reads eight lines): stored (Release) only under the shard's lock,
//!   after every change to its wheel, so it is exact whenever the lock is free;
//!   read (Acquire) without the lock by `tick`, which skips the shard when it is later than
//!   `now`, and by `next_deadline`. A deadline armed while a tick runs may be missed by that tick
//!   (which is then ordered before the signal) and is taken by the next.
//! - `session_total`: a bounded counter (`fetch_update` to increment under the maximum,
//!   `fetch_sub`); Relaxed, it publishes no other data.
//! - `Counters` cells: written only under their shard's lock (a load and a
//!   store), read without it by `census`: exact once the writers are done.
//!
//! loom checks these protocols on whole tracker calls (`tracker/loom.rs`, run in CI): the
//! heartbeat's store against another heartbeat and against a tick's publication, `earliest`
//! against a tick, ownership (two connects of one id, a leave against a takeover), and a
//! snapshot against a takeover.

mod batch;
mod connect;
pub(crate) mod counters;
#[cfg(all(test, loom))]
mod loom;
pub(crate) mod packed;
mod publish;
mod read;
mod room_table;
mod rooms;
pub(crate) mod session_table;
mod signals;
mod tick;
pub(crate) mod user_table;
mod wheel;

use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use crate::sync::{Mutex, RwLock};

use crate::{Clock, Error, Id, Metadata, Policy, SystemClock, Timestamp, Transitions};
use counters::Counters;
use room_table::RoomShard;
use rooms::RoomSlot;
use session_table::{Hasher, Padded, SessionEntry, SessionSlot, SessionTable};
use user_table::{UserShard, UserSlot};

pub use batch::BatchOutcome;
pub use rooms::Rooms;

/// Shards of the session table. A power of two. Readers (heartbeats) share a shard's lock, so
/// more shards barely spare two cores each other's lock lines (a line moves between cores about
/// every other acquisition whatever the count); fewer shards mean fewer lock lines to keep in
/// cache and larger groups for a batch or a tick to take under one lock. 16 measured better than
/// 32 and 64 in the tick and heartbeat benchmarks, and no worse with two threads.
#[cfg(not(loom))]
const SESSION_SHARDS: usize = 16;
/// Under loom, two: enough for two shards to interleave, few enough to explore.
#[cfg(loom)]
const SESSION_SHARDS: usize = 2;
/// Session-table probes a batch or a tick makes before acting on their results: with nothing
/// else in the loop, the CPU keeps many of their cache misses in flight at once.
const PROBES: usize = 32;
/// Shards of the user table (and of the deadline queue).
#[cfg(not(loom))]
const USER_SHARDS: usize = 64;
#[cfg(loom)]
const USER_SHARDS: usize = 2;
/// Shards of the room table.
#[cfg(not(loom))]
const ROOM_SHARDS: usize = 16;
#[cfg(loom)]
const ROOM_SHARDS: usize = 2;

/// A deadline that never comes: no grace deadline (connected), nothing armed, nothing queued.
pub(crate) const NO_DEADLINE: u64 = u64::MAX;

/// Tracks sessions, derives their users' presence, and reports the transitions.
///
/// `U` is the user id, `S` the session id (both [`Id`]s: integers, strings, `Arc<str>` ...), `C`
/// the [`Clock`], `R` the room id (an [`Id`], `String` unless named) and `M` the metadata a
/// session carries into a room (a [`Metadata`], none unless named). The tracker is `Send + Sync` and every method takes `&self`: share it in an
/// `Arc` between handlers and the task that calls [`tick`](Self::tick). It owns no thread and
/// no async runtime.
///
/// # Method map
///
/// What a server calls, in the order it calls it:
///
/// | when | call | returns |
/// |---|---|---|
/// | at start | [`new`](Self::new), [`with_clock`](Self::with_clock), or [`restore`](Self::restore) a [`snapshot`](Self::snapshot) | the tracker |
/// | a client connects (and on every reconnect) | [`connect`](Self::connect)`(user, session, connection, activity)` | [`Transitions`](crate::Transitions) |
/// | a client reports its activity | [`heartbeat`](Self::heartbeat)`(session, activity)`, or many at once with [`heartbeat_batch`](Self::heartbeat_batch) | [`Transitions`](crate::Transitions) |
/// | a transport closes | [`disconnect`](Self::disconnect)`(session, connection, kind)` | [`Transitions`](crate::Transitions) |
/// | the client says it leaves (`pagehide`, logout) | [`leave`](Self::leave)`(session, connection)` | [`Transitions`](crate::Transitions) |
/// | at [`next_deadline`](Self::next_deadline), or at a fixed interval | [`tick`](Self::tick) | [`Transitions`](crate::Transitions) |
/// | a session enters, changes or leaves a room (a document, a channel) | [`rooms`](Self::rooms)`().join(session, room, meta)`, `update`, `leave` | [`Transitions`](crate::Transitions) with room events |
/// | to answer "who is here" | [`user`](Self::user), [`user_sessions`](Self::user_sessions), [`session`](Self::session), [`online`](Self::online), [`census`](Self::census); per room [`rooms`](Self::rooms)`().get(room)`, `counts`, `of_session`, `of_user` | views |
/// | at shutdown | [`snapshot`](Self::snapshot), *before* closing the sockets | [`Snapshot`](crate::Snapshot) |
///
/// Every signal and `tick` return the [`Transitions`](crate::Transitions) they published:
/// broadcast them (most servers send [`Transitions::users`](crate::Transitions::users), and
/// [`Transitions::rooms`](crate::Transitions::rooms) to each room's members); each is reported
/// exactly once. An `Err` means nothing changed.
///
/// # Time
///
/// Time comes from the clock, and only from it: there is no method that takes the time from
/// the caller. A server that reads the time once per batch of messages uses a
/// [`CoarseClock`](crate::CoarseClock) (refreshed every few milliseconds, one atomic load per
/// read: measured at the cost of passing a time in, BENCHMARKS.md §7); tests and simulations
/// use a [`ManualClock`](crate::ManualClock) and move it. So one bogus caller-supplied time
/// cannot move the tracker's time, and reads never change it. Signals and ticks never go back
/// in time: if the clock goes back, they work at the latest time a signal or tick saw (reads
/// use that too, and otherwise the clock's).
///
/// # Connections fence the signals that end a session
///
/// A session's current connection is the one its latest [`connect`](Self::connect) named. A
/// [`disconnect`](Self::disconnect) or [`leave`](Self::leave) naming another connection is
/// ignored (`Ok`, no transitions): in a reload the new socket's connect often arrives before
/// the old page's leave and the old socket's disconnect, and neither may end the session the
/// new socket carries. A [`heartbeat`](Self::heartbeat) names no connection: it can only keep a
/// session alive, which a heartbeat from the same tab proves whichever socket carried it.
///
/// # Design
///
/// Sessions live in a table sharded by session id behind read-write locks; a heartbeat that
/// changes no presence (the common one) hashes the id once, takes a shard's read lock and
/// updates one atomic word (`last_seen` and the activity) with a compare-and-swap that never
/// moves `last_seen` back: no exclusive lock, no allocation, no list to relink. [`heartbeat_batch`](Self::heartbeat_batch) takes each
/// shard's lock once for all of a batch's heartbeats. Users live in a table sharded by user id
/// behind mutexes, each shard with a timing wheel of when its users must be looked at again;
/// the wheel is armed lazily (an entry may be early, never late), so a heartbeat never touches
/// it, and a tick takes only what is due.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use presence_tracker::{Activity, ManualClock, Policy, Presence, PresenceTracker};
///
/// let clock = ManualClock::new();
/// let tracker: PresenceTracker<u64, u64, _> = PresenceTracker::with_clock(Policy::default(), clock.clone());
/// let _ = tracker.connect(7, 1, "socket-a", Activity::Active)?;
/// let _ = tracker.heartbeat(&1, Activity::Background)?;
/// assert_eq!(tracker.user(&7).presence, Presence::Away);
///
/// clock.advance(Duration::from_secs(200));
/// let changes = tracker.tick();
/// assert!(changes.users().any(|e| e.to == Presence::Stale));
/// # Ok::<(), presence_tracker::Error>(())
/// ```
#[derive(Debug)]
pub struct PresenceTracker<U, S, C = SystemClock, R = String, M = ()> {
    pub(crate) policy: Policy,
    pub(crate) clock: C,
    /// The latest `now` seen: a clock that goes backwards is treated as standing still.
    pub(crate) high_water: AtomicU64,
    pub(crate) shard_hasher: Hasher,
    pub(crate) sessions: Box<[SessionSlot<U, S>]>,
    pub(crate) users: Box<[Padded<UserSlot<U, S, R>>]>,
    /// Each user shard's earliest deadline, readable without its lock, side by side (64 words,
    /// eight cache lines), so a tick with nothing due reads eight lines and touches no lock.
    pub(crate) earliest: Box<[AtomicU64]>,
    pub(crate) session_total: AtomicUsize,
    /// Per user shard.
    pub(crate) counters: Box<[Counters]>,
    pub(crate) rooms: Box<[RoomSlot<U, S, R, M>]>,
    /// The next room history's epoch.
    pub(crate) room_epochs: AtomicU64,
}

/// What one signal call works on: the events it makes, under the owner's shard lock.
type Events<U, S, R, M> = Transitions<U, S, R, M>;

/// # Building
impl<U: Id, S: Id, R: Id, M: Metadata> PresenceTracker<U, S, SystemClock, R, M> {
    /// A tracker on the [`SystemClock`].
    pub fn new(policy: Policy) -> Self {
        Self::with_clock(policy, SystemClock::new())
    }
}

impl<U: Id, S: Id, R: Id, M: Metadata> Default for PresenceTracker<U, S, SystemClock, R, M> {
    fn default() -> Self {
        Self::new(Policy::default())
    }
}

/// # Building
impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> PresenceTracker<U, S, C, R, M> {
    /// A tracker on the given clock, for example a [`ManualClock`](crate::ManualClock).
    pub fn with_clock(policy: Policy, clock: C) -> Self {
        let hasher = Hasher::default();
        let start = clock.now().min(Timestamp::MAX).as_millis();
        PresenceTracker {
            policy,
            clock,
            high_water: AtomicU64::new(start),
            shard_hasher: hasher.clone(),
            sessions: (0..SESSION_SHARDS)
                .map(|_| Padded(RwLock::new(SessionTable::new())))
                .collect(),
            users: (0..USER_SHARDS)
                .map(|i| {
                    Padded(UserSlot {
                        shard: Mutex::new(UserShard::new(&hasher, i)),
                    })
                })
                .collect(),
            earliest: (0..USER_SHARDS)
                .map(|_| AtomicU64::new(NO_DEADLINE))
                .collect(),
            session_total: AtomicUsize::new(0),
            counters: (0..USER_SHARDS).map(|_| Counters::default()).collect(),
            rooms: (0..ROOM_SHARDS)
                .map(|_| Padded(Mutex::new(RoomShard::new(&hasher))))
                .collect(),
            room_epochs: AtomicU64::new(Self::first_room_epoch(&hasher)),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The clock's time, or the latest time the tracker has seen if the clock went back; never
    /// past [`Timestamp::MAX`].
    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.read_now())
    }

    /// The time a read works at: the clock's, or the latest a signal or tick saw. Unlike
    /// [`effective_now`](Self::effective_now) it records nothing: a read has no side effects.
    pub(crate) fn read_now(&self) -> u64 {
        self.clock
            .now()
            .min(Timestamp::MAX)
            .as_millis()
            .max(self.high_water.load(Ordering::Relaxed))
    }

    /// `now`, unless an earlier call saw a later time: then that one. Time never goes back, and
    /// stands still at [`Timestamp::MAX`].
    fn effective_now(&self, now: Timestamp) -> u64 {
        let now = now.min(Timestamp::MAX).as_millis();
        let seen = self.high_water.load(Ordering::Relaxed);
        if now > seen {
            self.high_water.fetch_max(now, Ordering::Relaxed).max(now)
        } else {
            seen
        }
    }

    /// The time of a signal, as [`effective_now`](Self::effective_now); refused past
    /// [`Timestamp::MAX`] before it moves the tracker's time.
    fn signal_time(&self, now: Timestamp) -> Result<u64, Error> {
        if now > Timestamp::MAX {
            return Err(Error::TimeOutOfRange {
                at: now,
                max: Timestamp::MAX,
            });
        }
        Ok(self.effective_now(now))
    }

    /// The session's hash, and the shard it picks: the one hash a lookup computes.
    pub(crate) fn locate<Q: Hash + ?Sized>(
        &self,
        session: &Q,
    ) -> (&RwLock<SessionTable<U, S>>, u64) {
        let h = self.shard_hasher.hash_one(session);
        (&self.sessions[Self::session_shard(h)].0, h)
    }

    /// The shard of a session hash: middle bits, which the table itself does not use (it takes
    /// the low bits for the bucket and the top seven for the tag).
    fn session_shard(hash: u64) -> usize {
        (hash >> 32) as usize & (SESSION_SHARDS - 1)
    }

    pub(crate) fn user_slot<Q: Hash + ?Sized>(&self, user: &Q) -> &UserSlot<U, S, R> {
        &self.users[self.user_index(user)].0
    }

    fn user_index<Q: Hash + ?Sized>(&self, user: &Q) -> usize {
        let h = self.shard_hasher.hash_one(user);
        (h >> 40) as usize & (USER_SHARDS - 1)
    }

    /// Stores a user shard's earliest deadline for the lock-free readers (`tick`,
    /// `next_deadline`): after every change to its wheels, before its lock is released.
    pub(crate) fn store_earliest(&self, shard: &UserShard<U, S, R>) {
        self.earliest[shard.index].store(shard.earliest(), Ordering::Release);
    }

    /// `now`, or the latest time any operation has seen if later: called under a user-shard
    /// lock, so that events of one user never go back in time, whatever order threads that read
    /// the clock take the lock in.
    fn ordered(&self, now: u64) -> u64 {
        now.max(self.high_water.load(Ordering::Relaxed))
    }

    /// The session's entry, unless it is unknown or expired (derived offline at `now`): an
    /// expired session is gone for every signal, though only a tick frees it.
    fn live_entry<'m, Q>(
        &self,
        map: &'m SessionTable<U, S>,
        hash: u64,
        session: &Q,
        now: u64,
    ) -> Result<&'m SessionEntry<U, S>, Error>
    where
        S: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        match map.get(hash, session) {
            Some(e) if !e.expired(now, self.policy.ttl_ms) => Ok(e),
            _ => Err(Error::UnknownSession),
        }
    }

    pub(crate) fn check_id<T: Id>(&self, id: &T) -> Result<(), Error> {
        match id.byte_len() {
            Some(0) => Err(Error::EmptyId),
            Some(len) if len > self.policy.max_id_len => Err(Error::IdTooLong {
                len,
                max: self.policy.max_id_len,
            }),
            _ => Ok(()),
        }
    }
}
