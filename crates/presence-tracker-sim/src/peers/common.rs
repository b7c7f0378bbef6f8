//! What the models share: the published user presence, lazily cancelled timers, and the
//! membership of sessions that are each present or not.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use presence_tracker::{Activity, DisconnectKind, Presence};

use crate::metrics::Accounting;
use crate::world::server::{Refusal, Server};

/// What a two-state peer publishes for a present user (see the module docs of `peers`).
pub(crate) const PRESENT: Presence = Presence::Stale;

/// The presence published for each user; publishing a change books it.
#[derive(Debug, Default)]
pub(crate) struct Board {
    shown: Vec<Presence>,
}

impl Board {
    pub(crate) fn publish(&mut self, user: u32, to: Presence, now: u64, books: &mut Accounting) {
        let u = user as usize;
        if self.shown.len() <= u {
            self.shown.resize(u + 1, Presence::Offline);
        }
        let from = self.shown[u];
        if from != to {
            self.shown[u] = to;
            books.on_user_event(u, from, to, now);
        }
    }

    #[cfg(test)]
    pub(crate) fn shown(&self, user: u32) -> Presence {
        self.shown
            .get(user as usize)
            .copied()
            .unwrap_or(Presence::Offline)
    }
}

/// Timers by id, cancelled lazily: an entry counts only if its generation is still the id's.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

impl Timers {
    pub(crate) fn push(&mut self, at: u64, id: u32, gen: u32) {
        self.heap.push(Reverse((at, id, gen)));
    }

    /// The earliest entry's time (perhaps a cancelled one: early, never late).
    pub(crate) fn next(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The next entry due at `now`, cancelled or not: `(id, generation)`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(u32, u32)> {
        match self.heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                self.heap.pop().map(|Reverse((_, id, gen))| (id, gen))
            }
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Member {
    user: u32,
    present: bool,
    gen: u32,
}

/// Sessions that are each present or not, with one timer each; a user is present while any
/// of its sessions is.
#[derive(Debug, Default)]
pub(crate) struct Members {
    sessions: Vec<Member>,
    present: Vec<u32>,
    board: Board,
    timers: Timers,
}

impl Members {
    fn member(&mut self, session: u32, user: u32) -> &mut Member {
        let s = session as usize;
        if self.sessions.len() <= s {
            self.sessions.resize(s + 1, Member::default());
        }
        let member = &mut self.sessions[s];
        member.user = user;
        member
    }

    /// The session joins, if it is not present.
    pub(crate) fn enter(&mut self, now: u64, user: u32, session: u32, books: &mut Accounting) {
        let member = self.member(session, user);
        if member.present {
            return;
        }
        member.present = true;
        let u = user as usize;
        if self.present.len() <= u {
            self.present.resize(u + 1, 0);
        }
        self.present[u] += 1;
        books.on_session_event();
        if self.present[u] == 1 {
            self.board.publish(user, PRESENT, now, books);
        }
    }

    /// The session leaves, if it is present, and its timer is cancelled.
    pub(crate) fn leave(&mut self, now: u64, session: u32, books: &mut Accounting) {
        let Some(member) = self.sessions.get_mut(session as usize) else {
            return;
        };
        member.gen = member.gen.wrapping_add(1);
        if !member.present {
            return;
        }
        member.present = false;
        let user = member.user;
        let count = &mut self.present[user as usize];
        *count -= 1;
        books.on_session_event();
        if *count == 0 {
            self.board.publish(user, Presence::Offline, now, books);
        }
    }

    /// Every session leaves.
    pub(crate) fn leave_all(&mut self, now: u64, books: &mut Accounting) {
        for session in 0..self.sessions.len() {
            self.leave(now, session as u32, books);
        }
    }

    /// (Re)sets the session's timer to `at`.
    pub(crate) fn arm(&mut self, session: u32, user: u32, at: u64) {
        let member = self.member(session, user);
        member.gen = member.gen.wrapping_add(1);
        let gen = member.gen;
        self.timers.push(at, session, gen);
    }

    /// The next session whose timer is due at `now`.
    pub(crate) fn due(&mut self, now: u64) -> Option<u32> {
        while let Some((session, gen)) = self.timers.pop_due(now) {
            if self.sessions.get(session as usize).map(|m| m.gen) == Some(gen) {
                return Some(session);
            }
        }
        None
    }

    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.timers.next()
    }
}

/// `t` rounded up to a multiple of `step`: when a check loop running every `step` since the
/// start first sees a condition that holds from `t` on.
pub(crate) fn on_grid(t: u64, step: u64) -> u64 {
    t.div_ceil(step) * step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_is_present_while_any_session_is_and_cancelled_timers_do_not_fire() {
        let mut books = Accounting::new(1, 60_000);
        let mut members = Members::default();
        members.enter(0, 0, 1, &mut books);
        members.enter(0, 0, 2, &mut books);
        assert_eq!(members.board.shown(0), PRESENT);
        members.arm(1, 0, 10);
        members.arm(1, 0, 20); // replaces the first
        members.leave(5, 2, &mut books);
        assert_eq!(members.board.shown(0), PRESENT);
        assert_eq!(members.due(15), None);
        assert_eq!(members.due(20), Some(1));
        members.leave(20, 1, &mut books);
        assert_eq!(members.board.shown(0), Presence::Offline);
        assert_eq!(on_grid(30_001, 3_000), 33_000);
        assert_eq!(on_grid(30_000, 3_000), 30_000);
    }
}

/// A peer whose members stay present until a timeout after their last traffic and leave at
/// once on a clean close (Phoenix.Presence, Ably, PubNub, Yjs awareness: what differs is given
/// to [`new`](Self::new) and the setters). A transport that is only noticed dead changes
/// nothing.
#[derive(Debug)]
pub(crate) struct TimeoutPeer {
    members: Members,
    /// When a member last heard from at `now` goes.
    expiry: fn(u64) -> u64,
    /// Whether a server restart loses every member (state held in one process).
    restart_leaves: bool,
    timer_driven: bool,
    /// With fenced closes, each session's current connection: a close of an older one is
    /// ignored.
    fence: Option<Vec<u32>>,
}

impl TimeoutPeer {
    /// Members expire at `expiry(last traffic)`, survive a server restart, and the client's
    /// keep-alive runs on page timers (throttled in hidden tabs).
    pub(crate) fn new(expiry: fn(u64) -> u64) -> Self {
        TimeoutPeer {
            members: Members::default(),
            expiry,
            restart_leaves: false,
            timer_driven: true,
            fence: None,
        }
    }

