//! The seed's edge cases, each driven on a [`ManualClock`] with the default (seed) policy.

mod support;

use presence_tracker::{
    Activity, Cause, ConnectionId, DisconnectKind, Error, Presence, Timestamp, Transitions,
};
use support::{default_tracker, ms, secs, session_transitions, user_transitions, Replay};

use Presence::{Active, Away, Idle, Offline, Stale};

/// Many lost disconnects, each followed by a reconnect within the grace, some with the new
/// connection's connect arriving first: no event at all, for the user or the session.
#[test]
fn disconnect_storm_within_grace_emits_no_event() {
    let (tracker, clock) = default_tracker();
    let t0 = tracker.now();
    let first = tracker
        .connect(1, 10, "sock-0", Activity::Active)
        .expect("connect");
    assert_eq!(
        user_transitions(&first),
        vec![(Offline, Active, Cause::Connect)]
    );

    let mut later = Vec::new();
    for i in 0..60u64 {
        clock.advance(secs(2));
        let old = format!("sock-{i}");
        let new = format!("sock-{}", i + 1);
        if i % 3 == 0 {
            // The new socket's connect overtakes the old one's disconnect.
            later.extend(
                tracker
                    .connect(1, 10, &new, Activity::Active)
                    .expect("reconnect"),
            );
            later.extend(tracker.tick());
            later.extend(
                tracker
                    .disconnect(&10, &old, DisconnectKind::Lost)
                    .expect("late disconnect"),
            );
        } else {
            later.extend(
                tracker
                    .disconnect(&10, &old, DisconnectKind::Lost)
                    .expect("disconnect"),
            );
            later.extend(tracker.tick());
            clock.advance(ms(700));
            later.extend(tracker.tick());
            later.extend(
                tracker
                    .connect(1, 10, &new, Activity::Active)
                    .expect("reconnect"),
            );
        }
        later.extend(tracker.heartbeat(&10, Activity::Active).expect("heartbeat"));
        later.extend(tracker.tick());
    }
    // 60 cycles take longer than the disconnect grace: had a reconnect not cleared it, the
    // session would have expired.
    assert!(clock.now().saturating_duration_since(t0) > secs(120));
    assert_eq!(
        later,
        vec![],
        "a storm within the grace must publish nothing"
    );
    let view = tracker.session(&10).expect("session alive");
    assert_eq!(view.presence, Active);
    assert!(view.connected);
    assert_eq!(view.connection, ConnectionId::from("sock-60"));
    assert_eq!(tracker.user(&1).presence, Active);
}

/// A transport fallback (polling to websocket) or a reconnect: the new connection's connect
/// arrives before the old connection's disconnect, which is then ignored, clean or lost.
#[test]
fn late_disconnect_of_replaced_connection_is_ignored() {
    for kind in [DisconnectKind::Clean, DisconnectKind::Lost] {
        let (tracker, clock) = default_tracker();
        let _ = tracker
            .connect(1, 10, "polling", Activity::Active)
            .expect("connect");
        clock.advance(secs(1));
        let reattach = tracker
            .connect(1, 10, "websocket", Activity::Active)
            .expect("upgrade");
        assert_eq!(
            reattach,
            Transitions::new(),
            "re-attaching an active session changes nothing"
        );
        let late = tracker
            .disconnect(&10, "polling", kind)
            .expect("late disconnect");
        assert_eq!(
            late,
            Transitions::new(),
            "{kind:?}: a replaced connection's disconnect is ignored"
        );
        let view = tracker.session(&10).expect("session alive");
        assert!(view.connected, "{kind:?}");
        assert_eq!(view.connection, ConnectionId::from("websocket"));
        assert_eq!(
            view.expires_at,
            view.last_seen.saturating_add(tracker.policy().ttl())
        );

        // Keep the session alive past both graces: had the late disconnect counted, it would
        // have expired.
        let mut events = Vec::new();
        for _ in 0..20 {
            clock.advance(secs(10));
            events.extend(tracker.heartbeat(&10, Activity::Active).expect("heartbeat"));
            events.extend(tracker.tick());
        }
        assert_eq!(events, vec![], "{kind:?}");
        assert_eq!(tracker.user(&1).presence, Active);

        // The current connection's disconnect does count.
        let now = tracker.now();
        let _ = tracker
            .disconnect(&10, "websocket", kind)
            .expect("disconnect");
        let view = tracker.session(&10).expect("in grace");
        assert!(!view.connected);
        let grace = match kind {
            DisconnectKind::Clean => tracker.policy().leave_grace(),
            DisconnectKind::Lost => tracker.policy().disconnect_grace(),
        };
        assert_eq!(view.expires_at, now.saturating_add(grace), "{kind:?}");
    }
}

