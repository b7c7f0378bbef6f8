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
        // The latest `last_seen` of the live sessions, as read for their publication, and of
        // those that expired in this call.
        let mut latest = 0;
        let mut gone_now = 0;
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
                gone_now = gone_now.max(record.last_seen.as_millis());
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
        let gone_before = shard.gone.get(user).map_or(0, |g| g.last_seen());
        let last_seen = latest.max(gone_now).max(gone_before);
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
            let seq = entry.seq();
            let (gone_before, queued) = shard.take_gone(user);
            let gone_last_seen = gone_before.max(gone_now);
            let until = gone_last_seen.saturating_add(self.policy.retention_ms);
            let retained = Retained {
                last_seen: gone_last_seen,
                seq,
                until,
            };
            // An entry of an earlier offline spell, still queued, is early for this one: it
            // re-arms when it comes up.
            if !queued {
                shard.retention.push(until, user.clone());
            }
            shard.live.remove(user);
            shard.retained.insert(user.clone(), retained);
        } else {
            if next < entry.armed {
                entry.armed = next;
                shard.queue.push(next, user.clone());
            }
            if gone_now > gone_before {
                shard.saw_gone(user, gone_now);
            }
        }
        if !changed.is_empty() {
            self.settle_rooms(&mut shard.memberships, user, &changed, now, events);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Activity, ManualClock, Policy, PresenceTracker, Timestamp};

    type Tracker = PresenceTracker<u64, u64, ManualClock>;

    /// Live users with a gone record (the side table of `UserShard::gone`).
    fn gone_records(tracker: &Tracker) -> usize {
        tracker
            .users
            .iter()
            .map(|slot| slot.0.shard.lock().gone.len())
            .sum()
    }

    #[test]
    fn a_gone_record_lives_only_while_its_user_is_live() -> Result<(), crate::Error> {
        let clock = ManualClock::new();
        let t0 = clock.now();
        let at = |s: u64| Timestamp::from_millis(t0.as_millis() + s * 1000);
        let tracker: Tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
        let _ = tracker.connect(1, 10, "a", Activity::Active)?;
        let _ = tracker.connect(1, 11, "b", Activity::Active)?;
        assert_eq!(
            gone_records(&tracker),
            0,
            "a user whose sessions are all live has none"
        );

        // Session 10, heard from last, leaves; session 11 lives on.
        clock.set(at(1));
        let _ = tracker.heartbeat(&10, Activity::Active)?;
        let _ = tracker.leave(&10, "a")?;
        clock.set(at(7));
        let _ = tracker.tick();
        assert_eq!(tracker.user(&1).sessions, 1);
        assert_eq!(
            gone_records(&tracker),
            1,
            "session 10 expired while its user is live"
        );
        assert_eq!(
            tracker.user(&1).last_seen,
            Some(at(1)),
            "the ended session's last_seen counts"
        );

        // The user goes offline: the record moves into its retained entry.
        let _ = tracker.leave(&11, "b")?;
        clock.set(at(13));
        let _ = tracker.tick();
        assert!(!tracker.user(&1).presence.is_online());
        assert_eq!(gone_records(&tracker), 0);
        assert_eq!(tracker.user(&1).last_seen, Some(at(1)));

        // Back within its retention: the retention entry is still queued, which the record says.
        clock.set(at(20));
        let _ = tracker.connect(1, 12, "c", Activity::Active)?;
        assert_eq!(gone_records(&tracker), 1);
        // Live past the end of that retention, then offline again: no record left behind.
        let retention =
            u64::try_from(Policy::default().retention().as_millis()).unwrap_or(u64::MAX);
        let end = at(1).as_millis() + retention;
        let mut last_heard = clock.now();
        while clock.now().as_millis() <= end {
            clock.advance(Duration::from_secs(60));
            let _ = tracker.heartbeat(&12, Activity::Active)?;
            last_heard = clock.now();
            let _ = tracker.tick();
        }
        let _ = tracker.leave(&12, "c")?;
        clock.advance(Duration::from_secs(10));
        let _ = tracker.tick();
        assert!(!tracker.user(&1).presence.is_online());
        assert_eq!(gone_records(&tracker), 0);
        assert_eq!(tracker.user(&1).last_seen, Some(last_heard));
        Ok(())
    }
}
