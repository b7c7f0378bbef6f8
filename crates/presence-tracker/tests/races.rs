//! Issue 15: the tracker under concurrency, the top of the time range, and restore validation.
//!
//! Each race is pinned by a deterministic test: its threads stop where the tracker hashes an id
//! ([`GateId`]), between its critical sections, and the test runs the other side of the race
//! there. A bounded multi-threaded stress test with plain `u64` ids hunts for the same race, and
//! every test ends by checking the tracker at quiescence ([`assert_quiescent`]): chains
//! consistent, one owner per session, published = derived, census = reads, a restorable snapshot;
//! and, past every TTL and the retention ([`assert_freed`]), everything offline and freed, the
//! session total back to zero.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use presence_tracker::{
    Activity, DisconnectKind, Error, Event, Id, ManualClock, Policy, Presence, PresenceTracker,
    Snapshot, Subject, Timestamp, Transitions,
};
use support::gate::{GateId, Step, Worker};
use support::{ms, secs, Replay};

type Tracker<S> = PresenceTracker<u64, S, ManualClock>;
type Events<S> = Vec<Event<u64, S>>;
type Signal<S> = Result<Events<S>, Error>;

/// A signal's result with its transitions as a `Vec`.
fn vec<S>(got: Result<Transitions<u64, S>, Error>) -> Signal<S> {
    got.map(Transitions::into_vec)
}

// ---------------------------------------------------------------------------------------------
// Checks at quiescence
// ---------------------------------------------------------------------------------------------

/// Per session id, the spans of time each owner had it published online never overlap: a
/// session changes hands only through offline.
fn assert_one_owner_at_a_time<S: Id + Ord>(sorted: &[Event<u64, S>]) {
    // (session, owner) -> online since
    let mut open: HashMap<(S, u64), Timestamp> = HashMap::new();
    let mut spans: HashMap<S, Vec<(Timestamp, Timestamp, u64)>> = HashMap::new();
    for e in sorted {
        let Subject::Session { user, session } = &e.subject else {
            continue;
        };
        let key = (session.clone(), *user);
        if e.from == Presence::Offline {
            open.insert(key.clone(), e.at);
        }
        if e.to == Presence::Offline {
            let since = open.remove(&key).unwrap_or(Timestamp::EPOCH);
            spans
                .entry(session.clone())
                .or_default()
                .push((since, e.at, *user));
        }
    }
    for ((session, user), since) in open {
        spans
            .entry(session)
            .or_default()
            .push((since, Timestamp::from_millis(u64::MAX), user));
    }
    for (session, mut spans) in spans {
        spans.sort();
        for w in spans.windows(2) {
            let ((_, end, a), (start, _, b)) = (w[0], w[1]);
            assert!(
                a == b || start >= end,
                "session {session:?} online for users {a} and {b} at once: {spans:?}"
            );
        }
    }
}

/// The tracker at rest, after a tick: every event chain consistent, each live session listed
/// under its one owner, published = derived (reads), census = reads, and a snapshot that
/// restores into a tracker that reads the same. `events` are all the events of the run.
fn assert_quiescent<S: Id + Ord>(
    tracker: &Tracker<S>,
    mut events: Events<S>,
    users: &[u64],
    sessions: &[S],
) {
    events.extend(tracker.tick());
    events.sort_by_key(|e| (*e.user(), e.seq));
    let mut replay: Replay<u64, (u64, S)> = Replay::new();
    for e in &events {
        if let Err(m) = replay.apply_keyed(e, |owner, session| (*owner, session.clone())) {
            panic!("chain broken: {m}");
        }
    }
    assert_one_owner_at_a_time(&events);

    let mut listed: HashMap<S, u64> = HashMap::new();
    let mut user_counts: HashMap<Presence, usize> = HashMap::new();
    let mut session_counts: HashMap<Presence, usize> = HashMap::new();
    for &u in users {
        let view = tracker.user(&u);
        assert_eq!(
            view.presence,
            replay.user(&u),
            "user {u}: derived (read) and published differ"
        );
        *user_counts.entry(view.presence).or_default() += 1;
        let live = tracker.user_sessions(&u);
        assert_eq!(view.sessions, live.len(), "user {u}: session count");
        for (s, v) in live {
            assert_eq!(
                v.user, u,
                "session {s:?} listed under user {u} belongs to {}",
                v.user
            );
            if let Some(other) = listed.insert(s.clone(), u) {
                panic!("session {s:?} listed under users {other} and {u}");
            }
            assert_eq!(
                replay.session(&(u, s.clone())).map(|(_, p)| p),
                Some(v.presence),
                "session {s:?} of {u}: derived (read) and published differ"
            );
            *session_counts.entry(v.presence).or_default() += 1;
        }
    }
    for s in sessions {
        if let Some(v) = tracker.session(s) {
            assert_eq!(listed.get(s), Some(&v.user), "session {s:?} is not listed");
        }
    }
    for ((owner, s), (_, p)) in replay.sessions() {
        if *p != Presence::Offline {
            assert_eq!(
                listed.get(s),
                Some(owner),
                "session {s:?} published {p:?} for {owner}, not live there"
            );
        }
    }
    let census = tracker.census();
    for p in Presence::ALL {
        if p.is_online() {
            let users_in = user_counts.get(&p).copied().unwrap_or(0);
            let sessions_in = session_counts.get(&p).copied().unwrap_or(0);
            assert_eq!(census.users.get(p), users_in, "census of {p:?} users");
            assert_eq!(
                census.sessions.get(p),
                sessions_in,
                "census of {p:?} sessions"
            );
        }
    }
    assert_eq!(census.sessions.offline, 0, "sessions published offline");

    let restored = PresenceTracker::restore(
        tracker.snapshot(),
        tracker.policy().clone(),
        tracker.clock().clone(),
    )
    .expect("the snapshot of a tracker at rest restores");
    for u in users {
        assert_eq!(restored.user(u), tracker.user(u), "restored user {u}");
    }
    for s in sessions {
        assert_eq!(restored.session(s), tracker.session(s), "restored {s:?}");
    }
    assert_eq!(restored.census(), tracker.census(), "restored census");
}