/// A hidden tab stays at most away however fresh its heartbeats, while the user's other, active
/// tab decides the user's presence; once that tab closes the user is away, never offline.
#[test]
fn background_tab_caps_at_away_and_other_tab_decides() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 1, "foreground", Activity::Active)
        .expect("connect");
    let _ = tracker
        .connect(1, 2, "hidden", Activity::Active)
        .expect("connect");
    let _ = tracker
        .heartbeat(&2, Activity::Background)
        .expect("heartbeat");
    let _ = tracker.tick();
    assert_eq!(tracker.session(&2).expect("hidden tab").presence, Away);
    assert_eq!(tracker.session(&1).expect("active tab").presence, Active);
    assert_eq!(tracker.user(&1).presence, Active);

    let mut events = Vec::new();
    for _ in 0..60 {
        clock.advance(secs(10));
        events.extend(tracker.heartbeat(&1, Activity::Active).expect("heartbeat"));
        events.extend(
            tracker
                .heartbeat(&2, Activity::Background)
                .expect("heartbeat"),
        );
        events.extend(tracker.tick());
        assert_eq!(tracker.session(&2).expect("hidden tab").presence, Away);
        assert_eq!(tracker.user(&1).presence, Active);
    }
    assert_eq!(
        events,
        vec![],
        "fresh heartbeats at the same levels publish nothing"
    );

    // The active tab closes: after the leave grace the user is away, through its hidden tab.
    let _ = tracker
        .disconnect(&1, "foreground", DisconnectKind::Clean)
        .expect("close");
    let mut events = Vec::new();
    for _ in 0..60 {
        clock.advance(secs(10));
        events.extend(
            tracker
                .heartbeat(&2, Activity::Background)
                .expect("heartbeat"),
        );
        events.extend(tracker.tick());
        assert_eq!(tracker.user(&1).presence, Away);
    }
    assert_eq!(
        user_transitions(&events),
        vec![(Active, Away, Cause::GraceExpired)]
    );
    assert_eq!(
        session_transitions(&events),
        vec![(Active, Offline, Cause::GraceExpired)]
    );
    assert_eq!(tracker.user(&1).sessions, 1);
    // The user's event already said it: one live session left.
    let away = events.iter().find(|e| e.is_user()).expect("a user event");
    assert_eq!(away.sessions, tracker.user(&1).sessions);
}

/// A phone freezes its network with no close frame: the session decays by age alone, through
/// every level, and the TTL alone takes it offline and frees it.
#[test]
fn mobile_suspension_decays_to_offline_by_ttl() {
    let (tracker, clock) = default_tracker();
    let t0 = tracker.now();
    let _ = tracker
        .connect(7, 70, "phone", Activity::Active)
        .expect("connect");
    let events = support::tick_through(&tracker, &clock, secs(300), secs(1));
    let at = |s: u64| t0.saturating_add(secs(s));
    let expected = [
        (Active, Idle, 15),
        (Idle, Away, 60),
        (Away, Stale, 180),
        (Stale, Offline, 240),
    ];
    for subject_is_user in [false, true] {
        let got: Vec<_> = events
            .iter()
            .filter(|e| e.is_user() == subject_is_user)
            .map(|e| (e.from, e.to, e.cause, e.at))
            .collect();
        let want: Vec<_> = expected
            .iter()
            .map(|&(from, to, s)| (from, to, Cause::Timeout, at(s)))
            .collect();
        assert_eq!(got, want, "user events: {subject_is_user}");
    }
    assert_eq!(tracker.session(&70), None, "an expired session is freed");
    let user = tracker.user(&7);
    assert_eq!(user.presence, Offline);
    assert_eq!(user.sessions, 0);
    assert_eq!(
        user.last_seen,
        Some(t0),
        "the last seen time outlives the session"
    );
    let gone = events.iter().rfind(|e| e.is_user()).expect("a user event");
    assert_eq!(
        (gone.to, gone.sessions, Some(gone.last_seen)),
        (Offline, user.sessions, user.last_seen)
    );
    assert_eq!(
        tracker.heartbeat(&70, Activity::Active),
        Err(Error::UnknownSession)
    );
}

