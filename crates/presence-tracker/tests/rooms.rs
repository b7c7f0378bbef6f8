//! Rooms and metadata: who is in a room, at which presence, with which metadata; the room
//! events that say so, with their versions; the limits.

mod support;

use std::sync::Arc;

use presence_tracker::{
    Activity, DisconnectKind, Error, ManualClock, Policy, Presence, PresenceTracker, RoomChange,
    RoomEvent, Transitions,
};
use support::{ms, secs};

use Presence::{Active, Idle, Offline};

type Tracker = PresenceTracker<&'static str, &'static str, ManualClock, &'static str, String>;
type Changes = Transitions<&'static str, &'static str, &'static str, String>;
type Room = RoomEvent<&'static str, &'static str, &'static str, String>;

fn tracker_with(policy: Policy) -> (Tracker, ManualClock) {
    let clock = ManualClock::new();
    (PresenceTracker::with_clock(policy, clock.clone()), clock)
}

fn tracker() -> (Tracker, ManualClock) {
    tracker_with(Policy::default())
}

fn ok(result: Result<Changes, Error>) -> Changes {
    match result {
        Ok(changes) => changes,
        Err(e) => panic!("refused: {e}"),
    }
}

fn connect(tracker: &Tracker, user: &'static str, session: &'static str) {
    let _ = ok(tracker.connect(user, session, session, Activity::Active));
}

/// The room events of `changes`, as (room, user, change, from, to, version).
fn summary(
    changes: &Changes,
) -> Vec<(
    &'static str,
    &'static str,
    RoomChange,
    Presence,
    Presence,
    u64,
)> {
    changes
        .rooms()
        .map(|e| (e.room, e.user, e.change, e.from, e.to, e.version))
        .collect()
}

/// The metadata of `user`'s sessions in `room`, as read.
fn metas(tracker: &Tracker, room: &str, user: &str) -> Vec<(&'static str, String)> {
    let view = tracker.rooms().get(room).expect("the room exists");
    let member = view
        .members
        .iter()
        .find(|m| m.user == user)
        .expect("a member");
    member
        .sessions
        .iter()
        .map(|s| (s.session, s.meta.as_str().to_owned()))
        .collect()
}

#[test]
fn a_session_joins_and_its_user_appears_with_its_metadata() {
    let (tracker, _clock) = tracker();
    connect(&tracker, "ada", "tab-1");
    let joined = ok(tracker.rooms().join("tab-1", "doc", "Ada, §2".into()));
    assert_eq!(
        summary(&joined),
        vec![("doc", "ada", RoomChange::Joined, Offline, Active, 1)]
    );
    let event = joined.rooms().next().expect("one event");
    assert_eq!(event.sessions.len(), 1);
    assert_eq!(event.sessions[0].meta.as_str(), "Ada, §2");
    assert_eq!(
        joined.len(),
        0,
        "no session or user event: nothing changed presence"
    );

    let view = tracker.rooms().get("doc").expect("the room");
    assert_eq!((view.epoch, view.version), (event.epoch, 1));
    assert_eq!(view.members.len(), 1);
    assert_eq!(view.members[0].presence, Active);
    // Reads share the metadata, they do not copy it.
    assert!(Arc::ptr_eq(
        &view.members[0].sessions[0].meta,
        &event.sessions[0].meta
    ));
    let counts = tracker.rooms().counts("doc").expect("the room");
    assert_eq!(
        (counts.users.active, counts.sessions, counts.version),
        (1, 1, 1)
    );
    assert_eq!(tracker.rooms().of_session("tab-1"), vec!["doc"]);
    assert_eq!(tracker.rooms().of_user("ada"), vec!["doc"]);
    assert!(tracker.rooms().get("elsewhere").is_none());
}

#[test]
fn a_second_tab_is_an_update_and_a_metadata_change_is_one_update() {
    let (tracker, clock) = tracker();
    connect(&tracker, "ada", "tab-1");
    connect(&tracker, "ada", "tab-2");
    let _ = ok(tracker.rooms().join("tab-1", "doc", "one".into()));
    let second = ok(tracker.rooms().join("tab-2", "doc", "two".into()));
    assert_eq!(
        summary(&second),
        vec![("doc", "ada", RoomChange::Updated, Active, Active, 2)]
    );
    assert_eq!(
        metas(&tracker, "doc", "ada"),
        vec![("tab-1", "one".to_owned()), ("tab-2", "two".to_owned())]
    );

    clock.advance(ms(100));
    let updated = ok(tracker.rooms().update("tab-1", "doc", "one, §3".into()));
    assert_eq!(
        summary(&updated),
        vec![("doc", "ada", RoomChange::Updated, Active, Active, 3)],
        "one update, never a leave and a join"
    );
    let event = updated.rooms().next().expect("the update");
    assert_eq!(event.sessions.len(), 2, "the member's whole state");
    assert_eq!(metas(&tracker, "doc", "ada")[0].1, "one, §3");
}

