//! Users from sessions: a user is the highest presence of its live sessions.

mod support;

use presence_tracker::{Activity, Cause, DisconnectKind, Presence, Transitions};
use support::{default_tracker, secs, session_transitions, user_transitions, Replay};

use Presence::{Active, Away, Idle, Offline, Stale};

#[test]
fn user_is_the_highest_of_its_sessions() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 1, "a", Activity::Active)
        .expect("connect");
    let _ = tracker
        .connect(1, 2, "b", Activity::Active)
        .expect("connect");
    let _ = tracker
        .connect(1, 3, "c", Activity::Active)
        .expect("connect");
    let _ = tracker.heartbeat(&2, Activity::Idle).expect("heartbeat");
    let hidden = tracker
        .heartbeat(&3, Activity::Background)
        .expect("heartbeat");
    let user = tracker.user(&1);
    assert_eq!((user.presence, user.sessions), (Active, 3));
    // The event already said what the read says: the user's live sessions and last seen.
    let event = hidden.sessions().next().expect("tab 3 went away");
    assert_eq!(event.session(), Some(&3));
    assert_eq!(event.sessions, user.sessions);
    assert_eq!(Some(event.last_seen), user.last_seen);
    let mut by_session: Vec<_> = tracker
        .user_sessions(&1)
        .into_iter()
        .map(|(s, v)| (s, v.presence))
        .collect();
    by_session.sort();
    assert_eq!(by_session, vec![(1, Active), (2, Idle), (3, Away)]);

    // The active tab ages to idle; the background tab keeps heartbeating: idle wins over away.
    clock.advance(secs(20));
    let _ = tracker
        .heartbeat(&3, Activity::Background)
        .expect("heartbeat");
    assert_eq!(tracker.user(&1).presence, Idle);
    assert_eq!(
        tracker.user(&1).last_seen,
        Some(tracker.now()),
        "the latest of any session"
    );
    // Long after, only the background tab is fresh: away.
    clock.advance(secs(100));
    let _ = tracker
        .heartbeat(&3, Activity::Background)
        .expect("heartbeat");
    let events = tracker.tick();
    assert_eq!(tracker.user(&1).presence, Away);
    let user = tracker.user(&1);
    let event = events.users().next().expect("the user fell to away");
    assert_eq!((event.to, event.sessions), (Away, user.sessions));
    assert_eq!(Some(event.last_seen), user.last_seen);
    assert_eq!(tracker.session(&1).expect("alive").presence, Away);
    clock.advance(secs(70));
    let _ = tracker.tick();
    assert_eq!(tracker.session(&1).expect("alive").presence, Stale);
    assert_eq!(tracker.user(&1).presence, Away);
}

#[test]
fn a_lower_tab_changes_no_user_event() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 1, "a", Activity::Active)
        .expect("connect");
    let _ = tracker
        .connect(1, 2, "b", Activity::Active)
        .expect("connect");
    let mut events = tracker
        .heartbeat(&2, Activity::Background)
        .expect("heartbeat");
    events.extend(tracker.tick());
    assert_eq!(user_transitions(&events), vec![]);
    assert_eq!(
        session_transitions(&events),
        vec![(Active, Away, Cause::Heartbeat)]
    );
    clock.advance(secs(1));
    assert_eq!(
        tracker.heartbeat(&1, Activity::Active).expect("heartbeat"),
        Transitions::new()
    );
}

#[test]
fn users_are_independent() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 1, "a", Activity::Active)
        .expect("connect");
    clock.advance(secs(30));
    let events = tracker
        .connect(2, 2, "b", Activity::Active)
        .expect("connect");
    assert!(events.iter().all(|e| *e.user() == 2), "{events:?}");
    let events = tracker.tick();
    assert!(events.iter().all(|e| *e.user() == 1), "{events:?}");
    assert_eq!(tracker.user(&1).presence, Idle);
    assert_eq!(tracker.user(&2).presence, Active);
}

