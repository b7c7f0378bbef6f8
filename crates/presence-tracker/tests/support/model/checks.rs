//! The session checks after each step: every view against the model, every event's fields,
//! what a tick published, and a snapshot restored through JSON.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use presence_tracker::{
    ConnectionId, Event, ManualClock, Presence, PresenceTracker, SessionView, Snapshot, Timestamp,
};
use proptest::prelude::*;

use super::{policy, Limits, Model, ModelTracker as Tracker, Record, RETENTION, SESSIONS, USERS};
use crate::support::Replay;

fn check_session_view(
    what: &str,
    view: Option<SessionView<u64>>,
    model: Option<&Record>,
    now: u64,
) -> Result<(), TestCaseError> {
    match (view, model) {
        (None, None) => Ok(()),
        (Some(v), Some(r)) => {
            prop_assert_eq!(v.user, r.user, "{}: owner", what);
            prop_assert_eq!(v.presence, r.presence(now), "{}: presence", what);
            prop_assert_eq!(v.activity, r.activity, "{}: activity", what);
            prop_assert_eq!(v.last_seen.as_millis(), r.last_seen, "{}: last_seen", what);
            prop_assert_eq!(
                v.connection,
                ConnectionId::from(r.conn),
                "{}: connection",
                what
            );
            prop_assert_eq!(v.connected, r.connected, "{}: connected", what);
            prop_assert_eq!(
                v.expires_at.as_millis(),
                r.expires_at(),
                "{}: expires_at",
                what
            );
            Ok(())
        }
        (v, r) => Err(TestCaseError::fail(format!(
            "{what}: tracker has {v:?}, model has {r:?} at {now}"
        ))),
    }
}

/// Every view the tracker gives at the model's time equals the model's, read on the clock as
/// it is, and again with the clock set to that time (what the `_at` readers did before 0.1).
/// Reads move nothing: the tracker's time is the same after them.
pub(crate) fn check_views(tracker: &Tracker, model: &Model) -> Result<(), TestCaseError> {
    let now = model.now;
    prop_assert_eq!(
        tracker.now().as_millis(),
        now,
        "tracker time (the clock, or the high-water mark if behind)"
    );
    let clock = tracker.clock();
    let on_the_clock = clock.now();
    let mut at_now = Vec::new();
    for s in 0..SESSIONS {
        at_now.push(tracker.session(&s));
    }
    let users_at_now: Vec<_> = (0..USERS).map(|u| tracker.user(&u)).collect();
    let online_at_now = tracker.online();
    clock.set(Timestamp::from_millis(now));
    for s in 0..SESSIONS {
        let r = model.live(s);
        check_session_view(&format!("session({s})"), tracker.session(&s), r, now)?;
        check_session_view(
            &format!("session({s}) on the clock as it was"),
            at_now[s as usize].clone(),
            r,
            now,
        )?;
    }
    let mut online = BTreeMap::new();
    for u in 0..USERS {
        let expected = model.user_presence(u);
        if expected != Presence::Offline {
            online.insert(u, expected);
        }
        let live: BTreeMap<u64, &Record> = model.live_sessions_of(u).collect();
        for view in [tracker.user(&u), users_at_now[u as usize]] {
            prop_assert_eq!(view.presence, expected, "user {} presence", u);
            prop_assert_eq!(view.sessions, live.len(), "user {} session count", u);
            let newest_live = live.values().map(|r| r.last_seen).max();
            let ever = model.ever_seen.get(&u).copied();
            match view.last_seen {
                Some(t) => {
                    let t = t.as_millis();
                    prop_assert!(
                        ever.is_some_and(|e| t <= e) && newest_live.is_none_or(|n| t >= n),
                        "user {} last_seen {} outside [{:?}, {:?}]",
                        u,
                        t,
                        newest_live,
                        ever
                    );
                }
                None => prop_assert!(
                    ever.is_none_or(|e| e + RETENTION <= now),
                    "user {} forgotten before its retention: last seen {:?}, now {}",
                    u,
                    ever,
                    now
                ),
            }
        }
        let sessions = tracker.user_sessions(&u);
        let ids: BTreeSet<u64> = sessions.iter().map(|(s, _)| *s).collect();
        prop_assert_eq!(
            &ids,
            &live.keys().copied().collect::<BTreeSet<_>>(),
            "user {} sessions",
            u
        );
        for (s, v) in &sessions {
            prop_assert_eq!(v.user, u);
            prop_assert_eq!(
                v.presence,
                live[s].presence(now),
                "user_sessions({}) of {}",
                u,
                s
            );
        }
        // (b) user presence is the max of its sessions.
        let max = sessions
            .iter()
            .map(|(_, v)| v.presence)
            .max()
            .unwrap_or(Presence::Offline);
        prop_assert_eq!(
            tracker.user(&u).presence,
            max,
            "user {} is not the max of its sessions",
            u
        );
    }
    for (what, list) in [
        ("online", tracker.online()),
        ("online on the clock as it was", online_at_now),
    ] {
        let got: BTreeMap<u64, Presence> = list.iter().map(|(u, v)| (*u, v.presence)).collect();
        prop_assert_eq!(got.len(), list.len(), "{} lists a user twice", what);
        prop_assert_eq!(&got, &online, "{}", what);
    }
    clock.set(on_the_clock);
    prop_assert_eq!(
        tracker.now().as_millis(),
        now,
        "a read moved the tracker's time"
    );
    Ok(())
}

