//! The tracker's internals: sharded session and user tables, and the deadline queue.

use std::cmp::Ordering as CmpOrdering;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};
use smallvec::SmallVec;

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
/// `hot` and `published` are atomics because the heartbeat fast path updates `hot` under the
/// shard's *read* lock. Everything else changes only under the write lock, taken by code that
/// holds the owner's user-shard lock; `published` changes only under the write lock too, so a
/// heartbeat, which compares its presence with `published` and stores `hot` under the read lock,
/// never interleaves with a publication (the lock orders them; the atomics can be relaxed).
#[derive(Debug)]
pub(crate) struct SessionEntry<U, S> {
    pub(crate) session: S,
    pub(crate) user: U,
    pub(crate) hot: AtomicU64,
    pub(crate) published: AtomicU8,
    pub(crate) connection: ConnectionId,
    /// Grace deadline in ms, [`NO_DEADLINE`] while connected.
    pub(crate) grace: u64,
}

impl<U, S> SessionEntry<U, S> {
    pub(crate) fn record(&self) -> SessionRecord {
        record_of(self.hot.load(Ordering::Relaxed), self.grace)
    }

    pub(crate) fn published(&self) -> Presence {
        Presence::from_index(self.published.load(Ordering::Relaxed))
    }

    /// Derived offline at `now`: [`derive`](crate::derive) gives `Offline` exactly when the
    /// grace deadline has come or the age reached the TTL (an activity caps at `away` at most).
    pub(crate) fn expired(&self, now: u64, ttl_ms: u64) -> bool {
        let (last_seen, _) = unpack(self.hot.load(Ordering::Relaxed));
        self.grace <= now || now.saturating_sub(last_seen) >= ttl_ms
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

    pub(crate) fn get(&self, hash: u64, session: &S) -> Option<&SessionEntry<U, S>> {
        self.table.find(hash, |e| e.session == *session)
    }

    pub(crate) fn get_mut(&mut self, hash: u64, session: &S) -> Option<&mut SessionEntry<U, S>> {
        self.table.find_mut(hash, |e| e.session == *session)
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

    pub(crate) fn remove(&mut self, hash: u64, session: &S) -> Option<SessionEntry<U, S>> {
        self.table
            .find_entry(hash, |e| e.session == *session)
            .ok()
            .map(|o| o.remove().0)
    }
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
    pub(crate) sessions: SmallVec<[S; 2]>,
    pub(crate) published: Presence,
    pub(crate) seq: u64,
    /// The deadline of this user's valid queue entry, [`NO_DEADLINE`] if none.
    pub(crate) armed: u64,
    /// The latest `last_seen` of its sessions that expired, 0 if none.
    pub(crate) gone_last_seen: u64,
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

/// The users of one shard (by user id) and when each must be looked at again.
#[derive(Debug)]
pub(crate) struct UserShard<U, S> {
    pub(crate) live: HashMap<U, UserEntry<S>, Hasher>,
    pub(crate) retained: HashMap<U, Retained, Hasher>,
    /// Lazily re-armed deadlines: an entry may be early (the session was heard from since) or
    /// stale (superseded), never late. Taking one re-derives and re-arms.
    pub(crate) queue: DueQueue<U>,
    /// This shard's place in the tracker's tables (its [`Counters`]).
    pub(crate) index: usize,
}

impl<U, S> UserShard<U, S> {
    pub(crate) fn new(hasher: &Hasher, index: usize) -> Self {
        UserShard {
            live: HashMap::with_hasher(hasher.clone()),
            retained: HashMap::with_hasher(hasher.clone()),
            queue: DueQueue::new(),
            index,
        }
    }

    pub(crate) fn earliest(&self) -> u64 {
        self.queue.earliest()
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
        cell.store(cell.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
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
            let sum: i64 = all
                .iter()
                .map(|c| pick(c)[i].load(Ordering::Relaxed))
                .sum();
            usize::try_from(sum).unwrap_or(0)
        })
    }
}
