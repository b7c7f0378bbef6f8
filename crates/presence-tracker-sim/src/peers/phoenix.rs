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

use super::common::TimeoutPeer;

/// The server closes a socket that sent nothing for this long.
const TIMEOUT: u64 = 60_000;

/// See the module docs: every channel process ends with the node, and a close frame ends the
/// session's meta only if it closes its current socket.
pub(crate) fn phoenix() -> TimeoutPeer {
    TimeoutPeer::new(|now| now + TIMEOUT)
        .restart_leaves()
        .fenced_closes()
}
