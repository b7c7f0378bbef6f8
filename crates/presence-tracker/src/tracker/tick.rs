//! Driving time: `tick` takes the deadlines that came due, shard by shard, and publishes what
//! time changed; `next_deadline` says when to call it.

use crate::sync::Ordering;

use smallvec::SmallVec;

use super::counters::Counters;
use super::user_table::{Due, UserShard};
use super::{Events, PresenceTracker, NO_DEADLINE, PROBES};
use crate::derive::next_change;
use crate::{derive, Cause, Clock, Id, Metadata, Presence, Timestamp, Transitions};

/// # Driving time
impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> PresenceTracker<U, S, C, R, M> {
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
    pub fn tick(&self) -> Transitions<U, S, R, M> {
        let now = self.effective_now(self.clock.now());
        let mut events = Transitions::new();
        for (i, earliest) in self.earliest.iter().enumerate() {
            if earliest.load(Ordering::Acquire) > now {
                continue;
            }
            let mut shard = self.users[i].0.shard.lock();
            let now = self.ordered(now);
            self.run_due(&mut shard, now, &mut events);
            self.store_earliest(&shard);
        }
        events
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
        self.earliest
            .iter()
            .map(|earliest| earliest.load(Ordering::Acquire))
            .min()
            .filter(|&t| t != NO_DEADLINE)
            .map(Timestamp::from_millis)
    }

    /// Takes and settles every user due at `now` in one shard; forgets retained users whose
    /// retention ran out.
    // Not inlined into `tick`, whose loop over the shards is what a tick with nothing due
    // costs (measured: inlined, that loop ran about 20 % slower).
    #[inline(never)]
    fn run_due(&self, shard: &mut UserShard<U, S, R>, now: u64, events: &mut Events<U, S, R, M>) {
        let mut taken = Vec::new();
        // Settling re-arms a live user after `now`, so one pass takes everything due; the loop
        // is a guard should a re-arm ever land at `now`.
        loop {
            shard.queue.take_due(now, &mut taken);
            if taken.is_empty() {
                break;
            }
            // Drop the superseded entries first: these probes do not depend on each other, so
            // their cache misses overlap (settle's locks would serialise them), and they leave
            // the users that remain in cache for settle.
            taken.retain(|due| shard.live.get(&due.user).is_none_or(|e| e.armed == due.at));
            // Most of the rest came up early (their sessions were heard from since): find those
            // that need no publication, with one read lock per session shard, and re-arm them.
            let quiet = self.quiet_deadlines(shard, &taken, now);
            for (due, quiet) in taken.drain(..).zip(quiet) {
                if let Some(entry) = shard.live.get_mut(&due.user) {
                    if entry.armed != due.at {
                        continue; // superseded by an earlier entry, already handled
                    }
                    if quiet != NO_DEADLINE {
                        entry.armed = quiet;
                        shard.queue.push(quiet, due.user);
                        continue;
                    }
                    entry.armed = NO_DEADLINE;
                    self.settle(shard, &due.user, now, None::<(&S, Cause)>, events);
                }
            }
        }
        self.forget_retained(shard, now);
        shard.shrink();
    }

    /// Forgets the retained users whose retention ran out, and re-arms the entries that came
    /// up early (the user came back and went offline again since) or finds them no longer
    /// needed (the user is live: its next offline spell queues a new one).
    fn forget_retained(&self, shard: &mut UserShard<U, S, R>, now: u64) {
        let mut taken = Vec::new();
        shard.retention.take_due(now, &mut taken);
        for due in taken {
            if shard.live.contains_key(&due.user) {
                shard.retention_dequeued(&due.user);
            } else if let Some(r) = shard.retained.get(&due.user) {
                if r.until <= now {
                    shard.retained.remove(&due.user);
                    Counters::sub(&self.counters[shard.index].users, Presence::Offline);
                } else {
                    shard.retention.push(r.until, due.user);
                }
            }
        }
    }

    /// For each taken entry, the user's next deadline if settling it at `now` would publish
    /// nothing (every session's presence is the published one, none expired, and the user's
    /// too), else [`NO_DEADLINE`]: settle it.
    ///
    /// Reads the sessions grouped by session shard, each shard's read lock taken once, so the
    /// table probes' cache misses overlap. A heartbeat that lands after a read only makes that
    /// session fresher: it cannot need a downgrade, and the deadline computed from the older
    /// read is early, never late. Everything else that changes a session holds the user's
    /// shard lock, which the caller holds.
    fn quiet_deadlines(&self, shard: &UserShard<U, S, R>, taken: &[Due<U>], now: u64) -> Vec<u64> {
        let at = Timestamp::from_millis(now);
        let mut lookups: Vec<(usize, u64, usize, &S)> = Vec::new();
        let mut state: Vec<(Presence, u64, bool)> = Vec::with_capacity(taken.len());
        for (k, due) in taken.iter().enumerate() {
            match shard.live.get(&due.user) {
                Some(entry) if entry.armed == due.at => {
                    state.push((Presence::Offline, NO_DEADLINE, !entry.sessions.is_empty()));
                    for session in &entry.sessions {
                        let (_, hash) = self.locate(session);
                        lookups.push((Self::session_shard(hash), hash, k, session));
                    }
                }
                _ => state.push((Presence::Offline, NO_DEADLINE, false)),
            }
        }
        lookups.sort_unstable_by_key(|&(shard, ..)| shard);
        for group in lookups.chunk_by(|a, b| a.0 == b.0) {
            let map = self.sessions[group[0].0].0.read();
            // The probes first, so that many are in flight at once; then the derivations.
            for chunk in group.chunks(PROBES) {
                let found: SmallVec<[_; PROBES]> = chunk
                    .iter()
                    .map(|&(_, hash, _, session)| map.get(hash, session))
                    .collect();
                for (&(_, _, k, _), e) in chunk.iter().zip(found) {
                    let (best, next, quiet) = &mut state[k];
                    if !*quiet {
                        continue;
                    }
                    let Some(e) = e else {
                        *quiet = false;
                        continue;
                    };
                    let record = e.record();
                    let to = derive(&record, at, &self.policy);
                    match next_change(&record, to, &self.policy) {
                        Some(t) if to == e.published() => {
                            *best = (*best).max(to);
                            *next = (*next).min(t.as_millis());
                        }
                        _ => *quiet = false,
                    }
                }
            }
        }
        taken
            .iter()
            .zip(state)
            .map(|(due, (best, next, quiet))| {
                let user_quiet = quiet
                    && shard
                        .live
                        .get(&due.user)
                        .is_some_and(|e| e.published() == best);
                if user_quiet {
                    next
                } else {
                    NO_DEADLINE
                }
            })
            .collect()
    }
}
