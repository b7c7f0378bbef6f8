//! Typed errors: invalid policies are refused when built, and bad signals are refused with the
//! tracker left exactly as it was.

mod support;

use std::time::Duration;

use presence_tracker::{Activity, DisconnectKind, Error, ManualClock, Policy, PresenceTracker};
use support::{default_tracker, secs, tracker_with, Tracker};

/// The tracker's whole state, to prove an error changed nothing.
fn state<U, S>(tracker: &Tracker<U, S>) -> String
where
    U: presence_tracker::Id + serde::Serialize,
    S: presence_tracker::Id + serde::Serialize,
{
    format!(
        "{} {:?}",
        serde_json::to_string(&tracker.snapshot()).expect("snapshot serializes"),
        tracker.census()
    )
}

fn assert_message_style(e: &Error) {
    let text = e.to_string();
    let first = text.chars().next().expect("a message");
    assert!(!first.is_uppercase(), "message starts lowercase: {text}");
    assert!(!text.ends_with('.'), "no trailing period: {text}");
}

#[test]
fn default_policy_is_the_seed() {
    let p = Policy::default();
    assert_eq!(p.active(), secs(15));
    assert_eq!(p.idle(), secs(60));
    assert_eq!(p.away(), secs(180));
    assert_eq!(p.ttl(), secs(240));
    assert_eq!(p.disconnect_grace(), secs(120));
    assert_eq!(p.leave_grace(), secs(5));
    assert_eq!(p.retention(), secs(3600));
    assert_eq!(p.max_sessions_per_user(), 64);
    assert_eq!(p.max_sessions(), 100_000);
    assert_eq!(p.max_id_len(), 256);
    assert_eq!(Policy::builder().build().expect("defaults are valid"), p);
}

#[test]
fn thresholds_must_strictly_increase() {
    let cases = [
        ("idle", Policy::builder().idle(secs(15))),
        ("idle", Policy::builder().active(secs(61))),
        ("away", Policy::builder().away(secs(60))),
        ("ttl", Policy::builder().ttl(secs(180))),
        (
            "ttl",
            Policy::builder().ttl(secs(100)).disconnect_grace(secs(50)),
        ),
    ];
    for (name, builder) in cases {
        match builder.build() {
            Err(e @ Error::ThresholdsNotIncreasing { name: got, .. }) => {
                assert_eq!(got, name, "{e}");
                assert!(e.to_string().contains(name), "{e}");
                assert_message_style(&e);
            }
            other => panic!("{name}: expected ThresholdsNotIncreasing, got {other:?}"),
        }
    }
}

#[test]
fn graces_must_fit_in_the_ttl() {
    for (name, builder) in [
        (
            "disconnect_grace",
            Policy::builder().disconnect_grace(secs(241)),
        ),
        ("leave_grace", Policy::builder().leave_grace(secs(300))),
    ] {
        match builder.build() {
            Err(e @ Error::GraceLongerThanTtl { name: got, .. }) => {
                assert_eq!(got, name);
                assert_message_style(&e);
            }
            other => panic!("{name}: expected GraceLongerThanTtl, got {other:?}"),
        }
    }
    // Equal to the TTL is allowed.
    let p = Policy::builder()
        .disconnect_grace(secs(240))
        .leave_grace(secs(240))
        .build()
        .expect("a grace equal to the ttl is valid");
    assert_eq!(p.disconnect_grace(), p.ttl());
}

#[test]
fn zero_or_sub_millisecond_settings_are_refused() {
    let cases = [
        Policy::builder().active(Duration::ZERO),
        Policy::builder().active(Duration::from_micros(500)),
        Policy::builder().max_sessions_per_user(0),
        Policy::builder().max_sessions(0),
        Policy::builder().max_id_len(0),
    ];
    for builder in cases {
        let got = builder.clone().build();
        assert!(
            matches!(got, Err(Error::PolicyValueTooSmall { .. })),
            "{builder:?}: {got:?}"
        );
        assert_message_style(&got.expect_err("refused"));
    }
}

#[test]
fn unknown_session_signals_change_nothing() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    clock.advance(secs(20));
    let before = state(&tracker);
    for got in [
        tracker.heartbeat(&11, Activity::Active),
        tracker.disconnect(&11, "sock", DisconnectKind::Lost),
        tracker.leave(&11, "sock"),
    ] {
        match got {
            Err(e @ Error::UnknownSession) => {
                // Errors carry no copy of the ids: the message is fixed, safe to echo.
                assert_eq!(
                    e.to_string(),
                    "unknown session (never connected, or expired)"
                );
                assert_message_style(&e);
            }
            other => panic!("expected UnknownSession, got {other:?}"),
        }
        assert_eq!(state(&tracker), before);
    }
}

