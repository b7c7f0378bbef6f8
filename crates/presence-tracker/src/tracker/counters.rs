//! Counts of published presences, per user shard, for [`census`](crate::PresenceTracker::census).

use crate::sync::{AtomicI64, Ordering};

use crate::Presence;

/// Counts of published presences of one user shard's users and their sessions. Signed: a move
/// is a decrement and an increment, and a reader between them on another core may see one
/// without the other.
///
/// Written only under the shard's lock, so an update is a load and a store, not a locked
/// read-modify-write; readers ([`census`](crate::PresenceTracker::census)) sum the shards
/// without taking any lock.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct Counters {
    pub(crate) users: [AtomicI64; 5],
    pub(crate) sessions: [AtomicI64; 5],
}

impl Counters {
    fn bump(cell: &AtomicI64, by: i64) {
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn add(which: &[AtomicI64; 5], p: Presence) {
        Self::bump(&which[p.index()], 1);
    }

    pub(crate) fn sub(which: &[AtomicI64; 5], p: Presence) {
        Self::bump(&which[p.index()], -1);
    }

    pub(crate) fn moved(which: &[AtomicI64; 5], from: Presence, to: Presence) {
        Self::sub(which, from);
        Self::add(which, to);
    }

    /// The totals over all shards of the counts `pick` chooses.
    pub(crate) fn read(all: &[Counters], pick: fn(&Counters) -> &[AtomicI64; 5]) -> [usize; 5] {
        std::array::from_fn(|i| {
            let sum: i64 = all.iter().map(|c| pick(c)[i].load(Ordering::Relaxed)).sum();
            usize::try_from(sum).unwrap_or(0)
        })
    }
}
