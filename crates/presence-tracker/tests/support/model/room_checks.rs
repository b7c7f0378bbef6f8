//! The room checks after each step: the call's room events against the model's, every room
//! read against the model and against the rooms rebuilt from the events, and a restored
//! tracker's rooms against the live one's.

use std::collections::BTreeMap;
use std::sync::Arc;

use presence_tracker::{Presence, RoomEvent, RoomSession};
use proptest::prelude::*;

use super::rooms::{Expected, MemberOf};
use super::{Model, ModelTracker as Tracker, RoomModel, ROOMS, SESSIONS, USERS};
use crate::support::room_replay::{as_held, Member, RoomReplay};

/// The room events of one call, as the tracker returns them.
pub(crate) type RoomEvents = Vec<RoomEvent<u64, u64, u8, String>>;

/// The rooms as a client rebuilds them from the model's tracker's events.
pub(crate) type Replayed = RoomReplay<u64, u64, u8, String>;

fn plain(sessions: &[RoomSession<u64, String>]) -> Vec<(u64, String)> {
    sessions
        .iter()
        .map(|s| (s.session, (*s.meta).clone()))
        .collect()
}

fn plain_members(members: &[Member<u64, u64, String>]) -> Vec<MemberOf> {
    members.iter().map(|(u, p, s)| (*u, *p, plain(s))).collect()
}

/// The call's room events are the model's, room by room in version order, field by field; a
/// room the call made has an epoch no room had before.
pub(crate) fn check_room_events(
    got: &RoomEvents,
    expected: &[Expected],
    rooms: &mut RoomModel,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        got.len(),
        expected.len(),
        "room events: tracker {:?}, model {:?}",
        got,
        expected
    );
    for room in 0..ROOMS {
        let got: Vec<_> = got.iter().filter(|e| e.room == room).collect();
        let expected: Vec<_> = expected.iter().filter(|e| e.room == room).collect();
        prop_assert_eq!(
            got.len(),
            expected.len(),
            "events of room {}: tracker {:?}, model {:?}",
            room,
            got,
            expected
        );
        for (g, x) in got.into_iter().zip(expected) {
            let epoch = match x.epoch {
                Some(epoch) => epoch,
                None => match rooms.rooms.get(&room).and_then(|h| h.epoch) {
                    // Learnt from an earlier event of this call.
                    Some(epoch) => epoch,
                    None => {
                        prop_assert!(
                            !rooms.epochs.contains(&g.epoch),
                            "room {} made anew with an old epoch: {:?}",
                            room,
                            g
                        );
                        rooms.learn_epoch(room, g.epoch);
                        g.epoch
                    }
                },
            };
            let got = (
                g.user,
                g.change,
                g.from,
                g.to,
                plain(&g.sessions),
                g.at,
                g.epoch,
                g.version,
            );
            let want = (
                x.user,
                x.change,
                x.from,
                x.to,
                x.sessions.clone(),
                x.at,
                epoch,
                x.version,
            );
            prop_assert_eq!(
                got,
                want,
                "room {} event: tracker {:?}, model {:?}",
                room,
                g,
                x
            );
        }
    }
    Ok(())
}