/// Past every TTL, grace and the retention, a tick leaves nothing: every user offline and
/// forgotten, no session, no deadline, an empty snapshot; and the session total is back to zero:
/// exactly `max_sessions` new sessions fit. `fresh` makes session ids never used before.
fn assert_freed<S: Id>(
    tracker: &Tracker<S>,
    clock: &ManualClock,
    users: &[u64],
    sessions: &[S],
    fresh: impl Fn(u64) -> S,
) {
    let policy = tracker.policy();
    clock.advance(policy.ttl() + policy.retention() + secs(1));
    let _ = tracker.tick();
    for u in users {
        let view = tracker.user(u);
        assert_eq!(
            (view.presence, view.sessions, view.last_seen),
            (Presence::Offline, 0, None),
            "user {u} not freed"
        );
    }
    for s in sessions {
        assert_eq!(tracker.session(s), None, "session {s:?} not freed");
    }
    let census = tracker.census();
    assert_eq!(
        (census.users.total(), census.sessions.total()),
        (0, 0),
        "census not empty: {census:?}"
    );
    assert_eq!(tracker.next_deadline(), None, "a deadline is left");
    assert!(tracker.snapshot().users.is_empty(), "snapshot not empty");
    let max = policy.max_sessions();
    for i in 0..max as u64 {
        if let Err(e) = tracker.connect(1_000_000 + i, fresh(i), "refill", Activity::Active) {
            panic!("the session total drifted: new session {i} of {max} refused: {e}");
        }
    }
    assert!(
        matches!(
            tracker.connect(2_000_000, fresh(max as u64), "refill", Activity::Active),
            Err(Error::TooManySessions { .. })
        ),
        "the session total drifted: more than {max} sessions fit"
    );
}

// ---------------------------------------------------------------------------------------------
// Pinned interleavings
// ---------------------------------------------------------------------------------------------

/// Users of the probe: each connects session `helper(u)`; the odd ones leave at once.
const HELPERS: u64 = 128;
/// The session total of the pinned tests: the helpers, the scenario and nothing more.
const SCENE_MAX_SESSIONS: usize = 160;

/// The `i`-th helper user: ids spread over the whole range (small consecutive integers can
/// land in few user shards), with the top bit set, so they meet no other id of these tests.
fn helper_user(i: u64) -> u64 {
    i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 << 63
}

/// A helper user's own session.
fn helper(user: u64) -> GateId {
    GateId(user)
}

/// A tracker with a known user-shard layout: races between two users' signals need them in
/// different user shards (else the shard's lock serialises them, and a thread stopped holding
/// one would block the other).
struct Scene {
    tracker: Arc<Tracker<GateId>>,
    clock: ManualClock,
    events: Events<GateId>,
    /// Live users in pairwise different user shards, in ascending shard order.
    apart: Vec<u64>,
    sessions: Vec<GateId>,
}

impl Scene {
    /// Zero leave grace, 1 s disconnect grace, the seed's thresholds otherwise.
    fn new() -> Scene {
        let policy = Policy::builder()
            .leave_grace(ms(0))
            .disconnect_grace(secs(1))
            .max_sessions(SCENE_MAX_SESSIONS)
            .build()
            .expect("valid");
        let clock = ManualClock::new();
        let tracker = Arc::new(PresenceTracker::with_clock(policy, clock.clone()));
        let mut scene = Scene {
            tracker,
            clock,
            events: Vec::new(),
            apart: Vec::new(),
            sessions: (0..HELPERS).map(|i| helper(helper_user(i))).collect(),
        };
        for u in (0..HELPERS).map(helper_user) {
            let got = scene
                .tracker
                .connect(u, helper(u), "helper", Activity::Active);
            scene.signal(got);
        }
        for u in (1..HELPERS).step_by(2).map(helper_user) {
            let got = scene.tracker.leave(&helper(u), "helper");
            scene.signal(got);
        }
        // A snapshot lists the user shards in index order, each shard's live users before its
        // retained ones: a live user right after a retained one is in a later shard than every
        // user before it.
        let mut after_retained = true;
        for u in scene.tracker.snapshot().users {
            if u.retained_until.is_some() {
                after_retained = true;
            } else if after_retained {
                scene.apart.push(u.user);
                after_retained = false;
            }
        }
        assert!(scene.apart.len() >= 3, "shards apart: {:?}", scene.apart);
        scene
    }

