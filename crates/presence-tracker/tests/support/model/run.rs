//! One generated sequence, run on the tracker and on the models, every step checked.

use presence_tracker::{Error, ManualClock, Presence, PresenceTracker, Transitions};
use proptest::prelude::*;

use super::checks::{
    check_event_fields, check_published, check_snapshot, check_views, snapshot_of_presences,
};
use super::room_checks::{
    check_restored_rooms, check_room_events, check_rooms, check_rooms_published, Replayed,
};
use super::rooms::Expected;
use super::{
    policy, Limits, Model, ModelTracker as Tracker, Op, Refusal, RoomModel, RETENTION, USERS,
};
use crate::support::{ms, Replay};

/// Runs `ops` on a tracker with `limits` and on the models; after every step compares what
/// each call returned (its events, or its error), every view, the event chains, and a
/// snapshot restored into a fresh tracker; a final tick publishes everything.
pub(crate) fn run(ops: &[Op], limits: Limits) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let tracker: Tracker = PresenceTracker::with_clock(policy(limits), clock.clone());
    let mut model = Model::default();
    model.at(clock.now().as_millis());
    let mut rooms = RoomModel::new(limits);
    let mut replay = Replay::<u64, u64>::new();
    let mut room_replay = Replayed::new();
    let mut before = snapshot_of_presences(&tracker);

    let mut read_before = model.now;

    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Advance(d) => clock.advance(ms(*d)),
            Op::SetBack(d) => clock.set(clock.now().saturating_sub(ms(*d))),
            _ => {}
        }
        // A signal or a tick takes the tracker's time from the clock; a clock move alone only
        // changes what reads see.
        if matches!(op, Op::Advance(_) | Op::SetBack(_)) {
            model.read_at(clock.now().as_millis());
        } else {
            model.at(clock.now().as_millis());
        }
        // A user offline for its whole retention may be forgotten, and its seq start again.
        for u in 0..USERS {
            if model.live_sessions_of(u).next().is_some() {
                replay.forbid_restart(&u);
            } else if model
                .ever_seen
                .get(&u)
                .is_some_and(|e| e + RETENTION <= model.now)
            {
                replay.allow_restart(&u);
            }
        }

        // A connect of a session that expired (but no tick freed it yet) for the same user
        // first publishes the old session's end, then makes it anew.
        let remade = match *op {
            Op::Connect { user, session, .. }
                if !model.sessions.contains_key(&session)
                    && replay
                        .session(&session)
                        .is_some_and(|(owner, p)| owner == user && p != Presence::Offline) =>
            {
                Some((user, session))
            }
            _ => None,
        };
        let ever_before = remade.and_then(|(user, _)| model.ever_seen.get(&user).copied());

        let named = match op {
            Op::Join { target, .. } | Op::Update { target, .. } | Op::LeaveRoom { target } => {
                Some(target.resolve(&model, &rooms))
            }
            _ => None,
        };
        type R = Result<Transitions<u64, u64, u8, String>, Error>;
        // A room call's room events, as the model expects them; other calls' follow from
        // their session events.
        let mut room_call: Option<Vec<Expected>> = None;
        let mut expect_room =
            |r: Result<Vec<Expected>, Refusal>| r.map(|expected| room_call = Some(expected));
        let (got, expected, riser): (R, Result<(), Refusal>, Option<u64>) = match op {
            &Op::Connect {
                user,
                session,
                conn,
                activity,
            } => {
                let got = tracker.connect(user, session, conn, activity);
                (
                    got,
                    model.connect(user, session, conn, activity),
                    Some(user),
                )
            }
            &Op::Heartbeat {
                session,
                activity,
                owned,
            } => {
                let user = model.sessions.get(&session).map(|r| r.user);
                // Every third heartbeat goes through the batch path, as a batch of one.
                let got = if session % 3 == 0 {
                    let outcome = if owned {
                        tracker.heartbeat_batch(vec![(session, activity)])
                    } else {
                        tracker.heartbeat_batch([(&session, activity)])
                    };
                    match outcome.errors.into_iter().next() {
                        Some((_, e)) => Err(e),
                        None => Ok(outcome.events),
                    }
                } else {
                    tracker.heartbeat(&session, activity)
                };
                (got, model.heartbeat(session, activity), user)
            }
            &Op::Disconnect {
                session,
                conn,
                kind,
            } => {
                let conn = conn
                    .or_else(|| model.sessions.get(&session).map(|r| r.conn))
                    .unwrap_or(0);
                let got = tracker.disconnect(&session, conn, kind);
                (got, model.disconnect(session, conn, kind), None)
            }
            &Op::Leave { session, conn } => {
                let conn = conn
                    .or_else(|| model.sessions.get(&session).map(|r| r.conn))
                    .unwrap_or(0);
                let got = tracker.leave(&session, conn);
                (got, model.leave(session, conn), None)
            }
            Op::Advance(_) | Op::SetBack(_) => (Ok(Transitions::new()), Ok(()), None),
            Op::Tick => (Ok(tracker.tick()), Ok(()), None),
            Op::Join { meta, .. } => {
                let (session, room) = named.expect("a room call names a session and a room");
                let got = tracker.rooms().join(&session, room, meta.clone());
                (
                    got,
                    expect_room(rooms.join(&model, session, room, meta)),
                    None,
                )
            }
            Op::Update { meta, .. } => {
                let (session, room) = named.expect("a room call names a session and a room");
                let got = tracker.rooms().update(&session, &room, meta.clone());
                (
                    got,
                    expect_room(rooms.update(&model, session, room, meta)),
                    None,
                )
            }
            Op::LeaveRoom { .. } => {
                let (session, room) = named.expect("a room call names a session and a room");
                let got = tracker.rooms().leave(&session, &room);
                (got, expect_room(rooms.leave(&model, session, room)), None)
            }
        };
        let context = match named {
            Some((session, room)) => {
                format!(
                    "step {step} {op:?} (session {session}, room {room}) at {}",
                    model.now
                )
            }
            None => format!("step {step} {op:?} at {}", model.now),
        };
        let (events, room_events) = match (got, expected) {
            (Ok(events), Ok(())) => events.into_parts(),
            (Err(e), Err(r)) if Refusal::of(&e) == Some(r) => (Vec::new(), Vec::new()),
            (got, expected) => {
                return Err(TestCaseError::fail(format!(
                    "{context}: tracker returned {got:?}, model expects {expected:?}"
                )))
            }
        };
        for e in &events {
            prop_assert!(
                e.at.as_millis() <= model.now,
                "{}: event in the future {:?}",
                context,
                e
            );
            replay
                .apply(e)
                .map_err(|m| TestCaseError::fail(format!("{context}: {m}")))?;
        }
        if matches!(op, Op::Advance(_) | Op::SetBack(_)) || op.is_room() {
            prop_assert!(
                events.is_empty(),
                "{}: session events {:?}",
                context,
                events
            );
        }
        check_event_fields(&events, &model, remade, ever_before)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        let expected_rooms = match room_call {
            Some(expected) => expected,
            None => rooms.on_session_events(&events),
        };
        check_room_events(&room_events, &expected_rooms, &mut rooms)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        room_replay
            .apply_all(&room_events)
            .map_err(|m| TestCaseError::fail(format!("{context}: {m}")))?;

        // (a), (b)
        check_views(&tracker, &model)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        check_rooms(&tracker, &model, &rooms, &room_replay)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        // (c)
        if matches!(op, Op::Tick) {
            check_published(&tracker, &model, &replay)
                .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
            check_rooms_published(&model, &rooms)
                .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        }
        // (d) Only the user of a successful connect or heartbeat may rise. Reads move no time:
        // when the clock went back behind what the last reads saw (and no signal saw that),
        // reads go back with it, and may see presences that time since took away: compare only
        // reads that did not go back in time.
        let after = snapshot_of_presences(&tracker);
        let riser = riser.filter(|_| expected.is_ok());
        let forward = model.now >= read_before;
        read_before = model.now;
        for (s, (owner, p)) in after.0.iter().filter(|_| forward) {
            if Some(*owner) == riser {
                continue;
            }
            let was = before
                .0
                .get(s)
                .filter(|(o, _)| o == owner)
                .map_or(Presence::Offline, |(_, p)| *p);
            prop_assert!(
                *p <= was,
                "{}: session {} rose from {:?} to {:?} without a signal",
                context,
                s,
                was,
                p
            );
        }
        for (u, p) in after.1.iter().filter(|_| forward) {
            if Some(*u) != riser {
                let was = before.1[u];
                prop_assert!(
                    *p <= was,
                    "{}: user {} rose from {:?} to {:?} without a signal",
                    context,
                    u,
                    was,
                    p
                );
            }
        }
        before = after;
        // (e)
        let restored = check_snapshot(&tracker, &model, limits)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        check_restored_rooms(&tracker, &restored)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
    }
    // A final tick publishes everything.
    model.at(clock.now().as_millis());
    let (events, room_events) = tracker.tick().into_parts();
    let fail = |m: String| TestCaseError::fail(format!("final tick: {m}"));
    replay.apply_all(&events).map_err(fail)?;
    check_event_fields(&events, &model, None, None).map_err(|e| fail(e.to_string()))?;
    let expected_rooms = rooms.on_session_events(&events);
    check_room_events(&room_events, &expected_rooms, &mut rooms)
        .map_err(|e| fail(e.to_string()))?;
    room_replay.apply_all(&room_events).map_err(fail)?;
    check_rooms(&tracker, &model, &rooms, &room_replay).map_err(|e| fail(e.to_string()))?;
    check_rooms_published(&model, &rooms).map_err(|e| fail(e.to_string()))?;
    check_published(&tracker, &model, &replay)
}
