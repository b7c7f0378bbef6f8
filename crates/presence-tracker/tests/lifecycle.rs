//! One session's life: connect, heartbeats, decay, disconnects, re-attach, expiry, retention.

mod support;

use presence_tracker::{
    Activity, Cause, ConnectionId, DisconnectKind, Error, Policy, Presence, Transitions,
};
use support::{
    default_tracker, ms, secs, session_transitions, tick_through, tracker_with, user_transitions,
};

use Presence::{Active, Away, Idle, Offline, Stale};

#[test]
fn connect_starts_an_active_session() {
    let (tracker, _clock) = default_tracker();
    let now = tracker.now();
    let events = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    assert_eq!(
        session_transitions(&events),
        vec![(Offline, Active, Cause::Connect)]
    );
    assert_eq!(
        user_transitions(&events),
        vec![(Offline, Active, Cause::Connect)]
    );
    assert!(events.iter().all(|e| e.at == now && *e.user() == 1));
    let events = events.into_vec();
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));

    let view = tracker.session(&10).expect("alive");
    assert_eq!(view.user, 1);
    assert_eq!(view.presence, Active);
    assert_eq!(view.activity, Activity::Active);
    assert_eq!(view.last_seen, now);
    assert_eq!(view.connection, ConnectionId::from("sock"));
    assert!(view.connected);
    assert_eq!(view.expires_at, now.saturating_add(secs(240)));
    let user = tracker.user(&1);
    assert_eq!(
        (user.presence, user.sessions, user.last_seen),
        (Active, 1, Some(now))
    );
    // The connect's events said so already: every one carries the user's live sessions and
    // the subject's last seen time.
    for e in &events {
        assert_eq!(e.sessions, user.sessions, "{e:?}");
        assert_eq!(Some(e.last_seen), user.last_seen, "{e:?}");
    }
}

#[test]
fn heartbeats_that_change_nothing_publish_nothing() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    for _ in 0..100 {
        clock.advance(secs(5));
        assert_eq!(
            tracker.heartbeat(&10, Activity::Active).expect("heartbeat"),
            Transitions::new()
        );
        assert_eq!(tracker.tick(), Transitions::new());
    }
    assert_eq!(
        tracker.session(&10).expect("alive").last_seen,
        tracker.now()
    );
}

#[test]
fn reported_activity_caps_presence() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    let mut events = tracker.heartbeat(&10, Activity::Idle).expect("heartbeat");
    events.extend(tracker.tick());
    assert_eq!(session_transitions(&events).last().map(|t| t.1), Some(Idle));
    assert_eq!(tracker.session(&10).expect("alive").presence, Idle);

    let mut events = tracker
        .heartbeat(&10, Activity::Background)
        .expect("heartbeat");
    events.extend(tracker.tick());
    assert_eq!(user_transitions(&events).last().map(|t| t.1), Some(Away));
    assert_eq!(tracker.user(&1).presence, Away);
    let user = tracker.user(&1);
    let away = events.users().last().expect("a user event");
    assert_eq!(
        (away.sessions, Some(away.last_seen)),
        (user.sessions, user.last_seen)
    );

    // A fresh active heartbeat lifts the cap at once: an upgrade is published by the signal.
    clock.advance(secs(1));
    let events = tracker.heartbeat(&10, Activity::Active).expect("heartbeat");
    assert_eq!(
        user_transitions(&events),
        vec![(Away, Active, Cause::Heartbeat)]
    );
}

#[test]
fn reattach_keeps_activity_and_clears_the_disconnect() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "sock-1", Activity::Active)
        .expect("connect");
    let _ = tracker.heartbeat(&10, Activity::Idle).expect("heartbeat");
    clock.advance(secs(30));
    let seen = tracker.session(&10).expect("alive").last_seen;
    let _ = tracker
        .disconnect(&10, "sock-1", DisconnectKind::Lost)
        .expect("lost");
    let view = tracker.session(&10).expect("in grace");
    assert_eq!(view.last_seen, seen, "a disconnect is not a sign of life");
    assert!(!view.connected);
    assert_eq!(view.expires_at, tracker.now().saturating_add(secs(120)));

    clock.advance(secs(60));
    // Every connect reports the client's activity (0.1): the client, still idle, says so.
    let reattach = tracker
        .connect(1, 10, "sock-2", Activity::Idle)
        .expect("re-attach");
    let view = tracker.session(&10).expect("re-attached");
    assert_eq!(
        view.activity,
        Activity::Idle,
        "a re-attach keeps the client's idle activity"
    );
    assert_eq!(view.presence, Idle);
    assert_eq!(view.last_seen, tracker.now());
    assert!(view.connected);
    assert_eq!(view.connection, ConnectionId::from("sock-2"));
    assert_eq!(
        view.expires_at,
        tracker.now().saturating_add(secs(240)),
        "grace cleared"
    );
    assert_eq!(tracker.user(&1).sessions, 1);
    // Published idle (no tick since the idle heartbeat), idle again: nothing to publish.
    assert_eq!(reattach, Transitions::new());

    // Well past the old grace deadline, it is still alive.
    let events = tick_through(&tracker, &clock, secs(150), secs(10));
    assert!(events.iter().all(|e| e.to != Offline), "{events:?}");
}