#[test]
fn metadata_changes_faster_than_the_interval_are_refused_with_when_to_retry() {
    let policy = Policy::builder()
        .metadata_interval(ms(100))
        .build()
        .expect("policy");
    let (tracker, clock) = tracker_with(policy);
    connect(&tracker, "ada", "tab-1");
    let _ = ok(tracker.rooms().join("tab-1", "doc", "a".into()));
    clock.advance(ms(40));
    assert_eq!(
        tracker.rooms().update("tab-1", "doc", "b".into()),
        Err(Error::MetadataTooFrequent {
            retry_after: ms(60)
        })
    );
    // A re-join is a metadata change too.
    assert!(matches!(
        tracker.rooms().join("tab-1", "doc", "b".into()),
        Err(Error::MetadataTooFrequent { .. })
    ));
    assert_eq!(metas(&tracker, "doc", "ada")[0].1, "a", "nothing changed");
    assert_eq!(tracker.rooms().counts("doc").map(|c| c.version), Some(1));
    clock.advance(ms(60));
    let updated = ok(tracker.rooms().update("tab-1", "doc", "b".into()));
    assert_eq!(updated.rooms().count(), 1);
}

#[test]
fn a_users_presence_in_a_room_is_that_of_its_sessions_there() {
    let (tracker, clock) = tracker();
    connect(&tracker, "ada", "tab-a");
    connect(&tracker, "ada", "tab-b");
    let _ = ok(tracker.rooms().join("tab-a", "room-a", String::new()));
    let _ = ok(tracker.rooms().join("tab-b", "room-b", String::new()));
    // Tab b keeps heartbeating; tab a falls silent past the active threshold.
    let mut events = Vec::new();
    for _ in 0..16 {
        clock.advance(secs(1));
        let _ = ok(tracker.heartbeat("tab-b", Activity::Active));
        let (_, rooms) = tracker.tick().into_parts();
        events.extend(rooms);
    }
    let moved: Vec<_> = events
        .iter()
        .map(|e: &Room| (e.room, e.change, e.from, e.to))
        .collect();
    assert_eq!(moved, vec![("room-a", RoomChange::Presence, Active, Idle)]);
    let presence = |room: &str| tracker.rooms().get(room).expect("room").members[0].presence;
    assert_eq!((presence("room-a"), presence("room-b")), (Idle, Active));
    // The user as a whole is active: its other tab is.
    assert_eq!(tracker.user("ada").presence, Active);
    assert_eq!(tracker.rooms().of_user("ada"), vec!["room-a", "room-b"]);
}

#[test]
fn a_room_presence_rise_comes_with_the_heartbeat_that_caused_it() {
    let (tracker, clock) = tracker();
    connect(&tracker, "ada", "tab-1");
    let _ = ok(tracker.rooms().join("tab-1", "doc", String::new()));
    clock.advance(secs(16));
    let fell = tracker.tick();
    assert_eq!(
        summary(&fell),
        vec![("doc", "ada", RoomChange::Presence, Active, Idle, 2)]
    );
    let rose = ok(tracker.heartbeat("tab-1", Activity::Active));
    assert_eq!(
        summary(&rose),
        vec![("doc", "ada", RoomChange::Presence, Idle, Active, 3)]
    );
}

