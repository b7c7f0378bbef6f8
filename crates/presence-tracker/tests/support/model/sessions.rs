//! The sessions' model: plain records, every presence derived from scratch.

use std::collections::BTreeMap;
use std::time::Duration;

use presence_tracker::{Activity, DisconnectKind, Error, Presence};

use super::{ACTIVE, AWAY, DISCONNECT_GRACE, IDLE, LEAVE_GRACE, PER_USER, TTL};

/// The error variants the models predict, with what they report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    UnknownSession,
    OwnedByOther,
    TooManyForUser,
    NotInRoom,
    TooManyRooms { max: usize },
    RoomFull { max: usize },
    MetadataTooLarge { size: usize, max: usize },
    MetadataTooFrequent { retry_after: Duration },
}

impl Refusal {
    /// The refusal an error is, if the models predict it.
    pub(crate) fn of(e: &Error) -> Option<Refusal> {
        Some(match *e {
            Error::UnknownSession => Refusal::UnknownSession,
            Error::SessionOwnedByOtherUser => Refusal::OwnedByOther,
            Error::TooManySessionsForUser { .. } => Refusal::TooManyForUser,
            Error::NotInRoom => Refusal::NotInRoom,
            Error::TooManyRooms { max } => Refusal::TooManyRooms { max },
            Error::RoomFull { max } => Refusal::RoomFull { max },
            Error::MetadataTooLarge { size, max } => Refusal::MetadataTooLarge { size, max },
            Error::MetadataTooFrequent { retry_after } => {
                Refusal::MetadataTooFrequent { retry_after }
            }
            _ => return None,
        })
    }
}

/// A session as the model keeps it: plain fields, nothing precomputed.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    pub(crate) user: u64,
    pub(crate) last_seen: u64,
    pub(crate) activity: Activity,
    pub(crate) conn: u64,
    pub(crate) connected: bool,
    pub(crate) grace: Option<u64>,
}

impl Record {
    /// The pure rule: offline once the grace deadline is reached, else the lower of the presence
    /// by age and the activity's cap.
    pub(crate) fn presence(&self, now: u64) -> Presence {
        if self.grace.is_some_and(|g| g <= now) {
            return Presence::Offline;
        }
        let age = now.saturating_sub(self.last_seen);
        let by_age = if age < ACTIVE {
            Presence::Active
        } else if age < IDLE {
            Presence::Idle
        } else if age < AWAY {
            Presence::Away
        } else if age < TTL {
            Presence::Stale
        } else {
            Presence::Offline
        };
        let cap = match self.activity {
            Activity::Active => Presence::Active,
            Activity::Idle => Presence::Idle,
            Activity::Background => Presence::Away,
        };
        by_age.min(cap)
    }

    pub(crate) fn expires_at(&self) -> u64 {
        let ttl = self.last_seen + TTL;
        self.grace.map_or(ttl, |g| g.min(ttl))
    }
}

/// The brute-force model: a map of records and a high-water clock.
#[derive(Debug, Default)]
pub(crate) struct Model {
    /// The latest time a signal or a tick saw: the tracker's high-water mark. Reads do not move
    /// it.
    pub(crate) high: u64,
    /// The time reads derive at: the clock's, or `high` if later. For a signal or a tick, `high`.
    pub(crate) now: u64,
    pub(crate) sessions: BTreeMap<u64, Record>,
    /// The last record of each session id that expired (what its offline event reports).
    pub(crate) ended: BTreeMap<u64, Record>,
    /// The latest `last_seen` each user ever had (bounds for `UserView::last_seen`).
    pub(crate) ever_seen: BTreeMap<u64, u64>,
}

impl Model {
    /// A session the tracker must still know: its derived presence is not offline.
    pub(crate) fn live(&self, session: u64) -> Option<&Record> {
        self.sessions
            .get(&session)
            .filter(|r| r.presence(self.now) != Presence::Offline)
    }

