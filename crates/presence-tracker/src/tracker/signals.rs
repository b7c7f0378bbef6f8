//! The signals on a session that exists: heartbeat (its lock-free fast path and its slow path),
//! disconnect and leave.

use std::borrow::Borrow;
use std::hash::Hash;

use super::packed::{pack, record_of};
use super::session_table::SessionEntry;
use super::{Events, PresenceTracker};
use crate::{
    derive, Activity, Cause, Clock, ConnectionId, DisconnectKind, Error, Id, Metadata, Timestamp,
    Transitions,
};

/// # Recording signals
///
/// Each returns the [`Transitions`] it published (often none) and takes the time from the
/// clock. An `Err` means nothing changed. A session starts with
/// [`connect`](PresenceTracker::connect).
impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> PresenceTracker<U, S, C, R, M> {
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
    pub fn heartbeat<Q>(
        &self,
        session: &Q,
        activity: Activity,
    ) -> Result<Transitions<U, S, R, M>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.heartbeat_at(session, activity, self.clock.now())
    }

    /// [`heartbeat`](Self::heartbeat) at `now` (from the clock).
    fn heartbeat_at<Q>(
        &self,
        session: &Q,
        activity: Activity,
        now: Timestamp,
    ) -> Result<Events<U, S, R, M>, Error>
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
    pub(super) fn record_heartbeat(
        &self,
        entry: &SessionEntry<U, S>,
        activity: Activity,
        now: u64,
    ) -> Option<Events<U, S, R, M>> {
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
        Some(Transitions::new())
    }

    /// A heartbeat that changes a presence: under the owner's lock.
    pub(super) fn heartbeat_slow<Q>(
        &self,
        user: U,
        session: &Q,
        activity: Activity,
        now: u64,
    ) -> Result<Events<U, S, R, M>, Error>
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
    ) -> Result<Transitions<U, S, R, M>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.signal_time(self.clock.now())?;
        let grace = self.policy.grace_ms(kind);
        self.close(session, now, connection.into(), grace, Cause::Disconnect)
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
    ) -> Result<Transitions<U, S, R, M>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = self.signal_time(self.clock.now())?;
        let grace = self.policy.leave_grace_ms;
        self.close(session, now, connection.into(), grace, Cause::Leave)
    }

    fn close<Q>(
        &self,
        session: &Q,
        now: u64,
        connection: ConnectionId,
        grace: u64,
        cause: Cause,
    ) -> Result<Events<U, S, R, M>, Error>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (session_slot, hash) = self.locate(session);
        let user = {
            let map = session_slot.read();
            let entry = self.live_entry(&map, hash, session, now)?;
            if connection != entry.connection {
                return Ok(Transitions::new());
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
                return Ok(Transitions::new());
            }
            entry.set_grace(entry.grace().min(now.saturating_add(grace)));
        }
        let mut events = Transitions::new();
        self.settle(&mut shard, &user, now, Some((session, cause)), &mut events);
        self.store_earliest(&shard);
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
    ) -> Result<Events<U, S, R, M>, Error>
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
        let mut events = Transitions::new();
        self.settle(&mut shard, &user, now, Some((session, cause)), &mut events);
        self.store_earliest(&shard);
        Ok(events)
    }
}