/// The user's presence after each second of a partition that begins at t0 (last heartbeat) in
/// which the server notices the lost connection at 45 s and a reconnect may come at `reconnect`.
/// A user event as `(from, to, cause, seconds since t0)`.
type Timed = (Presence, Presence, Cause, u64);

fn partition(reconnect: u64) -> (Vec<Timed>, Vec<Presence>) {
    let (tracker, clock) = default_tracker();
    let t0 = tracker.now();
    let _ = tracker
        .connect(1, 10, "sock-1", Activity::Active)
        .expect("connect");
    let mut events = Vec::new();
    let mut each_second = vec![tracker.user(&1).presence];
    for s in 1..=reconnect {
        clock.advance(secs(1));
        if s == 45 {
            events.extend(
                tracker
                    .disconnect(&10, "sock-1", DisconnectKind::Lost)
                    .expect("lost"),
            );
        }
        if s == reconnect {
            events.extend(
                tracker
                    .connect(1, 10, "sock-2", Activity::Active)
                    .expect("reconnect"),
            );
        }
        events.extend(tracker.tick());
        each_second.push(tracker.user(&1).presence);
    }
    let users = events
        .iter()
        .filter(|e| e.is_user())
        .map(|e| {
            (
                e.from,
                e.to,
                e.cause,
                e.at.saturating_duration_since(t0).as_secs(),
            )
        })
        .collect();
    (users, each_second)
}

/// A 100 s partition: idle, then away, never offline, active again on reconnect.
#[test]
fn short_network_partition_never_goes_offline() {
    let (events, each_second) = partition(100);
    assert_eq!(
        events,
        vec![
            (Active, Idle, Cause::Timeout, 15),
            (Idle, Away, Cause::Timeout, 60),
            (Away, Active, Cause::Connect, 100),
        ]
    );
    assert!(!each_second.contains(&Offline));
    assert!(!each_second.contains(&Stale));
}

/// A 5 min partition: offline when the disconnect grace (120 s after 45 s) runs out, before the
/// TTL; the reconnect then starts a new session.
#[test]
fn long_network_partition_goes_offline_at_grace_expiry() {
    let (events, each_second) = partition(300);
    assert_eq!(
        events,
        vec![
            (Active, Idle, Cause::Timeout, 15),
            (Idle, Away, Cause::Timeout, 60),
            (Away, Offline, Cause::GraceExpired, 165),
            (Offline, Active, Cause::Connect, 300),
        ]
    );
    assert_eq!(each_second[164], Away);
    assert_eq!(each_second[165], Offline);
}

/// A page reload is a clean close and a reconnect a second later: nothing is published. Without
/// the reconnect the leave grace takes the session offline at exactly 5 s.
#[test]
fn page_reload_publishes_nothing() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 10, "before-reload", Activity::Active)
        .expect("connect");
    clock.advance(secs(10));
    let mut events = tracker.tick();
    events.extend(
        tracker
            .disconnect(&10, "before-reload", DisconnectKind::Clean)
            .expect("close"),
    );
    clock.advance(secs(1));
    events.extend(tracker.tick());
    events.extend(
        tracker
            .connect(1, 10, "after-reload", Activity::Active)
            .expect("reconnect"),
    );
    events.extend(support::tick_through(&tracker, &clock, secs(10), ms(500)));
    assert_eq!(events, Transitions::new());
    assert_eq!(tracker.user(&1).presence, Active);

    // The contrast: a close with no reload.
    let closed_at = tracker.now();
    let _ = tracker
        .disconnect(&10, "after-reload", DisconnectKind::Clean)
        .expect("close");
    let before = support::tick_through(&tracker, &clock, ms(4_999), ms(4_999));
    assert_eq!(before, vec![]);
    clock.advance(ms(1));
    let events = tracker.tick();
    assert_eq!(
        user_transitions(&events),
        vec![(Active, Offline, Cause::GraceExpired)]
    );
    assert!(events
        .iter()
        .all(|e| e.at == closed_at.saturating_add(secs(5))));
}

