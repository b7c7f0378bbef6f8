//! The server side of [`presence_tracker`]: what every server that broadcasts presence needs
//! around the tracker, as a library.
//!
//! - [`Hub`]: the tracker, the state of every online user published in one total order (an
//!   epoch and a version), and subscribers fed without ever blocking a signal handler: one that
//!   falls behind gets a fresh state instead of a backlog ([`Delivery`]).
//! - Rooms, [`Hub::rooms`] ([`HubRooms`]): sessions join rooms with metadata ([`Meta`] for
//!   JSON), each room published in its own order to its own subscribers ([`RoomSubscription`]:
//!   a room state, then versioned room updates; a metadata change is one update).
//! - The tick driver, [`Hub::run_ticker`]: at the tracker's deadlines with the wake rule, or
//!   at an interval ([`Ticking`]).
//! - [`wire`]: the versioned protocol (serde types) and its resync rule, which the browser
//!   client implements.
//! - [`Authenticate`]: the application decides who a connection is from its [`Handshake`]
//!   (cookie, header, token), never from the client's claim; watchers are a role of their own
//!   ([`Identity::Watcher`]).
//!
//! It owns no socket: integrations for Socket.IO (`socketioxide`) and axum WebSockets come as
//! features, rooms included (over Socket.IO, fanned out through socketioxide's rooms).
//!
//! # Examples
//!
//! ```
//! use presence_tracker::{Activity, Policy, PresenceTracker};
//! use presence_tracker_server::{Delivery, Hub, HubConfig};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let hub: Hub<String, String> = Hub::new(PresenceTracker::new(Policy::default()), HubConfig::default());
//! tokio::spawn(hub.clone().run_ticker());
//!
//! // Per connection: subscribe, send the client what comes, record its signals.
//! let mut feed = hub.subscribe();
//! hub.connect("ada".into(), "tab-1".into(), "socket-1", Activity::Active)?;
//! while let Some(delivery) = feed.try_recv() {
//!     let json = serde_json::to_string(&delivery).expect("serialisable");
//!     assert!(json.starts_with(r#"{"type":"#));
//! }
//! # Ok::<(), presence_tracker::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Feature flags
//!
//! - `socketioxide`: `socketio::attach` registers presence on a Socket.IO namespace (the
//!   `socketio` module).
//! - `axum`: `ws::route`, a WebSocket route with JSON messages (the `ws` module).
//! - `redis`: the `cluster` module, presence across several nodes through Redis: node
//!   leases, epoch-fenced writes by Lua scripts, crash cleanup; and `Hub::with_cluster`, a hub
//!   that is one node of a cluster: its clients, through either integration, see the cluster's
//!   users and rooms.
//!
//! The crate needs Rust 1.88 (its `rust-version`, which the `redis` feature's redis-rs 1.x
//! needs; the core, `presence-tracker`, needs 1.85).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod admission;
mod auth;
mod hub;
mod limit;
mod link;
mod meta;
pub mod wire;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod cluster;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod net;
#[cfg(feature = "socketioxide")]
#[cfg_attr(docsrs, doc(cfg(feature = "socketioxide")))]
pub mod socketio;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod ws;

pub use admission::{Admission, Busy};
pub use auth::{Authenticate, Handshake, Identity, RoomAccess};
pub use hub::{
    Batch, Delivery, Hub, HubConfig, HubRooms, Interest, RefusalWatch, RoomBatch, RoomDelivery,
    RoomSubscription, Subscription, Ticking,
};
pub use limit::RateLimit;
pub use meta::{Meta, MetaError};

#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "socketioxide", feature = "axum", feature = "redis"))]
pub struct ReadmeDoctests;
