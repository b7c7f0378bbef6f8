//! The session table, sharded by session id: its entries and their lookups; and what both
//! tables share (the hasher, the padding of a shard's lock, when to shrink).

use crate::sync::{AtomicU64, Ordering};
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use crate::sync::RwLock;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use super::packed::{pack, record_of, unpack, GracePublished};
use crate::{Activity, ConnectionId, Presence, SessionRecord};

#[cfg(not(loom))]
pub(crate) type Hasher = foldhash::fast::RandomState;
/// Under loom every execution of a model must hash alike: a seed that changes between
/// executions picks other shards, other locks, and loom's replay of the schedule breaks.
#[cfg(loom)]
pub(crate) type Hasher = foldhash::fast::FixedState;

/// Keeps each lock on its own cache lines, so two cores working on neighbouring shards do not
/// fight over one line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// One session, in the session table (sharded by session id).
///
/// `hot` is atomic because the heartbeat fast path stores it under the shard's *read* lock.
/// Everything else changes only under the write lock, taken by code that holds the owner's
/// user-shard lock; so does the published presence, which is why a heartbeat, which compares
/// its presence with the published one and stores `hot` under the read lock, never interleaves
/// with a publication (the lock orders them; `hot` can be relaxed).
///
/// In this order (`repr(C)`): what a heartbeat's fast path reads (the id, `hot`, the grace and
/// published presence) first and contiguous, so that fewer of the entries it touches straddle
/// a cache line (with u64 ids, 24 of 40 bytes: a quarter of the entries instead of half).
#[derive(Debug)]
#[repr(C)]
pub(crate) struct SessionEntry<U, S> {
    pub(crate) session: S,
    pub(crate) hot: AtomicU64,
    grace_published: GracePublished,
    pub(crate) user: U,
    pub(crate) connection: ConnectionId,
}

impl<U, S> SessionEntry<U, S> {
    pub(crate) fn new(
        session: S,
        user: U,
        hot: u64,
        published: Presence,
        connection: ConnectionId,
        grace: u64,
    ) -> Self {
        SessionEntry {
            session,
            user,
            hot: AtomicU64::new(hot),
            connection,
            grace_published: GracePublished::new(published, grace),
        }
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
        self.grace_published.published()
    }

    pub(crate) fn set_published(&mut self, p: Presence) {
        self.grace_published.set_published(p);
    }

    /// Grace deadline in ms, [`NO_DEADLINE`](super::NO_DEADLINE) while connected.
    pub(crate) fn grace(&self) -> u64 {
        self.grace_published.grace()
    }

    pub(crate) fn set_grace(&mut self, grace: u64) {
        self.grace_published.set_grace(grace);
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

pub(crate) type SessionSlot<U, S> = Padded<RwLock<SessionTable<U, S>>>;
