//! Many nodes, one presence: the cluster layer on Redis (feature `redis`).
//!
//! Each node runs its own [`PresenceTracker`](presence_tracker::PresenceTracker) and stays the
//! authority for the sessions connected to it: heartbeats never leave the node. A
//! [`ClusterNode`] is fed the node's *transitions* (what the tracker returns) and its connects,
//! writes only those and its lease to Redis, and hands back the cluster-wide presence of every
//! user ([`ClusterNode::user`], [`ClusterNode::subscribe`]): the highest over the live sessions
//! of every node, and of every room's members ([`ClusterNode::room`]). Redis traffic grows
//! with transitions, not with heartbeats.
//!
//! ```no_run
//! use presence_tracker::{Activity, Policy, PresenceTracker};
//! use presence_tracker_server::cluster::{ClusterConfig, ClusterNode};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::default();
//! let tracker: PresenceTracker<String, String> = PresenceTracker::new(policy.clone());
//! let config = ClusterConfig::new("redis://127.0.0.1:6379").policy(&policy);
//! let cluster: ClusterNode<String, String> = ClusterNode::start(config).await?;
//!
//! // In the connect handler: the tracker first, then the cluster (it never blocks).
//! let (ada, tab) = ("ada".to_string(), "tab-1".to_string());
//! let changes = tracker.connect(ada.clone(), tab.clone(), "socket-1", Activity::Active)?;
//! let view = tracker.session(&tab).expect("just connected");
//! cluster.connected(&changes, &ada, &tab, view.presence, view.last_seen);
//! // After every other signal and every tick: `cluster.record(&changes)`.
//!
//! let mut feed = cluster.subscribe(); // cluster-wide user transitions, from every node
//! # let _ = feed.recv().await;
//! cluster.shutdown().await?; // hand the sessions off with their grace, no event storm
//! # Ok(()) }
//! ```
//!
//! # Data layout
//!
//! Every key starts with the configured prefix (`pt` below). Each script touches keys of one
//! hash tag only (`{u:..}`, `{s:..}`, `{n:..}` or `{c}`), so every script runs on one slot and
//! the layout works on Redis Cluster. Ids in keys are percent-encoded (`%`, `{`, `}`, `|`,
//! control bytes and spaces), so an id cannot end a hash tag early or collide with another.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `pt:{u:<user>}:s` | hash | the user's sessions: `<session>` → `<epoch>\|<node>\|<presence 0-4>\|<deadline ms>\|<last seen ms>`; deadline 0 while its node is alive |
//! | `pt:{u:<user>}` | hash | the cluster-wide user: `e` (its history's epoch), `v` (version), `p` (presence 0-4), `n` (sessions), `ls` (last seen); kept for the retention once offline, so versions go on |
//! | `pt:{s:<session>}` | hash | who owns the session id: `u` (user), `e` (the session's current epoch); expires after the ownership TTL without a claim |
//! | `pt:{n:<node>}:u` | set | users with sessions claimed by the node: what a cleanup visits |
//! | `pt:{r:<room>}:u:<user>` | hash | a member's sessions in the room: `<session>` → `<epoch>\|<node>\|<presence>\|<deadline ms>\|<metadata as JSON, encoded>` |
//! | `pt:{r:<room>}:m` | hash | the room's members: `<user>` → `<presence>\|<sessions>\|<SHA1 of their sessions and metadata>` |
//! | `pt:{r:<room>}` | hash | the room: `e` (its history's epoch), `v` (version); kept for the retention once empty |
//! | `pt:{n:<node>}:r` | set | `<room>\|<user>` pairs the node wrote sessions for |
//! | `pt:{c}:gen` | string | the generation: set by the first node on an empty Redis |
//! | `pt:{c}:leases` | sorted set | live nodes, scored by their lease deadline (Redis ms) |
//! | `pt:{c}:reap` | sorted set | cleanup jobs: lapsed or retired nodes, scored by when a node must work on them next |
//! | `pt:{c}:tick` | string | Redis time of the last lease call: a stall of Redis is not a death of nodes |
//! | channel `pt:events` | pub/sub | cluster-wide user transitions |
//! | channel `pt:rooms` | pub/sub | cluster-wide room changes |
//!
//! Presence and times in Redis are Redis's: every script reads `TIME`; node clocks only give
//! `last seen`, which is data.
//!
//! # Protocol
//!
//! - **Claim** (every connect, a new session or a re-attach): `own` on `{s:<session>}` refuses a
//!   session id another user owns (`Taken`) and grants the session a new epoch,
//!   `max(previous + 1, Redis µs)`, so epochs rise even across a Redis wipe; the node adds the
//!   user to its `{n:..}` set; then `write claim` on `{u:..}` stores the session under that
//!   epoch unless it already holds a newer one. A tab that reconnects to another node is
//!   claimed there with a higher epoch: the user's presence and session count do not change,
//!   so nothing is published (no flap).
//! - **Put / drop** (a session's presence changed, or it ended on the node): `write put|drop`
//!   carries the epoch the node was granted. A newer epoch in Redis refuses it (`Superseded`,
//!   reported to the node as [`ClusterEvent::Refused`]): a late disconnect, leave or decay
//!   from the node a tab left changes nothing. A dropped session's ownership is released
//!   (`disown`, only if its epoch is still the current one).
//! - **Settle** (every `{u:..}` script): the user's presence is the highest over its sessions
//!   whose deadline has not passed (expired ones are removed, their ownership released). When
//!   the presence or the session count changes, the script bumps `v` and publishes
//!   `1|user|epoch|version|from|to|sessions|last seen|at|cause|node` on the channel, in the
//!   same atomic step: first join and last leave are decided there, once.
//! - **Rooms** replicate like users, with one hash tag per room: `room` on `{r:<room>}`
//!   writes a session's entry (join or metadata update, and again at each of the session's
//!   presence changes; a leave or the session's end removes it) under the session's epoch, so
//!   the same fencing holds. The member's presence in the room is the highest of its live
//!   entries; a change of it, of its sessions or of their metadata bumps the room's version
//!   and publishes `1|room|epoch|version|user|change (j,p,u,l)|from|to|at|cause|node|sessions`
//!   (`session:metadata,...`) in the same step. Cleanup and re-publication cover rooms too.
//! - **Leases**: each node registers under a new random id at every start (`{c}`), renews
//!   every third of the lease TTL, and on a renewal learns if Redis was wiped (the generation
//!   changed) or if it was declared dead (its lease is gone): either way it registers again
//!   under a new id and re-publishes its sessions (`reassert`: its epoch, unless a newer one
//!   exists), bounded by one renewal period and one pass over its sessions.
//! - **Cleanup**: every node asks `reap` every reap interval; the script atomically moves one
//!   lapsed lease to the job set (`ZREM` then `ZADD`) and hands it to exactly that caller, which
//!   marks the dead node's sessions disconnected with the grace (`deadline = now + grace`, no
//!   presence change, nothing published) and schedules the job for the deadline; at the
//!   deadline a node (any: the job is re-claimed if its holder dies) removes what was not
//!   claimed elsewhere, publishing the users that went offline. Only a node whose own lease is
//!   valid may reap. If no lease call reached Redis for more than half a lease (Redis paused or
//!   unreachable for every node), the leases are moved forward by that gap first.
//! - **Graceful shutdown**: the node marks its own sessions disconnected with the grace and
//!   retires its lease into a job due at the deadline: clients that reconnect elsewhere flap
//!   nothing, the others go offline once, at the grace.
//! - **Feed**: each node subscribes to the channel, then reads every user (`SCAN` of
//!   `pt:{u:*}`, pipelined `HMGET`). Per user it keeps `(epoch, version)`: the next version is
//!   applied, an older one ignored, a gap or an unknown epoch makes it read that user again.
//!   Pub/sub loses messages only while a subscriber is disconnected, which the subscriber sees,
//!   so it reads everything again after every reconnection; a stream would keep them, but one
//!   stream key is one slot, and a script may not write a `{c}` stream and `{u:..}` keys at
//!   once on Redis Cluster.
//!
//! # Bounds
//!
//! - A crashed or partitioned node's sessions are offline cluster-wide within
//!   [`ClusterConfig::offline_bound`]: lease TTL + disconnect grace + two reap intervals after
//!   its last renewal, unless a client claimed its session elsewhere meanwhile.
//! - After a wipe of Redis, a node re-publishes within one renewal period plus the time to
//!   write its sessions; subscribers resync when their feed reconnects.
//! - While Redis is unreachable, the tracker serves local presence as before; the node reports
//!   [`Health::Degraded`], keeps only each session's latest intent (so the backlog is bounded
//!   by its sessions, not by its transitions), retries with backoff and converges when Redis
//!   returns.
//!
//! # Faults and foreign data
//!
//! Values the scripts cannot parse (a session entry, a user hash, a key of another type under
//! the prefix) are removed or treated as absent, never trusted; messages on the channel and
//! keys that do not parse are skipped. Each is counted in [`Stats::garbage`] and reported to
//! [`ClusterConfig::on_diagnostic`]; none panics. At start the node checks that Redis's
//! `maxmemory-policy` is `noeviction` ([`ClusterError::EvictionPolicy`] otherwise): an evicted
//! key would silently lose presence.
//!
//! # With a hub
//!
//! [`Hub::with_cluster`](crate::Hub::with_cluster) makes a hub one node of the cluster: the
//! hub's signals feed this node (connects claim, transitions are recorded), and what the hub
//! publishes to its subscribers, and so what the `socketio` and
//! `ws` integrations send their clients, is this node's cluster view: users in the
//! hub's own gap-free order, rooms at the cluster's epoch and version. A [`ClusterEvent::Refused`]
//! session has its connection closed with a typed refusal (`session_superseded`,
//! `session_taken`).
//!
//! # What is not here yet
//!
//! Redis Cluster is a target of the key layout, but the node connects to one Redis server (a
//! `redis://` URL). A large room is read again whole (one `HGETALL` per member) when a node
//! sees a gap in its versions. While Redis is unreachable, a hub's clients see the cluster as
//! it was (the node's own new sessions included only once Redis is back).

mod config;
mod error;
mod feed;
mod id;
mod keys;
mod lease;
mod message;
mod mirror;
mod node;
mod redis_io;
mod rooms;
mod scripts;
mod status;
mod writer;

pub use config::ClusterConfig;
pub use error::ClusterError;
pub use feed::{ClusterCause, ClusterEvent, ClusterUser, ClusterUserEvent, Refusal, RefusalReason};
pub use id::ClusterId;
pub use node::ClusterNode;
pub use rooms::{ClusterMeta, ClusterRoom, ClusterRoomEvent, ClusterRoomMember};
pub use status::{Diagnostic, Health, Stats};
