//! `heartbeat_batch`: the same outcome as the heartbeats one by one, grouped differently.

mod support;

use std::time::Duration;

use presence_tracker::{
    Activity, DisconnectKind, Error, Event, ManualClock, Policy, Presence, PresenceTracker,
    Timestamp,
};
use proptest::prelude::*;
use support::ms;

type T = PresenceTracker<u64, u64, ManualClock>;

const USERS: u64 = 5;
const SESSIONS: u64 = 40;

fn activity() -> impl Strategy<Value = Activity> {
    prop_oneof![
        Just(Activity::Active),
        Just(Activity::Idle),
        Just(Activity::Background)
    ]
}

/// Two identical trackers: sessions of a few users, some heartbeated, disconnected or left at
/// various times, all at the same virtual times.
fn twins(setup: &[(u64, u8, u64)]) -> (T, T, ManualClock) {
    let clock = ManualClock::new();
    let make = || T::with_clock(Policy::default(), clock.clone());
    let (a, b) = (make(), make());
    for &(session, what, advance) in setup {
        for t in [&a, &b] {
            // Errors are part of the setup (a signal on an expired session): both twins get them.
            // Every connect names the session id as its connection, so a leave naming it is the
            // current connection's.
            let _ = match what % 5 {
                0 | 1 => t.connect(session % USERS, session, session, Activity::Active),
                2 => t.heartbeat(&session, Activity::Background),
                3 => t.disconnect(&session, session, DisconnectKind::Lost),
                _ => t.leave(&session, session),
            };
        }
        clock.advance(ms(advance));
        let _ = a.tick();
        let _ = b.tick();
    }
    (a, b, clock)
}

/// Session events without their order: a batch applies heartbeats of different sessions in an
/// order of its own (by shard), so a user's seqs, and its own events in between (a user may rise
/// in one step or two), can differ from the one-by-one order.
fn session_moves<'a>(events: impl IntoIterator<Item = &'a Event<u64, u64>>) -> Vec<String> {
    let mut moves: Vec<String> = events
        .into_iter()
        .filter(|e| !e.is_user())
        .map(|e| {
            format!(
                "{:?} {:?}->{:?} {:?} {:?}",
                e.subject, e.from, e.to, e.at, e.cause
            )
        })
        .collect();
    moves.sort();
    moves
}

fn views(t: &T) -> Vec<String> {
    (0..SESSIONS)
        .map(|s| format!("{:?}", t.session(&s)))
        .chain((0..USERS).map(|u| format!("{:?}", t.user(&u))))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_batch_does_what_its_heartbeats_do_one_by_one(
        setup in prop::collection::vec((0..SESSIONS, 0u8..5, 0u64..90_000), 0..60),
        batch in prop::collection::vec((0..SESSIONS + 5, activity()), 0..80),
    ) {
        // The twins share the clock: the batch and the single heartbeats are at the same time.
        let (batched, single, clock) = twins(&setup);
        let outcome = batched.heartbeat_batch(batch.iter().map(|(s, a)| (s, *a)));

        let mut events = Vec::new();
        let mut errors: Vec<(usize, Error)> = Vec::new();
        for (i, (s, a)) in batch.iter().enumerate() {
            match single.heartbeat(s, *a) {
                Ok(e) => events.extend(e),
                Err(e) => errors.push((i, e)),
            }
        }
        prop_assert_eq!(&outcome.errors, &errors);
        prop_assert_eq!(session_moves(&outcome.events), session_moves(&events));
        prop_assert_eq!(views(&batched), views(&single));
        prop_assert_eq!(batched.census(), single.census());
        // And from here on, time does the same to both.
        clock.advance(Duration::from_secs(70));
        prop_assert_eq!(session_moves(&batched.tick()), session_moves(&single.tick()));
        prop_assert_eq!(views(&batched), views(&single));
    }
}

#[test]
fn heartbeats_of_one_session_apply_in_batch_order() {
    let clock = ManualClock::new();
    let t = T::with_clock(Policy::default(), clock.clone());
    let _ = t.connect(1, 10, "c", Activity::Active).expect("connect");
    // The first changes the presence (slow path), the second does not (fast path): the second
    // must still win.
    let out = t.heartbeat_batch([(&10, Activity::Background), (&10, Activity::Active)]);
    assert!(out.errors.is_empty());
    assert_eq!(t.session(&10).map(|v| v.activity), Some(Activity::Active));
    assert_eq!(t.user(&1).presence, Presence::Active);
    let moves: Vec<_> = out.events.users().map(|e| (e.from, e.to)).collect();
    assert_eq!(
        moves,
        [
            (Presence::Active, Presence::Away),
            (Presence::Away, Presence::Active)
        ]
    );
}

#[test]
fn refused_heartbeats_are_reported_by_position_and_the_rest_recorded() {
    let clock = ManualClock::new();
    let t: PresenceTracker<String, String, _> =
        PresenceTracker::with_clock(Policy::default(), clock.clone());
    let _ = t
        .connect("u".into(), "a".into(), 1, Activity::Active)
        .expect("connect");
    let _ = t
        .connect("u".into(), "b".into(), 2, Activity::Active)
        .expect("connect");
    clock.advance(Duration::from_secs(10));
    let long = "x".repeat(1000);
    let (a, b, empty, unknown) = (
        "a".to_string(),
        "b".to_string(),
        String::new(),
        "zz".to_string(),
    );
    let out = t.heartbeat_batch([
        (&a, Activity::Active),
        (&empty, Activity::Active),
        (&unknown, Activity::Idle),
        (&long, Activity::Active),
        (&b, Activity::Active),
    ]);
    assert!(out.events.is_empty());
    let positions: Vec<usize> = out.errors.iter().map(|(i, _)| *i).collect();
    assert_eq!(positions, [1, 2, 3]);
    // Lookups do not validate ids: an empty or over-long id is just an unknown session.
    assert_eq!(out.errors[0].1, Error::UnknownSession);
    assert_eq!(out.errors[1].1, Error::UnknownSession);
    assert_eq!(out.errors[2].1, Error::UnknownSession);
    let now = t.now();
    for s in [&a, &b] {
        assert_eq!(t.session(s).map(|v| v.last_seen), Some(now), "{s}");
    }
}

#[test]
fn an_empty_batch_does_nothing() {
    let clock = ManualClock::new();
    let t = T::with_clock(Policy::default(), clock.clone());
    clock.set(Timestamp::from_millis(5));
    let out = t.heartbeat_batch(std::iter::empty::<(u64, Activity)>());
    assert!(out.events.is_empty() && out.errors.is_empty());
}
