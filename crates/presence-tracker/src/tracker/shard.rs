//! The tracker's internals: sharded session and user tables, and the deadline queue.

use std::borrow::Borrow;
use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};

use super::wheel::DueQueue;
use crate::{Activity, ConnectionId, Presence, SessionRecord, Timestamp};

pub(crate) type Hasher = foldhash::fast::RandomState;

/// Grace deadline meaning "connected": no deadline.
pub(crate) const NO_DEADLINE: u64 = u64::MAX;

/// Keeps each lock on its own cache lines, so two cores working on neighbouring shards do not
/// fight over one line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// `last_seen` in milliseconds and the activity, in one word, so a heartbeat updates both with
/// one store and a reader never sees half of it.
pub(crate) fn pack(last_seen: u64, activity: Activity) -> u64 {
    (last_seen.min(u64::MAX >> 2) << 2) | activity.to_bits()
}

pub(crate) fn unpack(hot: u64) -> (u64, Activity) {
    (hot >> 2, Activity::from_bits(hot))
}

/// One session, in the session table (sharded by session id).
///
/// `hot` is atomic because the heartbeat fast path stores it under the shard's *read* lock.
/// Everything else changes only under the write lock, taken by code that holds the owner's
/// user-shard lock; so does the published presence, which is why a heartbeat, which compares
/// its presence with the published one and stores `hot` under the read lock, never interleaves
/// with a publication (the lock orders them; `hot` can be relaxed).
#[derive(Debug)]
pub(crate) struct SessionEntry<U, S> {
    pub(crate) session: S,
    pub(crate) user: U,
    pub(crate) hot: AtomicU64,
    pub(crate) connection: ConnectionId,
    /// The grace deadline and the published presence, in one word (40 bytes an entry with u64
    /// ids, not 48).
    grace_published: u64,
}

/// The largest grace deadline stored; [`NO_DEADLINE`] is stored as the next value. A deadline
/// beyond it (some 73 million years after 1970) saturates to it.
const MAX_GRACE: u64 = (1 << 61) - 2;

impl<U, S> SessionEntry<U, S> {
    pub(crate) fn new(
        session: S,
        user: U,
        hot: u64,
        published: Presence,
        connection: ConnectionId,
        grace: u64,
    ) -> Self {
        let mut entry = SessionEntry {
            session,
            user,
            hot: AtomicU64::new(hot),
            connection,
            grace_published: published as u64,
        };
        entry.set_grace(grace);
        entry
    }

    /// Records a signal seen at `now` doing `activity`, unless one seen later is already
    /// recorded: `last_seen` never goes back, whatever order threads that read the time store
    /// in (a thread can be preempted between reading the time and storing it). Of two signals of
    /// one millisecond, the later store's activity wins. `true` if stored (or already there).
    ///
    /// Under the shard's read lock (or the write lock): one compare-and-swap loop on `hot`,
    /// which fails only when another heartbeat of this session stored in between.
    pub(crate) fn touch(&self, now: u64, activity: Activity) -> bool {
        let new = pack(now, activity);
        let mut old = self.hot.load(Ordering::Relaxed);
        loop {
            if old == new {
                return true;
            }
            if unpack(old).0 > unpack(new).0 {
                return false;
            }
            match self
                .hot
                .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => old = current,
            }
        }
    }

    pub(crate) fn record(&self) -> SessionRecord {
        record_of(self.hot.load(Ordering::Relaxed), self.grace())
    }

    pub(crate) fn published(&self) -> Presence {
        Presence::from_index((self.grace_published & 7) as u8)
    }

    pub(crate) fn set_published(&mut self, p: Presence) {
        self.grace_published = (self.grace_published & !7) | p as u64;
    }

    /// Grace deadline in ms, [`NO_DEADLINE`] while connected.
    pub(crate) fn grace(&self) -> u64 {
        match self.grace_published >> 3 {
            g if g > MAX_GRACE => NO_DEADLINE,
            g => g,
        }
    }

    pub(crate) fn set_grace(&mut self, grace: u64) {
        let stored = if grace == NO_DEADLINE {
            MAX_GRACE + 1
        } else {
            grace.min(MAX_GRACE)
        };
        self.grace_published = (stored << 3) | (self.grace_published & 7);
    }

    /// Derived offline at `now`: [`derive`](crate::derive) gives `Offline` exactly when the
    /// grace deadline has come or the age reached the TTL (an activity caps at `away` at most).
    pub(crate) fn expired(&self, now: u64, ttl_ms: u64) -> bool {
        let (last_seen, _) = unpack(self.hot.load(Ordering::Relaxed));
        self.grace() <= now || now.saturating_sub(last_seen) >= ttl_ms
    }
}

