//! Phoenix.Presence over Phoenix channels.
//!
//! Sources:
//!
//! - Phoenix.Presence (<https://hexdocs.pm/phoenix/Phoenix.Presence.html>,
//!   phoenixframework/phoenix `lib/phoenix/presence.ex`): `track/3` registers the channel's
//!   process under the user's key with a meta; when the process exits the meta is removed and a
//!   `presence_diff` with the leave is broadcast. A user is listed while it has a meta. There is
//!   no grace period.
//! - The server side of the socket (phoenixframework/phoenix `lib/phoenix/endpoint.ex`,
//!   websocket configuration): "`:timeout` - the timeout for keeping websocket connections open
//!   after it last received data, defaults to 60_000ms". The socket's channel processes exit
//!   with it.
//! - The client (phoenixframework/phoenix `assets/js/phoenix/socket.js`): `heartbeatIntervalMs`
//!   defaults to 30000, sent from a `setTimeout`, so a hidden tab's browser throttles it; on
//!   `pagehide` it calls `disconnect()`, a clean close, so a page reload is a leave followed by
//!   a join.
//!
//! Modelled per session (tab or app): its meta lives from a connect until a close frame, 60 s
//! without any message, or a server restart (every channel process ends with the node). A
//! message from a session whose socket the server already closed stands for the client's
//! reconnect and rejoin (phoenix.js reconnects within 10 ms to 5 s). The world's own "noticed
//! dead" disconnects (Socket.IO's ping timeout) are ignored: Phoenix uses its 60 s instead.

use presence_tracker::{Activity, DisconnectKind};

use super::common::Members;
use crate::metrics::Accounting;
use crate::world::server::{Refusal, Server};

/// The server closes a socket that sent nothing for this long.
const TIMEOUT: u64 = 60_000;

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Phoenix {
    members: Members,
    /// Each session's current connection.
    conn: Vec<u32>,
}

impl Phoenix {
    fn alive(&mut self, now: u64, user: u32, session: u32, books: &mut Accounting) {
        self.members.enter(now, user, session, books);
        self.members.arm(session, user, now + TIMEOUT);
    }
}

impl Server for Phoenix {
    fn connect(
        &mut self,
        now: u64,
        user: u32,
        session: u32,
        conn: u32,
        _activity: Activity,
        books: &mut Accounting,
    ) -> Result<(), Refusal> {
        let s = session as usize;
        if self.conn.len() <= s {
            self.conn.resize(s + 1, 0);
        }
        self.conn[s] = conn;
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
        let current = self.conn.get(session as usize) == Some(&conn);
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
        self.members.leave_all(now, books);
    }
}
