//! Synapse (Matrix homeserver) presence.
//!
//! Sources: element-hq/synapse `synapse/handlers/presence.py` and
//! `synapse/rest/client/sync.py`.
//!
//! - `SYNC_ONLINE_TIMEOUT = 30 * 1000`: "How long to wait until a new /events or /sync request
//!   before assuming the client has gone". `handle_timeout` sets a user `offline` when no sync
//!   is in flight and `now - max(last_user_sync_ts, last_active_ts) > SYNC_ONLINE_TIMEOUT`.
//! - `IDLE_TIMER = 5 * 60 * 1000`: an `online` user whose `last_active_ts` is older becomes
//!   `unavailable`.
//! - `LAST_ACTIVE_GRANULARITY = 60 * 1000`: a user active within it is `currently_active`; the
//!   flag's change is notified (`should_notify`).
//! - `user_syncing`: a sync from an `offline` user sets it `online` with `last_active_ts` and
//!   `last_user_sync_ts` now; otherwise it updates `last_user_sync_ts`; the end of the request
//!   sets `last_user_sync_ts` again. `bump_presence_active_time` (the user doing something)
//!   sets `last_active_ts` and brings `unavailable` back to `online`.
//! - The timeouts are handled by a looping call every 5 s (`_handle_timeouts`).
//! - `SyncRestServlet.on_GET` holds the presence context for the whole long-poll and is not
//!   cancelled when the client goes away ("the client may have disconnected by now"), so a
//!   request runs to its `timeout` (clients use 30 s) whether the tab closed cleanly or not.
//!
//! Modelled per user: every message of a session starts a `/sync` request (its previous one
//! ends then) that runs for 30 s unless replaced; a message reporting `active` activity is a
//! bump. Checks run on a 5 s grid. The sync loop chains requests on responses, not page timers,
//! so hidden tabs are not throttled. Close frames and the world's "noticed dead" disconnects
//! change nothing: Synapse only sees requests. A restart ends every request in flight.
//!
//! Published as: `online` and `currently_active` → `active`; `online` → `idle`;
//! `unavailable` → `away`; `offline` → `offline`.

use presence_tracker::{Activity, DisconnectKind, Presence};

use super::common::{on_grid, Board, Timers};
use crate::metrics::Accounting;
use crate::world::server::{Refusal, Server};

/// How long a client's `/sync` long-poll waits for events (`timeout=30000`).
const LONG_POLL: u64 = 30_000;
const SYNC_ONLINE_TIMEOUT: u64 = 30_000;
const IDLE_TIMER: u64 = 5 * 60_000;
const LAST_ACTIVE_GRANULARITY: u64 = 60_000;
/// The period of `_handle_timeouts`.
const LOOP: u64 = 5_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum State {
    #[default]
    Offline,
    Online,
    Unavailable,
}

#[derive(Clone, Debug, Default)]
struct UserState {
    state: State,
    last_active: u64,
    last_sync: u64,
    /// Requests in flight: `(session, when it ends)`.
    syncing: Vec<(u32, u64)>,
    gen: u32,
}

impl UserState {
    /// Requests that ended by `now` update the last sync and leave the list.
    fn end_requests(&mut self, now: u64) {
        let mut last_sync = self.last_sync;
        self.syncing.retain(|&(_, until)| {
            let running = until > now;
            if !running {
                last_sync = last_sync.max(until);
            }
            running
        });
        self.last_sync = last_sync;
    }

    fn presence(&self, now: u64) -> Presence {
        match self.state {
            State::Offline => Presence::Offline,
            State::Unavailable => Presence::Away,
            State::Online if now.saturating_sub(self.last_active) <= LAST_ACTIVE_GRANULARITY => {
                Presence::Active
            }
            State::Online => Presence::Idle,
        }
    }

