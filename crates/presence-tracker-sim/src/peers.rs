//! The peers: models of how other presence systems decide who is online, run on the same
//! simulated users as the tracker.
//!
//! Each model follows its system's documented semantics (what starts and ends a presence, with
//! which timings), cited in its module. It receives what its server would receive from the
//! simulated clients: connects, messages (heartbeats, keep-alives, requests), close frames, a
//! server restart, and the passing of time. It ignores what it would not see: the world's
//! "connection noticed dead" (Socket.IO's ping timeout) is not how Phoenix, Ably, Synapse, PubNub
//! or Yjs find a silent client, so each applies its own timeout to the messages it last received
//! instead; only the naive server listens to it, since the transport's disconnect is all it
//! uses.
//!
//! # Scoring two-state systems
//!
//! Most peers know present and absent only. A model publishes present as
//! [`Presence::Stale`](presence_tracker::Presence::Stale), the lowest presence above offline, so
//! that the flap rule of [`Metrics`](crate::Metrics) counts exactly the two-state flaps (a leave
//! while the user's client is still open, a join while the user is gone) and never a join for
//! lacking the levels it does not have. Synapse has three states and a hint, mapped to
//! `active`, `idle`, `away` and `offline` (see its module).

mod ably;
mod common;
mod naive;
mod phoenix;
mod pubnub;
mod synapse;
mod yjs;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::ScenarioError;

pub(crate) use ably::ably;
pub(crate) use naive::Naive;
pub(crate) use phoenix::phoenix;
pub(crate) use pubnub::pubnub;
pub(crate) use synapse::Synapse;
pub(crate) use yjs::yjs;

/// A presence system modelled for comparison: see each variant for the semantics modelled, and
/// [`Candidate::peer`](crate::Candidate::peer) to simulate one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Peer {
    /// `connect → online, disconnect → offline`: one flag per user, set by the latest connect
    /// or transport disconnect of any of its connections. Heartbeats are ignored. Clients
    /// heartbeat as the default candidate does (10 s, 30 s hidden), so it sees exactly the
    /// default's traffic.
    Naive,
    /// Phoenix.Presence over Phoenix channels: a presence per channel process, removed when
    /// the process exits: at once on a close frame (phoenix.js disconnects on `pagehide`, so a
    /// reload is a leave and a join), or when the server closes a socket that sent nothing for
    /// 60 s. Clients heartbeat every 30 s on a page timer. A server restart ends every channel
    /// process. No grace.
    Phoenix,
    /// Ably presence: a member stays 15 s (`remainPresentFor`) after its connection is lost,
    /// and leaves at once on an explicit close (`closeOnUnload`). A connection is lost after
    /// 25 s without traffic (`maxIdleInterval` 15 s + `realtimeRequestTimeout` 10 s), so a
    /// silent client leaves after 40 s. Heartbeats every 15 s, on the transport (not throttled
    /// in hidden tabs). A connection resumed in time keeps its member.
    Ably,
    /// Synapse (Matrix) presence: `online` from the first `/sync`, `unavailable` after 5 min
    /// without activity, `offline` 30 s after the last `/sync` request ended; a user is
    /// `currently_active` within 60 s of its last activity. Checked every 5 s. Clients long-poll
    /// `/sync` back to back (30 s timeout); a request runs to its timeout even if its client
    /// went away.
    Synapse,
    /// PubNub presence: `join` on subscribe, `leave` on an explicit unsubscribe (on unload),
    /// `timeout` 300 s (`presenceTimeout`) after the client's last request; heartbeats every
    /// `300 / 2 - 1` = 149 s on a page timer. Per device, the user present while any device is.
    PubNub,
    /// Yjs awareness (y-protocols, y-websocket): each client renews its state when it is 15 s
    /// old, others drop a state not updated for 30 s (checked every 3 s), and a closing page
    /// sends a removal. A server restart closes every observer's socket, which drops every
    /// remote state until it is received again.
    Yjs,
}

impl Peer {
    /// Every peer, in the order of the comparison tables.
    pub const ALL: [Peer; 6] = [
        Peer::Naive,
        Peer::Phoenix,
        Peer::Ably,
        Peer::Synapse,
        Peer::PubNub,
        Peer::Yjs,
    ];

    /// A short name: `naive`, `phoenix`, `ably`, `synapse`, `pubnub`, `yjs`.
    pub const fn name(self) -> &'static str {
        match self {
            Peer::Naive => "naive",
            Peer::Phoenix => "phoenix",
            Peer::Ably => "ably",
            Peer::Synapse => "synapse",
            Peer::PubNub => "pubnub",
            Peer::Yjs => "yjs",
        }
    }

    /// How often its client sends something the server counts as a sign of life, in the
    /// foreground and in a hidden tab (before the browser's throttling, for the peers whose
    /// keep-alive runs on page timers).
    pub fn keepalive(self) -> (Duration, Duration) {
        let s = Duration::from_secs;
        match self {
            Peer::Naive => (s(10), s(30)),
            Peer::Phoenix => (s(30), s(30)),
            Peer::Ably => (s(15), s(15)),
            Peer::Synapse => (s(30), s(30)),
            Peer::PubNub => (s(149), s(149)),
            Peer::Yjs => (s(15), s(15)),
        }
    }

    /// Where the modelled semantics are documented.
    pub const fn source(self) -> &'static str {
        match self {
            Peer::Naive => "the seed's warning: connect → online, disconnect → offline",
            Peer::Phoenix => "https://hexdocs.pm/phoenix/Phoenix.Presence.html; phoenixframework/phoenix lib/phoenix/endpoint.ex (websocket :timeout 60_000), assets/js/phoenix/socket.js (heartbeatIntervalMs 30000, pagehide)",
            Peer::Ably => "https://faqs.ably.com/what-happens-to-the-presence-status-of-a-client-that-abruptly-disconnects; ably/specification RTN23a; https://faqs.ably.com/why-dont-presence-members-leave-as-soon-as-i-close-a-tab",
            Peer::Synapse => "element-hq/synapse synapse/handlers/presence.py (SYNC_ONLINE_TIMEOUT, IDLE_TIMER, LAST_ACTIVE_GRANULARITY, handle_timeout), synapse/rest/client/sync.py",
            Peer::PubNub => "https://www.pubnub.com/docs/general/presence/presence-events; pubnub/javascript src/core/interfaces/configuration.ts (PRESENCE_TIMEOUT 300, heartbeat presenceTimeout / 2 - 1)",
            Peer::Yjs => "yjs/y-protocols awareness.js (outdatedTimeout 30000, renewal at 15 s, check every 3 s); yjs/y-websocket src/y-websocket.js (beforeunload removal, remote states dropped on close)",
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Peer {
    type Err = ScenarioError;

    /// A peer by its [`name`](Peer::name).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Peer::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                ScenarioError::Invalid(format!(
                    "unknown peer {name:?}, expected one of naive, phoenix, ably, synapse, pubnub, yjs"
                ))
            })
    }
}