/// One shard of the session table: the entries, found by the hash the tracker computed once
/// (whose middle bits also picked the shard).
#[derive(Debug)]
pub(crate) struct SessionTable<U, S> {
    table: HashTable<SessionEntry<U, S>>,
}

impl<U, S: Eq + Hash> SessionTable<U, S> {
    pub(crate) fn new() -> Self {
        SessionTable {
            table: HashTable::new(),
        }
    }

    pub(crate) fn get<Q>(&self, hash: u64, session: &Q) -> Option<&SessionEntry<U, S>>
    where
        S: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.table.find(hash, |e| e.session.borrow() == session)
    }

    pub(crate) fn get_mut<Q>(&mut self, hash: u64, session: &Q) -> Option<&mut SessionEntry<U, S>>
    where
        S: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.table.find_mut(hash, |e| e.session.borrow() == session)
    }

    /// Inserts or replaces the entry of `entry.session`, whose hash is `hash`.
    pub(crate) fn insert(&mut self, hasher: &Hasher, hash: u64, entry: SessionEntry<U, S>) {
        match self.table.entry(
            hash,
            |e| e.session == entry.session,
            |e| hasher.hash_one(&e.session),
        ) {
            Entry::Occupied(mut o) => *o.get_mut() = entry,
            Entry::Vacant(v) => {
                v.insert(entry);
            }
        }
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &SessionEntry<U, S>> {
        self.table.iter()
    }

    pub(crate) fn remove<Q>(&mut self, hash: u64, session: &Q) -> Option<SessionEntry<U, S>>
    where
        S: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.table
            .find_entry(hash, |e| e.session.borrow() == session)
            .ok()
            .map(|o| o.remove().0)
    }

    /// Gives memory back once the table is under a quarter full: shrinks it to twice its
    /// length. Amortised O(1) per removal (the rehash costs what the removals since the table
    /// was last this size did), and a table that grows back pays at most one regrowth.
    pub(crate) fn shrink(&mut self, hasher: &Hasher) {
        if wants_shrink(self.table.len(), self.table.capacity()) {
            self.table
                .shrink_to(self.table.len() * 2, |e| hasher.hash_one(&e.session));
        }
    }
}

/// Capacity below which tables are left alone: what they cost is noise.
const SHRINK_FLOOR: usize = 64;

/// Whether a table of `len` entries and `capacity` should shrink.
pub(crate) fn wants_shrink(len: usize, capacity: usize) -> bool {
    capacity > SHRINK_FLOOR && len * 4 < capacity
}

pub(crate) fn record_of(hot: u64, grace: u64) -> SessionRecord {
    let (last_seen, activity) = unpack(hot);
    SessionRecord {
        last_seen: Timestamp::from_millis(last_seen),
        activity,
        grace_deadline: (grace != NO_DEADLINE).then_some(Timestamp::from_millis(grace)),
    }
}

/// A user with at least one live session.
#[derive(Debug)]
pub(crate) struct UserEntry<S> {
    pub(crate) sessions: Sessions<S>,
    pub(crate) state: SeqPublished,
    /// The deadline of this user's valid queue entry, [`NO_DEADLINE`] if none.
    pub(crate) armed: u64,
    /// The latest `last_seen` of its sessions that expired (0 if none) in the low 63 bits; the
    /// top bit says that a retention entry of an earlier offline spell is still queued for the
    /// user (see [`UserShard::retention`]).
    gone: u64,
}

