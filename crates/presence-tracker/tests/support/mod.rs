//! Helpers shared by the integration tests: trackers on a [`ManualClock`], and [`Replay`], which
//! rebuilds the published presences from the events and checks their chains on the way
//! ([`room_replay::RoomReplay`] does the same for rooms); the brute-force [`model`].
#![allow(dead_code)]

pub(crate) mod gate;
pub(crate) mod model;
pub(crate) mod room_replay;

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Duration;

use presence_tracker::{Cause, Event, ManualClock, Policy, Presence, PresenceTracker, Subject};

/// The tracker every test drives: virtual time only.
pub(crate) type Tracker<U = u64, S = u64> = PresenceTracker<U, S, ManualClock>;

/// Whole seconds.
pub(crate) const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Milliseconds.
pub(crate) const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A tracker with `policy` on a fresh manual clock, and a handle on that clock.
pub(crate) fn tracker_with<U, S>(policy: Policy) -> (Tracker<U, S>, ManualClock)
where
    U: presence_tracker::Id,
    S: presence_tracker::Id,
{
    let clock = ManualClock::new();
    (PresenceTracker::with_clock(policy, clock.clone()), clock)
}

/// A `u64`/`u64` tracker with the seed's default policy.
pub(crate) fn default_tracker() -> (Tracker, ManualClock) {
    tracker_with(Policy::default())
}

/// Advances the clock by `step` and ticks, until `total` has passed; returns every event.
pub(crate) fn tick_through<U, S>(
    tracker: &Tracker<U, S>,
    clock: &ManualClock,
    total: Duration,
    step: Duration,
) -> Vec<Event<U, S>>
where
    U: presence_tracker::Id,
    S: presence_tracker::Id,
{
    let mut events = Vec::new();
    let mut passed = Duration::ZERO;
    while passed < total {
        let d = step.min(total - passed);
        clock.advance(d);
        passed += d;
        events.extend(tracker.tick());
    }
    events
}

/// `(is_user, from, to, cause)` of each event, for compact assertions. Takes a
/// [`Transitions`](presence_tracker::Transitions) or a `Vec`/slice of events by reference.
pub(crate) fn transitions<'a, U: 'a, S: 'a>(
    events: impl IntoIterator<Item = &'a Event<U, S>>,
) -> Vec<(bool, Presence, Presence, Cause)> {
    events
        .into_iter()
        .map(|e| (e.is_user(), e.from, e.to, e.cause))
        .collect()
}

/// `(from, to, cause)` of the user events only.
pub(crate) fn user_transitions<'a, U: 'a, S: 'a>(
    events: impl IntoIterator<Item = &'a Event<U, S>>,
) -> Vec<(Presence, Presence, Cause)> {
    events
        .into_iter()
        .filter(|e| e.is_user())
        .map(|e| (e.from, e.to, e.cause))
        .collect()
}

/// `(from, to, cause)` of the session events only.
pub(crate) fn session_transitions<'a, U: 'a, S: 'a>(
    events: impl IntoIterator<Item = &'a Event<U, S>>,
) -> Vec<(Presence, Presence, Cause)> {
    events
        .into_iter()
        .filter(|e| !e.is_user())
        .map(|e| (e.from, e.to, e.cause))
        .collect()
}

/// The published presence of every subject, rebuilt from the events alone, as a consumer would.
///
/// [`Replay::apply`] checks what a consumer relies on: each event's `from` is the previous `to` of
/// its subject (the first starts at offline), a session id changes owner only through offline,
/// and the per-user sequence number strictly increases, except right after
/// [`Replay::allow_restart`] (the tracker forgot the user after its retention).
#[derive(Debug)]
pub(crate) struct Replay<U, S> {
    sessions: HashMap<S, (U, Presence)>,
    users: HashMap<U, Presence>,
    seqs: HashMap<U, u64>,
    may_restart: HashMap<U, bool>,
    /// Events applied so far.
    pub(crate) applied: usize,
}