#[test]
fn online_lists_only_users_not_offline() {
    let (tracker, clock) = default_tracker();
    for u in 1..=4 {
        let _ = tracker
            .connect(u, u * 10, "sock", Activity::Active)
            .expect("connect");
    }
    let _ = tracker.heartbeat(&20, Activity::Idle).expect("heartbeat");
    let _ = tracker
        .heartbeat(&30, Activity::Background)
        .expect("heartbeat");
    let _ = tracker
        .disconnect(&40, "sock", DisconnectKind::Clean)
        .expect("close");
    clock.advance(secs(5));
    let events = tracker.tick();
    let mut online: Vec<_> = tracker
        .online()
        .into_iter()
        .map(|(u, v)| (u, v.presence, v.sessions))
        .collect();
    online.sort();
    assert_eq!(online, vec![(1, Active, 1), (2, Idle, 1), (3, Away, 1)]);
    let census = tracker.census();
    assert_eq!(
        [
            census.users.active,
            census.users.idle,
            census.users.away,
            census.users.stale
        ],
        [1, 1, 1, 0]
    );
    assert_eq!(census.users.offline, 1, "user 4 is retained");
    assert_eq!(census.sessions.total(), 3);
    assert_eq!(census.sessions.online(), 3);
    assert_eq!(tracker.user(&4).presence, Offline);
    assert_eq!(tracker.user(&4).sessions, 0);
    assert!(tracker.user(&4).last_seen.is_some());
    // The tick's event for user 4 said as much.
    let gone = events
        .users()
        .find(|e| *e.user() == 4)
        .expect("user 4 went offline");
    assert_eq!(gone.to, Offline);
    assert_eq!(gone.sessions, tracker.user(&4).sessions);
    assert_eq!(Some(gone.last_seen), tracker.user(&4).last_seen);
}

#[test]
fn census_is_as_published_until_the_tick() {
    let (tracker, clock) = default_tracker();
    let _ = tracker
        .connect(1, 1, "a", Activity::Active)
        .expect("connect");
    clock.advance(secs(20));
    assert_eq!(tracker.user(&1).presence, Idle, "reads derive at now");
    assert_eq!(
        tracker.census().users.active,
        1,
        "the census counts what was published"
    );
    let _ = tracker.tick();
    assert_eq!(tracker.census().users.active, 0);
    assert_eq!(tracker.census().users.idle, 1);
}

#[test]
fn a_user_goes_offline_only_with_its_last_session() {
    let (tracker, clock) = default_tracker();
    let t0 = tracker.now();
    let mut events = vec![];
    for s in 1..=3u64 {
        events.extend(tracker.connect(1, s, s, Activity::Active).expect("connect"));
    }
    for s in 1..=3u64 {
        clock.advance(secs(10));
        events.extend(
            tracker
                .disconnect(&s, s, DisconnectKind::Lost)
                .expect("lost"),
        );
        events.extend(tracker.tick());
    }
    events.extend(support::tick_through(&tracker, &clock, secs(300), secs(1)));
    let to_offline: Vec<_> = user_transitions(&events)
        .into_iter()
        .filter(|t| t.1 == Offline)
        .collect();
    assert_eq!(to_offline, vec![(Away, Offline, Cause::GraceExpired)]);
    let offline_at = |session: Option<u64>| {
        events
            .iter()
            .filter(|e| e.to == Offline && e.session().copied() == session)
            .map(|e| e.at.saturating_duration_since(t0).as_secs())
            .collect::<Vec<_>>()
    };
    assert_eq!(offline_at(Some(1)), vec![130]);
    assert_eq!(offline_at(Some(2)), vec![140]);
    assert_eq!(offline_at(Some(3)), vec![150]);
    assert_eq!(
        offline_at(None),
        vec![150],
        "the user goes with its last session"
    );
    // Each event carries the user's live sessions once it is published, and the user's last
    // seen time counts the sessions that ended.
    let sessions_left = |session: Option<u64>| {
        events
            .iter()
            .filter(|e| e.to == Offline && e.session().copied() == session)
            .map(|e| (e.sessions, e.last_seen))
            .collect::<Vec<_>>()
    };
    assert_eq!(sessions_left(Some(1)), vec![(2, t0)]);
    assert_eq!(sessions_left(Some(2)), vec![(1, t0)]);
    assert_eq!(sessions_left(Some(3)), vec![(0, t0)]);
    assert_eq!(sessions_left(None), vec![(0, t0)]);
    assert_eq!(tracker.user(&1).last_seen, Some(t0));
    let mut replay = Replay::new();
    replay.apply_all(&events).expect("consistent chains");
}