impl<S> UserEntry<S> {
    pub(crate) fn new(published: Presence, seq: u64, armed: u64, gone_last_seen: u64) -> Self {
        UserEntry {
            sessions: Sessions::Empty,
            state: SeqPublished((seq << 3) | published as u64),
            armed,
            gone: gone_last_seen & !RETENTION_QUEUED,
        }
    }

    /// The latest `last_seen` of its sessions that expired, 0 if none.
    pub(crate) fn gone_last_seen(&self) -> u64 {
        self.gone & !RETENTION_QUEUED
    }

    /// Raises the latest `last_seen` of its expired sessions to `t` (times stay below 2^62).
    pub(crate) fn saw_gone(&mut self, t: u64) {
        let t = t.min(!RETENTION_QUEUED);
        self.gone = (self.gone & RETENTION_QUEUED) | self.gone_last_seen().max(t);
    }

    /// Whether a retention entry of an earlier offline spell is still queued for this user.
    pub(crate) fn retention_queued(&self) -> bool {
        self.gone & RETENTION_QUEUED != 0
    }

    pub(crate) fn set_retention_queued(&mut self, queued: bool) {
        self.gone = (self.gone & !RETENTION_QUEUED) | if queued { RETENTION_QUEUED } else { 0 };
    }

    pub(crate) fn published(&self) -> Presence {
        self.state.published()
    }

    pub(crate) fn seq(&self) -> u64 {
        self.state.seq()
    }
}

/// A user's last event's seq, shifted left by 3, and its published presence in the low 3 bits:
/// one word instead of two (the user entry is a large part of the memory per session).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeqPublished(u64);

impl SeqPublished {
    pub(crate) fn published(self) -> Presence {
        Presence::from_index((self.0 & 7) as u8)
    }

    pub(crate) fn set_published(&mut self, p: Presence) {
        self.0 = (self.0 & !7) | p as u64;
    }

    pub(crate) fn seq(self) -> u64 {
        self.0 >> 3
    }

    /// The seq for the user's next event. Wraps after 2^61 events, which no user will reach.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(8);
        self.seq()
    }
}

/// A user's live sessions: most users have one, kept inline; more go to the heap. 16 bytes with
/// u64 ids (a `SmallVec` is 24).
#[derive(Debug)]
pub(crate) enum Sessions<S> {
    Empty,
    One(S),
    /// Boxed on purpose: a thin pointer keeps the enum at 16 bytes (a `Vec` would make it 32).
    #[allow(clippy::box_collection)]
    Many(Box<Vec<S>>),
}

impl<S> Sessions<S> {
    pub(crate) fn push(&mut self, session: S) {
        *self = match std::mem::replace(self, Sessions::Empty) {
            Sessions::Empty => Sessions::One(session),
            Sessions::One(first) => Sessions::Many(Box::new(vec![first, session])),
            Sessions::Many(mut all) => {
                all.push(session);
                Sessions::Many(all)
            }
        };
    }

    /// Removes the `i`-th session, the last one taking its place. Out of range: nothing.
    pub(crate) fn swap_remove(&mut self, i: usize) {
        *self = match std::mem::replace(self, Sessions::Empty) {
            Sessions::One(_) if i == 0 => Sessions::Empty,
            Sessions::Many(mut all) if i < all.len() => {
                all.swap_remove(i);
                match all.len() {
                    0 => Sessions::Empty,
                    1 => all.pop().map_or(Sessions::Empty, Sessions::One),
                    _ => Sessions::Many(all),
                }
            }
            other => other,
        };
    }
}

impl<S> std::ops::Deref for Sessions<S> {
    type Target = [S];

    fn deref(&self) -> &[S] {
        match self {
            Sessions::Empty => &[],
            Sessions::One(s) => std::slice::from_ref(s),
            Sessions::Many(all) => all,
        }
    }
}

impl<'a, S> IntoIterator for &'a Sessions<S> {
    type Item = &'a S;
    type IntoIter = std::slice::Iter<'a, S>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// An offline user whose last-seen time is still kept.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retained {
    pub(crate) last_seen: u64,
    pub(crate) seq: u64,
    pub(crate) until: u64,
}

