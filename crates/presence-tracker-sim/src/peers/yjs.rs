//! Yjs awareness (y-protocols with the y-websocket provider), as one observer sees it.
//!
//! Sources:
//!
//! - yjs/y-protocols `awareness.js`: `outdatedTimeout = 30000`; a check runs every
//!   `outdatedTimeout / 10` (3 s) and renews the local state once it is `outdatedTimeout / 2`
//!   (15 s) old, and removes a remote state whose last update is `outdatedTimeout` or more old.
//!   A state received again after a removal is set again. "Before a client disconnects, it
//!   should propagate a `null` state."
//! - yjs/y-websocket `src/y-websocket.js`: on `beforeunload` the provider removes its own state
//!   (a `null` update reaches the others at once); on open it sends its state; when its socket
//!   closes it drops every remote state.
//!
//! Modelled per session (awareness client): present from its connect until a close frame (the
//! `null` update: a reload is a removal and an addition), or until the first 3 s check at least
//! 30 s after its last update. The renewal runs on a page timer (`setInterval`), which a hidden
//! tab's browser throttles. A server restart closes the observer's socket too, which drops
//! every remote state until each client reconnects and sends it again. The world's "noticed
//! dead" disconnects (Socket.IO's ping timeout) are ignored: the 30 s timeout comes first.

use presence_tracker::{Activity, DisconnectKind};

use super::common::{on_grid, Members};
use crate::metrics::Accounting;
use crate::world::server::{Refusal, Server};

/// `outdatedTimeout`.
const OUTDATED: u64 = 30_000;
/// How often the observer's awareness checks for outdated states.
const CHECK: u64 = OUTDATED / 10;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Yjs {
    members: Members,
}

impl Yjs {
    fn update(&mut self, now: u64, user: u32, session: u32, books: &mut Accounting) {
        self.members.enter(now, user, session, books);
        self.members
            .arm(session, user, on_grid(now + OUTDATED, CHECK));
    }
}

impl Server for Yjs {
    fn connect(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        _conn: u32,
        _activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        self.update(now, user, session, books);
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
        self.update(now, user, session, books);
        Ok(())
    }

    fn disconnect(
        &mut self,
        now: u64,
        _user: u32,
        session: u32,
        _conn: u32,
        kind: DisconnectKind,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        if kind == DisconnectKind::Clean {
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
        self.members.leave_all(now, books);
    }
}
