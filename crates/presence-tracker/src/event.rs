//! Transitions: [`Event`], its [`Subject`] and [`Cause`], and [`Transitions`], what every
//! signal and tick returns.

use std::slice;

use serde::{Deserialize, Serialize};

use crate::{Presence, RoomEvent, Timestamp};

/// A derived presence changed: what the tracker hands out instead of heartbeats.
///
/// Per subject the events form a chain: each event's `from` is the previous event's `to`, the
/// first starts at [`Presence::Offline`]. `seq` counts every event about one user (its sessions'
/// and its own) and strictly increases, so a consumer can detect a missed or reordered event. It
/// starts again at 1 only for a user the tracker had forgotten (offline for longer than the
/// policy's retention).
///
/// An event also carries what a broadcaster needs as of its publication, computed under the
/// lock that published it: the user's live session count and its last-seen time. No consumer
/// has to read the tracker again (a read afterwards may already see a later state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event<U, S> {
    /// Whose presence changed.
    pub subject: Subject<U, S>,
    /// The presence published before.
    pub from: Presence,
    /// The presence now.
    pub to: Presence,
    /// When the change was found: the time of the signal or the tick.
    pub at: Timestamp,
    /// Why.
    pub cause: Cause,
    /// The user's event sequence number.
    pub seq: u64,
    /// The user's live sessions (tabs, devices) once this event is published. 0 when the user
    /// went offline.
    pub sessions: usize,
    /// The user's presence once this event is published: for a user's event its `to`; for a
    /// session's, the user's presence after the call that published it (so a consumer that
    /// keeps whole user states never has to combine events).
    pub user_presence: Presence,
    /// The subject's last-seen time once this event is published: a session's last connect or
    /// heartbeat; for a user, the latest of its sessions' (those that ended included).
    pub last_seen: Timestamp,
}

impl<U, S> Event<U, S> {
    /// The user the event is about, for a session's event its owner.
    pub fn user(&self) -> &U {
        match &self.subject {
            Subject::Session { user, .. } | Subject::User { user } => user,
        }
    }

    /// Whether this is a user's event (what most applications broadcast).
    pub fn is_user(&self) -> bool {
        matches!(self.subject, Subject::User { .. })
    }

    /// The session, for a session's event.
    pub fn session(&self) -> Option<&S> {
        match &self.subject {
            Subject::Session { session, .. } => Some(session),
            Subject::User { .. } => None,
        }
    }
}

/// Whose presence an [`Event`] is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Subject<U, S> {
    /// One session of a user.
    Session {
        /// The owner.
        user: U,
        /// The session.
        session: S,
    },
    /// A user: the highest presence of its sessions.
    User {
        /// The user.
        user: U,
    },
}

/// Why an [`Event`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Cause {
    /// A connect (new session or re-attach).
    Connect,
    /// A heartbeat.
    Heartbeat,
    /// A disconnect (only when its grace is zero).
    Disconnect,
    /// A leave (only when the leave grace is zero).
    Leave,
    /// Time passed a threshold: the session was not heard from for long enough.
    Timeout,
    /// The grace after a disconnect or leave ran out with no connection re-attached.
    GraceExpired,
}

/// The transitions one call published, in the order it published them: what every signal and
/// [`tick`](crate::PresenceTracker::tick) returns.
///
/// The tracker records each transition as published when it hands it out and never reports it
/// again, so dropping a `Transitions` unread loses it for good: the type is `#[must_use]`.
/// Most servers broadcast [`users`](Self::users) and ignore the sessions' events.
///
/// # Examples
///
/// ```
/// use presence_tracker::{Activity, ManualClock, Policy, Presence, PresenceTracker};
///
/// let tracker: PresenceTracker<String, String, _> =
///     PresenceTracker::with_clock(Policy::default(), ManualClock::new());
/// let changes = tracker.connect("ada".into(), "tab-1".into(), "sid-a", Activity::Active)?;
/// assert_eq!(changes.len(), 2); // the session's event and the user's
/// let user = changes.users().next().expect("ada came online");
/// assert_eq!((user.to, user.sessions), (Presence::Active, 1));
/// # Ok::<(), presence_tracker::Error>(())
/// ```
#[derive(Debug, PartialEq, Eq)]
#[must_use = "transitions are reported once: broadcast them, or they are lost"]
pub struct Transitions<U, S, R = String, M = ()> {
    events: Vec<Event<U, S>>,
    rooms: Vec<RoomEvent<U, S, R, M>>,
}

