//! Publishing: `settle` brings a user's published presences up to date, and is the only place
//! they change (see the module docs' `# Locking`).

use crate::sync::Ordering;
use std::borrow::Borrow;

use smallvec::SmallVec;

use super::counters::Counters;
use super::user_table::{Retained, UserShard};
use super::{Events, PresenceTracker, NO_DEADLINE};
use crate::derive::next_change;
use crate::{
    derive, Cause, Clock, Event, Id, Metadata, Presence, SessionRecord, Subject, Timestamp,
};

impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> PresenceTracker<U, S, C, R, M> {
    /// Publishes every change of `user`'s sessions and of the user at `now`, frees expired
    /// sessions, and re-arms the user's deadline. `signal` names the session a signal was
    /// recorded for, and the cause to give its change.
    ///
    /// O(the user's sessions). The caller holds the user's shard lock.
    pub(super) fn settle<Q>(
        &self,
        shard: &mut UserShard<U, S, R>,
        user: &U,
        now: u64,
        signal: Option<(&Q, Cause)>,
        events: &mut Events<U, S, R, M>,
    ) where
        S: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.settle_with(shard, user, now, signal, None, events);
    }

    /// [`settle`](Self::settle) after a connect took one of `user`'s sessions over (expired,
    /// its entry replaced by the connecting user's in the same critical section as the check):
    /// publishes its end from the entry as it was, `(session, published, record)`, and frees it
    /// from the user's list. The replacement keeps its place in the session total.
    pub(super) fn settle_taken(
        &self,
        shard: &mut UserShard<U, S, R>,
        user: &U,
        now: u64,
        taken: (&S, Presence, SessionRecord),
        events: &mut Events<U, S, R, M>,
    ) {
        self.settle_with(shard, user, now, None::<(&S, Cause)>, Some(taken), events);
    }

    fn settle_with<Q>(
        &self,
        shard: &mut UserShard<U, S, R>,
        user: &U,
        now: u64,
        signal: Option<(&Q, Cause)>,
        taken: Option<(&S, Presence, SessionRecord)>,
        events: &mut Events<U, S, R, M>,
    ) where
        S: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(entry) = shard.live.get_mut(user) else {
            return;
        };
        // The sessions whose published presence changed, for their rooms (only if the user is
        // in any: a user in no room pays one emptiness check).
        let in_rooms = !shard.memberships.is_empty() && shard.memberships.contains_key(user);
        let mut changed: SmallVec<[(S, Presence); 2]> = SmallVec::new();
        let at = Timestamp::from_millis(now);
        let mut best = Presence::Offline;
        let mut next = NO_DEADLINE;
        // The user's event takes the cause of what moved it: a rise, the signal's; a fall, the
        // last session's fall.
        let (mut rise, mut fall) = (Cause::Timeout, Cause::Timeout);
        // Every event of this call carries the user's live sessions once it is published.
        let first = events.len();
        let mut live = 0;
        // The latest `last_seen` of the live sessions, as read for their publication.
        let mut latest = 0;
        let mut i = 0;
        while i < entry.sessions.len() {
            let session = &entry.sessions[i];
            let replaced = taken.filter(|(s, ..)| *s == session);
            // Under the write lock: a publication must not fall between a heartbeat's
            // comparison with the published presence and its store (see `SessionEntry`).
            let seen = if let Some((_, from, record)) = replaced {
                Some((from, Presence::Offline, record))
            } else {
                let (slot, hash) = self.locate::<S>(session);
                let mut map = slot.write();
                let seen = map.get_mut::<S>(hash, session).map(|e| {
                    debug_assert!(
                        e.user == *user,
                        "a session listed under a user not its owner"
                    );
                    let from = e.published();
                    let record = e.record();
                    let to = derive(&record, at, &self.policy);
                    if to != from {
                        e.set_published(to);
                    }
                    (from, to, record)
                });
                if matches!(seen, Some((_, Presence::Offline, _))) {
                    map.remove::<S>(hash, session);
                    map.shrink(&self.shard_hasher);
                }
                seen
            };
            let Some((from, to, record)) = seen else {
                // Cannot happen: a session leaves the table only here, under this lock.
                if in_rooms {
                    changed.push((session.clone(), Presence::Offline));
                }
                entry.sessions.swap_remove(i);
                continue;
            };
            if in_rooms && from != to {
                changed.push((session.clone(), to));
            }
            if from != to {
                let expired = record.grace_deadline.is_some_and(|d| d <= at);
                let cause = match signal {
                    Some((s, cause @ (Cause::Connect | Cause::Heartbeat)))
                        if session.borrow() == s =>
                    {
                        cause
                    }
                    Some((s, cause))
                        if session.borrow() == s && expired && to == Presence::Offline =>
                    {
                        cause
                    }
                    _ if expired && to == Presence::Offline => Cause::GraceExpired,
                    _ => Cause::Timeout,
                };
                if to > from {
                    rise = cause;
                } else {
                    fall = cause;
                }
                let seq = entry.state.next_seq();
                events.push(Event {
                    subject: Subject::Session {
                        user: user.clone(),
                        session: session.clone(),
                    },
                    from,
                    to,
                    at,
                    cause,
                    seq,
                    sessions: 0,
                    user_presence: Presence::Offline,
                    last_seen: record.last_seen,
                });
                Counters::moved(&self.counters[shard.index].sessions, from, to);
            }
            if to == Presence::Offline {
                Counters::sub(&self.counters[shard.index].sessions, Presence::Offline);
                if replaced.is_none() {
                    self.session_total.fetch_sub(1, Ordering::Relaxed);
                }
                entry.saw_gone(record.last_seen.as_millis());
                entry.sessions.swap_remove(i);
                continue;
            }
            best = best.max(to);
            live += 1;
            latest = latest.max(record.last_seen.as_millis());
            if let Some(t) = next_change(&record, to, &self.policy) {
                next = next.min(t.as_millis());
            }
            i += 1;
        }
        let last_seen = latest.max(entry.gone_last_seen());
        for event in events.events_from(first) {
            event.sessions = live;
            event.user_presence = best;
        }
        let published = entry.published();
        if best != published {
            let cause = if best > published { rise } else { fall };
            let seq = entry.state.next_seq();
            events.push(Event {
                subject: Subject::User { user: user.clone() },
                from: published,
                to: best,
                at,
                cause,
                seq,
                sessions: live,
                user_presence: best,
                last_seen: Timestamp::from_millis(last_seen),
            });
            Counters::moved(&self.counters[shard.index].users, published, best);
            entry.state.set_published(best);
        }
        if entry.sessions.is_empty() {
            let until = entry
                .gone_last_seen()
                .saturating_add(self.policy.retention_ms);
            let retained = Retained {
                last_seen: entry.gone_last_seen(),
                seq: entry.seq(),
                until,
            };
            // An entry of an earlier offline spell, still queued, is early for this one: it
            // re-arms when it comes up.
            if !entry.retention_queued() {
                shard.retention.push(until, user.clone());
            }
            shard.live.remove(user);
            shard.retained.insert(user.clone(), retained);
        } else if next < entry.armed {
            entry.armed = next;
            shard.queue.push(next, user.clone());
        }
        if !changed.is_empty() {
            self.settle_rooms(&mut shard.memberships, user, &changed, now, events);
        }
    }
}
