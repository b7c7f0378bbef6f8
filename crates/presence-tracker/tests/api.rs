//! The 0.1 surface: lookups by borrowed ids, batches of owned or borrowed ids, `Transitions`,
//! the connection-fenced leave, reads without side effects, `Timestamp` arithmetic and display,
//! and `SessionView::record`.

mod support;

use std::time::Duration;

use presence_tracker::{
    derive, Activity, Cause, DisconnectKind, Error, Event, ManualClock, Policy, Presence,
    PresenceTracker, Subject, Timestamp, Transitions,
};
use support::{ms, secs, tracker_with, Tracker};

use Presence::{Active, Away, Idle, Offline};

type Strings = PresenceTracker<String, String, ManualClock>;

fn strings() -> (Strings, ManualClock) {
    tracker_with(Policy::default())
}

/// (a) With `String` ids every lookup takes a `&str`: no `String` to build for a lookup.
#[test]
fn string_ids_are_looked_up_by_str() {
    let (tracker, clock) = strings();
    let events = tracker
        .connect("ada".into(), "tab-a".into(), "sock-1", Activity::Active)
        .expect("connect");
    assert_eq!(events.len(), 2);

    assert_eq!(tracker.user("ada").presence, Active);
    assert_eq!(tracker.user("ada").sessions, 1);
    let view = tracker.session("tab-a").expect("live");
    assert_eq!(view.user, "ada");
    assert_eq!(tracker.user_sessions("ada").len(), 1);
    assert_eq!(tracker.user_sessions("ada")[0].0, "tab-a");

    let changed = tracker
        .heartbeat("tab-a", Activity::Idle)
        .expect("heartbeat");
    assert_eq!(
        changed.users().map(|e| (e.from, e.to)).collect::<Vec<_>>(),
        vec![(Active, Idle)]
    );
    assert_eq!(
        tracker.session("tab-a").map(|v| v.activity),
        Some(Activity::Idle)
    );

    // A `&String` still works, as does a `String` compared through `as_str`.
    let id = String::from("tab-a");
    let _ = tracker.heartbeat(&id, Activity::Idle).expect("heartbeat");
    let _ = tracker
        .heartbeat(id.as_str(), Activity::Idle)
        .expect("heartbeat");

    // Unknown ids, by `&str`.
    assert_eq!(
        tracker.heartbeat("tab-z", Activity::Active),
        Err(Error::UnknownSession)
    );
    assert_eq!(tracker.session("tab-z"), None);
    assert_eq!(tracker.user("bob").presence, Offline);

    // Disconnect and leave by `&str`, both fenced by the connection.
    assert_eq!(
        tracker.disconnect("tab-a", "sock-0", DisconnectKind::Lost),
        Ok(Transitions::new()),
        "a stale connection's disconnect is ignored"
    );
    assert!(tracker.session("tab-a").expect("live").connected);
    let _ = tracker
        .disconnect("tab-a", "sock-1", DisconnectKind::Lost)
        .expect("disconnect");
    let view = tracker.session("tab-a").expect("in grace");
    assert!(!view.connected);
    assert_eq!(view.grace_deadline, Some(tracker.now() + secs(120)));

    let _ = tracker
        .connect("ada".into(), "tab-a".into(), "sock-2", Activity::Active)
        .expect("re-attach");
    assert_eq!(tracker.session("tab-a").expect("live").grace_deadline, None);
    assert_eq!(
        tracker.leave("tab-a", "sock-1"),
        Ok(Transitions::new()),
        "a stale connection's leave is ignored"
    );
    assert_eq!(tracker.session("tab-a").expect("live").grace_deadline, None);
    let left_at = tracker.now();
    assert_eq!(
        tracker.leave("tab-a", "sock-2"),
        Ok(Transitions::new()),
        "within its grace"
    );
    assert_eq!(
        tracker.session("tab-a").expect("in grace").grace_deadline,
        Some(left_at + secs(5))
    );
    clock.advance(secs(5));
    let events = tracker.tick();
    assert_eq!(
        events
            .users()
            .map(|e| (e.from, e.to, e.cause))
            .collect::<Vec<_>>(),
        vec![(Active, Offline, Cause::GraceExpired)]
    );
    assert_eq!(tracker.session("tab-a"), None);
    assert_eq!(tracker.leave("tab-a", "sock-2"), Err(Error::UnknownSession));
}

