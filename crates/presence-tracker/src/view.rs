//! What reads return: [`SessionView`], [`UserView`], [`Census`].

use serde::{Deserialize, Serialize};

use crate::{Activity, ConnectionId, Presence, Timestamp};

/// One session's presence and record, derived at the time of the read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView<U> {
    /// The owner.
    pub user: U,
    /// The derived presence.
    pub presence: Presence,
    /// The activity the client last reported.
    pub activity: Activity,
    /// Server time of the last connect or heartbeat.
    pub last_seen: Timestamp,
    /// The current connection.
    pub connection: ConnectionId,
    /// Whether that connection is open (no disconnect or leave since it attached).
    pub connected: bool,
    /// When the session expires unless a signal comes: the TTL, or the grace deadline if sooner.
    pub expires_at: Timestamp,
}

/// One user's presence, derived at the time of the read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    /// The highest presence among the user's sessions; offline with none.
    pub presence: Presence,
    /// How many sessions are not offline.
    pub sessions: usize,
    /// The latest `last_seen` of any of its sessions; kept after the user went offline for the
    /// policy's retention. `None` for a user never seen or forgotten.
    pub last_seen: Option<Timestamp>,
}

/// How many subjects are in each presence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Active.
    pub active: usize,
    /// Idle.
    pub idle: usize,
    /// Away.
    pub away: usize,
    /// Stale.
    pub stale: usize,
    /// Offline (for users: the retained ones; expired sessions are freed, so never counted).
    pub offline: usize,
}

impl Counts {
    /// The count for one presence.
    pub fn get(&self, presence: Presence) -> usize {
        match presence {
            Presence::Active => self.active,
            Presence::Idle => self.idle,
            Presence::Away => self.away,
            Presence::Stale => self.stale,
            Presence::Offline => self.offline,
        }
    }

    /// All counted subjects.
    pub fn total(&self) -> usize {
        self.active + self.idle + self.away + self.stale + self.offline
    }

    /// Those not offline.
    pub fn online(&self) -> usize {
        self.total() - self.offline
    }

    pub(crate) fn from_array(a: [usize; 5]) -> Counts {
        Counts {
            offline: a[Presence::Offline.index()],
            stale: a[Presence::Stale.index()],
            away: a[Presence::Away.index()],
            idle: a[Presence::Idle.index()],
            active: a[Presence::Active.index()],
        }
    }
}

/// How many users and sessions are in each presence, as last published (by the last event of
/// each subject): it reads counters, so it is O(1), and it is exact right after a
/// [`tick`](crate::PresenceTracker::tick).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Census {
    /// Users, including the offline ones still retained.
    pub users: Counts,
    /// Live sessions.
    pub sessions: Counts,
}
