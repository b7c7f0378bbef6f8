//! [`PresenceTracker`]: records signals, derives presence, emits transitions.
//!
//! # Locking
//!
//! | lock | guards | taken by | order |
//! |---|---|---|---|
//! | user shard (`UserSlot::shard`, a `Mutex`, `USER_SHARDS`) | its users: live entries (session list, published presence and seq, armed deadline, `gone_last_seen`), retained users, the timing wheel, its `Counters`; and the right to change its users' session entries (below) | every signal except the heartbeat fast path: the owner's shard (a connect: the user's, and the expired session's owner's if another); `tick` (shard by shard); user reads; `online`; `snapshot` (all of them) | first. Several: in ascending index order (a connect's two; a snapshot's all). Never taken while a session shard's lock is held |
//! | session shard, read (`SessionSlot`, an `RwLock`, `SESSION_SHARDS`) | the entries exist and keep their owner, grace, connection and published presence; only `hot` moves | the heartbeat fast path and batch, the slow path's store, reads, a tick's quiet re-check, a connect's peek and live count | after any user locks; one session shard at a time; the batch releases its read lock before a slow path takes a user lock |
//! | session shard, write | inserting, replacing or removing an entry, its grace, connection and published presence; `hot` on a re-attach | with the owner's user-shard lock held: `settle` (every publication, every free), `close`, `connect` (with the connecting user's lock too) | as the read lock |
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
//! - `UserSlot::earliest`, the shard's earliest deadline: stored (Release) only under the
//!   shard's lock, after every change to its wheel, so it is exact whenever the lock is free;
//!   read (Acquire) without the lock by `tick`, which skips the shard when it is later than
//!   `now`, and by `next_deadline`. A deadline armed while a tick runs may be missed by that tick
//!   (which is then ordered before the signal) and is taken by the next.
//! - `session_total`: a bounded counter (`fetch_update` to increment under the maximum,
//!   `fetch_sub`); Relaxed, it publishes no other data.
//! - `Counters` cells: written only under their shard's lock (a load and a
//!   store), read without it by `census`: exact once the writers are done.

mod batch;
mod read;
mod settle;
pub(crate) mod shard;
mod wheel;

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Mutex, MutexGuard, RwLock};

use crate::{
    derive, Activity, Cause, Clock, ConnectionId, DisconnectKind, Error, Event, Id, Policy,
    Presence, SystemClock, Timestamp, Transitions,
};
use shard::{
    pack, unpack, Counters, Hasher, Padded, Retained, SessionEntry, SessionSlot, SessionTable,
    UserEntry, UserShard, UserSlot, NO_DEADLINE,
};

pub use batch::BatchOutcome;
pub(crate) use shard::record_of;

/// Shards of the session table. A power of two. Readers (heartbeats) share a shard's lock, so
/// more shards barely spare two cores each other's lock lines (a line moves between cores about
/// every other acquisition whatever the count); fewer shards mean fewer lock lines to keep in
/// cache and larger groups for a batch or a tick to take under one lock. 16 measured better than
/// 32 and 64 in the tick and heartbeat benchmarks, and no worse with two threads.
const SESSION_SHARDS: usize = 16;
/// Session-table probes a batch or a tick makes before acting on their results: with nothing
/// else in the loop, the CPU keeps many of their cache misses in flight at once.
const PROBES: usize = 32;
/// Shards of the user table (and of the deadline queue).
const USER_SHARDS: usize = 64;

