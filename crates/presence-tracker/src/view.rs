//! What reads return: [`SessionView`], [`UserView`], [`Census`].

use serde::{Deserialize, Serialize};

use crate::{Activity, ConnectionId, Presence, SessionRecord, Timestamp};

/// One session's presence and record, derived at the time of the read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
    /// When it expires for want of a connection, if its connection closed (a disconnect or a
    /// leave): the grace deadline.
    pub grace_deadline: Option<Timestamp>,
}

impl<U> SessionView<U> {
    /// The session as [`derive`](crate::derive()) reads it: derive its presence at another
    /// time without asking the tracker again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use presence_tracker::{derive, Activity, ManualClock, Policy, Presence, PresenceTracker};
    ///
    /// let clock = ManualClock::new();
    /// let tracker: PresenceTracker<u64, u64, _> =
    ///     PresenceTracker::with_clock(Policy::default(), clock.clone());
    /// let _ = tracker.connect(7, 1, "socket-a", Activity::Active)?;
    /// let view = tracker.session(&1).expect("live");
    /// let later = clock.now() + Duration::from_secs(30);
    /// assert_eq!(derive(&view.record(), later, tracker.policy()), Presence::Idle);
    /// # Ok::<(), presence_tracker::Error>(())
    /// ```
    pub fn record(&self) -> SessionRecord {
        SessionRecord::new(self.last_seen, self.activity, self.grace_deadline)
    }
}

/// One user's presence, derived at the time of the read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
#[non_exhaustive]
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
#[non_exhaustive]
pub struct Census {
    /// Users, including the offline ones still retained.
    pub users: Counts,
    /// Live sessions.
    pub sessions: Counts,
}
