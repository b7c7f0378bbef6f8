//! Model checks of the tracker's concurrent protocols with loom: every interleaving of the two
//! threads (up to loom's partial-order reduction; no preemption bound) runs on the shipped code
//! (its locks and atomics come from `crate::sync`, loom's under `--cfg loom`; shard counts are
//! two). `--nocapture` prints how many executions each model took.
//!
//! Checked, each on whole tracker calls: the heartbeat's compare-and-swap (two stores of one
//! session keep the later time); the heartbeat's fast path against a tick's publication of the
//! same session; the `earliest` word against a tick (a deadline armed while a tick runs is never
//! lost); ownership (two users connecting one new session id; a leave against a takeover); a
//! snapshot against a takeover across shards; two users' changes in one room (a join and a
//! tick's fall) keep the room's versions gap-free. Each model was seen to fail on the bug it guards
//! against: a plain store in `touch`; the tick storing `earliest` after releasing the shard's
//! lock; the ownership check in a critical section of its own before the insertion; the fast
//! path comparing the published presence in one read section and storing in another.
//!
//! The shard hasher has a fixed seed under loom: every execution of a model must take the same
//! locks for the same schedule (with a random seed, loom's replay trips its own assertions).
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p presence-tracker --release --lib loom
//! ```

use loom::sync::Arc;
use loom::thread;

use std::time::Duration;

use crate::{
    Activity, Error, Event, ManualClock, Policy, Presence, PresenceTracker, Timestamp, Transitions,
};

type Tracker = PresenceTracker<u64, u64, ManualClock>;

const T0: u64 = 1_000_000;

/// A tracker on a manual clock at `T0` (every execution builds its own: loom's locks and
/// atomics belong to one execution).
fn tracker() -> (Arc<Tracker>, ManualClock) {
    let clock = ManualClock::starting_at(Timestamp::from_millis(T0));
    let tracker = PresenceTracker::with_clock(Policy::default(), clock.clone());
    (Arc::new(tracker), clock)
}

/// Connects `user`'s `session` on a connection numbered like the session.
fn connect(tracker: &Tracker, user: u64, session: u64) -> Transitions<u64, u64> {
    match tracker.connect(user, session, session, Activity::Active) {
        Ok(events) => events,
        Err(e) => panic!("connect({user}, {session}): {e}"),
    }
}

/// `events` of `user` in publication order form one chain: each starts where the previous
/// ended, and the first starts at `from`. Returns where the chain ends.
fn chain_end(events: Vec<Event<u64, u64>>, user: u64, from: Presence) -> Presence {
    let mut mine: Vec<_> = events
        .into_iter()
        .filter(|e| e.is_user() && *e.user() == user)
        .collect();
    mine.sort_by_key(|e| e.seq);
    let mut at = from;
    for e in mine {
        assert_eq!(e.from, at, "broken chain at {e:?}");
        at = e.to;
    }
    at
}

/// Runs `f` under loom, every interleaving of its threads.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    // Counted outside loom (std's atomic), to show how much of the space a model covered.
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&runs);
    builder.check(move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("loom: {runs} executions");
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

/// A heartbeat on the fast path and a tick publishing the same session's fall, at once: the
/// tick either publishes the fall and the heartbeat (seeing it published) the rise, or the
/// heartbeat lands first and the tick finds nothing due. Either way the published chain is
/// whole and ends where derivation is, and a later tick has nothing left to publish.
#[test]
fn a_heartbeat_and_a_tick_on_one_session() {
    model(|| {
        let (tracker, clock) = tracker();
        let _ = connect(&tracker, 1, 10);
        // Age = the active threshold: derived idle, published active, due now.
        clock.advance(Duration::from_secs(15));
        let ticker = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.tick().into_vec())
        };
        let beat = match tracker.heartbeat(&10, Activity::Active) {
            Ok(events) => events.into_vec(),
            Err(e) => panic!("heartbeat: {e}"),
        };
        let ticked = ticker.join().expect("the ticking thread");
        let mut events = beat;
        events.extend(ticked);
        assert_eq!(chain_end(events, 1, Presence::Active), Presence::Active);
        assert_eq!(tracker.user(&1).presence, Presence::Active);
        assert_eq!(tracker.census().users.active, 1);
        assert!(tracker.tick().is_empty(), "published = derived after both");
    });
}

/// A connect arming the first deadline of a user in a shard while a tick works on that shard
/// (publishing another user's fall): the new deadline survives the tick's update of the
/// shard's `earliest` word, so `next_deadline` names it and the tick at that time publishes it.
#[test]
fn a_deadline_armed_during_a_tick_is_kept() {
    model(|| {
        let (tracker, clock) = tracker();
        let _ = connect(&tracker, 1, 10);
        // A second user in the same user shard as the first.
        let other = (2..)
            .find(|u| tracker.user_index(u) == tracker.user_index(&1))
            .unwrap_or(2);
        clock.advance(Duration::from_secs(15));
        let ticker = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.tick().into_vec())
        };
        let _ = connect(&tracker, other, 20);
        let ticked = ticker.join().expect("the ticking thread");
        // User 1's fall was due before the tick started: it published it.
        assert_eq!(chain_end(ticked, 1, Presence::Active), Presence::Idle);
        let due = Timestamp::from_millis(T0 + 30_000);
        match tracker.next_deadline() {
            Some(next) => assert!(next <= due, "next deadline {next} after {due}"),
            None => panic!("no deadline while two users are online"),
        }
        clock.set(due);
        let later = tracker.tick().into_vec();
        assert_eq!(chain_end(later, other, Presence::Active), Presence::Idle);
    });
}

