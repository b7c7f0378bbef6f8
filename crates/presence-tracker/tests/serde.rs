//! What goes on the wire: activity, presence and event JSON, and snapshots that restore.

mod support;

use presence_tracker::{
    Activity, Cause, ConnectionId, DisconnectKind, Event, ManualClock, Policy, Presence,
    PresenceTracker, Snapshot, Subject, Timestamp,
};
use serde_json::json;
use support::{default_tracker, secs};

#[test]
fn activity_is_lowercase_text() {
    for (a, text) in [
        (Activity::Active, "active"),
        (Activity::Idle, "idle"),
        (Activity::Background, "background"),
    ] {
        assert_eq!(serde_json::to_value(a).expect("serializes"), json!(text));
        assert_eq!(
            serde_json::from_value::<Activity>(json!(text)).expect("parses"),
            a
        );
        assert_eq!(a.to_string(), text);
        assert_eq!(text.parse::<Activity>().expect("parses"), a);
    }
}

#[test]
fn unknown_activity_error_names_it() {
    let e = serde_json::from_str::<Activity>("\"sleepy\"").expect_err("not an activity");
    assert!(e.to_string().contains("sleepy"), "{e}");
    let e = "Active".parse::<Activity>().expect_err("case matters");
    assert!(e.to_string().contains("Active"), "{e}");
}

#[test]
fn presence_is_lowercase_text_in_order() {
    let names = ["offline", "stale", "away", "idle", "active"];
    assert_eq!(Presence::ALL.len(), names.len());
    let mut sorted = Presence::ALL;
    sorted.sort();
    for (i, (p, text)) in sorted.iter().zip(names).enumerate() {
        assert_eq!(
            serde_json::to_value(p).expect("serializes"),
            json!(text),
            "#{i}"
        );
        assert_eq!(
            serde_json::from_value::<Presence>(json!(text)).expect("parses"),
            *p
        );
        assert_eq!(p.to_string(), text);
        assert_eq!(text.parse::<Presence>().expect("parses"), *p);
    }
    assert!(Presence::Active > Presence::Idle && Presence::Idle > Presence::Away);
    assert!(Presence::Away > Presence::Stale && Presence::Stale > Presence::Offline);
    assert!(serde_json::from_str::<Presence>("\"busy\"").is_err());
}

#[test]
fn disconnect_kind_and_timestamp_forms() {
    assert_eq!(
        serde_json::to_value(DisconnectKind::Clean).expect("ser"),
        json!("clean")
    );
    assert_eq!(
        serde_json::to_value(DisconnectKind::Lost).expect("ser"),
        json!("lost")
    );
    let t = Timestamp::from_millis(1_767_225_600_123);
    assert_eq!(
        serde_json::to_value(t).expect("ser"),
        json!(1_767_225_600_123u64)
    );
    assert_eq!(
        serde_json::from_value::<Timestamp>(json!(5)).expect("de"),
        Timestamp::from_millis(5)
    );
    let c = ConnectionId::from("Xj3k-socket-id");
    let back: ConnectionId =
        serde_json::from_value(serde_json::to_value(c).expect("ser")).expect("de");
    assert_eq!(back, c);
    assert_eq!(
        ConnectionId::from("a"),
        ConnectionId::from(String::from("a"))
    );
    assert_ne!(ConnectionId::from("a"), ConnectionId::from("b"));
}

#[test]
fn event_json_shape() {
    let (tracker, clock) = tracker_strings();
    let t0 = tracker.now();
    let events = tracker
        .connect(
            "ada".to_string(),
            "tab-1".to_string(),
            "sock",
            Activity::Active,
        )
        .expect("connect");
    let user = events.users().next().expect("a user event");
    let value = serde_json::to_value(user).expect("serializes");
    assert_eq!(value["subject"], json!({"kind": "user", "user": "ada"}));
    assert_eq!(value["from"], json!("offline"));
    assert_eq!(value["to"], json!("active"));
    assert_eq!(value["at"], json!(t0.as_millis()));
    assert_eq!(value["cause"], json!("connect"));
    assert!(value["seq"].is_u64());
    assert_eq!(value["sessions"], json!(1));
    assert_eq!(value["user_presence"], json!("active"));
    assert_eq!(value["last_seen"], json!(t0.as_millis()));
    let session = events.sessions().next().expect("a session event");
    let value = serde_json::to_value(session).expect("serializes");
    assert_eq!(
        value["subject"],
        json!({"kind": "session", "user": "ada", "session": "tab-1"})
    );
    assert_eq!(value["sessions"], json!(1));
    assert_eq!(value["user_presence"], json!("active"));
    assert_eq!(value["last_seen"], json!(t0.as_millis()));

    let _ = tracker
        .disconnect("tab-1", "sock", DisconnectKind::Clean)
        .expect("close");
    clock.advance(secs(5));
    let events = tracker.tick();
    assert!(!events.is_empty());
    for e in &events {
        let value = serde_json::to_value(e).expect("serializes");
        assert_eq!(value["cause"], json!("grace_expired"));
        let back: Event<String, String> = serde_json::from_value(value).expect("round trip");
        assert_eq!(&back, e);
    }
    let handmade: Event<u64, u64> = serde_json::from_value(json!({
        "subject": {"kind": "session", "user": 1, "session": 2},
        "from": "idle", "to": "away", "at": 42, "cause": "timeout", "seq": 7,
        "sessions": 3, "user_presence": "idle", "last_seen": 40
    }))
    .expect("the documented form parses");
    assert_eq!(
        handmade.subject,
        Subject::Session {
            user: 1,
            session: 2
        }
    );
    assert_eq!(handmade.cause, Cause::Timeout);
    assert_eq!(handmade.at, Timestamp::from_millis(42));
    assert_eq!(handmade.sessions, 3);
    assert_eq!(handmade.last_seen, Timestamp::from_millis(40));
}

