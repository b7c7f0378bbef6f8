//! The user table, sharded by user id: each shard's live and retained users and its deadline
//! queues, behind a mutex.

use std::collections::HashMap;
use std::hash::Hash;

use crate::sync::Mutex;

use super::packed::{Gone, SeqPublished};
use super::session_table::{wants_shrink, Hasher};
use super::wheel::DueQueue;
use crate::Presence;
use smallvec::SmallVec;

/// A user with at least one live session.
#[derive(Debug)]
pub(crate) struct UserEntry<S> {
    pub(crate) sessions: Sessions<S>,
    pub(crate) state: SeqPublished,
    /// The deadline of this user's valid queue entry, [`NO_DEADLINE`](super::NO_DEADLINE) if none.
    pub(crate) armed: u64,
}

impl<S> UserEntry<S> {
    pub(crate) fn new(published: Presence, seq: u64, armed: u64) -> Self {
        UserEntry {
            sessions: Sessions::Empty,
            state: SeqPublished::new(published, seq),
            armed,
        }
    }

    pub(crate) fn published(&self) -> Presence {
        self.state.published()
    }

    pub(crate) fn seq(&self) -> u64 {
        self.state.seq()
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

/// A queue entry: re-check `user` at `at`.
#[derive(Debug)]
pub(crate) struct Due<U> {
    pub(crate) at: u64,
    pub(crate) user: U,
}

/// The rooms a user's sessions are in: `(session, room)` pairs, in the order they joined.
pub(crate) type Memberships<S, R> = SmallVec<[(S, R); 2]>;

/// The memberships of a shard's users, by user: allocated when the first of them joins a room,
/// so a shard whose users are in none holds one null pointer (the slot stays within its two
/// cache lines).
#[derive(Debug)]
pub(crate) struct RoomIndex<U, S, R>(Option<Box<ByUser<U, S, R>>>);

type ByUser<U, S, R> = HashMap<U, Memberships<S, R>, Hasher>;

impl<U, S, R> Default for RoomIndex<U, S, R> {
    fn default() -> Self {
        RoomIndex(None)
    }
}

impl<U: Eq + Hash, S, R> RoomIndex<U, S, R> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }

    pub(crate) fn get<Q>(&self, user: &Q) -> Option<&Memberships<S, R>>
    where
        U: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.as_ref()?.get(user)
    }

    pub(crate) fn get_mut(&mut self, user: &U) -> Option<&mut Memberships<S, R>> {
        self.0.as_mut()?.get_mut(user)
    }

    pub(crate) fn contains_key(&self, user: &U) -> bool {
        self.get(user).is_some()
    }

    /// `user`'s memberships, made empty if it had none.
    pub(crate) fn entry(&mut self, user: U, hasher: &Hasher) -> &mut Memberships<S, R> {
        self.0
            .get_or_insert_with(|| Box::new(HashMap::with_hasher(hasher.clone())))
            .entry(user)
            .or_default()
    }

    pub(crate) fn remove(&mut self, user: &U) {
        if let Some(map) = self.0.as_mut() {
            map.remove(user);
        }
    }

    /// Frees the map once nobody in the shard is in a room, or shrinks it (as the tables do).
    pub(crate) fn shrink(&mut self) {
        if let Some(map) = self.0.as_mut() {
            if map.is_empty() {
                self.0 = None;
            } else if wants_shrink(map.len(), map.capacity()) {
                map.shrink_to(map.len() * 2);
            }
        }
    }
}

/// The users of one shard (by user id) and when each must be looked at again.
#[derive(Debug)]
pub(crate) struct UserShard<U, S, R> {
    pub(crate) live: HashMap<U, UserEntry<S>, Hasher>,
    /// The rooms of the live users that are in any: kept apart from [`UserEntry`] so that users
    /// in no room pay nothing for rooms.
    pub(crate) memberships: RoomIndex<U, S, R>,
    pub(crate) retained: HashMap<U, Retained, Hasher>,
    /// For the few live users that have any: the latest `last_seen` of their sessions that
    /// expired, and whether a retention entry of an earlier offline spell is still queued for
    /// them (see [`retention`](Self::retention)). Kept apart from [`UserEntry`] so that the
    /// common user, whose sessions are all live and who has not come back within its
    /// retention, pays nothing for them (an entry of 32 bytes instead of 40 with u64 ids).
    pub(crate) gone: HashMap<U, Gone, Hasher>,
    /// Lazily re-armed deadlines: an entry may be early (the session was heard from since) or
    /// stale (superseded), never late. Taking one re-derives and re-arms.
    pub(crate) queue: DueQueue<U>,
    /// When retained (offline) users are to be forgotten: at most one entry per user, re-armed
    /// lazily. A retained user has exactly one; a user who came back may still have the one of
    /// its offline spell (its [`gone`](Self::gone) record says so), which is then reused when it goes
    /// offline again (its retention ends later, so the entry is early, never late). So a user
    /// going offline and back a hundred times within the retention holds one entry, not a
    /// hundred.
    pub(crate) retention: DueQueue<U>,
    /// This shard's place in the tracker's tables (its [`Counters`](super::counters::Counters)).
    pub(crate) index: usize,
}

