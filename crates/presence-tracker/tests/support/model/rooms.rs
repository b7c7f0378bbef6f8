//! The rooms' model: one list of memberships in the order they were made, and every room, its
//! members' presences there and its events recomputed from that list.
//!
//! A session's presence in its rooms is its *published* presence: what the tracker's session
//! events said last (themselves checked against [`Model`](super::Model) by the session checks).
//! The model learns it from those events, as a room does from the session changes that settle
//! publishes, and predicts the room events each one causes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use presence_tracker::{Event, Presence, RoomChange, Timestamp};

use super::{Limits, Model, Refusal};

/// One session of a user in one room.
#[derive(Clone, Debug)]
pub(crate) struct Membership {
    pub(crate) user: u64,
    pub(crate) session: u64,
    pub(crate) room: u8,
    pub(crate) meta: String,
    /// When its metadata was last set (ms).
    pub(crate) meta_at: u64,
}

/// A room event the model expects. `epoch: None`: the room was just made, with an epoch no
/// room had before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) room: u8,
    pub(crate) user: u64,
    pub(crate) change: RoomChange,
    pub(crate) from: Presence,
    pub(crate) to: Presence,
    pub(crate) sessions: Vec<(u64, String)>,
    pub(crate) at: Timestamp,
    pub(crate) epoch: Option<u64>,
    pub(crate) version: u64,
}

/// A room that exists (has members): its history so far.
#[derive(Clone, Copy, Debug)]
pub(crate) struct History {
    /// `None` until its first event showed it.
    pub(crate) epoch: Option<u64>,
    pub(crate) version: u64,
}

/// A member of a room as the model computes it.
pub(crate) type MemberOf = (u64, Presence, Vec<(u64, String)>);

#[derive(Debug)]
pub(crate) struct RoomModel {
    pub(crate) limits: Limits,
    /// In the order they were made (a re-join keeps its place).
    pub(crate) memberships: Vec<Membership>,
    /// Each session's published presence, from the session events; absent once offline.
    pub(crate) published: BTreeMap<u64, Presence>,
    pub(crate) rooms: BTreeMap<u8, History>,
    /// Every epoch any room had.
    pub(crate) epochs: BTreeSet<u64>,
}

impl RoomModel {
    pub(crate) fn new(limits: Limits) -> Self {
        RoomModel {
            limits,
            memberships: Vec::new(),
            published: BTreeMap::new(),
            rooms: BTreeMap::new(),
            epochs: BTreeSet::new(),
        }
    }

    fn position(&self, user: u64, session: u64, room: u8) -> Option<usize> {
        self.memberships
            .iter()
            .position(|m| m.user == user && m.session == session && m.room == room)
    }

    /// The user's presence in the room: the highest published presence of its sessions there.
    pub(crate) fn presence_in(&self, room: u8, user: u64) -> Presence {
        self.memberships
            .iter()
            .filter(|m| m.room == room && m.user == user)
            .map(|m| {
                self.published
                    .get(&m.session)
                    .copied()
                    .unwrap_or(Presence::Offline)
            })
            .max()
            .unwrap_or(Presence::Offline)
    }

    /// The user's sessions in the room with their metadata, in the order they joined.
    fn sessions_in(&self, room: u8, user: u64) -> Vec<(u64, String)> {
        self.memberships
            .iter()
            .filter(|m| m.room == room && m.user == user)
            .map(|m| (m.session, m.meta.clone()))
            .collect()
    }

    /// The room's members, by user.
    pub(crate) fn members(&self, room: u8) -> Vec<MemberOf> {
        let users: BTreeSet<u64> = self
            .memberships
            .iter()
            .filter(|m| m.room == room)
            .map(|m| m.user)
            .collect();
        users
            .into_iter()
            .map(|u| (u, self.presence_in(room, u), self.sessions_in(room, u)))
            .collect()
    }

    /// The rooms of a session, in the order it joined them.
    pub(crate) fn of_session(&self, user: u64, session: u64) -> Vec<u8> {
        self.memberships
            .iter()
            .filter(|m| m.user == user && m.session == session)
            .map(|m| m.room)
            .collect()
    }

    /// The rooms of a user's sessions, each once, in the order first joined.
    pub(crate) fn of_user(&self, user: u64) -> Vec<u8> {
        let mut rooms = Vec::new();
        for m in self.memberships.iter().filter(|m| m.user == user) {
            if !rooms.contains(&m.room) {
                rooms.push(m.room);
            }
        }
        rooms
    }

    /// What the room publishes after a change of `user`'s memberships there (`visible`: its
    /// sessions or their metadata changed), given its presence there `before`.
    fn publish(
        &mut self,
        room: u8,
        user: u64,
        before: Presence,
        visible: bool,
        now: u64,
    ) -> Option<Expected> {
        let after = self.presence_in(room, user);
        let change = match (before, after) {
            (Presence::Offline, Presence::Offline) => return None,
            (Presence::Offline, _) => RoomChange::Joined,
            (_, Presence::Offline) => RoomChange::Left,
            (a, b) if a != b => RoomChange::Presence,
            _ if visible => RoomChange::Updated,
            _ => return None,
        };
        let sessions = self.sessions_in(room, user);
        let history = self.rooms.get_mut(&room).expect("a room with members");
        history.version += 1;
        let expected = Expected {
            room,
            user,
            change,
            from: before,
            to: after,
            sessions,
            at: Timestamp::from_millis(now),
            epoch: history.epoch,
            version: history.version,
        };
        if !self.memberships.iter().any(|m| m.room == room) {
            self.rooms.remove(&room);
        }
        Some(expected)
    }