/// Two users connecting one new session id at once: exactly one owns it, in every view.
#[test]
fn two_users_connect_one_new_session() {
    model(|| {
        let (tracker, _clock) = tracker();
        let second = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.connect(2, 10, 2u64, Activity::Active).map(|_| ()))
        };
        let first = tracker.connect(1, 10, 1u64, Activity::Active).map(|_| ());
        let second = second.join().expect("the other thread");
        let (winner, loser) = match (first, second) {
            (Ok(()), Err(Error::SessionOwnedByOtherUser)) => (1, 2),
            (Err(Error::SessionOwnedByOtherUser), Ok(())) => (2, 1),
            other => panic!("both or neither own the session: {other:?}"),
        };
        assert_eq!(tracker.session(&10).map(|s| s.user), Some(winner));
        assert_eq!(tracker.user(&winner).sessions, 1);
        assert_eq!(tracker.user(&loser).sessions, 0);
        let census = tracker.census();
        assert_eq!((census.users.active, census.sessions.active), (1, 1));
    });
}

/// The owner leaving a session (no leave grace: the leave ends it) while another user connects
/// the same id: a live session is not taken over, so the takeover is refused (before the end)
/// or succeeds (after it); either way the leave publishes the owner's end, and the session
/// belongs to exactly the user the outcome names.
#[test]
fn a_leave_and_a_takeover_of_one_session() {
    model(|| {
        let clock = ManualClock::starting_at(Timestamp::from_millis(T0));
        let policy = match Policy::builder().leave_grace(Duration::ZERO).build() {
            Ok(policy) => policy,
            Err(e) => panic!("policy: {e}"),
        };
        let tracker = Arc::new(PresenceTracker::<u64, u64, _>::with_clock(policy, clock));
        let _ = connect(&tracker, 1, 10);
        let taker = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.connect(2, 10, 2u64, Activity::Active))
        };
        let left = match tracker.leave(&10, 10u64) {
            Ok(events) => events.into_vec(),
            Err(e) => panic!("leave: {e}"),
        };
        let taken = taker.join().expect("the other thread");
        // The owner's end is published whatever the order, and the owner is offline.
        assert_eq!(chain_end(left, 1, Presence::Active), Presence::Offline);
        assert_eq!(tracker.user(&1).presence, Presence::Offline);
        match taken {
            Ok(_) => {
                assert_eq!(tracker.session(&10).map(|s| s.user), Some(2));
                assert_eq!(tracker.census().sessions.active, 1);
            }
            Err(Error::SessionOwnedByOtherUser) => {
                assert_eq!(tracker.session(&10).map(|s| s.user), None);
                assert_eq!(tracker.census().sessions.active, 0);
            }
            Err(e) => panic!("takeover: {e}"),
        }
    });
}

/// A snapshot taken while another user takes over an expired session, the owners in different
/// shards: the snapshot lists the session once (before the takeover or after it), so it
/// restores.
#[test]
fn a_snapshot_during_a_takeover_restores() {
    model(|| {
        let (tracker, clock) = tracker();
        let _ = connect(&tracker, 1, 10);
        let other = (2..)
            .find(|u| tracker.user_index(u) != tracker.user_index(&1))
            .unwrap_or(2);
        // Past the TTL: expired, not yet freed by a tick.
        clock.advance(Duration::from_secs(241));
        let snapshotter = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.snapshot())
        };
        let _ = connect(&tracker, other, 10);
        let snapshot = snapshotter.join().expect("the snapshotting thread");
        let listed = snapshot
            .users
            .iter()
            .flat_map(|u| &u.sessions)
            .filter(|s| s.session == 10)
            .count();
        assert!(listed <= 1, "session listed {listed} times");
        let restored = Tracker::restore(snapshot, Policy::default(), clock.clone());
        if let Err(e) = restored {
            panic!("restore: {e}");
        }
    });
}

/// Two users joining one room while a tick publishes the first one's fall there: the room's
/// versions are gap-free and in the order the room's lock took the changes, and the room ends
/// with both members at their derived presence.
#[test]
fn room_changes_of_two_users_at_once() {
    model(|| {
        let clock = ManualClock::starting_at(Timestamp::from_millis(T0));
        let tracker: Arc<PresenceTracker<u64, u64, ManualClock, u64, ()>> = Arc::new(
            PresenceTracker::with_clock(Policy::default(), clock.clone()),
        );
        let connect = |user: u64, session: u64| {
            if let Err(e) = tracker.connect(user, session, session, Activity::Active) {
                panic!("connect: {e}");
            }
        };
        connect(1, 10);
        if let Err(e) = tracker.rooms().join(&10, 7, ()) {
            panic!("join: {e}");
        }
        clock.advance(Duration::from_secs(15));
        connect(2, 20);
        let ticker = {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || tracker.tick().into_parts().1)
        };
        let joined = match tracker.rooms().join(&20, 7, ()) {
            Ok(changes) => changes.into_parts().1,
            Err(e) => panic!("join: {e}"),
        };
        let mut events = ticker.join().expect("the ticking thread");
        events.extend(joined);
        events.sort_by_key(|e| e.version);
        let versions: Vec<u64> = events.iter().map(|e| e.version).collect();
        assert_eq!(versions, vec![2, 3], "after the first join's 1");
        let view = match tracker.rooms().get(&7) {
            Some(view) => view,
            None => panic!("the room is gone"),
        };
        assert_eq!(view.version, 3);
        let mut members: Vec<_> = view.members.iter().map(|m| (m.user, m.presence)).collect();
        members.sort();
        assert_eq!(members, vec![(1, Presence::Idle), (2, Presence::Active)]);
    });
}