impl<U, S, R> UserShard<U, S, R> {
    pub(crate) fn new(hasher: &Hasher, index: usize) -> Self {
        UserShard {
            live: HashMap::with_hasher(hasher.clone()),
            memberships: RoomIndex::default(),
            retained: HashMap::with_hasher(hasher.clone()),
            gone: HashMap::with_hasher(hasher.clone()),
            queue: DueQueue::new(),
            retention: DueQueue::new(),
            index,
        }
    }

    pub(crate) fn earliest(&self) -> u64 {
        self.queue.earliest().min(self.retention.earliest())
    }

    /// Gives memory back once a user table is under a quarter full (see
    /// [`SessionTable::shrink`](super::session_table::SessionTable::shrink)).
    pub(crate) fn shrink(&mut self)
    where
        U: Eq + Hash,
    {
        if wants_shrink(self.live.len(), self.live.capacity()) {
            self.live.shrink_to(self.live.len() * 2);
        }
        self.memberships.shrink();
        if wants_shrink(self.retained.len(), self.retained.capacity()) {
            self.retained.shrink_to(self.retained.len() * 2);
        }
        if wants_shrink(self.gone.len(), self.gone.capacity()) {
            self.gone.shrink_to(self.gone.len() * 2);
        }
    }

    /// The latest `last_seen` of a live user's sessions that expired, 0 if none.
    pub(crate) fn gone_last_seen<Q>(&self, user: &Q) -> u64
    where
        U: Eq + Hash + std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.gone.get(user).map_or(0, |g| g.last_seen())
    }

    /// Takes a live user's gone record as it goes offline: `(last_seen, retention_queued)`.
    pub(crate) fn take_gone(&mut self, user: &U) -> (u64, bool)
    where
        U: Eq + Hash,
    {
        self.gone
            .remove(user)
            .map_or((0, false), |g| (g.last_seen(), g.retention_queued()))
    }

    /// Records a live user's gone `last_seen` and retention flag (nothing if both are unset).
    pub(crate) fn put_gone(&mut self, user: &U, last_seen: u64, retention_queued: bool)
    where
        U: Eq + Hash + Clone,
    {
        if last_seen != 0 || retention_queued {
            let mut g = Gone::new(last_seen);
            g.set_retention_queued(retention_queued);
            self.gone.insert(user.clone(), g);
        }
    }

    /// A live user's session that expired was last seen at `t`: raises its gone `last_seen`.
    pub(crate) fn saw_gone(&mut self, user: &U, t: u64)
    where
        U: Eq + Hash + Clone,
    {
        self.gone
            .entry(user.clone())
            .or_insert_with(|| Gone::new(0))
            .saw(t);
    }

    /// A live user's retention entry came up: it is no longer queued.
    pub(crate) fn retention_dequeued(&mut self, user: &U)
    where
        U: Eq + Hash,
    {
        if let Some(g) = self.gone.get_mut(user) {
            if g.last_seen() == 0 {
                self.gone.remove(user);
            } else {
                g.set_retention_queued(false);
            }
        }
    }
}

/// A user shard behind its lock (its earliest deadline is in the tracker's `earliest` words).
#[derive(Debug)]
pub(crate) struct UserSlot<U, S, R> {
    pub(crate) shard: Mutex<UserShard<U, S, R>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::session_table::SessionEntry;

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
    fn the_entries_are_five_words_with_u64_ids() {
        assert_eq!(std::mem::size_of::<SessionEntry<u64, u64>>(), 40);
        assert_eq!(std::mem::size_of::<Sessions<u64>>(), 16);
        assert_eq!(std::mem::size_of::<UserEntry<u64>>(), 32);
    }
}
