//! Connecting: a session attached to a connection, made, re-attached or taken over, its
//! owner checked and changed under the locks (see the module docs' `# Locking`).

use crate::sync::Ordering;

use crate::sync::{MutexGuard, RwLock};

use super::counters::Counters;
use super::packed::{pack, unpack};
use super::session_table::{SessionEntry, SessionTable};
use super::user_table::{Retained, UserEntry, UserShard};
use super::{Events, PresenceTracker, NO_DEADLINE};
use crate::{
    Activity, Cause, Clock, ConnectionId, Error, Id, Metadata, Presence, Timestamp, Transitions,
};

/// The locked user shards of a connect: the user's, and the expired session's owner's if
/// another.
enum UserGuards<'a, U, S, R> {
    One(MutexGuard<'a, UserShard<U, S, R>>),
    Two(
        MutexGuard<'a, UserShard<U, S, R>>,
        MutexGuard<'a, UserShard<U, S, R>>,
    ),
}

/// The user's shard, and the expired session's owner's if another.
type ShardPair<'a, U, S, R> = (
    &'a mut UserShard<U, S, R>,
    Option<&'a mut UserShard<U, S, R>>,
);

impl<U, S, R> UserGuards<'_, U, S, R> {
    fn split(&mut self) -> ShardPair<'_, U, S, R> {
        match self {
            UserGuards::One(mine) => (&mut *mine, None),
            UserGuards::Two(mine, other) => (&mut *mine, Some(&mut *other)),
        }
    }
}

/// How a connect under its locks ended: done, or it needs the shard of the expired session's
/// owner locked too (then it starts again with both locks).
enum Connected<U, S, R, M> {
    Done(Result<Events<U, S, R, M>, Error>),
    LockOwner(usize),
}

/// What a connect attaches: the connection, and the activity if the client reported one.
#[derive(Clone, Copy, Debug)]
struct Attach {
    connection: ConnectionId,
    activity: Option<Activity>,
}

/// # Connecting
///
/// Returns the [`Transitions`] it published and takes the time from the clock, like the other
/// signals. An `Err` means nothing changed.
impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> PresenceTracker<U, S, C, R, M> {
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
    ) -> Result<Transitions<U, S, R, M>, Error> {
        self.attach(
            user,
            session,
            connection.into(),
            Some(activity),
            self.clock.now(),
        )
    }

    fn attach(
        &self,
        user: U,
        session: S,
        connection: ConnectionId,
        activity: Option<Activity>,
        now: Timestamp,
    ) -> Result<Events<U, S, R, M>, Error> {
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
            self.store_earliest(user_shard);
            if let Some(shard) = owner_shard {
                self.store_earliest(shard);
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
        shard: &mut UserShard<U, S, R>,
        owner_shard: Option<&mut UserShard<U, S, R>>,
    ) -> Connected<U, S, R, M> {
        // Counted before the write lock (no session shard's lock is taken while another is
        // held); the user's lock keeps its list as it is.
        let live = shard
            .live
            .get(user)
            .map_or(0, |u| self.live_sessions(&u.sessions, now));
        let mut events = Transitions::new();
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
                            if let Err(e) = self.insert_session(&mut map, hash, fresh) {
                                return Connected::Done(Err(e));
                            }
                            (None, now)
                        }
                    }
                }
            }
        };
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
        self.list_session(shard, user, session.clone(), Presence::Offline);
        self.settle(
            shard,
            user,
            now,
            Some((session, Cause::Connect)),
            &mut events,
        );
        Connected::Done(Ok(events))
    }

    /// A session new to the session table: inserted and counted in the session total, refused
    /// at the policy's maximum. With [`list_session`](Self::list_session), how a session comes
    /// into being, for `connect` and for `restore`.
    pub(crate) fn insert_session(
        &self,
        map: &mut SessionTable<U, S>,
        hash: u64,
        entry: SessionEntry<U, S>,
    ) -> Result<(), Error> {
        let max = self.policy.max_sessions;
        self.session_total
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Error::TooManySessions { max })?;
        map.insert(&self.shard_hasher, hash, entry);
        Ok(())
    }

    /// A session now `user`'s, under the user's shard lock: listed in the user's sessions (the
    /// user's entry made if needed) and counted at `published` in the shard's session counters.
    pub(crate) fn list_session(
        &self,
        shard: &mut UserShard<U, S, R>,
        user: &U,
        session: S,
        published: Presence,
    ) {
        Counters::add(&self.counters[shard.index].sessions, published);
        self.user_entry(shard, user).sessions.push(session);
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
    fn lock_users(&self, first: usize, second: Option<usize>) -> UserGuards<'_, U, S, R> {
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
    fn user_entry<'a>(&self, shard: &'a mut UserShard<U, S, R>, user: &U) -> &'a mut UserEntry<S> {
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
            shard.put_gone(user, gone_last_seen, queued);
            shard.live.insert(
                user.clone(),
                UserEntry::new(Presence::Offline, seq, NO_DEADLINE),
            );
        }
        match shard.live.get_mut(user) {
            Some(entry) => entry,
            None => unreachable!("inserted above"),
        }
    }
}