/// Several tabs: closing one (cleanly) or losing one never takes the user offline while another
/// keeps heartbeating.
#[test]
fn one_tab_closing_never_takes_the_user_offline() {
    let (tracker, clock) = default_tracker();
    let mut opened = Vec::new();
    for tab in 1..=3 {
        opened.extend(
            tracker
                .connect(1, tab, tab, Activity::Active)
                .expect("connect"),
        );
    }
    let _ = tracker
        .disconnect(&1, 1u64, DisconnectKind::Clean)
        .expect("close tab 1");
    let _ = tracker
        .disconnect(&2, 2u64, DisconnectKind::Lost)
        .expect("lose tab 2");
    let mut events = Vec::new();
    for _ in 0..60 {
        clock.advance(secs(10));
        events.extend(tracker.heartbeat(&3, Activity::Active).expect("heartbeat"));
        events.extend(tracker.tick());
        assert_eq!(tracker.user(&1).presence, Active);
    }
    assert_eq!(user_transitions(&events), vec![], "the user never changes");
    let mut closed: Vec<_> = events
        .iter()
        .filter(|e| e.to == Offline)
        .map(|e| (e.session().copied(), e.cause))
        .collect();
    closed.sort_by_key(|(s, _)| *s);
    assert_eq!(
        closed,
        vec![
            (Some(1), Cause::GraceExpired),
            (Some(2), Cause::GraceExpired)
        ]
    );
    assert_eq!(tracker.user(&1).sessions, 1);
    // Each closing tab's event counted the tabs still open, as the read does now.
    let left: Vec<_> = events
        .iter()
        .filter(|e| e.to == Offline)
        .map(|e| (e.session().copied(), e.sessions))
        .collect();
    assert_eq!(left, vec![(Some(1), 2), (Some(2), 1)]);
    assert_eq!(
        events.last().map(|e| e.sessions),
        Some(tracker.user(&1).sessions)
    );
    let mut replay = Replay::new();
    replay
        .apply_all(opened.iter().chain(&events))
        .expect("consistent chains");
    assert_eq!(replay.session(&3), Some((1, Active)));
    assert_eq!(replay.session(&1), Some((1, Offline)));
}

/// A clock that jumps back (even to the epoch) is treated as standing still: no panic, no
/// underflow, and no presence rises until a signal comes.
#[test]
fn clock_going_backwards_stands_still() {
    let (tracker, clock) = default_tracker();
    let t0 = tracker.now();
    let _ = tracker
        .connect(1, 10, "sock", Activity::Active)
        .expect("connect");
    clock.advance(secs(20));
    let events = tracker.tick();
    assert_eq!(
        user_transitions(&events),
        vec![(Active, Idle, Cause::Timeout)]
    );
    let high = tracker.now();

    for back in [t0.saturating_sub(secs(3600)), t0, Timestamp::EPOCH] {
        clock.set(back);
        assert_eq!(tracker.now(), high, "time stands at the high-water mark");
        assert_eq!(tracker.tick(), Transitions::new());
        let view = tracker.session(&10).expect("alive");
        assert_eq!(
            view.presence, Idle,
            "no jump up when the clock goes back to {back:?}"
        );
        assert_eq!(tracker.user(&1).presence, Idle);
        // Reads at the clock's (backwards) time read at the high-water mark, and move nothing.
        assert_eq!(clock.now(), back);
        assert_eq!(tracker.session(&10), Some(view.clone()));
        assert_eq!(tracker.user(&1).presence, Idle);
        assert_eq!(tracker.now(), high);
        assert_eq!(view.expires_at, t0.saturating_add(secs(240)));
    }

    // A signal at a backwards time is recorded at the high-water mark.
    let events = tracker.heartbeat(&10, Activity::Active).expect("heartbeat");
    assert_eq!(
        user_transitions(&events),
        vec![(Idle, Active, Cause::Heartbeat)]
    );
    let view = tracker.session(&10).expect("alive");
    assert_eq!(view.last_seen, high);
    assert_eq!(view.expires_at, high.saturating_add(secs(240)));

    // Moving forward again from the epoch does nothing until the clock passes the mark.
    clock.advance(secs(30));
    assert_eq!(tracker.tick(), Transitions::new());
    clock.set(high.saturating_add(secs(30)));
    let events = tracker.tick();
    assert_eq!(
        user_transitions(&events),
        vec![(Active, Idle, Cause::Timeout)]
    );
}