    pub(crate) fn live_sessions_of(&self, user: u64) -> impl Iterator<Item = (u64, &Record)> {
        self.sessions
            .iter()
            .filter(move |(_, r)| r.user == user && r.presence(self.now) != Presence::Offline)
            .map(|(s, r)| (*s, r))
    }

    pub(crate) fn user_presence(&self, user: u64) -> Presence {
        self.live_sessions_of(user)
            .map(|(_, r)| r.presence(self.now))
            .max()
            .unwrap_or(Presence::Offline)
    }

    /// A signal or a tick with the clock at `clock`: moves the tracker's time (the high-water
    /// mark) and forgets the records expired at it, which once offline there stay offline
    /// whatever the clock does (for signals: time never goes back for them).
    pub(crate) fn at(&mut self, clock: u64) {
        self.high = self.high.max(clock);
        self.now = self.high;
        let now = self.now;
        let (live, ended): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.sessions)
            .into_iter()
            .partition(|(_, r)| r.presence(now) != Presence::Offline);
        self.sessions = live;
        self.ended.extend(ended);
    }

    /// Only the clock moved (no signal): reads derive at the clock's time, or the high-water
    /// mark if the clock is behind it. A read moves nothing, so a clock set back after an
    /// advance that no signal saw takes the reads back with it.
    pub(crate) fn read_at(&mut self, clock: u64) {
        self.now = clock.max(self.high);
    }

    fn seen(&mut self, user: u64) {
        let e = self.ever_seen.entry(user).or_insert(self.now);
        *e = (*e).max(self.now);
    }

    pub(crate) fn connect(
        &mut self,
        user: u64,
        session: u64,
        conn: u64,
        activity: Activity,
    ) -> Result<(), Refusal> {
        let now = self.now;
        if let Some(r) = self.sessions.get_mut(&session) {
            if r.user != user {
                return Err(Refusal::OwnedByOther);
            }
            r.conn = conn;
            r.connected = true;
            r.grace = None;
            r.last_seen = now;
            r.activity = activity;
        } else {
            if self.live_sessions_of(user).count() >= PER_USER {
                return Err(Refusal::TooManyForUser);
            }
            self.sessions.insert(
                session,
                Record {
                    user,
                    last_seen: now,
                    activity,
                    conn,
                    connected: true,
                    grace: None,
                },
            );
        }
        self.seen(user);
        Ok(())
    }

    pub(crate) fn heartbeat(&mut self, session: u64, activity: Activity) -> Result<(), Refusal> {
        let now = self.now;
        let r = self
            .sessions
            .get_mut(&session)
            .ok_or(Refusal::UnknownSession)?;
        r.last_seen = now;
        r.activity = activity;
        let user = r.user;
        self.seen(user);
        Ok(())
    }

    pub(crate) fn disconnect(
        &mut self,
        session: u64,
        conn: u64,
        kind: DisconnectKind,
    ) -> Result<(), Refusal> {
        let now = self.now;
        let r = self
            .sessions
            .get_mut(&session)
            .ok_or(Refusal::UnknownSession)?;
        if r.conn != conn {
            return Ok(());
        }
        let grace = match kind {
            DisconnectKind::Clean => LEAVE_GRACE,
            DisconnectKind::Lost => DISCONNECT_GRACE,
        };
        r.connected = false;
        r.grace = Some(r.grace.map_or(now + grace, |g| g.min(now + grace)));
        Ok(())
    }

    pub(crate) fn leave(&mut self, session: u64, conn: u64) -> Result<(), Refusal> {
        let now = self.now;
        let r = self
            .sessions
            .get_mut(&session)
            .ok_or(Refusal::UnknownSession)?;
        // Fenced: the leave of a connection that is no longer the session's changes nothing.
        if r.conn != conn {
            return Ok(());
        }
        // The client is going: its connection counts as closed.
        r.connected = false;
        r.grace = Some(
            r.grace
                .map_or(now + LEAVE_GRACE, |g| g.min(now + LEAVE_GRACE)),
        );
        Ok(())
    }
}
