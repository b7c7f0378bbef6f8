//! Where flaps come from: each flap the books took is attributed to what the world was doing
//! to its user when it was published (see [`FlapSources`](crate::FlapSources)).

use super::{Server, Truth, World};
use crate::scenario::Client;

/// A restart's reconnections and late disconnects are over well within this.
const RESTART_WINDOW_MS: u64 = 180_000;
/// A client reconnects within this once its network is back.
const PARTITION_WINDOW_MS: u64 = 60_000;

impl<S: Server> World<'_, S> {
    /// Attributes the flaps booked since the last call.
    pub(super) fn attribute_flaps(&mut self) {
        let Some(flaps) = self.books.take_flaps() else {
            return;
        };
        let now = self.now;
        let within = |at: Option<u64>, window: u64| at.is_some_and(|at| now - at < window);
        for (u, ..) in flaps {
            let user = &self.users[u];
            let sessions = || user.sessions.iter().map(|&s| &self.sessions[s as usize]);
            let sources = &mut self.flap_sources;
            if within(self.restarted, RESTART_WINDOW_MS) {
                sources.restart += 1;
            } else if user.partitioned || within(user.partition_ended, PARTITION_WINDOW_MS) {
                sources.partition += 1;
            } else if sessions().any(|s| s.suspended) {
                sources.suspended += 1;
            } else if self.pops[user.pop].client == Client::Browser
                && sessions().any(|s| s.truth != Truth::Gone)
                && sessions().all(|s| s.truth <= Truth::Hidden)
            {
                sources.hidden_tab += 1;
            } else {
                sources.heartbeat += 1;
            }
        }
    }
}