/// A queue entry: re-check `user` at `at`. Ordered by time only.
#[derive(Debug)]
pub(crate) struct Due<U> {
    pub(crate) at: u64,
    pub(crate) user: U,
}

impl<U> PartialEq for Due<U> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl<U> Eq for Due<U> {}
impl<U> PartialOrd for Due<U> {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl<U> Ord for Due<U> {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.at.cmp(&other.at)
    }
}

/// The top bit of [`UserEntry::gone`]: a retention entry is queued for the user.
const RETENTION_QUEUED: u64 = 1 << 63;

/// The users of one shard (by user id) and when each must be looked at again.
#[derive(Debug)]
pub(crate) struct UserShard<U, S> {
    pub(crate) live: HashMap<U, UserEntry<S>, Hasher>,
    pub(crate) retained: HashMap<U, Retained, Hasher>,
    /// Lazily re-armed deadlines: an entry may be early (the session was heard from since) or
    /// stale (superseded), never late. Taking one re-derives and re-arms.
    pub(crate) queue: DueQueue<U>,
    /// When retained (offline) users are to be forgotten: at most one entry per user, re-armed
    /// lazily. A retained user has exactly one; a user who came back may still have the one of
    /// its offline spell ([`UserEntry::retention_queued`]), which is then reused when it goes
    /// offline again (its retention ends later, so the entry is early, never late). So a user
    /// going offline and back a hundred times within the retention holds one entry, not a
    /// hundred.
    pub(crate) retention: DueQueue<U>,
    /// This shard's place in the tracker's tables (its [`Counters`]).
    pub(crate) index: usize,
}

impl<U, S> UserShard<U, S> {
    pub(crate) fn new(hasher: &Hasher, index: usize) -> Self {
        UserShard {
            live: HashMap::with_hasher(hasher.clone()),
            retained: HashMap::with_hasher(hasher.clone()),
            queue: DueQueue::new(),
            retention: DueQueue::new(),
            index,
        }
    }

    pub(crate) fn earliest(&self) -> u64 {
        self.queue.earliest().min(self.retention.earliest())
    }

    /// Gives memory back once a user table is under a quarter full (see
    /// [`SessionTable::shrink`]).
    pub(crate) fn shrink(&mut self)
    where
        U: Eq + Hash,
    {
        if wants_shrink(self.live.len(), self.live.capacity()) {
            self.live.shrink_to(self.live.len() * 2);
        }
        if wants_shrink(self.retained.len(), self.retained.capacity()) {
            self.retained.shrink_to(self.retained.len() * 2);
        }
    }
}

/// A user shard and, readable without its lock, its earliest deadline, so a tick with nothing
/// due touches no lock.
#[derive(Debug)]
pub(crate) struct UserSlot<U, S> {
    pub(crate) earliest: AtomicU64,
    pub(crate) shard: Mutex<UserShard<U, S>>,
}

pub(crate) type SessionSlot<U, S> = Padded<RwLock<SessionTable<U, S>>>;

/// Counts of published presences of one user shard's users and their sessions. Signed: a move
/// is a decrement and an increment, and a reader between them on another core may see one
/// without the other.
///
/// Written only under the shard's lock, so an update is a load and a store, not a locked
/// read-modify-write; readers ([`census`](crate::PresenceTracker::census)) sum the shards
/// without taking any lock.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Counters {
    pub(crate) users: [AtomicI64; 5],
    pub(crate) sessions: [AtomicI64; 5],
}

