//! A presence-accuracy simulator, to choose thresholds for your own traffic.
//!
//! It answers, for a set of thresholds and heartbeat intervals (a [`Candidate`]) and a
//! description of your clients (a [`Scenario`]): how often will users be shown offline while
//! they are there, how often will presence flap, how long until a departed user shows offline,
//! and how many events will be broadcast?
//!
//! A deterministic, seeded discrete-event simulation drives the real [`PresenceTracker`] on a
//! [`ManualClock`] in virtual time (the clock set before each call, [`tick`](presence_tracker::PresenceTracker::tick) at a
//! fixed interval or at [`next_deadline`](presence_tracker::PresenceTracker::next_deadline)) and keeps a ground
//! truth beside it: for every session, whether it is really there and active, there but idle,
//! hidden, or gone. It models:
//!
//! - foreground tabs heartbeating at an interval with jitter, users going idle and coming back,
//!   switching away and back, reloading pages (a clean close, the same session a second later);
//! - background tabs, whose timers the browser throttles to about once a minute after a while;
//! - phones suspended by the OS without a close frame, resuming minutes later or never;
//! - lossy networks: a drop probability per heartbeat, partitions lasting seconds to minutes,
//!   the server noticing a dead connection after a ping timeout, clients reconnecting with a
//!   new connection id;
//! - server restarts: every client reconnects within seconds with a new connection id while
//!   the old connections' disconnects arrive late;
//! - tabs closed (a close frame) and crashes or closed laptop lids (none).
//!
//! Scenarios are named ([`Scenario::named`]: `office`, `mobile`, `flaky-network`,
//! `restart-storm`, `mixed`), built from [`Population`] presets in code, or read from JSON
//! ([`Scenario::from_json`]). [`run`] measures one candidate ([`Metrics`] defines every
//! measure precisely); a [`Grid`] of candidates goes through [`Study::run`], which marks the
//! Pareto front and recommends one. The `tune` example does all of it from the command line and
//! writes the trade-off plot:
//!
//! ```sh
//! cargo run --release --bin tune -- --scenario mobile --out target/tune
//! ```
//!
//! Against the peers: a [`Peer`] is a model of another presence system's documented semantics
//! (the naive `connect → online, disconnect → offline`, Phoenix.Presence, Ably, Synapse, PubNub,
//! Yjs awareness), simulated as a candidate ([`Candidate::peer`]) on the same users as ours;
//! [`Comparison`] sets every peer, our default and our recommendation side by side, and
//! [`replay`] plays hand-written [`Signal`]s on any of them. `tune --peers` writes the tables
//! and plots:
//!
//! ```sh
//! cargo run --release --bin tune -- --peers
//! ```
//!
//! Hysteresis: a candidate's [`dwell`](Candidate::dwell) is the tracker's
//! [`Policy::dwell`](presence_tracker::Policy::dwell), a grid dimension
//! ([`Grid::hysteresis`], `tune --grid hysteresis` or `--dwell 0,15,ttl`). [`Metrics`] says
//! where flaps come from ([`FlapSources`], [`FlapKind`]) and when a departure is first shown
//! ([`Metrics::first_sign`]); [`Goal`] checks issue 13's goal (a tenth of the best peer's flaps
//! at its latency, no more false offline than any peer) on a [`Comparison`], and
//! [`goal_table`] sets the scenarios side by side:
//!
//! ```sh
//! cargo run --release --bin tune -- --peers --grid hysteresis
//! ```
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use presence_tracker_sim::{run, Candidate, Scenario};
//!
//! // Phones, for two hours; the default thresholds against a shorter TTL and grace.
//! let scenario = Scenario::named("mobile")?.with_users(100).with_hours(2.0).with_seed(7);
//! let default = run(&scenario, &Candidate::default())?;
//! let short = Candidate {
//!     name: "short".into(),
//!     idle: Duration::from_secs(30),
//!     away: Duration::from_secs(60),
//!     ttl: Duration::from_secs(90),
//!     disconnect_grace: Duration::from_secs(30),
//!     ..Candidate::default()
//! };
//! let short = run(&scenario, &short)?;
//!
//! // Shorter thresholds find departures sooner, and show more present users offline.
//! let (d, s) = (&default.metrics, &short.metrics);
//! assert!(s.latency.lost.p95 < d.latency.lost.p95);
//! assert!(s.false_offline_share >= d.false_offline_share);
//! # Ok::<(), presence_tracker_sim::ScenarioError>(())
//! ```
//!
//! # Design
//!
//! Every happening (a heartbeat timer firing, a phase change, a partition ending, a tick) is an
//! entry in one binary heap ordered by virtual time, so the cost is per simulated event, not per
//! session per virtual second: a 10,000-user, 24-hour `mixed` day takes seconds. Each user has
//! two random streams (xoshiro256**), one for what the user does and one for transport noise,
//! so candidates with the same heartbeat intervals are scored on exactly the same behaviour,
//! and the tracker's answers never influence the users.
//!
//! [`PresenceTracker`]: presence_tracker::PresenceTracker
//! [`ManualClock`]: presence_tracker::ManualClock

mod candidate;
mod comparison;
mod config;
mod error;
mod goal;
mod metrics;
mod peers;
mod plot;
mod presets;
mod replay;
mod report;
mod rng;
mod scenario;
mod study;
mod world;

pub use candidate::{Candidate, Grid};
pub use comparison::Comparison;
pub use error::ScenarioError;
pub use goal::{goal_table, Goal};
pub use peers::Peer;
pub use replay::{replay, Signal};
pub use report::{Cost, FlapKind, FlapSources, Latencies, Latency, Metrics, Report};
pub use scenario::{Client, Exodus, Network, Population, Restart, Scenario, Span, Ticking};
pub use study::{
    flap_table, objectives, pareto_front, recommend, run_many, summary_table, Budget, Study,
};
pub use world::run;
