//! Transitions: [`Event`], its [`Subject`] and [`Cause`].

use serde::{Deserialize, Serialize};

use crate::{Presence, Timestamp};

/// A derived presence changed: what the tracker hands out instead of heartbeats.
///
/// Per subject the events form a chain: each event's `from` is the previous event's `to`, the
/// first starts at [`Presence::Offline`]. `seq` counts every event about one user (its sessions'
/// and its own) and strictly increases, so a consumer can detect a missed or reordered event. It
/// starts again at 1 only for a user the tracker had forgotten (offline for longer than the
/// policy's retention).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