impl Counters {
    fn bump(cell: &AtomicI64, by: i64) {
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn add(which: &[AtomicI64; 5], p: Presence) {
        Self::bump(&which[p.index()], 1);
    }

    pub(crate) fn sub(which: &[AtomicI64; 5], p: Presence) {
        Self::bump(&which[p.index()], -1);
    }

    pub(crate) fn moved(which: &[AtomicI64; 5], from: Presence, to: Presence) {
        Self::sub(which, from);
        Self::add(which, to);
    }

    /// The totals over all shards of the counts `pick` chooses.
    pub(crate) fn read(all: &[Counters], pick: fn(&Counters) -> &[AtomicI64; 5]) -> [usize; 5] {
        std::array::from_fn(|i| {
            let sum: i64 = all.iter().map(|c| pick(c)[i].load(Ordering::Relaxed)).sum();
            usize::try_from(sum).unwrap_or(0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_go_from_none_to_one_to_many_and_back() {
        let mut s: Sessions<u64> = Sessions::Empty;
        assert!(s.is_empty());
        s.push(1);
        assert!(matches!(s, Sessions::One(1)));
        s.push(2);
        s.push(3);
        assert_eq!(&*s, &[1, 2, 3]);
        s.swap_remove(0);
        assert_eq!(&*s, &[3, 2]);
        s.swap_remove(7); // out of range: nothing
        assert_eq!(&*s, &[3, 2]);
        s.swap_remove(1);
        assert!(matches!(s, Sessions::One(3)));
        s.swap_remove(1);
        assert!(matches!(s, Sessions::One(3)));
        s.swap_remove(0);
        assert!(matches!(s, Sessions::Empty));
        s.swap_remove(0);
        assert!(s.is_empty());
    }

    #[test]
    fn seq_and_published_share_a_word_without_mixing() {
        let mut e: UserEntry<u64> = UserEntry::new(Presence::Away, 41, NO_DEADLINE, 0);
        assert_eq!((e.published(), e.seq()), (Presence::Away, 41));
        assert_eq!(e.state.next_seq(), 42);
        e.state.set_published(Presence::Active);
        assert_eq!((e.published(), e.seq()), (Presence::Active, 42));
        e.state.set_published(Presence::Offline);
        assert_eq!((e.published(), e.seq()), (Presence::Offline, 42));
    }

    #[test]
    fn grace_and_published_share_a_word_without_mixing() {
        let c = ConnectionId::from(1u64);
        let mut e = SessionEntry::new(1u64, 2u64, 0, Presence::Idle, c, NO_DEADLINE);
        assert_eq!((e.grace(), e.published()), (NO_DEADLINE, Presence::Idle));
        e.set_grace(1_767_225_600_000);
        e.set_published(Presence::Active);
        assert_eq!(
            (e.grace(), e.published()),
            (1_767_225_600_000, Presence::Active)
        );
        e.set_grace(u64::MAX - 1); // saturates, and still expires (far away)
        assert_eq!((e.grace(), e.published()), (MAX_GRACE, Presence::Active));
        e.set_grace(NO_DEADLINE);
        e.set_published(Presence::Offline);
        assert_eq!((e.grace(), e.published()), (NO_DEADLINE, Presence::Offline));
        assert_eq!(std::mem::size_of::<SessionEntry<u64, u64>>(), 40);
    }

    #[test]
    fn the_user_entry_is_five_words_with_u64_ids() {
        assert_eq!(std::mem::size_of::<Sessions<u64>>(), 16);
        assert_eq!(std::mem::size_of::<UserEntry<u64>>(), 40);
    }

    #[test]
    fn a_user_slot_fits_its_128_byte_line_pair() {
        // An idle tick reads one slot per user shard: a larger slot doubles the stride.
        assert!(std::mem::size_of::<UserSlot<u64, u64>>() <= 128);
        assert!(std::mem::size_of::<UserSlot<String, String>>() <= 128);
    }

    #[test]
    fn the_retention_flag_does_not_disturb_the_time() {
        let mut e: UserEntry<u64> = UserEntry::new(Presence::Offline, 3, NO_DEADLINE, 1_000);
        e.set_retention_queued(true);
        e.saw_gone(900);
        assert_eq!((e.gone_last_seen(), e.retention_queued()), (1_000, true));
        e.saw_gone(2_000);
        e.set_retention_queued(false);
        assert_eq!((e.gone_last_seen(), e.retention_queued()), (2_000, false));
        e.saw_gone(u64::MAX); // saturates below the flag
        assert_eq!(
            (e.gone_last_seen(), e.retention_queued()),
            ((1 << 63) - 1, false)
        );
    }
}
