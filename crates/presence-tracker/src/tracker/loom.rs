//! Model checks of the tracker's concurrent protocols with loom: every interleaving of the two
//! threads, up to a bound of preemptions, runs on the shipped code (its locks and atomics come
//! from `crate::sync`, loom's under `--cfg loom`; shard counts are two).
//!
//! Checked: the heartbeat's compare-and-swap (two stores of one session keep the later time; a
//! plain store in its place fails this model). Not yet: the fast path against a tick's
//! publication, the `earliest` word against a tick, and two connects of one new id; their
//! models over the whole tracker trip loom 0.7's own assertions (`rt/notify.rs`,
//! `rt/atomic.rs`, `rt/mutex.rs`) before reaching the tracker's, depending on the hasher's seed.
//! Those protocols are covered by the pinned-interleaving and stress tests in `tests/races.rs`.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p presence-tracker --release --lib loom
//! ```

use loom::sync::Arc;
use loom::thread;

use crate::{Activity, Presence};

/// Runs `f` under loom with a bound on preemptions (what CI can afford).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(f);
}

/// Two heartbeats of one session storing at once (both under the shard's read lock, which does
/// not order them): the compare-and-swap keeps the later `last_seen`, whatever the order.
#[test]
fn two_heartbeat_stores_keep_the_later_time() {
    use super::session_table::SessionEntry;
    use crate::ConnectionId;
    model(|| {
        let entry = Arc::new(SessionEntry::new(
            1u64,
            1u64,
            super::packed::pack(1_000, Activity::Active),
            Presence::Active,
            ConnectionId::from_fingerprint(1),
            super::NO_DEADLINE,
        ));
        let other = Arc::clone(&entry);
        let later = thread::spawn(move || other.touch(3_000, Activity::Idle));
        entry.touch(2_000, Activity::Background);
        later.join().expect("the other thread");
        let record = entry.record();
        assert_eq!(record.last_seen.as_millis(), 3_000);
        assert_eq!(record.activity, Activity::Idle);
    });
}