/// (b) A batch takes owned ids (what a channel yields) or references, without conversion.
#[test]
fn heartbeat_batch_takes_owned_or_borrowed_ids() {
    let (tracker, clock) = strings();
    for (user, session) in [("ada", "tab-a"), ("ada", "tab-b"), ("bob", "phone")] {
        let _ = tracker
            .connect(user.into(), session.into(), session, Activity::Active)
            .expect("connect");
    }
    clock.advance(secs(10));

    // Owned pairs, by value.
    let owned: Vec<(String, Activity)> = vec![
        ("tab-a".to_string(), Activity::Active),
        ("phone".to_string(), Activity::Background),
        ("gone".to_string(), Activity::Active),
    ];
    let outcome = tracker.heartbeat_batch(owned);
    assert_eq!(outcome.errors, vec![(2, Error::UnknownSession)]);
    let moves: Vec<_> = outcome
        .events
        .users()
        .map(|e| (e.user().clone(), e.from, e.to))
        .collect();
    assert_eq!(moves, vec![("bob".to_string(), Active, Away)]);
    assert_eq!(
        tracker.session("tab-a").map(|v| v.last_seen),
        Some(tracker.now())
    );
    assert_eq!(
        tracker.session("tab-b").map(|v| v.last_seen),
        Some(tracker.now() - secs(10)),
        "not in the batch"
    );

    // Borrowed pairs.
    clock.advance(secs(1));
    let ids = ["tab-b".to_string(), "phone".to_string()];
    let borrowed: Vec<(&String, Activity)> =
        vec![(&ids[0], Activity::Idle), (&ids[1], Activity::Active)];
    let outcome = tracker.heartbeat_batch(borrowed);
    assert!(outcome.errors.is_empty());
    let sessions: Vec<_> = outcome
        .events
        .sessions()
        .map(|e| (e.session().cloned(), e.from, e.to))
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert!(sessions.contains(&(Some("tab-b".to_string()), Active, Idle)));
    assert!(sessions.contains(&(Some("phone".to_string()), Away, Active)));
    for id in &ids {
        assert_eq!(
            tracker.session(id.as_str()).map(|v| v.last_seen),
            Some(tracker.now())
        );
    }
    // The ids are still the caller's.
    assert_eq!(ids.len(), 2);
}

/// (c) What a signal returns, on a user's first tab, second tab, and one tab closing.
#[test]
fn transitions_split_users_and_sessions() {
    let (tracker, clock) = strings();

    // A new user: one session event and one user event, counting one session.
    let first = tracker
        .connect("ada".into(), "tab-1".into(), "s1", Activity::Active)
        .expect("connect");
    assert!(!first.is_empty());
    assert_eq!(first.len(), 2);
    assert_eq!(first.sessions().count(), 1);
    assert_eq!(first.users().count(), 1);
    let user = first.users().next().expect("a user event");
    assert_eq!(user.subject, Subject::User { user: "ada".into() });
    assert_eq!(
        (user.from, user.to, user.cause),
        (Offline, Active, Cause::Connect)
    );
    assert_eq!(user.sessions, 1);
    assert_eq!(user.last_seen, tracker.now());
    let session = first.sessions().next().expect("a session event");
    assert_eq!(session.session().map(String::as_str), Some("tab-1"));
    assert_eq!(session.sessions, 1);
    // Borrowing iteration, in publication order: the session's event, then the user's.
    let by_ref: Vec<bool> = (&first).into_iter().map(Event::is_user).collect();
    assert_eq!(by_ref, vec![false, true]);
    assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    // Owning iteration and into_vec give the same events.
    let as_vec = first.clone().into_vec();
    let owned: Vec<Event<String, String>> = first.clone().into_iter().collect();
    assert_eq!(as_vec, owned);
    assert_eq!(Vec::from(first), as_vec);

    // A second tab: the user is already active, so no user event; every event of the call
    // counts two sessions.
    clock.advance(secs(1));
    let second = tracker
        .connect("ada".into(), "tab-2".into(), "s2", Activity::Active)
        .expect("connect");
    assert_eq!(second.users().count(), 0, "{second:?}");
    assert_eq!(second.len(), 1);
    assert!(second.iter().all(|e| e.sessions == 2), "{second:?}");
    assert_eq!(tracker.user("ada").sessions, 2);

    // Tab 1 closes and its grace runs out while tab 2 stays: its end counts the one left, and
    // the user does not change.
    let _ = tracker
        .disconnect("tab-1", "s1", DisconnectKind::Clean)
        .expect("close");
    clock.advance(secs(5));
    let _ = tracker.heartbeat("tab-2", Activity::Active).expect("alive");
    let closed = tracker.tick();
    assert_eq!(closed.users().count(), 0, "{closed:?}");
    let ends: Vec<_> = closed
        .sessions()
        .map(|e| (e.session().cloned(), e.to, e.cause, e.sessions))
        .collect();
    assert_eq!(
        ends,
        vec![(Some("tab-1".to_string()), Offline, Cause::GraceExpired, 1)]
    );
    assert_eq!(tracker.user("ada").sessions, 1);
    assert_eq!(tracker.user("ada").presence, Active);

    // Gathering several calls' transitions.
    let mut all = Transitions::new();
    assert!(all.is_empty());
    all.append(&mut closed.clone());
    all.extend(second.clone());
    assert_eq!(all.len(), closed.len() + second.len());
    assert_eq!(Transitions::<String, String>::default(), Transitions::new());
}