/// Every room read equals the model's and the rebuilt one (whose metadata it shares: the same
/// allocations, not copies); the counts, and the rooms of each session and user, are the
/// model's.
pub(crate) fn check_rooms(
    tracker: &Tracker,
    sessions: &Model,
    rooms: &RoomModel,
    replay: &Replayed,
) -> Result<(), TestCaseError> {
    let reads = tracker.rooms();
    for room in 0..ROOMS {
        let got = reads.get(&room).map(as_held);
        let counts = reads.counts(&room);
        let members = rooms.members(room);
        let Some(history) = rooms.rooms.get(&room) else {
            prop_assert!(members.is_empty(), "model: room {} has no history", room);
            prop_assert!(got.is_none(), "room {} should not exist: {:?}", room, got);
            prop_assert!(
                counts.is_none(),
                "counts of a room nobody is in: {:?}",
                counts
            );
            prop_assert!(
                replay.view(&room).is_none(),
                "replayed room {} is not empty",
                room
            );
            continue;
        };
        let Some((epoch, version, got)) = got else {
            return Err(TestCaseError::fail(format!(
                "room {room} is missing; the model has {members:?}"
            )));
        };
        prop_assert_eq!(Some(epoch), history.epoch, "epoch of room {}", room);
        prop_assert_eq!(version, history.version, "version of room {}", room);
        prop_assert_eq!(&plain_members(&got), &members, "members of room {}", room);
        match replay.view(&room) {
            Some((e, v, held)) => {
                prop_assert_eq!((e, v), (epoch, version), "replayed room {}", room);
                prop_assert_eq!(&held, &got, "replayed members of room {}", room);
                for ((_, _, read), (_, _, kept)) in got.iter().zip(&held) {
                    for (a, b) in read.iter().zip(kept) {
                        prop_assert!(
                            Arc::ptr_eq(&a.meta, &b.meta),
                            "room {}: the read's metadata of {} is a copy of the event's",
                            room,
                            a.session
                        );
                    }
                }
            }
            None => {
                return Err(TestCaseError::fail(format!(
                    "room {room} exists but its events rebuild nothing"
                )))
            }
        }
        let counts = counts.ok_or_else(|| TestCaseError::fail("counts of a room that exists"))?;
        prop_assert_eq!((counts.epoch, counts.version), (epoch, version));
        let mut by_presence = BTreeMap::new();
        for (_, p, _) in &members {
            *by_presence.entry(*p).or_insert(0usize) += 1;
        }
        for p in [
            Presence::Active,
            Presence::Idle,
            Presence::Away,
            Presence::Stale,
            Presence::Offline,
        ] {
            prop_assert_eq!(
                counts.users.get(p),
                by_presence.get(&p).copied().unwrap_or(0),
                "room {} counts of {:?} members",
                room,
                p
            );
        }
        let in_room: usize = members.iter().map(|(_, _, s)| s.len()).sum();
        prop_assert_eq!(counts.sessions, in_room, "room {} session count", room);
    }
    for s in 0..SESSIONS {
        let expected = sessions
            .live(s)
            .map_or_else(Vec::new, |r| rooms.of_session(r.user, s));
        prop_assert_eq!(reads.of_session(&s), expected, "rooms of session {}", s);
    }
    for u in 0..USERS {
        prop_assert_eq!(reads.of_user(&u), rooms.of_user(u), "rooms of user {}", u);
    }
    Ok(())
}

/// After a tick every session in a room is live, there at its derived presence.
pub(crate) fn check_rooms_published(
    sessions: &Model,
    rooms: &RoomModel,
) -> Result<(), TestCaseError> {
    for m in &rooms.memberships {
        let live = sessions.live(m.session).filter(|r| r.user == m.user);
        prop_assert!(
            live.is_some(),
            "after a tick, an expired session is still in a room: {:?}",
            m
        );
        let derived = live.map(|r| r.presence(sessions.now));
        prop_assert_eq!(
            rooms.published.get(&m.session).copied(),
            derived,
            "after a tick, session {} is in room {} at",
            m.session,
            m.room
        );
    }
    Ok(())
}

/// A tracker restored from a snapshot has the same rooms, each with a new epoch: the same
/// members at the same presences with the same metadata, the same counts, the same rooms of
/// each session and user.
pub(crate) fn check_restored_rooms(
    tracker: &Tracker,
    restored: &Tracker,
) -> Result<(), TestCaseError> {
    let (live, back) = (tracker.rooms(), restored.rooms());
    for room in 0..ROOMS {
        let sorted = |view: Option<_>| {
            view.map(as_held).map(|(epoch, _, members)| {
                let mut members = plain_members(&members);
                for (_, _, s) in &mut members {
                    s.sort();
                }
                (epoch, members)
            })
        };
        match (sorted(live.get(&room)), sorted(back.get(&room))) {
            (None, None) => {}
            (Some((old, members)), Some((new, restored))) => {
                prop_assert_eq!(&restored, &members, "restored room {}", room);
                prop_assert_ne!(old, new, "restored room {} kept its epoch", room);
            }
            (live, back) => {
                return Err(TestCaseError::fail(format!(
                    "room {room}: live {live:?}, restored {back:?}"
                )))
            }
        }
        let counts = |c: Option<presence_tracker::RoomCounts>| c.map(|c| (c.users, c.sessions));
        prop_assert_eq!(
            counts(back.counts(&room)),
            counts(live.counts(&room)),
            "restored counts of room {}",
            room
        );
    }
    for s in 0..SESSIONS {
        prop_assert_eq!(
            back.of_session(&s),
            live.of_session(&s),
            "restored rooms of session {}",
            s
        );
    }
    for u in 0..USERS {
        let mut a = back.of_user(&u);
        let mut b = live.of_user(&u);
        a.sort();
        b.sort();
        prop_assert_eq!(a, b, "restored rooms of user {}", u);
    }
    Ok(())
}