    /// The owner of a live session, or the refusal of a room call naming one that is not.
    fn owner(sessions: &Model, session: u64) -> Result<u64, Refusal> {
        sessions
            .live(session)
            .map(|r| r.user)
            .ok_or(Refusal::UnknownSession)
    }

    fn check_meta(&self, meta: &str) -> Result<(), Refusal> {
        if meta.len() > self.limits.metadata_bytes {
            return Err(Refusal::MetadataTooLarge {
                size: meta.len(),
                max: self.limits.metadata_bytes,
            });
        }
        Ok(())
    }

    fn check_rate(&self, at: u64, now: u64) -> Result<(), Refusal> {
        let next = at + self.limits.metadata_interval;
        if now < next {
            return Err(Refusal::MetadataTooFrequent {
                retry_after: Duration::from_millis(next - now),
            });
        }
        Ok(())
    }

    pub(crate) fn join(
        &mut self,
        sessions: &Model,
        session: u64,
        room: u8,
        meta: &str,
    ) -> Result<Vec<Expected>, Refusal> {
        let now = sessions.now;
        let user = Self::owner(sessions, session)?;
        self.check_meta(meta)?;
        let joined = self.position(user, session, room);
        match joined {
            Some(i) => self.check_rate(self.memberships[i].meta_at, now)?,
            None => {
                let in_rooms = self.of_session(user, session).len();
                if in_rooms >= self.limits.rooms_per_session {
                    return Err(Refusal::TooManyRooms {
                        max: self.limits.rooms_per_session,
                    });
                }
                let members = self.members(room);
                let member = members.iter().any(|(u, ..)| *u == user);
                if !member && members.len() >= self.limits.members_per_room {
                    return Err(Refusal::RoomFull {
                        max: self.limits.members_per_room,
                    });
                }
            }
        }
        let before = self.presence_in(room, user);
        match joined {
            Some(i) => {
                self.memberships[i].meta = meta.to_string();
                self.memberships[i].meta_at = now;
            }
            None => {
                self.rooms.entry(room).or_insert(History {
                    epoch: None,
                    version: 0,
                });
                self.memberships.push(Membership {
                    user,
                    session,
                    room,
                    meta: meta.to_string(),
                    meta_at: now,
                });
            }
        }
        Ok(self
            .publish(room, user, before, true, now)
            .into_iter()
            .collect())
    }

    pub(crate) fn update(
        &mut self,
        sessions: &Model,
        session: u64,
        room: u8,
        meta: &str,
    ) -> Result<Vec<Expected>, Refusal> {
        let now = sessions.now;
        let user = Self::owner(sessions, session)?;
        let i = self
            .position(user, session, room)
            .ok_or(Refusal::NotInRoom)?;
        self.check_meta(meta)?;
        self.check_rate(self.memberships[i].meta_at, now)?;
        let before = self.presence_in(room, user);
        self.memberships[i].meta = meta.to_string();
        self.memberships[i].meta_at = now;
        Ok(self
            .publish(room, user, before, true, now)
            .into_iter()
            .collect())
    }

    pub(crate) fn leave(
        &mut self,
        sessions: &Model,
        session: u64,
        room: u8,
    ) -> Result<Vec<Expected>, Refusal> {
        let now = sessions.now;
        let user = Self::owner(sessions, session)?;
        let i = self
            .position(user, session, room)
            .ok_or(Refusal::NotInRoom)?;
        let before = self.presence_in(room, user);
        self.memberships.remove(i);
        Ok(self
            .publish(room, user, before, true, now)
            .into_iter()
            .collect())
    }

    /// The room events the published session changes `events` cause, in order: each session
    /// that changed takes its new presence into each of its rooms, or, offline, leaves them.
    pub(crate) fn on_session_events(&mut self, events: &[Event<u64, u64>]) -> Vec<Expected> {
        let mut expected = Vec::new();
        for e in events {
            let (user, Some(&session)) = (*e.user(), e.session()) else {
                continue;
            };
            let rooms = self.of_session(user, session);
            let before: Vec<Presence> = rooms.iter().map(|&r| self.presence_in(r, user)).collect();
            if e.to == Presence::Offline {
                self.published.remove(&session);
                self.memberships
                    .retain(|m| !(m.user == user && m.session == session));
            } else {
                self.published.insert(session, e.to);
            }
            let left = e.to == Presence::Offline;
            for (room, before) in rooms.into_iter().zip(before) {
                expected.extend(self.publish(room, user, before, left, e.at.as_millis()));
            }
        }
        expected
    }

    /// The room's epoch, seen in its first event.
    pub(crate) fn learn_epoch(&mut self, room: u8, epoch: u64) {
        if let Some(h) = self.rooms.get_mut(&room) {
            h.epoch = Some(epoch);
        }
        self.epochs.insert(epoch);
    }
}
