//! PubNub presence.
//!
//! Sources:
//!
//! - Presence events (<https://www.pubnub.com/docs/general/presence/presence-events>): `join`
//!   when a client subscribes, `leave` when it unsubscribes, `timeout` when it made no request
//!   on the channel for the presence timeout, 300 s by default (`presenceTimeout`); heartbeats
//!   (`heartbeatInterval`) keep a quiet client present. A user ID connected from several
//!   devices joins once per device (the Presence FAQ), so an application counts devices.
//! - The JavaScript SDK (pubnub/javascript `src/core/interfaces/configuration.ts` and the
//!   configuration it builds): `PRESENCE_TIMEOUT = 300`, and setting a presence timeout sets
//!   the heartbeat interval to `presenceTimeout / 2 - 1` (149 s), sent from a page timer. With
//!   no presence timeout set the SDK sends no heartbeats at all and only the subscribe long-poll
//!   (up to 310 s) keeps a client present, which is slower still; the model takes the 149 s.
//! - PubNub's guidance to unsubscribe on `beforeunload`, which sends the explicit `leave`.
//!
//! Modelled per session (device or tab): present from its connect (subscribe) until a close
//! frame (the unload's unsubscribe: a leave, so a reload is a leave and a join) or 300 s after
//! its last request. A request after a timeout joins again. A restart of a server is a dropped
//! request that the client repeats: nothing leaves. The world's "noticed dead" disconnects
//! (Socket.IO's ping timeout) are ignored.

use super::common::TimeoutPeer;

/// `presenceTimeout`.
const TIMEOUT: u64 = 300_000;

/// See the module docs: present until `presenceTimeout` after the last heartbeat, which runs
/// on page timers; a restart loses nothing (presence is kept by the service).
pub(crate) fn pubnub() -> TimeoutPeer {
    TimeoutPeer::new(|now| now + TIMEOUT)
}