    fn record(&mut self, got: Result<Transitions<u64, GateId>, Error>) -> Signal<GateId> {
        let got = vec(got);
        if let Ok(events) = &got {
            self.events.extend(events.iter().cloned());
        }
        got
    }

    fn signal(&mut self, got: Result<Transitions<u64, GateId>, Error>) -> Events<GateId> {
        self.record(got).expect("signal accepted")
    }

    fn shared(&self) -> Arc<Tracker<GateId>> {
        Arc::clone(&self.tracker)
    }

    fn check(self, scenario: &[GateId]) {
        let mut sessions = self.sessions.clone();
        sessions.extend_from_slice(scenario);
        let users: Vec<u64> = (0..HELPERS).map(helper_user).collect();
        assert_quiescent(&self.tracker, self.events, &users, &sessions);
        assert_freed(&self.tracker, &self.clock, &users, &sessions, |i| {
            GateId(10_000_000 + i)
        });
    }
}

/// Runs `worker` to its first stop: `None`, or its result if it finished without stopping (the
/// stop is no longer on its path: the operations then run in sequence).
fn to_first_stop<T: Send + 'static>(worker: &mut Worker<T>) -> Option<T> {
    match worker.next() {
        Step::Stopped { .. } => None,
        Step::Done(result) => Some(result),
    }
}

/// Item 1. A heartbeat reads the time, is preempted before it finds the session (its hash),
/// and a later heartbeat is stored meanwhile: the late store must not move `last_seen` back.
#[test]
fn a_heartbeat_preempted_before_its_store_does_not_move_last_seen_back() {
    let mut scene = Scene::new();
    let user = scene.apart[0];
    let s = GateId(1);
    let got = scene.tracker.connect(user, s, "a", Activity::Active);
    scene.signal(got);
    let t0 = scene.clock.now();
    scene.clock.advance(secs(1));

    let tracker = scene.shared();
    let mut late = Worker::start("late heartbeat", &[(s.0, 1)], move || {
        tracker.heartbeat(&GateId(1), Activity::Active)
    });
    let done = to_first_stop(&mut late);
    assert!(
        done.is_none(),
        "the heartbeat hashes its session after reading the clock"
    );
    scene.clock.advance(secs(5));
    let t2 = scene.clock.now();
    let got = scene.tracker.heartbeat(&s, Activity::Active);
    scene.signal(got);
    let got = late.finish();
    scene.signal(got);

    let view = scene.tracker.session(&s).expect("live");
    assert_eq!(view.last_seen, t2, "last_seen went back");
    // What that costs: the session expired early, a TTL after the late heartbeat's time.
    scene
        .clock
        .set(t0.saturating_add(secs(1) + scene.tracker.policy().ttl()));
    let got = scene.tracker.heartbeat(&s, Activity::Active);
    assert!(
        got.is_ok(),
        "expired a TTL after the late heartbeat: {got:?}"
    );
    scene.signal(got);
    scene.check(&[s]);
}

/// Item 2a. Two users connect one new session id at once. A has found the id free and, holding
/// its user's lock, counts its user's sessions (hashing them) when B connects the id: only one
/// of them may own it.
#[test]
fn two_users_connecting_one_new_session_at_once_cannot_both_own_it() {
    let mut scene = Scene::new();
    let (a_user, b_user) = (scene.apart[0], scene.apart[1]);
    let s = GateId(2);
    let tracker = scene.shared();
    let mut a = Worker::start("A", &[(helper(a_user).0, 1)], move || {
        tracker.connect(a_user, GateId(2), "a", Activity::Active)
    });
    let a_done = to_first_stop(&mut a);
    let b = scene.tracker.connect(b_user, s, "b", Activity::Active);
    let b = scene.record(b);
    let a = a_done.unwrap_or_else(|| a.finish());
    let a = scene.record(a);
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one of them owns the session: A {a:?}, B {b:?}"
    );
    let loser = if a.is_ok() { &b } else { &a };
    assert!(
        matches!(loser, Err(Error::SessionOwnedByOtherUser)),
        "{loser:?}"
    );
    scene.check(&[s]);
}

