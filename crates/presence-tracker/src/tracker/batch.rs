//! Heartbeats in batches: each session shard's lock taken once per batch.

use std::borrow::Borrow;
use std::hash::BuildHasher;

use smallvec::SmallVec;

use super::session_table::SessionEntry;
use super::{PresenceTracker, PROBES, SESSION_SHARDS};
use crate::{Activity, Clock, Error, Id, Metadata, Transitions};

/// What [`PresenceTracker::heartbeat_batch`] did: the events the batch caused, and the
/// heartbeats it refused.
#[derive(Debug)]
#[non_exhaustive]
#[must_use = "transitions are reported once: broadcast them, or they are lost"]
pub struct BatchOutcome<U, S, R = String, M = ()> {
    /// The transitions the batch caused, in the order they were published.
    pub events: Transitions<U, S, R, M>,
    /// The refused heartbeats: their position in the batch and why. A refused heartbeat changed
    /// nothing; the others were recorded.
    pub errors: Vec<(usize, Error)>,
}

impl<U, S, R, M> Default for BatchOutcome<U, S, R, M> {
    fn default() -> Self {
        BatchOutcome {
            events: Transitions::new(),
            errors: Vec::new(),
        }
    }
}

/// # Recording heartbeats in batches
impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> PresenceTracker<U, S, C, R, M> {
    /// Records many heartbeats at once, at one reading of the clock: for a server that drains
    /// its sockets' heartbeats into a buffer and hands them over every few milliseconds.
    ///
    /// Each heartbeat has the meaning of [`heartbeat`](Self::heartbeat); the batch is not
    /// atomic, and one refused heartbeat does not stop the others. Heartbeats of one session
    /// apply in their order in the batch; those of different sessions in an order of the
    /// tracker's choosing (so when two sessions of one user both rise, the user may rise in one
    /// event or in two).
    ///
    /// The heartbeats are grouped by session shard, and each shard's read lock is taken once
    /// for all of its heartbeats: the common heartbeat, which changes no presence, is then a
    /// table probe and one relaxed store, with no locked instruction of its own. A heartbeat
    /// that changes a presence releases the shard's lock and takes the slow path of
    /// [`heartbeat`](Self::heartbeat) where it stands, so heartbeats for one session apply in
    /// their order in the batch. Allocates its scratch space, once per call.
    ///
    /// Takes owned ids or references (`(S, Activity)` or `(&S, Activity)`), so what a channel
    /// of heartbeats yields goes in as it is.
    ///
    /// # Examples
    ///
    /// ```
    /// use presence_tracker::{Activity, ManualClock, Policy, PresenceTracker};
    ///
    /// let tracker: PresenceTracker<u64, u64, _> =
    ///     PresenceTracker::with_clock(Policy::default(), ManualClock::new());
    /// let _ = tracker.connect(7, 1, "socket-a", Activity::Active)?;
    /// let _ = tracker.connect(8, 2, "socket-b", Activity::Active)?;
    /// // Drained from the sockets since the last call (a channel of `(session, activity)`):
    /// let pending = vec![(1, Activity::Active), (2, Activity::Active), (3, Activity::Idle)];
    /// let outcome = tracker.heartbeat_batch(pending);
    /// assert!(outcome.events.is_empty()); // nothing changed presence
    /// assert_eq!(outcome.errors.len(), 1); // session 3 never connected
    /// assert_eq!(outcome.errors[0].0, 2);
    /// # Ok::<(), presence_tracker::Error>(())
    /// ```
    pub fn heartbeat_batch<K>(
        &self,
        heartbeats: impl IntoIterator<Item = (K, Activity)>,
    ) -> BatchOutcome<U, S, R, M>
    where
        K: Borrow<S>,
    {
        let mut outcome = BatchOutcome::default();
        let iter = heartbeats.into_iter();
        let now = match self.signal_time(self.clock.now()) {
            Ok(now) => now,
            Err(e) => {
                // Past the maximum time: every heartbeat refused.
                outcome.errors = iter.enumerate().map(|(i, _)| (i, e.clone())).collect();
                return outcome;
            }
        };
        let mut items: Vec<Item<K>> = Vec::with_capacity(iter.size_hint().0);
        let mut counts = [0usize; SESSION_SHARDS];
        for (position, (session, activity)) in iter.enumerate() {
            let hash = self.shard_hasher.hash_one(session.borrow());
            counts[Self::session_shard(hash)] += 1;
            items.push(Item {
                session,
                hash,
                activity,
                position,
            });
        }
        // Group by shard, keeping the batch's order within a shard (a counting sort).
        let mut start = [0usize; SESSION_SHARDS + 1];
        for (i, &c) in counts.iter().enumerate() {
            start[i + 1] = start[i] + c;
        }
        let mut order = vec![0usize; items.len()];
        let mut fill = start;
        for (i, item) in items.iter().enumerate() {
            let shard = Self::session_shard(item.hash);
            order[fill[shard]] = i;
            fill[shard] += 1;
        }
        for shard in 0..SESSION_SHARDS {
            let group = &order[start[shard]..start[shard + 1]];
            if group.is_empty() {
                continue;
            }
            let mut map = self.sessions[shard].0.read();
            // First the probes alone, a chunk at a time: with nothing else in the loop, the CPU
            // has many of them in flight at once. Then the checks and stores, on entries now in
            // cache, until one needs the slow path.
            let mut done = 0;
            'fast: for chunk in group.chunks(PROBES) {
                let found: SmallVec<[Option<&SessionEntry<U, S>>; PROBES]> = chunk
                    .iter()
                    .map(|&i| map.get::<S>(items[i].hash, items[i].session.borrow()))
                    .collect();
                for (&i, entry) in chunk.iter().zip(found) {
                    let item = &items[i];
                    match entry {
                        Some(e) if !e.expired(now, self.policy.ttl_ms) => {
                            if self.record_heartbeat(e, item.activity, now).is_none() {
                                break 'fast;
                            }
                        }
                        _ => outcome.errors.push((item.position, Error::UnknownSession)),
                    }
                    done += 1;
                }
            }
            for &i in &group[done..] {
                let item = &items[i];
                let user = match self.live_entry::<S>(&map, item.hash, item.session.borrow(), now) {
                    Ok(entry) => match self.record_heartbeat(entry, item.activity, now) {
                        Some(_) => continue,
                        None => entry.user.clone(),
                    },
                    Err(e) => {
                        outcome.errors.push((item.position, e));
                        continue;
                    }
                };
                // A change: the slow path takes the owner's lock, which comes before a session
                // shard's in the lock order, so let go of this one meanwhile.
                drop(map);
                let result =
                    self.heartbeat_slow::<S>(user, item.session.borrow(), item.activity, now);
                map = self.sessions[shard].0.read();
                match result {
                    Ok(mut events) => outcome.events.append(&mut events),
                    Err(e) => outcome.errors.push((item.position, e)),
                }
            }
        }
        outcome.errors.sort_by_key(|&(position, _)| position);
        outcome
    }
}

/// One heartbeat of a batch, hashed.
struct Item<K> {
    session: K,
    hash: u64,
    activity: Activity,
    position: usize,
}