#[test]
fn an_expired_session_leaves_all_its_rooms_and_a_new_room_has_a_new_epoch() {
    let (tracker, clock) = tracker();
    connect(&tracker, "ada", "tab-1");
    connect(&tracker, "bob", "tab-9");
    let first = ok(tracker.rooms().join("tab-1", "doc", String::new()));
    let epoch = first.rooms().next().expect("joined").epoch;
    let _ = ok(tracker.rooms().join("tab-1", "chat", String::new()));
    let _ = ok(tracker.rooms().join("tab-9", "chat", String::new()));
    let _ = ok(tracker.disconnect("tab-1", "tab-1", DisconnectKind::Lost));
    // Bob stays; Ada's session expires after the disconnect grace.
    let mut left = Vec::new();
    for _ in 0..13 {
        clock.advance(secs(10));
        let _ = ok(tracker.heartbeat("tab-9", Activity::Active));
        left.extend(tracker.tick().into_parts().1);
    }
    let leaves: Vec<_> = left
        .iter()
        .filter(|e| e.change == RoomChange::Left)
        .map(|e| (e.room, e.user))
        .collect();
    assert_eq!(leaves.len(), 2);
    assert!(leaves.contains(&("doc", "ada")) && leaves.contains(&("chat", "ada")));
    assert!(
        tracker.rooms().get("doc").is_none(),
        "an empty room is gone"
    );
    let chat = tracker.rooms().get("chat").expect("bob is there");
    assert_eq!(chat.members.len(), 1);
    assert!(tracker.rooms().of_user("ada").is_empty());
    assert!(tracker.rooms().of_session("tab-1").is_empty());

    connect(&tracker, "ada", "tab-2");
    let again = ok(tracker.rooms().join("tab-2", "doc", String::new()));
    let event = again.rooms().next().expect("joined");
    assert_eq!(event.version, 1);
    assert_ne!(event.epoch, epoch, "a new history");
}

#[test]
fn leaving_a_room_and_the_last_session_leaving() {
    let (tracker, _clock) = tracker();
    connect(&tracker, "ada", "tab-1");
    connect(&tracker, "ada", "tab-2");
    let _ = ok(tracker.rooms().join("tab-1", "doc", String::new()));
    let _ = ok(tracker.rooms().join("tab-2", "doc", String::new()));
    let one = ok(tracker.rooms().leave("tab-1", "doc"));
    assert_eq!(
        summary(&one),
        vec![("doc", "ada", RoomChange::Updated, Active, Active, 3)]
    );
    let last = ok(tracker.rooms().leave("tab-2", "doc"));
    assert_eq!(
        summary(&last),
        vec![("doc", "ada", RoomChange::Left, Active, Offline, 4)]
    );
    assert!(last.rooms().next().is_some_and(|e| e.sessions.is_empty()));
    assert_eq!(tracker.rooms().leave("tab-2", "doc"), Err(Error::NotInRoom));
    // The sessions themselves are untouched.
    assert_eq!(tracker.user("ada").sessions, 2);
}

#[test]
fn a_reload_flaps_nothing_in_a_room() {
    let (tracker, clock) = tracker();
    connect(&tracker, "ada", "tab-1");
    let _ = ok(tracker.rooms().join("tab-1", "doc", String::new()));
    clock.advance(secs(10));
    let _ = ok(tracker.leave("tab-1", "tab-1"));
    clock.advance(ms(300));
    let back = ok(tracker.connect("ada", "tab-1", "sock-2", Activity::Active));
    assert!(back.rooms().next().is_none());
    clock.advance(secs(10));
    assert!(tracker.tick().rooms().next().is_none());
    assert_eq!(tracker.rooms().counts("doc").map(|c| c.version), Some(1));
}

#[test]
fn a_taken_over_session_leaves_its_old_owners_rooms() {
    let (tracker, clock) = tracker();
    connect(&tracker, "ada", "tab-1");
    let _ = ok(tracker.rooms().join("tab-1", "doc", String::new()));
    clock.advance(secs(241)); // expired, not yet freed
    let taken = ok(tracker.connect("bob", "tab-1", "sock-b", Activity::Active));
    assert_eq!(
        summary(&taken),
        vec![("doc", "ada", RoomChange::Left, Active, Offline, 2)]
    );
    assert!(tracker.rooms().get("doc").is_none());
    assert!(
        tracker.rooms().of_session("tab-1").is_empty(),
        "bob's session is in no room"
    );
}