impl<U: Clone + Eq + Hash + Debug, S: Clone + Eq + Hash + Debug> Default for Replay<U, S> {
    fn default() -> Self {
        Replay {
            sessions: HashMap::new(),
            users: HashMap::new(),
            seqs: HashMap::new(),
            may_restart: HashMap::new(),
            applied: 0,
        }
    }
}

impl<U: Clone + Eq + Hash + Debug, S: Clone + Eq + Hash + Debug> Replay<U, S> {
    /// An empty replay: every subject offline.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The user may have been forgotten: its next sequence number may start again.
    pub(crate) fn allow_restart(&mut self, user: &U) {
        self.may_restart.insert(user.clone(), true);
    }

    /// The user's published state can no longer restart (it is live again).
    pub(crate) fn forbid_restart(&mut self, user: &U) {
        self.may_restart.insert(user.clone(), false);
    }

    /// Applies one event, or says which rule it breaks.
    pub(crate) fn apply(&mut self, e: &Event<U, S>) -> Result<(), String> {
        self.apply_keyed(e, |_, session| session.clone())
    }

    /// Applies one event whose session is keyed by `key(owner, session)` in this replay (for
    /// example by owner and id, when ids change hands).
    pub(crate) fn apply_keyed<T: Debug>(
        &mut self,
        e: &Event<U, T>,
        key: impl Fn(&U, &T) -> S,
    ) -> Result<(), String> {
        let user = e.user().clone();
        if e.from == e.to {
            return Err(format!("event changes nothing: {e:?}"));
        }
        if matches!(e.cause, Cause::Timeout | Cause::GraceExpired) && e.to > e.from {
            return Err(format!("time alone made a presence rise: {e:?}"));
        }
        match self.seqs.get(&user) {
            Some(&last) if e.seq <= last => {
                if self.may_restart.get(&user).copied().unwrap_or(false) {
                    self.may_restart.insert(user.clone(), false);
                } else {
                    return Err(format!(
                        "seq {} of {user:?} does not follow {last}: {e:?}",
                        e.seq
                    ));
                }
            }
            _ => {}
        }
        self.seqs.insert(user.clone(), e.seq);
        match &e.subject {
            Subject::User { user } => {
                let published = self.users.get(user).copied().unwrap_or(Presence::Offline);
                if e.from != published {
                    return Err(format!(
                        "user chain broken: published {published:?}, event {e:?}"
                    ));
                }
                self.users.insert(user.clone(), e.to);
            }
            Subject::Session { user, session } => {
                let session = &key(user, session);
                let (owner, published) = self
                    .sessions
                    .get(session)
                    .cloned()
                    .unwrap_or((user.clone(), Presence::Offline));
                if owner != *user && published != Presence::Offline {
                    return Err(format!(
                        "session moved from {owner:?} while {published:?}: {e:?}"
                    ));
                }
                if e.from != published {
                    return Err(format!(
                        "session chain broken: published {published:?}, event {e:?}"
                    ));
                }
                self.sessions.insert(session.clone(), (user.clone(), e.to));
            }
        }
        self.applied += 1;
        Ok(())
    }

    /// Applies events in order.
    pub(crate) fn apply_all<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a Event<U, S>>,
    ) -> Result<(), String>
    where
        U: 'a,
        S: 'a,
    {
        events.into_iter().try_for_each(|e| self.apply(e))
    }

    /// A user's published presence (offline if never published).
    pub(crate) fn user(&self, user: &U) -> Presence {
        self.users.get(user).copied().unwrap_or(Presence::Offline)
    }

    /// A session's published presence and owner, `None` if never published.
    pub(crate) fn session(&self, session: &S) -> Option<(U, Presence)> {
        self.sessions.get(session).cloned()
    }

    /// The published presence of every session seen.
    pub(crate) fn sessions(&self) -> impl Iterator<Item = (&S, &(U, Presence))> {
        self.sessions.iter()
    }

    /// The published presence of every user seen.
    pub(crate) fn users(&self) -> impl Iterator<Item = (&U, &Presence)> {
        self.users.iter()
    }
}