#[test]
fn heartbeat_in_grace_refreshes_age_but_not_the_deadline() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    let lost_at = tracker.now();
    let _ = tracker
        .disconnect(&10, "sock", DisconnectKind::Lost)
        .expect("lost");
    clock.advance(secs(100));
    let _ = tracker.tick();
    let _ = tracker
        .heartbeat(&10, Activity::Active)
        .expect("a heartbeat on a disconnected session");
    let view = tracker.session(&10).expect("in grace");
    assert_eq!(view.presence, Active);
    assert_eq!(view.last_seen, tracker.now());
    assert_eq!(view.expires_at, lost_at.saturating_add(secs(120)));

    // Aged to idle by then (20 s), but not offline before the deadline.
    let before = tick_through(&tracker, &clock, ms(19_999), secs(1));
    assert_eq!(
        user_transitions(&before),
        vec![(Active, Idle, Cause::Timeout)]
    );
    clock.advance(ms(1));
    let events = tracker.tick();
    assert_eq!(
        session_transitions(&events),
        vec![(Idle, Offline, Cause::GraceExpired)]
    );
    assert_eq!(
        user_transitions(&events),
        vec![(Idle, Offline, Cause::GraceExpired)]
    );
    assert_eq!(tracker.session(&10), None);
}

#[test]
fn leave_expires_after_the_leave_grace() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    clock.advance(secs(2));
    let left = tracker.now();
    assert_eq!(
        tracker.leave(&10, "sock").expect("leave"),
        Transitions::new(),
        "a leave within its grace publishes nothing"
    );
    assert_eq!(
        tracker.session(&10).expect("in grace").expires_at,
        left.saturating_add(secs(5))
    );
    assert_eq!(tick_through(&tracker, &clock, ms(4_999), ms(4_999)), vec![]);
    clock.advance(ms(1));
    let events = tracker.tick();
    assert_eq!(
        user_transitions(&events),
        vec![(Active, Offline, Cause::GraceExpired)]
    );
}

#[test]
fn expired_session_is_gone_and_a_connect_starts_afresh() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    let _ = tracker
        .heartbeat(&10, Activity::Background)
        .expect("heartbeat");
    clock.advance(secs(240));
    // Expired but not yet ticked: reads already treat it as gone.
    assert_eq!(tracker.session(&10), None);
    assert_eq!(tracker.user(&1).presence, Offline);
    assert_eq!(tracker.user(&1).sessions, 0);
    assert_eq!(
        tracker.heartbeat(&10, Activity::Active),
        Err(Error::UnknownSession)
    );
    let events = tracker.tick();
    assert_eq!(
        session_transitions(&events),
        vec![(Away, Offline, Cause::Timeout)]
    );
    let events = tracker
        .connect(1, 10, "sock-2", Activity::Active)
        .expect("connect again");
    assert_eq!(
        user_transitions(&events),
        vec![(Offline, Active, Cause::Connect)]
    );
    assert_eq!(
        tracker.session(&10).expect("new").activity,
        Activity::Active
    );
}

#[test]
fn connect_on_expired_unticked_session_starts_afresh() {
    let (tracker, clock) = default_tracker();
    let mut all = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    all.extend(tracker.heartbeat(&10, Activity::Idle).expect("heartbeat"));
    all.extend(tracker.tick());
    clock.advance(secs(250));
    // No tick in between: the old session is expired all the same.
    all.extend(
        tracker
            .connect(1, 10, "sock-2", Activity::Active)
            .expect("connect again"),
    );
    assert_eq!(
        tracker.session(&10).expect("new").activity,
        Activity::Active
    );
    assert_eq!(tracker.user(&1).presence, Active);
    all.extend(tracker.tick());
    // The old session's end and the new one's start chain through offline.
    let mut replay = support::Replay::new();
    if let Err(e) = replay.apply_all(&all) {
        panic!("{e}: {all:?}");
    }
    assert_eq!(replay.session(&10), Some((1, Active)));
    assert_eq!(replay.user(&1), Active);
}