    /// When a check next has something to change, on the loop's grid.
    fn next_check(&self, now: u64) -> Option<u64> {
        let mut due = Vec::with_capacity(3);
        if self.state == State::Online {
            due.push(self.last_active + LAST_ACTIVE_GRANULARITY + 1);
            due.push(self.last_active + IDLE_TIMER + 1);
        }
        if self.state != State::Offline {
            let ends = self.syncing.iter().map(|&(_, until)| until).max();
            let quiet_since = ends.unwrap_or(0).max(self.last_sync).max(self.last_active);
            due.push(quiet_since + SYNC_ONLINE_TIMEOUT + 1);
        }
        due.into_iter()
            .filter(|&t| t > now)
            .min()
            .map(|t| on_grid(t, LOOP))
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Synapse {
    users: Vec<UserState>,
    board: Board,
    timers: Timers,
}

impl Synapse {
    fn user(&mut self, user: u32) -> &mut UserState {
        let u = user as usize;
        if self.users.len() <= u {
            self.users.resize(u + 1, UserState::default());
        }
        &mut self.users[u]
    }

    /// Publishes the user's presence and schedules its next check.
    fn settle(&mut self, now: u64, user: u32, books: &mut Accounting) {
        let state = self.user(user);
        let presence = state.presence(now);
        state.gen = state.gen.wrapping_add(1);
        let (gen, next) = (state.gen, state.next_check(now));
        self.board.publish(user, presence, now, books);
        if let Some(at) = next {
            self.timers.push(at, user, gen);
        }
    }

    /// A request of `session` reaches the server.
    fn request(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        activity: Activity,
        books: &mut Accounting,
    ) {
        let state = self.user(user);
        state.syncing.retain(|&(s, _)| s != session);
        state.end_requests(now);
        state.syncing.push((session, now + LONG_POLL));
        if state.state == State::Offline {
            state.state = State::Online;
            state.last_active = now;
        }
        state.last_sync = now;
        if activity == Activity::Active {
            state.last_active = now;
            if state.state == State::Unavailable {
                state.state = State::Online;
            }
        }
        self.settle(now, user, books);
    }

    /// `handle_timeout` for one user.
    fn check(&mut self, now: u64, user: u32, books: &mut Accounting) {
        let state = self.user(user);
        state.end_requests(now);
        if state.state == State::Online && now.saturating_sub(state.last_active) > IDLE_TIMER {
            state.state = State::Unavailable;
        }
        let quiet_since = state.last_sync.max(state.last_active);
        if state.state != State::Offline
            && state.syncing.is_empty()
            && now.saturating_sub(quiet_since) > SYNC_ONLINE_TIMEOUT
        {
            state.state = State::Offline;
        }
        self.settle(now, user, books);
    }
}

impl Server for Synapse {
    fn connect(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        _conn: u32,
        activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        self.request(now, user, session, activity, books);
        Ok(())
    }

    fn heartbeat(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        self.request(now, user, session, activity, books);
        Ok(())
    }

    fn disconnect(
        &mut self,
        _now: u64,
        _user: u32,
        _session: u32,
        _conn: u32,
        _kind: DisconnectKind,
        _books: &mut Accounting,
    ) -> Result<(), Refusal> {
        Ok(())
    }

    fn tick(&mut self, now: u64, books: &mut Accounting) {
        while let Some((user, gen)) = self.timers.pop_due(now) {
            if self.users.get(user as usize).map(|u| u.gen) == Some(gen) {
                self.check(now, user, books);
            }
        }
    }

    fn next_deadline(&self) -> Option<u64> {
        self.timers.next()
    }

    fn restart(&mut self, now: u64, books: &mut Accounting) {
        for user in 0..self.users.len() {
            let state = &mut self.users[user];
            if state.syncing.is_empty() {
                continue;
            }
            for request in &mut state.syncing {
                request.1 = now;
            }
            state.end_requests(now);
            self.settle(now, user as u32, books);
        }
    }

    fn timer_driven(&self) -> bool {
        false
    }
}