/// Every event's `sessions` is its user's live session count once it is published, and its
/// `last_seen` the session's (for a session's event) or the user's, ended sessions included
/// (for a user's event): what the model says after the step. Except in a connect that re-makes
/// its user's own expired (not yet ticked) session: the events published before the new
/// session's (the old one's end) are as of before the connect.
pub(crate) fn check_event_fields(
    events: &[Event<u64, u64>],
    model: &Model,
    remade: Option<(u64, u64)>,
    ever_before: Option<u64>,
) -> Result<(), TestCaseError> {
    let remade_at = remade.and_then(|(_, session)| {
        events
            .iter()
            .position(|e| e.session() == Some(&session) && e.from == Presence::Offline)
    });
    for (i, e) in events.iter().enumerate() {
        let user = *e.user();
        let before_remake =
            remade.is_some_and(|(u, _)| u == user) && remade_at.is_some_and(|at| i < at);
        let live = model.live_sessions_of(user).count();
        let sessions = if before_remake { live - 1 } else { live };
        prop_assert_eq!(e.sessions, sessions, "sessions of {:?}", e);
        if e.is_user() && e.to == Presence::Offline {
            prop_assert_eq!(e.sessions, 0, "an offline user with sessions: {:?}", e);
        }
        let last_seen = match e.session() {
            None if before_remake => ever_before,
            None => model.ever_seen.get(&user).copied(),
            Some(s) if e.to == Presence::Offline => model
                .ended
                .get(s)
                .filter(|r| r.user == user)
                .map(|r| r.last_seen),
            Some(s) => model
                .sessions
                .get(s)
                .filter(|r| r.user == user)
                .map(|r| r.last_seen),
        };
        prop_assert_eq!(
            Some(e.last_seen.as_millis()),
            last_seen,
            "last_seen of {:?}",
            e
        );
    }
    Ok(())
}

/// After a tick everything due is published: the replayed events give the current presences,
/// and the census counts them.
pub(crate) fn check_published(
    tracker: &Tracker,
    model: &Model,
    replay: &Replay<u64, u64>,
) -> Result<(), TestCaseError> {
    let now = model.now;
    let mut sessions = [0usize; 5];
    for s in 0..SESSIONS {
        match (model.live(s), replay.session(&s)) {
            (Some(r), Some((owner, published))) => {
                let p = r.presence(now);
                prop_assert_eq!(owner, r.user, "replayed owner of session {}", s);
                prop_assert_eq!(published, p, "replayed session {} after tick", s);
                sessions[p as usize] += 1;
            }
            (Some(r), None) => {
                return Err(TestCaseError::fail(format!(
                    "session {s} is live ({r:?}) but no event published it"
                )))
            }
            (None, Some((_, published))) => {
                prop_assert_eq!(
                    published,
                    Presence::Offline,
                    "session {} is gone but replays as",
                    s
                );
            }
            (None, None) => {}
        }
    }
    let mut users = [0usize; 5];
    for u in 0..USERS {
        let p = model.user_presence(u);
        prop_assert_eq!(replay.user(&u), p, "replayed user {} after tick", u);
        users[p as usize] += 1;
    }
    let census = tracker.census();
    for p in [
        Presence::Active,
        Presence::Idle,
        Presence::Away,
        Presence::Stale,
    ] {
        prop_assert_eq!(
            census.sessions.get(p),
            sessions[p as usize],
            "census of {:?} sessions",
            p
        );
        prop_assert_eq!(
            census.users.get(p),
            users[p as usize],
            "census of {:?} users",
            p
        );
    }
    prop_assert_eq!(census.sessions.offline, 0, "census counts offline sessions");
    Ok(())
}

/// A snapshot through JSON, restored into a fresh tracker on a clock at the same time, reads the
/// same. Returns the restored tracker, for the rooms' check.
pub(crate) fn check_snapshot(
    tracker: &Tracker,
    model: &Model,
    limits: Limits,
) -> Result<Tracker, TestCaseError> {
    let json = serde_json::to_string(&tracker.snapshot())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let snapshot: Snapshot<u64, u64, u8, String> =
        serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
    let clock = ManualClock::starting_at(Timestamp::from_millis(model.now));
    let restored = PresenceTracker::restore(snapshot, policy(limits), clock)
        .map_err(|e| TestCaseError::fail(format!("restore failed: {e}: {json}")))?;
    for s in 0..SESSIONS {
        prop_assert_eq!(
            restored.session(&s),
            tracker.session(&s),
            "restored session {}",
            s
        );
    }
    for u in 0..USERS {
        prop_assert_eq!(restored.user(&u), tracker.user(&u), "restored user {}", u);
        prop_assert_eq!(
            sorted(restored.user_sessions(&u)),
            sorted(tracker.user_sessions(&u)),
            "restored sessions of {}",
            u
        );
    }
    prop_assert_eq!(
        sorted(restored.online()),
        sorted(tracker.online()),
        "restored online"
    );
    prop_assert_eq!(restored.census(), tracker.census(), "restored census");
    Ok(restored)
}

pub(crate) fn sorted<K: Ord, V>(mut list: Vec<(K, V)>) -> Vec<(K, V)> {
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

pub(crate) fn snapshot_of_presences(
    tracker: &Tracker,
) -> (HashMap<u64, (u64, Presence)>, HashMap<u64, Presence>) {
    let sessions = (0..SESSIONS)
        .filter_map(|s| tracker.session(&s).map(|v| (s, (v.user, v.presence))))
        .collect();
    let users = (0..USERS).map(|u| (u, tracker.user(&u).presence)).collect();
    (sessions, users)
}