/// A user whose retention already ran out when its last session expires is forgotten by the
/// same tick, and leaves nothing queued.
#[test]
fn retention_over_at_expiry_is_forgotten_by_the_same_tick() {
    let policy = Policy::builder()
        .retention(secs(10))
        .build()
        .expect("valid");
    let (tracker, clock) = tracker_with::<u64, u64>(policy);
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    clock.advance(secs(240));
    let events = tracker.tick();
    assert_eq!(
        user_transitions(&events),
        vec![(Active, Offline, Cause::Timeout)]
    );
    assert_eq!(tracker.user(&1).last_seen, None);
    assert_eq!(tracker.census().users.total(), 0);
    assert_eq!(tracker.next_deadline(), None);
}

#[test]
fn last_seen_is_retained_then_forgotten() {
    let policy = Policy::builder()
        .retention(secs(600))
        .build()
        .expect("valid");
    let (tracker, clock) = tracker_with::<u64, u64>(policy);
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    let seen = tracker.now();
    let _ = tracker.leave(&10, "sock").expect("leave");
    clock.advance(secs(5));
    let events = tracker.tick();
    let user = tracker.user(&1);
    assert_eq!(
        (user.presence, user.sessions, user.last_seen),
        (Offline, 0, Some(seen))
    );
    let gone = events.users().next().expect("the user went offline");
    assert_eq!(
        (gone.to, gone.sessions, Some(gone.last_seen)),
        (user.presence, user.sessions, user.last_seen)
    );
    assert_eq!(tracker.online(), vec![]);
    tick_through(&tracker, &clock, ms(594_999), secs(10));
    assert_eq!(
        tracker.user(&1).last_seen,
        Some(seen),
        "kept for the whole retention"
    );
    tick_through(&tracker, &clock, secs(20), secs(1));
    assert_eq!(
        tracker.user(&1).last_seen,
        None,
        "forgotten after the retention"
    );
    assert_eq!(tracker.census().users.total(), 0);
    // An unknown user reads as offline.
    let unknown = tracker.user(&99);
    assert_eq!(
        (unknown.presence, unknown.sessions, unknown.last_seen),
        (Offline, 0, None)
    );
}

#[test]
fn next_deadline_never_overshoots_a_transition() {
    let (tracker, clock) = default_tracker();
    assert_eq!(tracker.next_deadline(), None, "nothing to wait for");
    let t0 = tracker.now();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    let mut found = vec![];
    for _ in 0..100 {
        let Some(d) = tracker.next_deadline() else {
            break;
        };
        assert!(d > tracker.now(), "a deadline in the past: {d:?}");
        clock.set(d.saturating_sub(ms(1)));
        assert_eq!(
            tracker.tick(),
            Transitions::new(),
            "a transition before {d:?}"
        );
        clock.set(d);
        for e in tracker.tick() {
            if e.is_user() {
                found.push((e.to, e.at.saturating_duration_since(t0).as_secs()));
            }
        }
        if tracker.session(&10).is_none() && tracker.user(&1).last_seen.is_none() {
            break;
        }
    }
    assert_eq!(
        found,
        vec![(Idle, 15), (Away, 60), (Stale, 180), (Offline, 240)]
    );
}

/// A client that connects in the background says so with the connect: the session never shows
/// `active`, neither when new nor when re-attached.
#[test]
fn connect_with_activity_starts_where_the_client_is() {
    let (tracker, clock) = default_tracker();
    let events = tracker
        .connect(1, 10, "a", Activity::Background)
        .expect("connect");
    assert_eq!(
        user_transitions(&events),
        vec![(Offline, Away, Cause::Connect)]
    );
    assert_eq!(
        tracker.session(&10).expect("live").activity,
        Activity::Background
    );

    // Lost, then back in the foreground but idle, with a new connection.
    let _ = tracker
        .disconnect(&10, "a", DisconnectKind::Lost)
        .expect("disconnect");
    clock.advance(secs(30));
    let events = tracker
        .connect(1, 10, "b", Activity::Idle)
        .expect("re-attach");
    assert_eq!(
        session_transitions(&events),
        vec![(Away, Idle, Cause::Connect)]
    );
    let view = tracker.session(&10).expect("live");
    assert_eq!((view.presence, view.connected), (Idle, true));
}