/// Item 2b. The owner leaves with a zero leave grace while another user connects the session:
/// B looked twice and found it live, and is preempted before its last look; the leave ends the
/// session and is preempted before its settle publishes that. The leave must publish the
/// session's end, and B must not take a session it saw live (or must take it whole).
#[test]
fn a_zero_grace_leave_racing_a_takeover_publishes_the_sessions_end() {
    let mut scene = Scene::new();
    let (owner, other) = (scene.apart[0], scene.apart[1]);
    let s = GateId(3);
    let got = scene.tracker.connect(owner, s, "o", Activity::Active);
    scene.signal(got);

    let tracker = scene.shared();
    let mut b = Worker::start("B", &[(s.0, 3)], move || {
        tracker.connect(other, GateId(3), "b", Activity::Active)
    });
    let b_done = to_first_stop(&mut b);
    let tracker = scene.shared();
    let mut leave = Worker::start("leave", &[(s.0, 2)], move || tracker.leave(&GateId(3), "o"));
    let leave_done = to_first_stop(&mut leave);
    let b = b_done.unwrap_or_else(|| b.finish());
    let b = scene.record(b);
    let left = leave_done.unwrap_or_else(|| leave.finish());
    let left = scene.signal(left);
    assert!(
        left.iter()
            .any(|e| e.session() == Some(&s) && *e.user() == owner && e.to == Presence::Offline),
        "the leave did not publish the session's end: {left:?} (B: {b:?})"
    );
    scene.check(&[s]);
}

/// Item 2c. Two users take over one expired session at once. A, holding both its user's and the
/// owner's locks, settles the owner (publishing the expired session's end) and is preempted at
/// the owner's next session; B connects the id then. Only one of them may own it.
#[test]
fn two_users_taking_over_one_expired_session_at_once_cannot_both_own_it() {
    let mut scene = Scene::new();
    let (owner, a_user, b_user) = (scene.apart[0], scene.apart[1], scene.apart[2]);
    let (s, x) = (GateId(4), GateId(5));
    let got = scene.tracker.connect(owner, s, "o", Activity::Active);
    scene.signal(got);
    let got = scene.tracker.connect(owner, x, "x", Activity::Active);
    scene.signal(got);
    let got = scene.tracker.disconnect(&s, "o", DisconnectKind::Lost);
    scene.signal(got);
    scene.clock.advance(secs(2)); // s expired (1 s grace), not yet freed by a tick

    let tracker = scene.shared();
    let mut a = Worker::start("A", &[(x.0, 1)], move || {
        tracker.connect(a_user, GateId(4), "a", Activity::Active)
    });
    let a_done = to_first_stop(&mut a);
    let b = scene.tracker.connect(b_user, s, "b", Activity::Active);
    let b = scene.record(b);
    let a = a_done.unwrap_or_else(|| a.finish());
    let a = scene.record(a);
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one of them owns the session: A {a:?}, B {b:?}"
    );
    scene.check(&[s, x]);
}

/// Item 3. A snapshot reads the user shards while an expired session moves from a user in a
/// shard already read to one in a shard not read yet (the snapshot is preempted in a shard in
/// between): the session must not be listed twice, and the snapshot must restore.
#[test]
fn a_snapshot_taken_during_a_takeover_lists_the_session_once() {
    let mut scene = Scene::new();
    let (owner, middle, taker) = (scene.apart[0], scene.apart[1], scene.apart[2]);
    let s = GateId(6);
    let got = scene.tracker.connect(owner, s, "o", Activity::Active);
    scene.signal(got);
    let got = scene.tracker.disconnect(&s, "o", DisconnectKind::Lost);
    scene.signal(got);
    scene.clock.advance(secs(2));

    let tracker = scene.shared();
    let mut snap = Worker::start("snapshot", &[(helper(middle).0, 1)], move || {
        tracker.snapshot()
    });
    let snap_done = to_first_stop(&mut snap);
    let got = scene.tracker.connect(taker, s, "t", Activity::Active);
    scene.signal(got);
    let snapshot = snap_done.unwrap_or_else(|| snap.finish());
    let restored = PresenceTracker::restore(
        snapshot,
        scene.tracker.policy().clone(),
        scene.clock.clone(),
    );
    assert!(restored.is_ok(), "{:?}", restored.err());
    scene.check(&[s]);
}

// ---------------------------------------------------------------------------------------------
// The top of the time range (item 4)
// ---------------------------------------------------------------------------------------------

fn beyond(t: Timestamp) -> Error {
    Error::TimeOutOfRange {
        at: t,
        max: Timestamp::MAX,
    }
}

