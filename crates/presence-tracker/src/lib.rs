//! Session-first presence for Rust servers.
//!
//! A connected socket is not a present human, and a disconnect is not a departure. This crate
//! records *signals* per session (connect, heartbeat with the client's activity, disconnect,
//! leave), *derives* each session's presence from the age of its last signal, *aggregates*
//! sessions into user presence, and emits *transitions*, not heartbeats.
//!
//! | presence | session's age (defaults) | capped by activity |
//! |---|---|---|
//! | `active` | < 15 s | reported `active` |
//! | `idle` | < 60 s | reported `idle` caps here |
//! | `away` | < 180 s | reported `background` caps here |
//! | `stale` | < 240 s (the TTL) | |
//! | `offline` | ≥ TTL, or the grace after a disconnect ran out | |
//!
//! A user is the highest of its sessions: one tab closing never takes down a user whose other
//! tab is open.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use presence_tracker::{Activity, Cause, DisconnectKind, ManualClock, Policy, Presence, PresenceTracker};
//!
//! let clock = ManualClock::new();
//! let tracker: PresenceTracker<String, String, ManualClock> =
//!     PresenceTracker::with_clock(Policy::default(), clock.clone());
//!
//! // Two tabs of one user.
//! let changes = tracker.connect("ada".into(), "tab-1".into(), "sid-a", Activity::Active)?;
//! let ada = changes.users().next().expect("ada came online");
//! assert_eq!((ada.to, ada.sessions), (Presence::Active, 1));
//! let changes = tracker.connect("ada".into(), "tab-2".into(), "sid-b", Activity::Active)?;
//! assert!(changes.users().next().is_none()); // already active: a second tab changes nothing
//!
//! // A page reload: a clean disconnect, and the same session back a second later.
//! let _ = tracker.disconnect("tab-1", "sid-a", DisconnectKind::Clean)?;
//! clock.advance(Duration::from_secs(1));
//! assert!(tracker.connect("ada".into(), "tab-1".into(), "sid-c", Activity::Active)?.is_empty());
//!
//! // Tab 2 goes to the background; tab 1 falls silent (a frozen laptop, no close frame).
//! let _ = tracker.heartbeat("tab-2", Activity::Background)?;
//! clock.advance(Duration::from_secs(20));
//! let changes = tracker.tick();
//! let ada = changes.users().next().expect("ada fell idle");
//! assert_eq!((ada.from, ada.to, ada.cause), (Presence::Active, Presence::Idle, Cause::Timeout));
//! # Ok::<(), presence_tracker::Error>(())
//! ```
//!
//! # Design
//!
//! Presence is a pure function of a session's record, the time and the policy: [`derive()`].
//! The tracker stores records and remembers what it last published for each session and user;
//! signals publish upgrades at once, [`PresenceTracker::tick`] publishes what time brought at a
//! cost proportional to what changed, and [`PresenceTracker::next_deadline`] says when to call
//! it. Every call returns the [`Transitions`] it published, exactly once. Time comes from a
//! [`Clock`]: [`SystemClock`] by default, [`CoarseClock`] for servers that read it once per
//! batch, [`ManualClock`] for tests and simulations.
//!
//! The full type of a tracker with string ids on the system clock is
//! `PresenceTracker<String, String, SystemClock>`.
//!
//! # Feature flags
//!
//! None yet: the core has no optional parts. The presence-accuracy simulator that tunes
//! thresholds for your traffic is its own crate, `presence-tracker-sim`.

mod clock;
mod derive;
mod error;
mod event;
mod id;
mod policy;
mod presence;
mod room;
mod snapshot;
mod sync;
mod tracker;
mod view;

pub use clock::{Clock, CoarseClock, ManualClock, SystemClock, Timestamp};
pub use derive::{derive, SessionRecord};
pub use error::Error;
pub use event::{Cause, Event, Subject, Transitions};
pub use id::{ConnectionId, Id};
pub use policy::{Policy, PolicyBuilder};
pub use presence::{Activity, DisconnectKind, Presence};
pub use room::{Metadata, RoomChange, RoomCounts, RoomEvent, RoomMember, RoomSession, RoomView};
pub use snapshot::{RoomSnapshot, SessionSnapshot, Snapshot, UserSnapshot};
pub use tracker::{BatchOutcome, PresenceTracker, Rooms};
pub use view::{Census, Counts, SessionView, UserView};

#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
