//! Rooms and metadata against the brute-force model (tests/support/model.rs).
//!
//! The sequences of tests/model.rs (signals, clock moves, ticks) interleaved with room joins,
//! metadata updates and room leaves on three rooms, with short string metadata, on a policy
//! whose room limits proptest also draws (rooms per session, members per room, metadata bytes,
//! metadata interval), so that every limit is reached. After every call, besides every check of
//! tests/model.rs:
//!
//! - the call's result is the model's: its room events room by room (user, change, from, to,
//!   sessions with their metadata, time, version; a room made anew has an epoch never seen
//!   before), or the typed error the model predicts, with nothing changed;
//! - every room read (`get`, `counts`) equals the model's, which recomputes each room from a
//!   plain list of memberships and the sessions' published presences; `of_session` and
//!   `of_user` too;
//! - the room events, replayed as a client would ([`RoomReplay`]), keep consistent chains
//!   (versions gap-free per room and epoch, `from` the previous `to`, `Joined` from offline,
//!   `Left` to offline) and rebuild exactly what `get` reads, sharing its metadata;
//! - after a tick every session in a room is live there at its derived presence;
//! - a snapshot restored through JSON has the same rooms, with new epochs.
//!
//! [`RoomReplay`]: support::room_replay::RoomReplay

mod support;

use presence_tracker::{
    Activity, Event, ManualClock, Policy, Presence, PresenceTracker, RoomChange, Timestamp,
    Transitions,
};
use proptest::prelude::*;
use support::model::run::run;
use support::model::{
    config, room_op, session_op, small_limits, Limits, Model, Refusal, RoomModel, ACTIVE,
    LEAVE_GRACE,
};

fn op() -> impl Strategy<Value = support::model::Op> {
    prop_oneof![3 => session_op(), 2 => room_op()]
}

proptest! {
    #![proptest_config(config(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proptest-regressions/model_rooms.txt"
    )))]

    #[test]
    fn rooms_match_brute_force_model(
        limits in small_limits(),
        ops in prop::collection::vec(op(), 1..100),
    ) {
        run(&ops, limits)?;
    }
}

/// The session events a call published (the room model takes them as the run does: events
/// cannot be made outside the crate).
fn published(
    t: Result<Transitions<u64, u64, u8, String>, presence_tracker::Error>,
) -> Vec<Event<u64, u64>> {
    t.expect("accepted").into_parts().0
}

/// The room model itself must be able to fail: each rule it applies, on a small case.
#[test]
fn room_model_rules_sanity() {
    let limits = Limits {
        rooms_per_session: 2,
        members_per_room: 2,
        metadata_bytes: 4,
        metadata_interval: 1_000,
    };
    let clock = ManualClock::new();
    let tracker: support::model::ModelTracker =
        PresenceTracker::with_clock(support::model::policy(limits), clock.clone());
    let mut m = Model::default();
    let mut rooms = RoomModel::new(limits);
    let t0 = clock.now().as_millis();
    m.at(t0);
    for (user, session) in [(1, 10), (1, 11), (2, 20), (3, 30)] {
        assert_eq!(m.connect(user, session, 0, Activity::Active), Ok(()));
        let events = published(tracker.connect(user, session, 0u64, Activity::Active));
        assert!(rooms.on_session_events(&events).is_empty());
    }

    let joined = rooms.join(&m, 10, 0, "ada").expect("joins");
    assert_eq!(joined.len(), 1);
    assert_eq!(
        (
            joined[0].change,
            joined[0].from,
            joined[0].to,
            joined[0].epoch
        ),
        (
            RoomChange::Joined,
            Presence::Offline,
            Presence::Active,
            None
        )
    );
    assert_eq!(joined[0].version, 1);
    rooms.learn_epoch(0, 7);
    // A second tab of the same user: an update of the member, not a second member.
    let second = rooms.join(&m, 11, 0, "tab2").expect("joins");
    assert_eq!(
        (second[0].change, second[0].version, second[0].epoch),
        (RoomChange::Updated, 2, Some(7))
    );
    assert_eq!(
        second[0].sessions,
        vec![(10, "ada".to_string()), (11, "tab2".to_string())]
    );
    // The limits, each refused before anything changes.
    assert_eq!(
        rooms.join(&m, 20, 0, "toolong"),
        Err(Refusal::MetadataTooLarge { size: 7, max: 4 })
    );
    assert_eq!(rooms.join(&m, 20, 0, "bob").map(|e| e.len()), Ok(1));
    assert_eq!(
        rooms.join(&m, 30, 0, "cy"),
        Err(Refusal::RoomFull { max: 2 })
    );
    assert_eq!(rooms.join(&m, 10, 1, "x").map(|e| e.len()), Ok(1));
    assert_eq!(
        rooms.join(&m, 10, 2, "x"),
        Err(Refusal::TooManyRooms { max: 2 })
    );
    assert_eq!(
        rooms.update(&m, 10, 0, "new"),
        Err(Refusal::MetadataTooFrequent {
            retry_after: std::time::Duration::from_millis(1_000)
        })
    );
    assert_eq!(rooms.update(&m, 30, 0, "new"), Err(Refusal::NotInRoom));
    assert_eq!(rooms.leave(&m, 99, 0), Err(Refusal::UnknownSession));
    assert_eq!(rooms.of_user(1), vec![0, 1]);
    assert_eq!(rooms.of_session(1, 10), vec![0, 1]);

    // Session 10 goes idle: user 1 stays active in room 0 (tab 11), goes idle in room 1.
    m.at(t0 + ACTIVE);
    let idle = session_event(&tracker, &clock, t0 + ACTIVE, 10);
    assert_eq!(idle.to, Presence::Idle);
    let moved = rooms.on_session_events(std::slice::from_ref(&idle));
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!(
        (moved[0].room, moved[0].change, moved[0].to),
        (1, RoomChange::Presence, Presence::Idle)
    );

    // Session 10 expires: it leaves both rooms; room 1 empties and goes.
    assert_eq!(m.leave(10, 0), Ok(()));
    let _ = tracker.leave(&10, 0u64);
    m.at(t0 + ACTIVE + LEAVE_GRACE);
    clock.set(Timestamp::from_millis(t0 + ACTIVE + LEAVE_GRACE));
    let gone: Vec<_> = tracker
        .tick()
        .into_parts()
        .0
        .into_iter()
        .filter(|e| e.session() == Some(&10))
        .collect();
    let left = rooms.on_session_events(&gone);
    let changes: Vec<_> = left.iter().map(|e| (e.room, e.change)).collect();
    assert_eq!(
        changes,
        vec![(0, RoomChange::Updated), (1, RoomChange::Left)]
    );
    assert!(!rooms.rooms.contains_key(&1));
    assert_eq!(rooms.of_user(1), vec![0]);
}