/// Tracks sessions, derives their users' presence, and reports the transitions.
///
/// `U` is the user id, `S` the session id (both [`Id`]s: integers, strings, `Arc<str>` ...), `C`
/// the [`Clock`]. The tracker is `Send + Sync` and every method takes `&self`: share it in an
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
/// | a client connects (and on every reconnect) | [`connect`](Self::connect)`(user, session, connection, activity)` | [`Transitions`] |
/// | a client reports its activity | [`heartbeat`](Self::heartbeat)`(session, activity)`, or many at once with [`heartbeat_batch`](Self::heartbeat_batch) | [`Transitions`] |
/// | a transport closes | [`disconnect`](Self::disconnect)`(session, connection, kind)` | [`Transitions`] |
/// | the client says it leaves (`pagehide`, logout) | [`leave`](Self::leave)`(session, connection)` | [`Transitions`] |
/// | at [`next_deadline`](Self::next_deadline), or at a fixed interval | [`tick`](Self::tick) | [`Transitions`] |
/// | to answer "who is here" | [`user`](Self::user), [`user_sessions`](Self::user_sessions), [`session`](Self::session), [`online`](Self::online), [`census`](Self::census) | views |
/// | at shutdown | [`snapshot`](Self::snapshot), *before* closing the sockets | [`Snapshot`](crate::Snapshot) |
///
/// Every signal and `tick` return the [`Transitions`] they published: broadcast them (most
/// servers send [`Transitions::users`]); each is reported exactly once. An `Err` means nothing
/// changed.
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
pub struct PresenceTracker<U, S, C = SystemClock> {
    pub(crate) policy: Policy,
    pub(crate) clock: C,
    /// The latest `now` seen: a clock that goes backwards is treated as standing still.
    pub(crate) high_water: AtomicU64,
    pub(crate) shard_hasher: Hasher,
    pub(crate) sessions: Box<[SessionSlot<U, S>]>,
    pub(crate) users: Box<[Padded<UserSlot<U, S>>]>,
    pub(crate) session_total: AtomicUsize,
    /// Per user shard.
    pub(crate) counters: Box<[Counters]>,
}

/// The locked user shards of a connect: the user's, and the expired session's owner's if
/// another.
enum UserGuards<'a, U, S> {
    One(MutexGuard<'a, UserShard<U, S>>),
    Two(
        MutexGuard<'a, UserShard<U, S>>,
        MutexGuard<'a, UserShard<U, S>>,
    ),
}

impl<U, S> UserGuards<'_, U, S> {
    fn split(&mut self) -> (&mut UserShard<U, S>, Option<&mut UserShard<U, S>>) {
        match self {
            UserGuards::One(mine) => (&mut *mine, None),
            UserGuards::Two(mine, other) => (&mut *mine, Some(&mut *other)),
        }
    }
}

/// How a connect under its locks ended: done, or it needs the shard of the expired session's
/// owner locked too (then it starts again with both locks).
enum Connected<U, S> {
    Done(Result<Events<U, S>, Error>),
    LockOwner(usize),
}

/// What a connect attaches: the connection, and the activity if the client reported one.
#[derive(Clone, Copy, Debug)]
struct Attach {
    connection: ConnectionId,
    activity: Option<Activity>,
}

/// What one signal call works on: the events it makes, under the owner's shard lock.
type Events<U, S> = Vec<Event<U, S>>;

/// # Building
impl<U: Id, S: Id> PresenceTracker<U, S, SystemClock> {
    /// A tracker on the [`SystemClock`].
    pub fn new(policy: Policy) -> Self {
        Self::with_clock(policy, SystemClock::new())
    }
}

impl<U: Id, S: Id> Default for PresenceTracker<U, S, SystemClock> {
    fn default() -> Self {
        Self::new(Policy::default())
    }
}