#[test]
fn signals_past_the_maximum_time_are_refused_and_change_nothing() {
    let start = Timestamp::MAX.saturating_sub(secs(60));
    let clock = ManualClock::starting_at(start);
    let tracker: Tracker<u64> = PresenceTracker::with_clock(Policy::default(), clock.clone());
    let mut events = tracker
        .connect(1, 1, "a", Activity::Active)
        .expect("below the maximum");
    let before = tracker.session(&1);
    let past = [
        Timestamp::from_millis(Timestamp::MAX.as_millis() + 1),
        Timestamp::from_millis(1 << 61),
        Timestamp::from_millis(1 << 62),
        Timestamp::from_millis(u64::MAX),
    ];
    for t in past {
        clock.set(t);
        assert_eq!(
            tracker.connect(2, 2, "b", Activity::Active),
            Err(beyond(t)),
            "connect at {t:?}"
        );
        assert_eq!(tracker.connect(2, 2, "b", Activity::Idle), Err(beyond(t)));
        assert_eq!(
            tracker.connect(1, 1, "a2", Activity::Active),
            Err(beyond(t)),
            "re-attach"
        );
        assert_eq!(tracker.heartbeat(&1, Activity::Idle), Err(beyond(t)));
        assert_eq!(
            tracker.disconnect(&1, "a", DisconnectKind::Lost),
            Err(beyond(t))
        );
        assert_eq!(tracker.leave(&1, "a"), Err(beyond(t)));
        let outcome = tracker.heartbeat_batch([(&1, Activity::Background)]);
        assert!(outcome.events.is_empty());
        assert_eq!(outcome.errors, vec![(0, beyond(t))]);
        clock.set(start);
        assert_eq!(
            tracker.now(),
            start,
            "a refused signal moved the tracker's time"
        );
        assert_eq!(
            tracker.session(&1),
            before,
            "a refused signal changed the session"
        );
        assert_eq!(tracker.session(&2), None);
    }

    // At the maximum itself: accepted, and exact.
    clock.set(Timestamp::MAX);
    events.extend(
        tracker
            .heartbeat(&1, Activity::Active)
            .expect("at the maximum"),
    );
    events.extend(
        tracker
            .connect(2, 2, "b", Activity::Active)
            .expect("at the maximum"),
    );
    assert_eq!(
        tracker.session(&1).map(|v| v.last_seen),
        Some(Timestamp::MAX)
    );
    assert_eq!(
        tracker.session(&2).map(|v| (v.last_seen, v.presence)),
        Some((Timestamp::MAX, Presence::Active))
    );
    assert_eq!(tracker.user(&2).presence, Presence::Active);
    assert!(!events.is_empty());
}

#[test]
fn reads_and_ticks_past_the_maximum_time_stand_at_it() {
    let start = Timestamp::MAX.saturating_sub(secs(30));
    let clock = ManualClock::starting_at(start);
    let tracker: Tracker<u64> = PresenceTracker::with_clock(Policy::default(), clock.clone());
    let mut events = tracker
        .connect(1, 1, "a", Activity::Active)
        .expect("connect")
        .into_vec();
    events.extend(
        tracker
            .connect(2, 2, "b", Activity::Active)
            .expect("connect"),
    );
    clock.set(Timestamp::MAX);
    events.extend(
        tracker
            .heartbeat(&2, Activity::Active)
            .expect("at the maximum"),
    );
    events.extend(tracker.leave(&2, "b").expect("at the maximum"));

    for t in [(1u64 << 62) + 5, u64::MAX] {
        clock.set(Timestamp::from_millis(t));
        assert_eq!(tracker.now(), Timestamp::MAX, "time stands at the maximum");
        events.extend(tracker.tick());
        // Derived at the maximum: 30 s old, one was seen at the maximum.
        assert_eq!(tracker.user(&1).presence, Presence::Idle);
        assert_eq!(
            tracker.session(&1).map(|v| v.presence),
            Some(Presence::Idle)
        );
        // Left at the maximum with a 5 s grace that saturates past it: never reached.
        assert_eq!(tracker.user(&2).presence, Presence::Active);
        assert_eq!(tracker.census().users.online(), 2);
        assert!(tracker.next_deadline().is_some_and(|d| d > Timestamp::MAX));
        assert_eq!(tracker.online().len(), 2);
    }
    // Back at the maximum, signals are accepted again: the time was not pinned past it.
    clock.set(Timestamp::MAX);
    events.extend(
        tracker
            .heartbeat(&1, Activity::Active)
            .expect("at the maximum"),
    );
    assert_eq!(tracker.user(&1).presence, Presence::Active);
    let restored = PresenceTracker::restore(tracker.snapshot(), Policy::default(), clock.clone())
        .expect("restores at the maximum");
    assert_eq!(restored.user(&1), tracker.user(&1));
    assert_eq!(restored.user(&2), tracker.user(&2));
    assert!(events.iter().all(|e| e.at <= Timestamp::MAX));
    assert_quiescent(&tracker, events, &[1, 2], &[1, 2]);
}

// ---------------------------------------------------------------------------------------------
// Restore validation (item 5)
// ---------------------------------------------------------------------------------------------

fn snapshot_of_one_active_session() -> (Snapshot<u64, u64>, ManualClock) {
    let clock = ManualClock::new();
    let tracker: Tracker<u64> = PresenceTracker::with_clock(Policy::default(), clock.clone());
    let _ = tracker
        .connect(1, 1, "a", Activity::Active)
        .expect("connect");
    let _ = tracker
        .connect(2, 2, "b", Activity::Active)
        .expect("connect");
    let _ = tracker.leave(&2, "b").expect("leave");
    clock.advance(secs(6));
    let _ = tracker.tick(); // user 2 retained offline
    (tracker.snapshot(), clock)
}