fn tracker_strings() -> (support::Tracker<String, String>, ManualClock) {
    support::tracker_with(Policy::default())
}

fn restore_at(tracker: &support::Tracker, at: Timestamp) -> support::Tracker {
    let json = serde_json::to_string(&tracker.snapshot()).expect("snapshot serializes");
    let snapshot: Snapshot<u64, u64> = serde_json::from_str(&json).expect("snapshot parses");
    PresenceTracker::restore(
        snapshot,
        tracker.policy().clone(),
        ManualClock::starting_at(at),
    )
    .expect("restores")
}

#[test]
fn snapshot_restores_through_json() {
    let (tracker, clock) = default_tracker();
    for (user, session, connection) in [(1, 10, "fresh"), (2, 20, "old"), (3, 30, "lost")] {
        let _ = tracker
            .connect(user, session, connection, Activity::Active)
            .expect("connect");
    }
    let _ = tracker.heartbeat(&20, Activity::Idle).expect("heartbeat");
    clock.advance(secs(90));
    let _ = tracker
        .disconnect(&30, "lost", DisconnectKind::Lost)
        .expect("lost");
    clock.advance(secs(10));
    let _ = tracker.heartbeat(&10, Activity::Active).expect("heartbeat");
    let _ = tracker
        .heartbeat(&30, Activity::Background)
        .expect("heartbeat");
    clock.advance(secs(10));
    let _ = tracker.tick();
    let now = tracker.now();

    // A session seen 10 s before the snapshot is still active after a restore at the same time.
    let restored = restore_at(&tracker, now);
    assert_eq!(
        restored.session(&10).expect("restored").presence,
        Presence::Active
    );
    for s in [10, 20, 30] {
        assert_eq!(restored.session(&s), tracker.session(&s), "session {s}");
    }
    for u in [1, 2, 3, 4] {
        assert_eq!(restored.user(&u), tracker.user(&u), "user {u}");
    }
    assert_eq!(restored.census(), tracker.census());

    // Times are absolute: a restore 20 s later sees the same sessions 20 s older, and the lost
    // connection's grace deadline (90 s + 120 s) still holds.
    let later = restore_at(&tracker, now.saturating_add(secs(20)));
    assert_eq!(
        later.session(&10).expect("restored").presence,
        Presence::Idle
    );
    let lost = later.session(&30).expect("restored");
    assert!(!lost.connected);
    assert_eq!(
        lost.expires_at,
        tracker.session(&30).expect("alive").expires_at
    );
    let restored_clock = later.clock().clone();
    restored_clock.set(lost.expires_at);
    let events = later.tick();
    assert!(
        events.iter().any(|e| e.session() == Some(&30)
            && e.to == Presence::Offline
            && e.cause == Cause::GraceExpired),
        "{events:?}"
    );

    // Sequence numbers continue after a restore.
    let last_seq = tracker
        .heartbeat(&20, Activity::Active)
        .expect("heartbeat")
        .iter()
        .map(|e| e.seq)
        .max()
        .expect("an upgrade");
    let restored = restore_at(&tracker, tracker.now());
    clock.advance(secs(60));
    restored.clock().set(clock.now());
    let events = restored.tick();
    let seqs: Vec<u64> = events
        .iter()
        .filter(|e| e.user() == &2)
        .map(|e| e.seq)
        .collect();
    assert!(
        !seqs.is_empty() && seqs.iter().all(|&s| s > last_seq),
        "{seqs:?} after {last_seq}"
    );
}