/// # Building
impl<U: Id, S: Id, C: Clock> PresenceTracker<U, S, C> {
    /// A tracker on the given clock, for example a [`ManualClock`](crate::ManualClock).
    pub fn with_clock(policy: Policy, clock: C) -> Self {
        let hasher = Hasher::default();
        let start = clock.now().min(Timestamp::MAX).as_millis();
        PresenceTracker {
            policy,
            clock,
            high_water: AtomicU64::new(start),
            shard_hasher: Hasher::default(),
            sessions: (0..SESSION_SHARDS)
                .map(|_| Padded(RwLock::new(SessionTable::new())))
                .collect(),
            users: (0..USER_SHARDS)
                .map(|i| {
                    Padded(UserSlot {
                        earliest: AtomicU64::new(NO_DEADLINE),
                        shard: Mutex::new(UserShard::new(&hasher, i)),
                    })
                })
                .collect(),
            session_total: AtomicUsize::new(0),
            counters: (0..USER_SHARDS).map(|_| Counters::default()).collect(),
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

    pub(crate) fn user_slot<Q: Hash + ?Sized>(&self, user: &Q) -> &UserSlot<U, S> {
        &self.users[self.user_index(user)].0
    }

    fn user_index<Q: Hash + ?Sized>(&self, user: &Q) -> usize {
        let h = self.shard_hasher.hash_one(user);
        (h >> 40) as usize & (USER_SHARDS - 1)
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

/// # Recording signals
///
/// Each returns the [`Transitions`] it published (often none) and takes the time from the
/// clock. An `Err` means nothing changed.
impl<U: Id, S: Id, C: Clock> PresenceTracker<U, S, C> {
    /// A connection attached to a session: a new session for `user`, or a re-attach (after a
    /// reconnect, with a new connection id) of one it already has.
    ///
    /// `activity` is what the client reports as it connects: a background tab or a phone
    /// resuming in the background connects as [`Activity::Background`] and never shows `active`
    /// for an instant. A re-attached session takes the new activity, clears its disconnect or
    /// leave, and counts as seen now. The connection becomes the session's current one: a later
    /// disconnect or leave naming an earlier connection is ignored.
    ///
    /// # Errors
    ///
    /// [`Error::SessionOwnedByOtherUser`] if the session id is another user's;
    /// [`Error::EmptyId`] / [`Error::IdTooLong`] for a bad string id;
    /// [`Error::TooManySessionsForUser`] / [`Error::TooManySessions`] past the policy's limits;
    /// [`Error::TimeOutOfRange`] past [`Timestamp::MAX`].
    pub fn connect(
        &self,
        user: U,
        session: S,
        connection: impl Into<ConnectionId>,
        activity: Activity,
    ) -> Result<Transitions<U, S>, Error> {
        self.attach(
            user,
            session,
            connection.into(),
            Some(activity),
            self.clock.now(),
        )
        .map(Transitions::from_vec)
    }

    fn attach(
        &self,
        user: U,
        session: S,
        connection: ConnectionId,
        activity: Option<Activity>,
        now: Timestamp,
    ) -> Result<Events<U, S>, Error> {
        self.check_id(&user)?;
        self.check_id(&session)?;
        let now = self.signal_time(now)?;
        let attach = Attach {
            connection,
            activity,
        };
        let (slot, hash) = self.locate(&session);
        let user_index = self.user_index(&user);
        // An expired session (derived offline, not yet freed by a tick) is gone: a connect makes
        // it anew, and publishes its end for its owner, whose shard it locks too. A hint only:
        // the owner is checked again under the locks.
        let mut owner_index = self
            .expired_owner(slot, hash, &session, &user, now)
            .map(|owner| self.user_index(&owner));
        loop {
            let mut guards = self.lock_users(user_index, owner_index);
            let now = self.ordered(now);
            let (user_shard, owner_shard) = guards.split();
            let outcome = self.connect_locked(
                &user,
                &session,
                (slot, hash),
                attach,
                now,
                user_shard,
                owner_shard,
            );
            let (user_shard, owner_shard) = guards.split();
            self.users[user_index]
                .0
                .earliest
                .store(user_shard.earliest(), Ordering::Release);
            if let Some(shard) = owner_shard {
                self.users[shard.index]
                    .0
                    .earliest
                    .store(shard.earliest(), Ordering::Release);
            }
            match outcome {
                Connected::Done(result) => return result,
                // The session expired under another owner than the hint said: lock that one.
                Connected::LockOwner(index) => owner_index = Some(index),
            }
        }
    }

    /// A connect under the user's shard lock (and the expired session's owner's, if another):
    /// the session's owner is checked and changed in one critical section of the session
    /// shard's write lock, so two connects of one id, or a connect and the owner's leave,
    /// cannot both act on what they saw.
    #[allow(clippy::too_many_arguments)]
    fn connect_locked(
        &self,
        user: &U,
        session: &S,
        (slot, hash): (&RwLock<SessionTable<U, S>>, u64),
        Attach {
            connection,
            activity,
        }: Attach,
        now: u64,
        shard: &mut UserShard<U, S>,
        owner_shard: Option<&mut UserShard<U, S>>,
    ) -> Connected<U, S> {
        // Counted before the write lock (no session shard's lock is taken while another is
        // held); the user's lock keeps its list as it is.
        let live = shard
            .live
            .get(user)
            .map_or(0, |u| self.live_sessions(&u.sessions, now));
        let mut events = Vec::new();
        let (taken, now) = {
            let mut map = slot.write();
            // Read again under the session's lock: not before the time of whatever last changed
            // it (a tick or a leave that freed it, under its owner's lock only), so a session's
            // events never go back in time, even across owners.
            let now = self.ordered(now);
            let found = map.get_mut(hash, session);
            if let Some(entry) = found.as_deref() {
                if !entry.expired(now, self.policy.ttl_ms) && entry.user != *user {
                    return Connected::Done(Err(Error::SessionOwnedByOtherUser));
                }
            }
            match found {
                Some(entry) if !entry.expired(now, self.policy.ttl_ms) => {
                    // A re-attach. No heartbeat stores under the write lock.
                    let (last_seen, last) = unpack(entry.hot.load(Ordering::Relaxed));
                    entry.connection = connection;
                    entry.set_grace(NO_DEADLINE);
                    entry.hot.store(
                        pack(now.max(last_seen), activity.unwrap_or(last)),
                        Ordering::Relaxed,
                    );
                    drop(map);
                    self.settle(
                        shard,
                        user,
                        now,
                        Some((session, Cause::Connect)),
                        &mut events,
                    );
                    return Connected::Done(Ok(events));
                }
                found => {
                    if live >= self.policy.max_sessions_per_user {
                        return Connected::Done(Err(Error::TooManySessionsForUser {
                            max: self.policy.max_sessions_per_user,
                        }));
                    }
                    let fresh = SessionEntry::new(
                        session.clone(),
                        user.clone(),
                        pack(now, activity.unwrap_or(Activity::Active)),
                        Presence::Offline,
                        connection,
                        NO_DEADLINE,
                    );
                    match found {
                        Some(expired) => {
                            let owner_index = if expired.user == *user {
                                shard.index
                            } else {
                                self.user_index(&expired.user)
                            };
                            let locked = owner_index == shard.index
                                || owner_shard.as_ref().is_some_and(|o| o.index == owner_index);
                            if !locked {
                                return Connected::LockOwner(owner_index);
                            }
                            // Replaced in place: the session total stays.
                            let old = std::mem::replace(expired, fresh);
                            let taken =
                                (owner_index, old.user.clone(), old.published(), old.record());
                            (Some(taken), now)
                        }
                        None => {
                            let max = self.policy.max_sessions;
                            if self
                                .session_total
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                                    (n < max).then_some(n + 1)
                                })
                                .is_err()
                            {
                                return Connected::Done(Err(Error::TooManySessions { max }));
                            }
                            map.insert(&self.shard_hasher, hash, fresh);
                            (None, now)
                        }
                    }
                }
            }
        };
        Counters::add(&self.counters[shard.index].sessions, Presence::Offline);
        if let Some((owner_index, owner, from, record)) = taken {
            // Its end, for its owner (who may be this user).
            let owner_shard = match owner_shard {
                Some(other) if other.index == owner_index => other,
                _ => &mut *shard,
            };
            self.settle_taken(
                owner_shard,
                &owner,
                now,
                (session, from, record),
                &mut events,
            );
        }
        self.user_entry(shard, user).sessions.push(session.clone());
        self.settle(
            shard,
            user,
            now,
            Some((session, Cause::Connect)),
            &mut events,
        );
        Connected::Done(Ok(events))
    }

    /// The owner of `session` if it is another user's and expired (derived offline at `now`)
    /// but not yet freed.
    fn expired_owner(
        &self,
        slot: &RwLock<SessionTable<U, S>>,
        hash: u64,
        session: &S,
        user: &U,
        now: u64,
    ) -> Option<U> {
        let map = slot.read();
        map.get(hash, session)
            .filter(|e| e.user != *user && e.expired(now, self.policy.ttl_ms))
            .map(|e| e.user.clone())
    }

    /// How many of `sessions` are not expired at `now`.
    fn live_sessions(&self, sessions: &[S], now: u64) -> usize {
        sessions
            .iter()
            .filter(|s| {
                let (slot, hash) = self.locate(s);
                let map = slot.read();
                self.live_entry(&map, hash, s, now).is_ok()
            })
            .count()
    }

    /// Locks the shard at `first` and, if another, the one at `second`, in index order.
    fn lock_users(&self, first: usize, second: Option<usize>) -> UserGuards<'_, U, S> {
        let lock = |i: usize| self.users[i].0.shard.lock();
        match second.filter(|&j| j != first) {
            None => UserGuards::One(lock(first)),
            Some(j) if j < first => {
                let other = lock(j);
                UserGuards::Two(lock(first), other)
            }
            Some(j) => {
                let mine = lock(first);
                UserGuards::Two(mine, lock(j))
            }
        }
    }

    /// The live entry of `user`, made (or revived from the retained ones) if needed.
    fn user_entry<'a>(&self, shard: &'a mut UserShard<U, S>, user: &U) -> &'a mut UserEntry<S> {
        if !shard.live.contains_key(user) {
            // A retained user's retention entry stays queued: it is reused if the user goes
            // offline again, and dropped when it comes up while the user is live.
            let (seq, gone_last_seen, queued) = match shard.retained.remove(user) {
                Some(Retained { seq, last_seen, .. }) => (seq, last_seen, true),
                None => {
                    Counters::add(&self.counters[shard.index].users, Presence::Offline);
                    (0, 0, false)
                }
            };
            let mut entry = UserEntry::new(Presence::Offline, seq, NO_DEADLINE, gone_last_seen);
            entry.set_retention_queued(queued);
            shard.live.insert(user.clone(), entry);
        }
        match shard.live.get_mut(user) {
            Some(entry) => entry,
            None => unreachable!("inserted above"),
        }
    }

    /// The client behind a session is there, doing `activity`.
    ///
    /// The common heartbeat, one that changes no presence, updates one atomic word under a
    /// shard's read lock and allocates nothing. The session is looked up by any borrowed form
    /// of its id (`"tab-1"` for a `String` id).
    ///
    /// A heartbeat names no connection: it only proves the session's client was there, which a
    /// heartbeat sent on a connection that has since been replaced still does; it never ends a
    /// session nor clears a disconnect (only [`connect`](Self::connect) re-attaches).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSession`] if the session never connected or has expired (the client
    /// should connect again); [`Error::TimeOutOfRange`] past [`Timestamp::MAX`].
    pub fn heartbeat<Q>(&self, session: &Q, activity: Activity) -> Result<Transitions<U, S>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.heartbeat_at(session, activity, self.clock.now())
            .map(Transitions::from_vec)
    }

    /// [`heartbeat`](Self::heartbeat) at `now` (from the clock).
    fn heartbeat_at<Q>(
        &self,
        session: &Q,
        activity: Activity,
        now: Timestamp,
    ) -> Result<Events<U, S>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.signal_time(now)?;
        let (slot, hash) = self.locate(session);
        let user = {
            let map = slot.read();
            let entry = self.live_entry(&map, hash, session, now)?;
            if let Some(no_change) = self.record_heartbeat(entry, activity, now) {
                return Ok(no_change);
            }
            entry.user.clone()
        };
        self.heartbeat_slow(user, session, activity, now)
    }

    /// The fast path of a heartbeat on a live session, under its shard's read lock: if the
    /// session's presence stays what was published, records `last_seen` and the activity (one
    /// compare-and-swap loop that never moves `last_seen` back: a heartbeat preempted between
    /// reading the time and this store loses to a later one; a publication takes the write
    /// lock, so it cannot fall between this comparison and this store) and returns no events;
    /// otherwise `None`, and the caller takes the slow path.
    #[inline]
    fn record_heartbeat(
        &self,
        entry: &SessionEntry<U, S>,
        activity: Activity,
        now: u64,
    ) -> Option<Events<U, S>> {
        // Seen now and live (not expired): age 0, so the presence is the activity's cap.
        let fresh = activity.cap();
        debug_assert_eq!(
            fresh,
            derive(
                &record_of(pack(now, activity), entry.grace()),
                Timestamp::from_millis(now),
                &self.policy
            )
        );
        if fresh != entry.published() {
            return None;
        }
        // Not stored if a later heartbeat was: this one came first.
        entry.touch(now, activity);
        Some(Vec::new())
    }

    /// A heartbeat that changes a presence: under the owner's lock.
    fn heartbeat_slow<Q>(
        &self,
        user: U,
        session: &Q,
        activity: Activity,
        now: u64,
    ) -> Result<Events<U, S>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.on_owner(user, session, now, Cause::Heartbeat, |entry, now| {
            entry.touch(now, activity);
        })
    }

    /// A connection of a session closed. Ignored (`Ok` with no events) unless `connection` is
    /// the session's current one: the new socket's connect often arrives before the old one's
    /// disconnect.
    ///
    /// The session lives on, decaying by age, and expires after the grace for `kind` unless a
    /// connection re-attaches. A disconnect never refreshes `last_seen`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSession`] if the session never connected or has expired;
    /// [`Error::TimeOutOfRange`] past [`Timestamp::MAX`].
    pub fn disconnect<Q>(
        &self,
        session: &Q,
        connection: impl Into<ConnectionId>,
        kind: DisconnectKind,
    ) -> Result<Transitions<U, S>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.signal_time(self.clock.now())?;
        let grace = self.policy.grace_ms(kind);
        self.close(session, now, connection.into(), grace, Cause::Disconnect)
            .map(Transitions::from_vec)
    }

    /// The client on `connection` says it is leaving (logout, `pagehide`). The session expires
    /// after the policy's `leave_grace` unless a connection re-attaches (a reload does).
    ///
    /// Fenced like [`disconnect`](Self::disconnect): ignored (`Ok` with no events) unless
    /// `connection` is the session's current one. A reload whose new connection attached before
    /// the old page's `pagehide` leave arrived keeps the session.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSession`] if the session never connected or has expired;
    /// [`Error::TimeOutOfRange`] past [`Timestamp::MAX`].
    pub fn leave<Q>(
        &self,
        session: &Q,
        connection: impl Into<ConnectionId>,
    ) -> Result<Transitions<U, S>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.signal_time(self.clock.now())?;
        let grace = self.policy.leave_grace_ms;
        self.close(session, now, connection.into(), grace, Cause::Leave)
            .map(Transitions::from_vec)
    }

    fn close<Q>(
        &self,
        session: &Q,
        now: u64,
        connection: ConnectionId,
        grace: u64,
        cause: Cause,
    ) -> Result<Events<U, S>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (session_slot, hash) = self.locate(session);
        let user = {
            let map = session_slot.read();
            let entry = self.live_entry(&map, hash, session, now)?;
            if connection != entry.connection {
                return Ok(Vec::new());
            }
            entry.user.clone()
        };
        let slot = self.user_slot(&user);
        let mut shard = slot.shard.lock();
        let now = self.ordered(now);
        {
            let mut map = session_slot.write();
            match self.live_entry(&map, hash, session, now) {
                Ok(entry) if entry.user == user => {}
                // Expired, or expired and taken by another user, while we waited for the lock.
                _ => return Err(Error::UnknownSession),
            }
            let Some(entry) = map.get_mut(hash, session) else {
                return Err(Error::UnknownSession);
            };
            if connection != entry.connection {
                return Ok(Vec::new());
            }
            entry.set_grace(entry.grace().min(now.saturating_add(grace)));
        }
        let mut events = Vec::new();
        self.settle(&mut shard, &user, now, Some((session, cause)), &mut events);
        slot.earliest.store(shard.earliest(), Ordering::Release);
        Ok(events)
    }

    /// Under the owner's lock, applies `update` to the session (if it still belongs to `user`)
    /// and settles the user.
    fn on_owner<Q>(
        &self,
        user: U,
        session: &Q,
        now: u64,
        cause: Cause,
        update: impl FnOnce(&SessionEntry<U, S>, u64),
    ) -> Result<Events<U, S>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.user_slot(&user);
        let mut shard = slot.shard.lock();
        let now = self.ordered(now);
        {
            let (session_slot, hash) = self.locate(session);
            let map = session_slot.read();
            match self.live_entry(&map, hash, session, now) {
                Ok(entry) if entry.user == user => {
                    update(entry, now);
                }
                _ => return Err(Error::UnknownSession),
            }
        }
        let mut events = Vec::new();
        self.settle(&mut shard, &user, now, Some((session, cause)), &mut events);
        slot.earliest.store(shard.earliest(), Ordering::Release);
        Ok(events)
    }
}

