//! Heartbeats in batches: each session shard's lock taken once per batch.

use super::PresenceTracker;
use crate::{Activity, Clock, Error, Event, Id, Timestamp};

/// What [`PresenceTracker::heartbeat_batch`] did: the events the batch caused, and the
/// heartbeats it refused.
#[derive(Debug)]
#[non_exhaustive]
pub struct BatchOutcome<U, S> {
    /// The transitions the batch caused, in the order they were published.
    pub events: Vec<Event<U, S>>,
    /// The refused heartbeats: their position in the batch and why. A refused heartbeat changed
    /// nothing; the others were recorded.
    pub errors: Vec<(usize, Error)>,
}

impl<U, S> Default for BatchOutcome<U, S> {
    fn default() -> Self {
        BatchOutcome {
            events: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// # Recording heartbeats in batches
impl<U: Id, S: Id, C: Clock> PresenceTracker<U, S, C> {
    /// Records many heartbeats at once, at one reading of the clock: for a server that drains
    /// its sockets' heartbeats into a buffer and hands them over every few milliseconds.
    ///
    /// Each heartbeat has the meaning of [`heartbeat`](Self::heartbeat); the batch is not
    /// atomic, and one refused heartbeat does not stop the others.
    pub fn heartbeat_batch<'a>(
        &self,
        heartbeats: impl IntoIterator<Item = (&'a S, Activity)>,
    ) -> BatchOutcome<U, S>
    where
        S: 'a,
    {
        self.heartbeat_batch_at(heartbeats, self.clock.now())
    }

    /// [`heartbeat_batch`](Self::heartbeat_batch) at a given time.
    pub fn heartbeat_batch_at<'a>(
        &self,
        heartbeats: impl IntoIterator<Item = (&'a S, Activity)>,
        now: Timestamp,
    ) -> BatchOutcome<U, S>
    where
        S: 'a,
    {
        let mut outcome = BatchOutcome::default();
        for (i, (session, activity)) in heartbeats.into_iter().enumerate() {
            match self.heartbeat_at(session, activity, now) {
                Ok(mut events) => outcome.events.append(&mut events),
                Err(e) => outcome.errors.push((i, e)),
            }
        }
        outcome
    }
}
