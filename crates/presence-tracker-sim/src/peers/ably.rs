//! Ably presence.
//!
//! Sources:
//!
//! - "What happens to the presence status of a client that abruptly disconnects?"
//!   (<https://faqs.ably.com/what-happens-to-the-presence-status-of-a-client-that-abruptly-disconnects>):
//!   the client keeps showing as present for about 15 s (`remainPresentFor`); if the library
//!   reconnects within them the connection is resumed and the member never left, else Ably
//!   issues a leave. Calling `leave` or closing the connection leaves at once.
//! - "Why don't presence members leave as soon as I close a tab?"
//!   (<https://faqs.ably.com/why-dont-presence-members-leave-as-soon-as-i-close-a-tab>):
//!   ably-js closes the connection on unload (`closeOnUnload`, default true), so closing or
//!   reloading a page leaves at once; a reload enters again.
//! - The idle rule (ably/specification, RTN23a): a transport that has heard nothing for
//!   `maxIdleInterval` (15 s, sent by the server) plus `realtimeRequestTimeout` (10 s) is
//!   dropped. Ably does not document the server's side; it is modelled by the same 25 s,
//!   within the "up to 25–30 s" the issue quotes.
//!
//! Modelled per session (an Ably connection, which survives reconnects by resuming): present
//! from a connect until a close frame, or until 25 s + 15 s = 40 s after its last traffic. The
//! heartbeats are the transport's (the server pings every 15 s and the browser answers), so a
//! hidden tab's timer throttling does not slow them. Traffic after a leave re-enters (the SDK
//! re-enters presence when it resumes). A restart of a server is a dropped transport that the
//! clients resume within the scenario's seconds: nothing leaves. The world's "noticed dead"
//! disconnects (Socket.IO's ping timeout) are ignored.

use super::common::TimeoutPeer;

/// Silence after which a transport counts as lost: `maxIdleInterval` + `realtimeRequestTimeout`.
const LOST_AFTER: u64 = 15_000 + 10_000;
/// `remainPresentFor`: how long a member of a lost connection stays.
const REMAIN_PRESENT_FOR: u64 = 15_000;

/// See the module docs: present until 40 s after the last traffic; the transport's pings are
/// not throttled in a hidden tab; a restart is resumed, nothing leaves.
pub(crate) fn ably() -> TimeoutPeer {
    TimeoutPeer::new(|now| now + LOST_AFTER + REMAIN_PRESENT_FOR).transport_keepalive()
}