/// The event of `session` published by a tick at `at` (a presence it fell to).
fn session_event(
    tracker: &support::model::ModelTracker,
    clock: &ManualClock,
    at: u64,
    session: u64,
) -> Event<u64, u64> {
    clock.set(Timestamp::from_millis(at));
    tracker
        .tick()
        .into_parts()
        .0
        .into_iter()
        .find(|e| e.session() == Some(&session))
        .expect("the session's presence fell")
}

/// A heartbeat in a batch that changes the presence of a session in a room moves the room to
/// its next version, and must return that room event, as `heartbeat` does: a client that
/// misses it sees a gap at the next one. (Found by the model: connect, join, a batch heartbeat
/// reporting `Idle`.)
#[test]
fn batch_heartbeat_returns_its_room_events() {
    let clock = ManualClock::new();
    let tracker: PresenceTracker<u64, u64, ManualClock> =
        PresenceTracker::with_clock(Policy::default(), clock);
    let _ = tracker
        .connect(1, 1, 1u64, Activity::Active)
        .expect("connects");
    let _ = tracker
        .rooms()
        .join(&1, "doc".to_string(), ())
        .expect("joins");

    let outcome = tracker.heartbeat_batch([(&1, Activity::Idle)]);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    let view = tracker.rooms().get("doc").expect("the room exists");
    assert_eq!(
        (view.version, view.members[0].presence),
        (2, Presence::Idle),
        "the room published version 2"
    );
    let returned: Vec<_> = outcome
        .events
        .rooms()
        .map(|e| (e.change, e.from, e.to, e.version))
        .collect();
    assert_eq!(
        returned,
        vec![(RoomChange::Presence, Presence::Active, Presence::Idle, 2)],
        "the batch returned no event of the room's version 2"
    );
}

/// A member's sessions in a room are listed in the order they joined
/// ([`RoomMember::sessions`](presence_tracker::RoomMember::sessions)), in a restored tracker
/// too. (Found by the model, which compares restored rooms with each member's sessions sorted
/// meanwhile.) Eight tabs of one user join in reverse id order: a restore that lists them in
/// any other order fails (by chance, it keeps it once in 8! runs).
#[test]
fn restored_rooms_keep_the_order_sessions_joined() {
    let clock = ManualClock::new();
    let tracker: support::model::ModelTracker =
        PresenceTracker::with_clock(Policy::default(), clock.clone());
    for s in 0..8u64 {
        let _ = tracker
            .connect(1, s, s, Activity::Active)
            .expect("connects");
    }
    for s in (0..8u64).rev() {
        let _ = tracker
            .rooms()
            .join(&s, 0, format!("tab {s}"))
            .expect("joins");
    }
    let order = |t: &support::model::ModelTracker| -> Vec<u64> {
        let view = t.rooms().get(&0).expect("the room exists");
        view.members[0].sessions.iter().map(|s| s.session).collect()
    };
    assert_eq!(order(&tracker), (0..8).rev().collect::<Vec<_>>());
    let restored = PresenceTracker::restore(
        tracker.snapshot(),
        Policy::default(),
        ManualClock::starting_at(clock.now()),
    )
    .expect("restores");
    assert_eq!(order(&restored), order(&tracker), "restored order");
}