fn refused(snapshot: Snapshot<u64, u64>, clock: &ManualClock) -> Option<String> {
    match PresenceTracker::<u64, u64, _>::restore(snapshot, Policy::default(), clock.clone()) {
        Err(Error::InvalidSnapshot(why)) => Some(why),
        Err(other) => panic!("refused, but not as invalid: {other}"),
        Ok(_) => None,
    }
}

fn edit(
    snapshot: &Snapshot<u64, u64>,
    user: u64,
    f: impl FnOnce(&mut presence_tracker::UserSnapshot<u64, u64>),
) -> Snapshot<u64, u64> {
    let mut s = snapshot.clone();
    if let Some(u) = s.users.iter_mut().find(|u| u.user == user) {
        f(u);
    }
    s
}

#[test]
fn restore_refuses_a_seq_past_its_range() {
    let (snapshot, clock) = snapshot_of_one_active_session();
    assert_eq!(
        refused(snapshot.clone(), &clock),
        None,
        "the snapshot itself"
    );
    for user in [1, 2] {
        let last = edit(&snapshot, user, |u| u.seq = (1 << 61) - 1);
        assert_eq!(
            refused(last, &clock),
            None,
            "the last seq that fits, user {user}"
        );
        for seq in [1 << 61, 1 << 62, u64::MAX] {
            let over = edit(&snapshot, user, |u| u.seq = seq);
            assert!(refused(over, &clock).is_some(), "seq {seq} of user {user}");
        }
    }
}

#[test]
fn restore_refuses_published_presences_a_tracker_never_holds() {
    let (snapshot, clock) = snapshot_of_one_active_session();
    let cases = [
        (
            "a live user published offline over an active session",
            edit(&snapshot, 1, |u| u.published = Presence::Offline),
        ),
        (
            "a live user published below its session",
            edit(&snapshot, 1, |u| u.published = Presence::Idle),
        ),
        (
            "a live user published above its session",
            edit(&snapshot, 1, |u| {
                u.published = Presence::Active;
                u.sessions[0].published = Presence::Away;
            }),
        ),
        (
            "a session published offline",
            edit(&snapshot, 1, |u| {
                u.published = Presence::Offline;
                u.sessions[0].published = Presence::Offline;
            }),
        ),
        (
            "a retained user published online",
            edit(&snapshot, 2, |u| u.published = Presence::Away),
        ),
    ];
    for (what, s) in cases {
        assert!(refused(s, &clock).is_some(), "{what} was accepted");
    }
    // Consistent edits are fine: all published lower, as after a tick.
    let lower = edit(&snapshot, 1, |u| {
        u.published = Presence::Away;
        u.sessions[0].published = Presence::Away;
    });
    assert_eq!(refused(lower, &clock), None);
}

// ---------------------------------------------------------------------------------------------
// Bounded stress with plain u64 ids
// ---------------------------------------------------------------------------------------------

/// A small deterministic generator per thread.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// Relative weights of the operations.
#[derive(Clone, Copy)]
struct Mix {
    connect: u64,
    heartbeat: u64,
    batch: u64,
    disconnect: u64,
    leave: u64,
    tick: u64,
    read: u64,
    snapshot: u64,
}

#[derive(Clone)]
struct Stress {
    threads: u64,
    ops: u64,
    users: u64,
    sessions: u64,
    /// Any user may connect any session id; else session `s` is always user `s % users`'s.
    shared: bool,
    mix: Mix,
    /// Thread 0 advances the clock by up to this much every fourth operation.
    step: Duration,
    /// Thread 0 jumps far past the maximum time three quarters of the way.
    jump_past_max: bool,
    start: Timestamp,
    policy: Policy,
}

fn small_policy(max_sessions: usize) -> Policy {
    Policy::builder()
        .active(ms(1_000))
        .idle(ms(3_000))
        .away(ms(6_000))
        .ttl(ms(10_000))
        .disconnect_grace(ms(2_000))
        .leave_grace(ms(0))
        .max_sessions(max_sessions)
        .build()
        .expect("valid")
}

const ACTIVITIES: [Activity; 3] = [Activity::Active, Activity::Idle, Activity::Background];