impl<U, S, R, M> Transitions<U, S, R, M> {
    /// No transitions.
    pub const fn new() -> Self {
        Transitions {
            events: Vec::new(),
            rooms: Vec::new(),
        }
    }

    /// Whether the call changed no presence (the common case for a heartbeat).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.rooms.is_empty()
    }

    /// How many sessions' and users' events (room events apart: [`rooms`](Self::rooms)).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Every session's and user's event, in publication order.
    pub fn iter(&self) -> slice::Iter<'_, Event<U, S>> {
        self.events.iter()
    }

    /// The users' events: what most applications broadcast.
    pub fn users(&self) -> impl Iterator<Item = &Event<U, S>> + '_ {
        self.events.iter().filter(|e| e.is_user())
    }

    /// The sessions' events.
    pub fn sessions(&self) -> impl Iterator<Item = &Event<U, S>> + '_ {
        self.events.iter().filter(|e| !e.is_user())
    }

    /// The rooms' events, in publication order (for each room, in version order).
    pub fn rooms(&self) -> slice::Iter<'_, RoomEvent<U, S, R, M>> {
        self.rooms.iter()
    }

    /// The sessions' and users' events as a `Vec`, in publication order. Drops the room
    /// events: a tracker with rooms takes [`into_parts`](Self::into_parts).
    pub fn into_vec(self) -> Vec<Event<U, S>> {
        self.events
    }

    /// The sessions' and users' events, and the rooms' events.
    #[allow(clippy::type_complexity)] // spelled out: what a caller destructures
    pub fn into_parts(self) -> (Vec<Event<U, S>>, Vec<RoomEvent<U, S, R, M>>) {
        (self.events, self.rooms)
    }

    /// Appends another call's transitions after these (a server gathering a batch of calls).
    pub fn append(&mut self, other: &mut Transitions<U, S, R, M>) {
        self.events.append(&mut other.events);
        self.rooms.append(&mut other.rooms);
    }

    pub(crate) fn push(&mut self, event: Event<U, S>) {
        self.events.push(event);
    }

    pub(crate) fn push_room(&mut self, event: RoomEvent<U, S, R, M>) {
        self.rooms.push(event);
    }

    /// The sessions' and users' events from the `first`-th on.
    pub(crate) fn events_from(&mut self, first: usize) -> &mut [Event<U, S>] {
        &mut self.events[first..]
    }
}

impl<U: Clone, S: Clone, R: Clone, M> Clone for Transitions<U, S, R, M> {
    fn clone(&self) -> Self {
        Transitions {
            events: self.events.clone(),
            rooms: self.rooms.clone(),
        }
    }
}

impl<U, S, R, M> Default for Transitions<U, S, R, M> {
    fn default() -> Self {
        Transitions::new()
    }
}

/// The sessions' and users' events (room events are dropped: see
/// [`into_parts`](Transitions::into_parts)).
impl<U, S, R, M> From<Transitions<U, S, R, M>> for Vec<Event<U, S>> {
    fn from(t: Transitions<U, S, R, M>) -> Self {
        t.events
    }
}

/// Yields the sessions' and users' events; room events are read with
/// [`rooms`](Transitions::rooms) or taken with [`into_parts`](Transitions::into_parts).
impl<U, S, R, M> IntoIterator for Transitions<U, S, R, M> {
    type Item = Event<U, S>;
    type IntoIter = std::vec::IntoIter<Event<U, S>>;

    fn into_iter(self) -> Self::IntoIter {
        self.events.into_iter()
    }
}

impl<'a, U, S, R, M> IntoIterator for &'a Transitions<U, S, R, M> {
    type Item = &'a Event<U, S>;
    type IntoIter = slice::Iter<'a, Event<U, S>>;

    fn into_iter(self) -> Self::IntoIter {
        self.events.iter()
    }
}

impl<U, S, R, M> Extend<Event<U, S>> for Transitions<U, S, R, M> {
    fn extend<I: IntoIterator<Item = Event<U, S>>>(&mut self, iter: I) {
        self.events.extend(iter);
    }
}
