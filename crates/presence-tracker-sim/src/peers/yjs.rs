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

use super::common::{on_grid, TimeoutPeer};

/// `outdatedTimeout`.
const OUTDATED: u64 = 30_000;
/// How often the observer's awareness checks for outdated states.
const CHECK: u64 = OUTDATED / 10;

/// See the module docs: outdated `outdatedTimeout` after the last update, found at the
/// observer's next check; updates run on page timers; a restart loses every state.
pub(crate) fn yjs() -> TimeoutPeer {
    TimeoutPeer::new(|now| on_grid(now + OUTDATED, CHECK)).restart_leaves()
}