/// Sets the clock `millis` after `t0`.
fn at(clock: &ManualClock, t0: Timestamp, millis: u64) {
    clock.set(t0 + ms(millis));
}

/// (d) The defect: a page reload whose new socket connects before the old page's leave and the
/// old socket's close arrive. Neither may end the session the new socket carries.
#[test]
fn a_stale_leave_and_disconnect_do_not_end_a_reattached_session() {
    let (tracker, clock): (Tracker<String, String>, _) = tracker_with(Policy::default());
    let t0 = clock.now();
    let mut events = Vec::new();

    events.extend(
        tracker
            .connect("ada".into(), "tab".into(), "sock-1", Activity::Active)
            .expect("connect"),
    );
    at(&clock, t0, 10_000);
    events.extend(
        tracker
            .connect("ada".into(), "tab".into(), "sock-2", Activity::Active)
            .expect("the reload's new socket"),
    );
    at(&clock, t0, 10_200);
    let stale_leave = tracker.leave("tab", "sock-1").expect("leave");
    assert!(stale_leave.is_empty(), "{stale_leave:?}");
    at(&clock, t0, 10_300);
    let stale_close = tracker
        .disconnect("tab", "sock-1", DisconnectKind::Clean)
        .expect("disconnect");
    assert!(stale_close.is_empty(), "{stale_close:?}");
    let view = tracker.session("tab").expect("live");
    assert!(view.connected);
    assert_eq!(view.grace_deadline, None);
    assert_eq!(view.connection, "sock-2".into());

    // Past the leave grace (10.2 s + 5 s), and on with heartbeats every 10 s until 60 s.
    at(&clock, t0, 15_200);
    events.extend(tracker.tick());
    assert_eq!(tracker.user("ada").presence, Active);
    for s in [20u64, 30, 40, 50, 60] {
        at(&clock, t0, s * 1000);
        events.extend(
            tracker
                .heartbeat("tab", Activity::Active)
                .expect("the session is alive"),
        );
        events.extend(tracker.tick());
        assert_eq!(tracker.user("ada").presence, Active, "at {s} s");
        assert!(tracker.session("tab").expect("live").connected, "at {s} s");
    }
    assert!(
        events.iter().all(|e| e.cause != Cause::GraceExpired),
        "{events:?}"
    );
    assert!(events.iter().all(|e| e.to != Offline), "{events:?}");
    // Only the first connect published: ada came online once, and stayed.
    assert_eq!(
        events
            .iter()
            .filter(|e| e.is_user())
            .map(|e| (e.from, e.to))
            .collect::<Vec<_>>(),
        vec![(Offline, Active)]
    );
}

/// (d) The contrast: the current connection's leave does end the session after the leave grace.
#[test]
fn the_current_connections_leave_ends_the_session_after_the_grace() {
    let (tracker, clock): (Tracker<String, String>, _) = tracker_with(Policy::default());
    let t0 = clock.now();
    let _ = tracker
        .connect("ada".into(), "tab".into(), "sock-1", Activity::Active)
        .expect("connect");
    at(&clock, t0, 10_000);
    let _ = tracker
        .connect("ada".into(), "tab".into(), "sock-2", Activity::Active)
        .expect("re-attach");
    at(&clock, t0, 10_200);
    assert!(tracker.leave("tab", "sock-2").expect("leave").is_empty());
    let view = tracker.session("tab").expect("in grace");
    assert!(!view.connected);
    assert_eq!(view.grace_deadline, Some(t0 + ms(15_200)));

    at(&clock, t0, 15_199);
    assert_eq!(tracker.tick(), Transitions::new());
    assert_eq!(tracker.user("ada").presence, Active);
    at(&clock, t0, 15_200);
    let events = tracker.tick();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.is_user(), e.from, e.to, e.cause, e.sessions))
            .collect::<Vec<_>>(),
        vec![
            (false, Active, Offline, Cause::GraceExpired, 0),
            (true, Active, Offline, Cause::GraceExpired, 0),
        ]
    );
    assert_eq!(tracker.user("ada").presence, Offline);
    assert_eq!(
        tracker.heartbeat("tab", Activity::Active),
        Err(Error::UnknownSession)
    );
}