#[test]
fn connect_to_another_users_session_changes_nothing() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "sock-a", Activity::Active)
        .expect("connect");
    clock.advance(secs(20));
    let before = state(&tracker);
    match tracker.connect(2, 10, "sock-b", Activity::Active) {
        Err(e @ Error::SessionOwnedByOtherUser) => {
            assert_eq!(e.to_string(), "the session belongs to another user");
            assert_message_style(&e);
        }
        other => panic!("expected SessionOwnedByOtherUser, got {other:?}"),
    }
    assert_eq!(state(&tracker), before);
    let view = tracker.session(&10).expect("still there");
    assert_eq!(view.user, 1);
    assert_eq!(view.connection, "sock-a".into());
    assert_eq!(
        tracker.user(&2).presence,
        presence_tracker::Presence::Offline
    );
}

#[test]
fn empty_and_overlong_string_ids_are_refused() {
    let (tracker, _clock) = tracker_with::<String, String>(Policy::default());
    let before = state(&tracker);
    let long = "x".repeat(257);
    let cases = [
        (String::new(), "s".to_string()),
        ("u".to_string(), String::new()),
        (long.clone(), "s".to_string()),
        ("u".to_string(), long.clone()),
    ];
    for (user, session) in cases {
        let got = tracker.connect(user.clone(), session.clone(), "sock", Activity::Active);
        match (&got, user.is_empty() || session.is_empty()) {
            (Err(Error::EmptyId), true) => {}
            (Err(Error::IdTooLong { len: 257, max: 256 }), false) => {}
            _ => panic!("{user:?}/{session:?}: {got:?}"),
        }
        assert_message_style(&got.expect_err("refused"));
        assert_eq!(state(&tracker), before);
    }
    // Lookups do not validate ids (only connect does): an empty or over-long id there is
    // simply a session the tracker does not know.
    for got in [
        tracker.heartbeat("", Activity::Active),
        tracker.heartbeat(long.as_str(), Activity::Active),
        tracker.leave("", "sock"),
        tracker.disconnect(long.as_str(), "sock", DisconnectKind::Lost),
    ] {
        assert_eq!(got, Err(Error::UnknownSession));
        assert_eq!(state(&tracker), before);
    }
    // The limit itself is allowed, and counts bytes.
    let max = "é".repeat(128);
    let _ = tracker
        .connect(max.clone(), max.clone(), "sock", Activity::Active)
        .expect("256 bytes is within the limit");
    let over = format!("{max}x");
    assert!(matches!(
        tracker.connect(over.clone(), "s2".to_string(), "sock", Activity::Active),
        Err(Error::IdTooLong { len: 257, max: 256 })
    ));
}

#[test]
fn per_user_session_limit() {
    let policy = Policy::builder()
        .max_sessions_per_user(2)
        .build()
        .expect("valid");
    let (tracker, clock) = tracker_with::<u64, u64>(policy);
    let _ = tracker.connect(1, 1, "a", Activity::Active).expect("first");
    let _ = tracker
        .connect(1, 2, "b", Activity::Active)
        .expect("second");
    let before = state(&tracker);
    match tracker.connect(1, 3, "c", Activity::Active) {
        Err(e @ Error::TooManySessionsForUser { max: 2 }) => {
            assert_eq!(
                e.to_string(),
                "the user already has the maximum of 2 sessions"
            );
            assert_message_style(&e);
        }
        other => panic!("expected TooManySessionsForUser, got {other:?}"),
    }
    assert_eq!(state(&tracker), before);
    // Re-attaching an existing session is not a new one; another user is not limited.
    let _ = tracker
        .connect(1, 2, "b2", Activity::Active)
        .expect("re-attach at the limit");
    let _ = tracker
        .connect(2, 3, "c", Activity::Active)
        .expect("another user");
    // Once a session expires its slot is free.
    let _ = tracker.leave(&1, "a").expect("leave");
    clock.advance(secs(5));
    let _ = tracker.tick();
    let _ = tracker
        .connect(1, 4, "d", Activity::Active)
        .expect("a slot was freed");
}

#[test]
fn total_session_limit() {
    let policy = Policy::builder().max_sessions(3).build().expect("valid");
    let (tracker, clock) = tracker_with::<u64, u64>(policy);
    for s in 1..=3 {
        let _ = tracker
            .connect(s, s, "sock", Activity::Active)
            .expect("within the limit");
    }
    let before = state(&tracker);
    match tracker.connect(4, 4, "sock", Activity::Active) {
        Err(e @ Error::TooManySessions { max: 3 }) => assert_message_style(&e),
        other => panic!("expected TooManySessions, got {other:?}"),
    }
    assert_eq!(state(&tracker), before);
    let _ = tracker
        .connect(1, 1, "sock-2", Activity::Active)
        .expect("re-attach at the limit");
    clock.advance(secs(241));
    let _ = tracker.tick();
    let _ = tracker
        .connect(4, 4, "sock", Activity::Active)
        .expect("expired sessions free their slots");
}

