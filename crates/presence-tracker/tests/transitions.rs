//! Transitions, not heartbeats: the pure derivation, and when and how events are published.

mod support;

use std::time::Duration;

use presence_tracker::{
    derive, Activity, Cause, Policy, Presence, SessionRecord, Timestamp, Transitions,
};
use support::{default_tracker, secs, session_transitions, transitions, user_transitions, Replay};

use Presence::{Active, Away, Idle, Offline, Stale};

fn record(last_seen: u64, activity: Activity, grace: Option<u64>) -> SessionRecord {
    SessionRecord::new(
        Timestamp::from_millis(last_seen),
        activity,
        grace.map(Timestamp::from_millis),
    )
}

#[test]
fn derive_by_age_at_the_seed_thresholds() {
    let p = Policy::default();
    let base = 1_000_000;
    let r = record(base, Activity::Active, None);
    let at = |ms: u64| derive(&r, Timestamp::from_millis(base + ms), &p);
    let table = [
        (0, Active),
        (14_999, Active),
        (15_000, Idle),
        (59_999, Idle),
        (60_000, Away),
        (179_999, Away),
        (180_000, Stale),
        (239_999, Stale),
        (240_000, Offline),
        (u64::MAX - base, Offline),
    ];
    for (age, want) in table {
        assert_eq!(at(age), want, "age {age} ms");
    }
}

#[test]
fn derive_caps_by_activity() {
    let p = Policy::default();
    let now = Timestamp::from_millis(1_000_000);
    for (activity, ages) in [
        (Activity::Idle, [Idle, Idle, Away, Stale, Offline]),
        (Activity::Background, [Away, Away, Away, Stale, Offline]),
        (Activity::Active, [Active, Idle, Away, Stale, Offline]),
    ] {
        for (age, want) in [0u64, 15_000, 60_000, 180_000, 240_000]
            .into_iter()
            .zip(ages)
        {
            let r = record(1_000_000 - age, activity, None);
            assert_eq!(derive(&r, now, &p), want, "{activity:?} at age {age}");
        }
    }
}

#[test]
fn derive_grace_deadline_and_future_last_seen() {
    let p = Policy::default();
    let r = record(1_000, Activity::Active, Some(5_000));
    assert_eq!(derive(&r, Timestamp::from_millis(4_999), &p), Active);
    assert_eq!(derive(&r, Timestamp::from_millis(5_000), &p), Offline);
    // A record from the future (a clock that went back): age saturates at zero.
    let r = record(10_000, Activity::Active, None);
    assert_eq!(derive(&r, Timestamp::from_millis(0), &p), Active);
    assert_eq!(derive(&r, Timestamp::EPOCH, &p), Active);
}

#[test]
fn derive_never_rises_with_time() {
    let p = Policy::builder()
        .active(Duration::from_millis(3))
        .idle(Duration::from_millis(7))
        .away(Duration::from_millis(11))
        .ttl(Duration::from_millis(13))
        .disconnect_grace(Duration::from_millis(9))
        .leave_grace(Duration::from_millis(2))
        .build()
        .expect("valid");
    for activity in [Activity::Active, Activity::Idle, Activity::Background] {
        for grace in [None, Some(105), Some(112), Some(150)] {
            let r = record(100, activity, grace);
            let mut last = Active;
            for now in 90..130 {
                let p_now = derive(&r, Timestamp::from_millis(now), &p);
                assert!(p_now <= last, "{activity:?} {grace:?} rose at {now}");
                last = p_now;
            }
            assert_eq!(last, Offline);
        }
    }
}

#[test]
fn a_tick_across_several_thresholds_emits_one_event_per_subject() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    clock.advance(secs(200));
    let events = tracker.tick();
    assert_eq!(
        transitions(&events)
            .into_iter()
            .filter(|t| t.0)
            .collect::<Vec<_>>(),
        vec![(true, Active, Stale, Cause::Timeout)]
    );
    assert_eq!(
        session_transitions(&events),
        vec![(Active, Stale, Cause::Timeout)]
    );
    assert!(events.iter().all(|e| e.at == tracker.now()));
    assert_eq!(
        tracker.tick(),
        Transitions::new(),
        "a second tick at the same time has nothing to add"
    );
}

#[test]
fn downgrades_wait_for_the_tick_upgrades_come_with_the_signal() {
    let (tracker, clock) = default_tracker();
    let mut all = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    clock.advance(secs(70));
    // Derived at once, published at the tick.
    assert_eq!(tracker.user(&1).presence, Away);
    let events = tracker.tick();
    assert_eq!(
        user_transitions(&events),
        vec![(Active, Away, Cause::Timeout)]
    );
    all.extend(events);
    let events = tracker.heartbeat(&10, Activity::Active).expect("heartbeat");
    assert_eq!(
        user_transitions(&events),
        vec![(Away, Active, Cause::Heartbeat)]
    );
    assert_eq!(
        session_transitions(&events),
        vec![(Away, Active, Cause::Heartbeat)]
    );
    all.extend(events);
    let mut replay = Replay::new();
    replay.apply_all(&all).expect("consistent chains");
    assert_eq!(replay.user(&1), Active);
}

#[test]
fn sequence_numbers_strictly_increase_per_user() {
    let (tracker, clock) = default_tracker();
    let mut all = vec![];
    for round in 0..20u64 {
        all.extend(
            tracker
                .connect(1, round % 3, round, Activity::Active)
                .expect("connect"),
        );
        all.extend(
            tracker
                .connect(2, 100 + round % 2, round, Activity::Active)
                .expect("connect"),
        );
        clock.advance(secs(25 + round * 7));
        all.extend(tracker.tick());
        if round % 4 == 0 {
            all.extend(
                tracker
                    .heartbeat(&(round % 3), Activity::Background)
                    .expect("heartbeat"),
            );
        }
    }
    assert!(
        all.len() > 40,
        "enough events to mean something: {}",
        all.len()
    );
    for user in [1, 2] {
        let seqs: Vec<u64> = all
            .iter()
            .filter(|e| *e.user() == user)
            .map(|e| e.seq)
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "user {user}: {seqs:?}"
        );
    }
    let mut replay = Replay::new();
    replay.apply_all(&all).expect("consistent chains");
}

/// A connect that also finds the user's other sessions expired: those go offline by timeout,
/// but the user's rise is the connect's doing, never time's.
#[test]
fn a_signal_that_also_expires_sessions_names_its_own_cause() {
    let (tracker, clock) = default_tracker();
    let mut all = tracker
        .connect(3, 0, "a", Activity::Active)
        .expect("connect");
    all.extend(
        tracker
            .connect(3, 1, "b", Activity::Active)
            .expect("connect"),
    );
    clock.advance(secs(20));
    all.extend(tracker.tick());
    clock.advance(secs(240));
    let events = tracker
        .connect(3, 2, "c", Activity::Active)
        .expect("connect");
    all.extend(events.iter().cloned());
    assert_eq!(
        user_transitions(&events),
        vec![(Idle, Active, Cause::Connect)],
        "{events:?}"
    );
    // The expired sessions' ends and the new session's start: every event of the call carries
    // the user's one live session.
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events.iter().all(|e| e.sessions == 1), "{events:?}");
    let mut replay = Replay::new();
    replay.apply_all(&all).expect("consistent chains");
}