#[test]
fn limits_refuse_with_typed_errors_and_change_nothing() {
    let policy = Policy::builder()
        .max_rooms_per_session(2)
        .max_members_per_room(1)
        .max_metadata_bytes(8)
        .build()
        .expect("policy");
    let (tracker, _clock) = tracker_with(policy);
    connect(&tracker, "ada", "tab-1");
    connect(&tracker, "bob", "tab-9");
    let _ = ok(tracker.rooms().join("tab-1", "a", String::new()));
    let _ = ok(tracker.rooms().join("tab-1", "b", String::new()));
    assert_eq!(
        tracker.rooms().join("tab-1", "c", String::new()),
        Err(Error::TooManyRooms { max: 2 })
    );
    assert_eq!(
        tracker.rooms().join("tab-9", "a", String::new()),
        Err(Error::RoomFull { max: 1 })
    );
    assert_eq!(
        tracker.rooms().join("tab-9", "z", "123456789".into()),
        Err(Error::MetadataTooLarge { size: 9, max: 8 })
    );
    assert_eq!(
        tracker.rooms().update("tab-9", "a", String::new()),
        Err(Error::NotInRoom)
    );
    assert_eq!(
        tracker.rooms().join("nobody", "a", String::new()),
        Err(Error::UnknownSession)
    );
    assert_eq!(
        tracker.rooms().join("tab-9", "", String::new()),
        Err(Error::EmptyId)
    );
    assert!(tracker.rooms().get("c").is_none());
    assert!(tracker.rooms().get("z").is_none());
    assert!(tracker.rooms().of_session("tab-9").is_empty());
    assert_eq!(
        tracker.rooms().counts("a").map(|c| (c.version, c.sessions)),
        Some((1, 1))
    );
    // The same user's other tab is not another member: it fits a full room.
    connect(&tracker, "ada", "tab-2");
    let _ = ok(tracker.rooms().join("tab-2", "a", String::new()));
}

#[test]
fn a_snapshot_keeps_rooms_and_metadata_and_a_restore_starts_new_histories() {
    let (tracker, clock) = tracker();
    connect(&tracker, "ada", "tab-1");
    connect(&tracker, "bob", "tab-9");
    let joined = ok(tracker.rooms().join("tab-1", "doc", "Ada".into()));
    let epoch = joined.rooms().next().expect("joined").epoch;
    let _ = ok(tracker.rooms().join("tab-9", "doc", "Bob".into()));
    let _ = ok(tracker.rooms().join("tab-9", "chat", "Bob in chat".into()));
    let snapshot = tracker.snapshot();
    let json = serde_json::to_string(&snapshot).expect("serialises");
    assert!(json.contains("Bob in chat"));

    let restored: Tracker =
        PresenceTracker::restore(snapshot, Policy::default(), clock.clone()).expect("restores");
    let doc = restored.rooms().get("doc").expect("doc");
    assert_ne!(doc.epoch, epoch);
    let mut members: Vec<_> = doc.members.iter().map(|m| (m.user, m.presence)).collect();
    members.sort();
    assert_eq!(members, vec![("ada", Active), ("bob", Active)]);
    assert_eq!(restored.rooms().of_session("tab-9"), vec!["doc", "chat"]);
    assert_eq!(
        restored.rooms().get("chat").expect("chat").members[0].sessions[0]
            .meta
            .as_str(),
        "Bob in chat"
    );
    // The first tick publishes nothing in the rooms: nothing changed.
    assert!(restored.tick().rooms().next().is_none());
}

#[test]
fn a_snapshot_with_bad_rooms_is_refused() {
    let (tracker, clock) = tracker();
    connect(&tracker, "ada", "tab-1");
    let _ = ok(tracker.rooms().join("tab-1", "doc", String::new()));
    let mut snapshot = tracker.snapshot();
    let twice = snapshot.users[0].sessions[0].rooms[0].clone();
    snapshot.users[0].sessions[0].rooms.push(twice);
    assert!(matches!(
        PresenceTracker::restore(snapshot, Policy::default(), clock.clone()),
        Err(Error::InvalidSnapshot(_))
    ));
}

#[test]
fn room_events_of_many_users_are_gap_free() {
    let (tracker, clock) = tracker();
    let users = ["u1", "u2", "u3", "u4"];
    let sessions = ["s1", "s2", "s3", "s4"];
    let mut all = Vec::new();
    for (u, s) in users.iter().zip(sessions) {
        connect(&tracker, u, s);
        all.extend(
            ok(tracker.rooms().join(s, "hall", String::new()))
                .into_parts()
                .1,
        );
    }
    for step in 0..60 {
        clock.advance(secs(5));
        // Two of them keep heartbeating, the others fall.
        for s in &sessions[..2] {
            all.extend(ok(tracker.heartbeat(*s, Activity::Active)).into_parts().1);
        }
        if step == 5 {
            all.extend(ok(tracker.rooms().leave("s1", "hall")).into_parts().1);
        }
        all.extend(tracker.tick().into_parts().1);
    }
    let versions: Vec<u64> = all.iter().map(|e| e.version).collect();
    let expected: Vec<u64> = (1..=versions.len() as u64).collect();
    assert_eq!(versions, expected);
    let view = tracker.rooms().get("hall").expect("s2 is there");
    assert_eq!(view.version, versions.len() as u64);
    assert_eq!(view.members.len(), 1);
}