#[test]
fn parse_errors_name_the_text() {
    match "sleepy".parse::<Activity>() {
        Err(e @ Error::UnknownActivity(_)) => {
            assert_eq!(e, Error::UnknownActivity("sleepy".to_string()));
            assert!(e.to_string().contains("sleepy"));
            assert_message_style(&e);
        }
        other => panic!("{other:?}"),
    }
    match "busy".parse::<presence_tracker::Presence>() {
        Err(e @ Error::UnknownPresence(_)) => assert!(e.to_string().contains("busy")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn restore_refuses_a_snapshot_beyond_the_policy() {
    // A snapshot taken under a generous limit does not fit a policy with a smaller one.
    let (tracker, _clock) = default_tracker();
    for s in 1..=3 {
        let _ = tracker
            .connect(1, s, "sock", Activity::Active)
            .expect("connect");
    }
    let snapshot = tracker.snapshot();
    let strict = Policy::builder()
        .max_sessions_per_user(2)
        .build()
        .expect("valid");
    let got = PresenceTracker::restore(snapshot, strict, ManualClock::new());
    assert!(
        matches!(got, Err(Error::InvalidSnapshot(_))),
        "{:?}",
        got.err()
    );

    // The same session twice, by editing the JSON.
    let (tracker, _clock) = default_tracker();
    let _ = tracker
        .connect(1, 1, "sock", Activity::Active)
        .expect("connect");
    let _ = tracker
        .connect(2, 2, "sock", Activity::Active)
        .expect("connect");
    let json = serde_json::to_string(&tracker.snapshot()).expect("serializes");
    let mut value: serde_json::Value = serde_json::from_str(&json).expect("json");
    let doubled = duplicate_session_ids(&mut value);
    assert!(doubled, "found the sessions in the snapshot JSON: {json}");
    let snapshot: presence_tracker::Snapshot<u64, u64> =
        serde_json::from_value(value).expect("still the snapshot's shape");
    let got = PresenceTracker::restore(snapshot, Policy::default(), ManualClock::new());
    assert!(
        matches!(got, Err(Error::InvalidSnapshot(_))),
        "{:?}",
        got.err()
    );
}

/// Rewrites every `"session": 2` in the JSON into `"session": 1`; says whether it found one.
fn duplicate_session_ids(v: &mut serde_json::Value) -> bool {
    match v {
        serde_json::Value::Object(map) => {
            let mut found = false;
            for (k, child) in map.iter_mut() {
                if k == "session" && *child == serde_json::json!(2) {
                    *child = serde_json::json!(1);
                    found = true;
                } else {
                    found |= duplicate_session_ids(child);
                }
            }
            found
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |f, i| duplicate_session_ids(i) | f),
        _ => false,
    }
}

/// Sessions that expired since the last tick are gone: they do not count against the user's
/// limit when it connects again.
#[test]
fn per_user_limit_ignores_expired_sessions_before_the_tick() {
    let policy = Policy::builder()
        .max_sessions_per_user(2)
        .build()
        .expect("valid");
    let (tracker, clock) = tracker_with::<u64, u64>(policy);
    let _ = tracker.connect(1, 1, "a", Activity::Active).expect("first");
    let _ = tracker
        .connect(1, 2, "b", Activity::Active)
        .expect("second");
    clock.advance(secs(240));
    assert_eq!(tracker.user(&1).sessions, 0, "both expired");
    let got = tracker.connect(1, 3, "c", Activity::Active);
    assert!(got.is_ok(), "no live session, yet refused: {got:?}");
}

/// Sessions that expired since the last tick do not count against the total limit either.
#[test]
fn total_limit_counts_expired_sessions_until_freed() {
    // max_sessions bounds memory: an expired session counts until a tick frees it.
    let policy = Policy::builder().max_sessions(2).build().expect("valid");
    let (tracker, clock) = tracker_with::<u64, u64>(policy);
    let _ = tracker.connect(1, 1, "a", Activity::Active).expect("first");
    let _ = tracker
        .connect(2, 2, "b", Activity::Active)
        .expect("second");
    clock.advance(secs(240));
    assert_eq!(tracker.online(), vec![], "both expired");
    assert!(matches!(
        tracker.connect(3, 3, "c", Activity::Active),
        Err(Error::TooManySessions { max: 2 })
    ));
    let _ = tracker.tick();
    let got = tracker.connect(3, 3, "c", Activity::Active);
    assert!(got.is_ok(), "freed by the tick, yet refused: {got:?}");
}