/// (e) Reads change nothing, not even the tracker's time: only signals and ticks move its
/// high-water mark.
#[test]
fn reads_have_no_side_effects() {
    let (tracker, clock) = support::default_tracker();
    let t0 = clock.now();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    let census = tracker.census();
    let deadline = tracker.next_deadline();

    // The clock unchanged: reads leave `now` where it was.
    let now = tracker.now();
    let _ = tracker.user(&1);
    let _ = tracker.session(&10);
    let _ = tracker.user_sessions(&1);
    let _ = tracker.online();
    let _ = tracker.snapshot();
    assert_eq!(tracker.now(), now);
    assert_eq!(tracker.census(), census);
    assert_eq!(tracker.next_deadline(), deadline);

    // Reads at a later clock derive there ...
    clock.advance(secs(700));
    assert_eq!(tracker.now(), t0 + secs(700));
    assert_eq!(tracker.session(&10), None, "expired at 240 s");
    assert_eq!(tracker.user(&1).presence, Offline);
    assert!(tracker.online().is_empty());
    assert_eq!(tracker.census(), census, "nothing published by a read");
    // ... but do not move the tracker's time: with the clock set back 600 s, `now` follows the
    // clock, never past it.
    clock.set(t0 + secs(100));
    assert_eq!(tracker.now(), t0 + secs(100));
    assert_eq!(tracker.now(), clock.now());
    assert_eq!(
        tracker.session(&10).map(|v| v.presence),
        Some(Away),
        "read at the clock's time"
    );

    // A tick does move it: set back again, the tracker stands still at the tick's time.
    clock.set(t0 + secs(700));
    let events = tracker.tick();
    assert!(events.iter().any(|e| e.to == Offline), "{events:?}");
    clock.set(t0 + secs(100));
    assert_eq!(tracker.now(), t0 + secs(700));
    assert_eq!(tracker.session(&10), None);
}

/// (f) `Timestamp` arithmetic saturates, and displays as RFC 3339 UTC.
#[test]
fn timestamp_arithmetic_and_display() {
    let start = ManualClock::DEFAULT_START;
    assert_eq!(start.to_string(), "2026-01-01T00:00:00.000Z");
    let t = start + Duration::from_millis(90_061_001);
    assert_eq!(t.to_string(), "2026-01-02T01:01:01.001Z");
    assert_eq!(t - Duration::from_millis(90_061_001), start);
    let mut u = start;
    u += secs(59);
    assert_eq!(u.to_string(), "2026-01-01T00:00:59.000Z");
    assert_eq!(
        format!("{}", start + secs(3600)),
        "2026-01-01T01:00:00.000Z"
    );
    assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00.000Z");
    assert_eq!(Timestamp::EPOCH - secs(1), Timestamp::EPOCH);
    assert_eq!(
        Timestamp::from_millis(u64::MAX) + Duration::MAX,
        Timestamp::from_millis(u64::MAX)
    );
    // A tracker's times are the same kind of value.
    let (tracker, clock) = support::default_tracker();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    clock.advance(secs(1));
    let view = tracker.session(&10).expect("live");
    assert_eq!(view.last_seen + secs(1), tracker.now());
    assert_eq!(view.expires_at, view.last_seen + tracker.policy().ttl());
    assert_eq!(view.last_seen.to_string(), "2026-01-01T00:00:00.000Z");
}

/// (g) A view's record derives, at any later time, what a read at that time says.
#[test]
fn a_views_record_derives_what_a_later_read_says() {
    let (tracker, clock) = support::default_tracker();
    let policy = tracker.policy().clone();
    let _ = tracker
        .connect(1, 10, "a", Activity::Active)
        .expect("connect");
    let _ = tracker
        .connect(1, 20, "b", Activity::Active)
        .expect("connect");
    let _ = tracker
        .heartbeat(&20, Activity::Background)
        .expect("heartbeat");
    clock.advance(secs(3));
    let _ = tracker
        .disconnect(&20, "b", DisconnectKind::Lost)
        .expect("disconnect");
    let t = clock.now();
    let views = [
        tracker.session(&10).expect("live"),
        tracker.session(&20).expect("in grace"),
    ];
    assert_eq!(views[0].record().grace_deadline, None);
    assert_eq!(views[1].record().grace_deadline, Some(t + secs(120)));
    assert_eq!(views[1].record().activity, Activity::Background);
    for later in [0u64, 14, 15, 60, 122, 123, 179, 180, 239, 240, 300] {
        clock.set(t + secs(later));
        for (id, view) in [10u64, 20].into_iter().zip(&views) {
            let derived = derive(&view.record(), clock.now(), &policy);
            let read = tracker.session(&id).map_or(Offline, |v| v.presence);
            assert_eq!(derived, read, "session {id} at +{later} s");
        }
    }
}