/// Runs the threads; returns the tracker, its clock and every event. Checks on the way: no
/// error but the expected refusals, `last_seen` never behind a heartbeat's time, a session
/// listed only under its owner, every snapshot restorable.
fn stress(cfg: &Stress) -> (Arc<Tracker<u64>>, ManualClock, Events<u64>) {
    let clock = ManualClock::starting_at(cfg.start);
    let tracker = Arc::new(PresenceTracker::with_clock(
        cfg.policy.clone(),
        clock.clone(),
    ));
    let barrier = Arc::new(Barrier::new(cfg.threads as usize));
    // Per session, the latest time a heartbeat that returned had read before it began: its
    // `last_seen` may never be found behind that again (until the session expires).
    let floor: Arc<Vec<AtomicU64>> =
        Arc::new((0..cfg.sessions).map(|_| AtomicU64::new(0)).collect());
    let handles: Vec<_> = (0..cfg.threads)
        .map(|t| {
            let (tracker, clock, barrier, cfg, floor) = (
                Arc::clone(&tracker),
                clock.clone(),
                Arc::clone(&barrier),
                cfg.clone(),
                Arc::clone(&floor),
            );
            thread::spawn(move || {
                let mut rng = Lcg(t * 7_919 + 17);
                let m = cfg.mix;
                let total = m.connect
                    + m.heartbeat
                    + m.batch
                    + m.disconnect
                    + m.leave
                    + m.tick
                    + m.read
                    + m.snapshot;
                let mut events = Vec::new();
                barrier.wait();
                for i in 0..cfg.ops {
                    if t == 0 && i % 4 == 0 {
                        clock.advance(ms(rng.next(cfg.step.as_millis() as u64 + 1)));
                        if cfg.jump_past_max && i == cfg.ops * 3 / 4 {
                            clock.advance(ms(1 << 62));
                        }
                    }
                    let session = rng.next(cfg.sessions);
                    let user = if cfg.shared {
                        rng.next(cfg.users)
                    } else {
                        session % cfg.users
                    };
                    let conn = rng.next(3);
                    let activity = ACTIVITIES[rng.next(3) as usize];
                    let before = clock.now();
                    let mut pick = rng.next(total);
                    let mut is = |w: u64| {
                        let hit = pick < w;
                        pick = pick.wrapping_sub(w);
                        hit
                    };
                    let got: Signal<u64> = if is(m.connect) {
                        if rng.next(4) == 0 {
                            vec(tracker.connect(user, session, conn, activity))
                        } else {
                            vec(tracker.connect(user, session, conn, Activity::Active))
                        }
                    } else if is(m.heartbeat) {
                        let got = vec(tracker.heartbeat(&session, activity));
                        if got.is_ok() {
                            let before = before.min(Timestamp::MAX).as_millis();
                            floor[session as usize].fetch_max(before, Ordering::SeqCst);
                        }
                        assert_not_behind(&tracker, &floor, session);
                        got
                    } else if is(m.batch) {
                        let other = rng.next(cfg.sessions);
                        let out = tracker.heartbeat_batch([
                            (&session, activity),
                            (&other, ACTIVITIES[rng.next(3) as usize]),
                        ]);
                        for (_, e) in &out.errors {
                            assert_expected(e, cfg.shared, before);
                        }
                        Ok(out.events.into_vec())
                    } else if is(m.disconnect) {
                        let kind = if rng.next(2) == 0 {
                            DisconnectKind::Clean
                        } else {
                            DisconnectKind::Lost
                        };
                        vec(tracker.disconnect(&session, conn, kind))
                    } else if is(m.leave) {
                        vec(tracker.leave(&session, conn))
                    } else if is(m.tick) {
                        Ok(tracker.tick().into_vec())
                    } else if is(m.read) {
                        for (s, v) in tracker.user_sessions(&user) {
                            assert_eq!(v.user, user, "session {s} listed under another user");
                        }
                        assert_not_behind(&tracker, &floor, session);
                        let _ = tracker.user(&user);
                        let _ = (tracker.online().len(), tracker.census());
                        Ok(Vec::new())
                    } else {
                        let snapshot = tracker.snapshot();
                        if let Err(e) = PresenceTracker::restore(
                            snapshot,
                            tracker.policy().clone(),
                            clock.clone(),
                        ) {
                            panic!("a snapshot of the live tracker does not restore: {e}");
                        }
                        Ok(Vec::new())
                    };
                    match got {
                        Ok(e) => events.extend(e),
                        Err(e) => assert_expected(&e, cfg.shared, before),
                    }
                }
                events
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("no thread panicked"));
    }
    (tracker, clock, all)
}

/// The session's `last_seen` is not behind the time of a heartbeat that returned before this
/// call (the floor is read first: whatever it counts was stored before).
fn assert_not_behind(tracker: &Tracker<u64>, floor: &[AtomicU64], session: u64) {
    let floor = floor[session as usize].load(Ordering::SeqCst);
    if let Some(v) = tracker.session(&session) {
        assert!(
            v.last_seen.as_millis() >= floor,
            "session {session}: last_seen {} ms went back behind a heartbeat at {floor} ms",
            v.last_seen.as_millis()
        );
    }
}

/// A refusal the run allows: unknown or expired sessions, limits, another user's session only
/// when owners are shared, and times past the maximum only when the clock was past it.
fn assert_expected(e: &Error, shared: bool, before: Timestamp) {
    match e {
        Error::UnknownSession
        | Error::TooManySessions { .. }
        | Error::TooManySessionsForUser { .. } => {}
        Error::SessionOwnedByOtherUser if shared => {}
        Error::TimeOutOfRange { at, max } if *at > *max && *max == Timestamp::MAX => {}
        other => panic!("unexpected refusal: {other}"),
    }
    if before > Timestamp::MAX {
        assert!(
            matches!(e, Error::TimeOutOfRange { .. }),
            "a signal past the maximum time was not refused for it: {e}"
        );
    }
}

fn ids(n: u64) -> Vec<u64> {
    (0..n).collect()
}

const ALL_OPS: Mix = Mix {
    connect: 4,
    heartbeat: 6,
    batch: 2,
    disconnect: 2,
    leave: 1,
    tick: 2,
    read: 2,
    snapshot: 1,
};

/// Item 1: many threads heartbeating few sessions while the clock moves.
#[test]
fn stress_heartbeats_never_move_last_seen_back() {
    let cfg = Stress {
        threads: 4,
        ops: 20_000,
        users: 3,
        sessions: 3,
        shared: false,
        mix: Mix {
            connect: 1,
            heartbeat: 20,
            batch: 6,
            disconnect: 0,
            leave: 0,
            tick: 3,
            read: 1,
            snapshot: 0,
        },
        step: ms(40),
        jump_past_max: false,
        start: ManualClock::DEFAULT_START,
        policy: small_policy(3),
    };
    let (tracker, clock, events) = stress(&cfg);
    assert_quiescent(&tracker, events, &ids(cfg.users), &ids(cfg.sessions));
    assert_freed(&tracker, &clock, &ids(cfg.users), &ids(cfg.sessions), |i| {
        100_000 + i
    });
}

/// Item 2: users contending for few session ids, with zero-grace leaves and expiries.
#[test]
fn stress_contended_session_ids_keep_one_owner() {
    let cfg = Stress {
        threads: 4,
        ops: 25_000,
        users: 6,
        sessions: 4,
        shared: true,
        mix: Mix {
            connect: 8,
            heartbeat: 3,
            batch: 1,
            disconnect: 2,
            leave: 3,
            tick: 2,
            read: 2,
            snapshot: 0,
        },
        step: ms(600),
        jump_past_max: false,
        start: ManualClock::DEFAULT_START,
        policy: small_policy(4),
    };
    let (tracker, clock, events) = stress(&cfg);
    assert_quiescent(&tracker, events, &ids(cfg.users), &ids(cfg.sessions));
    assert_freed(&tracker, &clock, &ids(cfg.users), &ids(cfg.sessions), |i| {
        100_000 + i
    });
}

/// Item 3: snapshots taken while expired sessions change hands all restore.
#[test]
fn stress_snapshots_of_a_live_tracker_restore() {
    let cfg = Stress {
        threads: 4,
        ops: 2_000,
        users: 24,
        sessions: 12,
        shared: true,
        mix: Mix {
            connect: 8,
            heartbeat: 2,
            batch: 0,
            disconnect: 3,
            leave: 0,
            tick: 1,
            read: 0,
            snapshot: 3,
        },
        step: ms(700),
        jump_past_max: false,
        start: ManualClock::DEFAULT_START,
        policy: small_policy(12),
    };
    let (tracker, clock, events) = stress(&cfg);
    assert_quiescent(&tracker, events, &ids(cfg.users), &ids(cfg.sessions));
    assert_freed(&tracker, &clock, &ids(cfg.users), &ids(cfg.sessions), |i| {
        100_000 + i
    });
}

/// Item 4: threads signalling while the clock crosses the maximum time and jumps far past it.
#[test]
fn stress_across_the_maximum_time() {
    let cfg = Stress {
        threads: 4,
        ops: 2_000,
        users: 4,
        sessions: 8,
        shared: false,
        mix: ALL_OPS,
        step: ms(100),
        jump_past_max: true,
        start: Timestamp::MAX.saturating_sub(secs(20)),
        policy: small_policy(8),
    };
    let (tracker, _clock, events) = stress(&cfg);
    assert_eq!(tracker.now(), Timestamp::MAX);
    assert!(events.iter().all(|e| e.at <= Timestamp::MAX));
    assert_quiescent(&tracker, events, &ids(cfg.users), &ids(cfg.sessions));
}

/// The shared-owner stress of issue 15: any user may connect any session id, with concurrent
/// ticks, reads and snapshots; at quiescence everything is consistent, and past every TTL and
/// the retention everything is offline and freed.
#[test]
fn stress_shared_owners_until_everything_is_freed() {
    let cfg = Stress {
        threads: 4,
        ops: 3_000,
        users: 8,
        sessions: 16,
        shared: true,
        mix: ALL_OPS,
        step: ms(400),
        jump_past_max: false,
        start: ManualClock::DEFAULT_START,
        policy: small_policy(16),
    };
    let (tracker, clock, events) = stress(&cfg);
    assert_quiescent(&tracker, events, &ids(cfg.users), &ids(cfg.sessions));
    assert_freed(&tracker, &clock, &ids(cfg.users), &ids(cfg.sessions), |i| {
        100_000 + i
    });
}
