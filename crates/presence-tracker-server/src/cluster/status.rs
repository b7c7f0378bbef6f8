//! What a node reports about itself: [`Health`], [`Stats`] and [`Diagnostic`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

/// Whether the node is in step with the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Writes, the lease, the cleanup and the feed all reached Redis on their last try.
    Healthy,
    /// Something failed: local presence is served as before, writes wait (each session's
    /// latest only) and are retried with backoff; the cluster view may be behind.
    Degraded {
        /// Since when.
        since: Instant,
        /// The latest failure.
        reason: String,
    },
}

impl Health {
    /// Whether this is [`Health::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

/// Counters since the node started. Each is monotonic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Commands sent to Redis (each script call, read and pipeline entry counts one).
    pub commands: u64,
    /// Session writes (claims, puts, drops) that Redis applied.
    pub writes: u64,
    /// Writes Redis refused: a newer epoch held the session, or another user owned its id.
    pub refused: u64,
    /// Values, keys and messages that did not parse and were ignored or removed.
    pub garbage: u64,
    /// Lapsed or retired nodes whose cleanup this node claimed.
    pub nodes_reaped: u64,
    /// Sessions re-published after Redis was wiped or this node was declared dead.
    pub republished: u64,
    /// Times this node registered again under a new id (wiped Redis, lost lease).
    pub reregistrations: u64,
    /// Cluster transitions received on the feed and applied.
    pub messages: u64,
    /// Users read again because their versions had a gap, or their epoch changed.
    pub user_reads: u64,
    /// Full reads of every user (at start and after the feed reconnected).
    pub resyncs: u64,
    /// Times the lease calls found that Redis had stalled, and moved the leases forward.
    pub stalls: u64,
}

/// Something the node noticed: handed to [`ClusterConfig::on_diagnostic`](super::ClusterConfig::on_diagnostic)
/// as it happens (the crate logs nothing itself).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Diagnostic {
    /// A value, key or message did not parse: ignored (and removed if it sat in a key of the
    /// layout).
    Garbage {
        /// Where.
        at: String,
    },
    /// Redis failed or could not be reached; the node is degraded.
    Degraded {
        /// The failure.
        reason: String,
    },
    /// Redis answers again.
    Recovered,
    /// This node claimed the cleanup of a lapsed or retired node.
    Reaped {
        /// The node's id.
        node: String,
    },
    /// This node registered again under a new id and re-published its sessions.
    Reregistered {
        /// Why: `"generation"` (Redis was wiped) or `"lease lost"`.
        reason: &'static str,
        /// The new id.
        node: String,
    },
    /// Redis did not see a lease call for longer than the stall bound: the leases were moved
    /// forward by this many milliseconds rather than declaring every node dead.
    Stall {
        /// The gap.
        millis: u64,
    },
}

/// The counters behind [`Stats`], and the health flags.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commands: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) garbage: AtomicU64,
    pub(crate) nodes_reaped: AtomicU64,
    pub(crate) republished: AtomicU64,
    pub(crate) reregistrations: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) user_reads: AtomicU64,
    pub(crate) resyncs: AtomicU64,
    pub(crate) stalls: AtomicU64,
    faults: Mutex<Faults>,
}

/// Which parts failed on their last try, and since when any has.
#[derive(Debug, Default)]
struct Faults {
    failing: [Option<String>; 4],
    since: Option<Instant>,
}

/// A part of the node that talks to Redis.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Part {
    Writer = 0,
    Lease = 1,
    Feed = 2,
    Reaper = 3,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            commands: get(&self.commands),
            writes: get(&self.writes),
            refused: get(&self.refused),
            garbage: get(&self.garbage),
            nodes_reaped: get(&self.nodes_reaped),
            republished: get(&self.republished),
            reregistrations: get(&self.reregistrations),
            messages: get(&self.messages),
            user_reads: get(&self.user_reads),
            resyncs: get(&self.resyncs),
            stalls: get(&self.stalls),
        }
    }

    pub(crate) fn health(&self) -> Health {
        let faults = self.faults.lock();
        match (faults.since, faults.failing.iter().flatten().last()) {
            (Some(since), Some(reason)) => Health::Degraded {
                since,
                reason: reason.clone(),
            },
            _ => Health::Healthy,
        }
    }

    /// Records a part's failure; true if the node was healthy before (a new degradation).
    pub(crate) fn fail(&self, part: Part, reason: String) -> bool {
        let mut faults = self.faults.lock();
        let was_healthy = faults.failing.iter().all(Option::is_none);
        faults.failing[part as usize] = Some(reason);
        if was_healthy {
            faults.since = Some(Instant::now());
        }
        was_healthy
    }

    /// Records a part's success; true if that made the node healthy again.
    pub(crate) fn ok(&self, part: Part) -> bool {
        let mut faults = self.faults.lock();
        if faults.failing[part as usize].take().is_none() {
            return false;
        }
        let healthy = faults.failing.iter().all(Option::is_none);
        if healthy {
            faults.since = None;
        }
        healthy
    }
}