/// # Driving time
impl<U: Id, S: Id, C: Clock> PresenceTracker<U, S, C> {
    /// Publishes what time changed since the last call: downgrades of sessions and users whose
    /// signals got old, and expiries. Call it at [`next_deadline`](Self::next_deadline) (or at
    /// any interval you like: a late tick emits one event from the published presence to the
    /// current one, however many thresholds it crossed).
    ///
    /// Never scans: it takes only the deadlines that came due, the transitions plus one early
    /// re-check per active window for a user that kept heartbeating (deadlines are armed lazily,
    /// so a heartbeat never touches them; a re-check that finds nothing to publish costs about a
    /// user-table and a session-table lookup). Shards with nothing due are skipped without
    /// taking their lock.
    pub fn tick(&self) -> Transitions<U, S> {
        let now = self.effective_now(self.clock.now());
        let mut events = Vec::new();
        for slot in self.users.iter() {
            let slot = &slot.0;
            if slot.earliest.load(Ordering::Acquire) > now {
                continue;
            }
            let mut shard = slot.shard.lock();
            let now = self.ordered(now);
            self.run_due(&mut shard, now, &mut events);
            slot.earliest.store(shard.earliest(), Ordering::Release);
        }
        Transitions::from_vec(events)
    }

    /// When the next downgrade or expiry may be due: sleep until then and [`tick`](Self::tick).
    /// `None` when nothing is tracked. May be early (the session was heard from since), never
    /// late.
    ///
    /// The wake rule: a signal can move the deadline *earlier* (a connect, a disconnect with a
    /// short grace, a leave), so a driver that sleeps until the deadline must also wake when a
    /// signal returns, and read it again. A driver that ticks at a fixed interval needs no
    /// rule: a late tick publishes one event from the published presence to the current one.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.users
            .iter()
            .map(|slot| slot.0.earliest.load(Ordering::Acquire))
            .min()
            .filter(|&t| t != NO_DEADLINE)
            .map(Timestamp::from_millis)
    }
}