    /// A server restart loses every member.
    pub(crate) fn restart_leaves(mut self) -> Self {
        self.restart_leaves = true;
        self
    }

    /// The keep-alive runs on the transport, which a browser does not throttle.
    pub(crate) fn transport_keepalive(mut self) -> Self {
        self.timer_driven = false;
        self
    }

    /// A clean close leaves only if it closes the session's current connection.
    pub(crate) fn fenced_closes(mut self) -> Self {
        self.fence = Some(Vec::new());
        self
    }

    fn alive(&mut self, now: u64, user: u32, session: u32, books: &mut Accounting) {
        self.members.enter(now, user, session, books);
        self.members.arm(session, user, (self.expiry)(now));
    }
}

impl Server for TimeoutPeer {
    fn connect(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        conn: u32,
        _activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        if let Some(current) = &mut self.fence {
            let s = session as usize;
            if current.len() <= s {
                current.resize(s + 1, 0);
            }
            current[s] = conn;
        }
        self.alive(now, user, session, books);
        Ok(())
    }

    fn heartbeat(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        _activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        self.alive(now, user, session, books);
        Ok(())
    }

    fn disconnect(
        &mut self,
        now: u64,
        _user: u32,
        session: u32,
        conn: u32,
        kind: DisconnectKind,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        let current = self
            .fence
            .as_ref()
            .is_none_or(|c| c.get(session as usize) == Some(&conn));
        if kind == DisconnectKind::Clean && current {
            self.members.leave(now, session, books);
        }
        Ok(())
    }

    fn tick(&mut self, now: u64, books: &mut Accounting) {
        while let Some(session) = self.members.due(now) {
            self.members.leave(now, session, books);
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.members.next_deadline()
    }

    fn restart(&mut self, now: u64, books: &mut Accounting) {
        if self.restart_leaves {
            self.members.leave_all(now, books);
        }
    }

    fn timer_driven(&self) -> bool {
        self.timer_driven
    }
}
