//! The naive server: `connect → online, disconnect → offline`.
//!
//! What the seed (`seed/presence-with-socketio.md`) warns against, as a chat tutorial writes it:
//! a `connection` handler sets the user online, a `disconnect` handler sets it offline. One flag
//! per user, so the latest connect or disconnect of any of its connections wins: closing one
//! of two tabs shows the user offline, a reload is an offline and an online, and a late
//! disconnect of an old connection (a restart's reconnect storm) shows offline a user whose new
//! connection is live. Heartbeats are ignored; the transport's disconnects (a close frame, or
//! Socket.IO's ping timeout, 20 to 45 s in the scenarios) are all it listens to.

use presence_tracker::{Activity, DisconnectKind, Presence};

use super::common::{Board, PRESENT};
use crate::metrics::Accounting;
use crate::world::server::{Refusal, Server};

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Naive {
    board: Board,
}

impl Server for Naive {
    fn connect(
        &mut self,
        now: u64,
        user: u32,
        _session: u32,
        _conn: u32,
        _activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        self.board.publish(user, PRESENT, now, books);
        Ok(())
    }

    fn heartbeat(
        &mut self,
        _now: u64,
        _user: u32,
        _session: u32,
        _activity: Activity,
        _books: &mut Accounting,
    ) -> Result<(), Refusal> {
        Ok(())
    }

    fn disconnect(
        &mut self,
        now: u64,
        user: u32,
        _session: u32,
        _conn: u32,
        _kind: DisconnectKind,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        self.board.publish(user, Presence::Offline, now, books);
        Ok(())
    }

    fn tick(&mut self, _now: u64, _books: &mut Accounting) {}

    fn next_deadline(&self) -> Option<u64> {
        None
    }

    fn restart(&mut self, _now: u64, _books: &mut Accounting) {}
}
