//! Reading presence: derived at the time of the read, never by scanning all sessions.

use std::borrow::Borrow;
use std::hash::Hash;

use super::counters::Counters;
use super::session_table::SessionEntry;
use super::user_table::{UserEntry, UserShard};
use super::{PresenceTracker, NO_DEADLINE};
use crate::view::Counts;
use crate::{derive, Census, Clock, Id, Metadata, Presence, SessionView, Timestamp, UserView};

/// # Reading presence
///
/// Reads derive presence at the clock's time, so they are exact even between ticks; they
/// publish nothing and change nothing (not even the tracker's notion of time). Ids are looked up
/// by any borrowed form (`"ada"` for a `String` id).
impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> PresenceTracker<U, S, C, R, M> {
    /// A session's presence and record; `None` if unknown or expired (derived offline).
    pub fn session<Q>(&self, session: &Q) -> Option<SessionView<U>>
    where
        S: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Timestamp::from_millis(self.read_now());
        let (slot, hash) = self.locate(session);
        let map = slot.read();
        let entry = map.get(hash, session)?;
        let view = self.view_of(entry, now);
        view.presence.is_online().then_some(view)
    }

    fn view_of(&self, entry: &SessionEntry<U, S>, now: Timestamp) -> SessionView<U> {
        let record = entry.record();
        let ttl = record.last_seen.saturating_add(self.policy.ttl());
        SessionView {
            user: entry.user.clone(),
            presence: derive(&record, now, &self.policy),
            activity: record.activity,
            last_seen: record.last_seen,
            connection: entry.connection,
            connected: entry.grace() == NO_DEADLINE,
            expires_at: record.grace_deadline.map_or(ttl, |d| d.min(ttl)),
            grace_deadline: record.grace_deadline,
        }
    }

    /// A user's presence: the highest of its sessions, how many are online, and when it was
    /// last seen. O(the user's sessions).
    pub fn user<Q>(&self, user: &Q) -> UserView
    where
        U: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Timestamp::from_millis(self.read_now());
        let shard = self.user_slot(user).shard.lock();
        self.user_view(&shard, user, now)
    }

    fn user_view<Q>(&self, shard: &UserShard<U, S, R>, user: &Q, now: Timestamp) -> UserView
    where
        U: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(entry) = shard.live.get(user) {
            return self.live_view(entry, shard.gone_last_seen(user), now);
        }
        let last_seen = shard
            .retained
            .get(user)
            .filter(|r| r.until > now.as_millis())
            .map(|r| Timestamp::from_millis(r.last_seen));
        UserView {
            presence: Presence::Offline,
            sessions: 0,
            last_seen,
        }
    }

    /// A live user's view, from its entry and the latest `last_seen` of its expired sessions.
    fn live_view(&self, entry: &UserEntry<S>, gone_last_seen: u64, now: Timestamp) -> UserView {
        let mut presence = Presence::Offline;
        let mut sessions = 0;
        let mut last_seen = gone_last_seen;
        for session in &entry.sessions {
            let (slot, hash) = self.locate(session);
            let map = slot.read();
            if let Some(e) = map.get(hash, session) {
                let record = e.record();
                let p = derive(&record, now, &self.policy);
                presence = presence.max(p);
                sessions += usize::from(p.is_online());
                last_seen = last_seen.max(record.last_seen.as_millis());
            }
        }
        let retained_until = last_seen.saturating_add(self.policy.retention_ms);
        UserView {
            presence,
            sessions,
            last_seen: (presence.is_online() || retained_until > now.as_millis())
                .then_some(Timestamp::from_millis(last_seen)),
        }
    }

    /// The online sessions of a user, with their views. O(the user's sessions).
    pub fn user_sessions<Q>(&self, user: &Q) -> Vec<(S, SessionView<U>)>
    where
        U: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let now = Timestamp::from_millis(self.read_now());
        let shard = self.user_slot(user).shard.lock();
        let Some(entry) = shard.live.get(user) else {
            return Vec::new();
        };
        entry
            .sessions
            .iter()
            .filter_map(|session| {
                let (slot, hash) = self.locate::<S>(session);
                let map = slot.read();
                let view = self.view_of(map.get::<S>(hash, session)?, now);
                view.presence.is_online().then(|| (session.clone(), view))
            })
            .collect()
    }

    /// Every user who is not offline, with its view. O(users with a live session), in no
    /// particular order.
    pub fn online(&self) -> Vec<(U, UserView)> {
        let now = Timestamp::from_millis(self.read_now());
        let mut online = Vec::new();
        for slot in self.users.iter() {
            let shard = slot.0.shard.lock();
            for (user, entry) in shard.live.iter() {
                let view = self.live_view(entry, shard.gone_last_seen(user), now);
                if view.presence.is_online() {
                    online.push((user.clone(), view));
                }
            }
        }
        online
    }

    /// How many users and sessions are in each presence, as last published. Sums per-shard
    /// counters: no lock, no scan.
    pub fn census(&self) -> Census {
        Census {
            users: Counts::from_array(Counters::read(&self.counters, |c| &c.users)),
            sessions: Counts::from_array(Counters::read(&self.counters, |c| &c.sessions)),
        }
    }
}
