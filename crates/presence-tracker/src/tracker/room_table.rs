//! The room table, sharded by room id: each room's members, their sessions there with their
//! metadata, and the room's epoch, version and counts. Every change of a room goes through
//! [`RoomState::apply`], which returns the one event it publishes (or none).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use smallvec::SmallVec;

use super::session_table::{wants_shrink, Hasher};
use crate::{Presence, RoomChange, RoomCounts, RoomEvent, RoomMember, RoomSession, Timestamp};

/// One session of a member, in a room.
#[derive(Debug)]
pub(crate) struct MemberSession<S, M> {
    pub(crate) session: S,
    /// The session's published presence (the member's presence is the highest of these).
    pub(crate) presence: Presence,
    pub(crate) meta: Arc<M>,
    /// When its metadata was last set (ms), for the policy's rate bound.
    pub(crate) meta_at: u64,
    /// Its place in the room's joins (the room's `joins` when it joined): a member's sessions
    /// are kept in this order, which a snapshot keeps.
    pub(crate) joined: u64,
}

/// A user in a room.
#[derive(Debug)]
pub(crate) struct Member<S, M> {
    /// As published: the highest presence of `sessions`.
    pub(crate) presence: Presence,
    pub(crate) sessions: SmallVec<[MemberSession<S, M>; 1]>,
}

impl<S: Clone, M> Member<S, M> {
    fn highest(&self) -> Presence {
        self.sessions
            .iter()
            .map(|s| s.presence)
            .max()
            .unwrap_or(Presence::Offline)
    }

    pub(crate) fn public_sessions(&self) -> Vec<RoomSession<S, M>> {
        self.sessions
            .iter()
            .map(|s| RoomSession {
                session: s.session.clone(),
                meta: Arc::clone(&s.meta),
            })
            .collect()
    }
}

/// A change to one membership (a session of a user in a room).
pub(crate) enum Change<M> {
    /// The session joins, or, already in, replaces its metadata. `joined`: its place in the
    /// room's joins when a restore puts it back; `None` for a join now (the next place).
    Join {
        presence: Presence,
        meta: Arc<M>,
        joined: Option<u64>,
    },
    /// The session's metadata changes.
    Update(Arc<M>),
    /// The session's published presence changed (to a presence other than offline).
    Presence(Presence),
    /// The session leaves the room (or expired).
    Leave,
}

/// One room.
#[derive(Debug)]
pub(crate) struct RoomState<U, S, M> {
    pub(crate) epoch: u64,
    pub(crate) version: u64,
    pub(crate) members: HashMap<U, Member<S, M>, Hasher>,
    /// Members by their presence in the room, indexed by [`Presence::index`].
    users: [usize; 5],
    sessions: usize,
    /// Joins so far: the last place given to a joining session.
    joins: u64,
}

impl<U: Eq + Hash + Clone, S: Eq + Clone, M> RoomState<U, S, M> {
    pub(crate) fn new(epoch: u64, hasher: &Hasher) -> Self {
        RoomState {
            epoch,
            version: 0,
            members: HashMap::with_hasher(hasher.clone()),
            users: [0; 5],
            sessions: 0,
            joins: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub(crate) fn counts(&self) -> RoomCounts {
        RoomCounts {
            epoch: self.epoch,
            version: self.version,
            users: crate::Counts::from_array(self.users),
            sessions: self.sessions,
        }
    }

    pub(crate) fn member_view(user: &U, member: &Member<S, M>) -> RoomMember<U, S, M> {
        RoomMember {
            user: user.clone(),
            presence: member.presence,
            sessions: member.public_sessions(),
        }
    }

    /// Applies `change` to `user`'s `session` in this room (the caller has checked the limits
    /// and holds the user's lock) and returns the event it publishes: `Joined` when the user
    /// appears, `Left` when its last session goes, `Presence` when its presence here changes,
    /// `Updated` when only its sessions or their metadata do; `None` when nothing a member
    /// sees changed (a session's presence moved under another session's).
    pub(crate) fn apply<R: Clone>(
        &mut self,
        room: &R,
        user: &U,
        session: &S,
        change: Change<M>,
        now: u64,
    ) -> Option<RoomEvent<U, S, R, M>> {
        let from = self
            .members
            .get(user)
            .map_or(Presence::Offline, |m| m.presence);
        let mut visible = false;
        match change {
            Change::Join {
                presence,
                meta,
                joined,
            } => {
                let member = self.members.entry(user.clone()).or_insert_with(|| Member {
                    presence: Presence::Offline,
                    sessions: SmallVec::new(),
                });
                match member.sessions.iter_mut().find(|s| s.session == *session) {
                    Some(s) => {
                        s.meta = meta;
                        s.meta_at = now;
                    }
                    None => {
                        let joined = joined.unwrap_or(self.joins + 1);
                        self.joins = self.joins.max(joined);
                        // In join order (a restore may put sessions back in any order).
                        let at = member.sessions.partition_point(|s| s.joined < joined);
                        member.sessions.insert(
                            at,
                            MemberSession {
                                session: session.clone(),
                                presence,
                                meta,
                                meta_at: now,
                                joined,
                            },
                        );
                        self.sessions += 1;
                    }
                }
                visible = true;
            }
            Change::Update(meta) => {
                let s = self.session_mut(user, session)?;
                s.meta = meta;
                s.meta_at = now;
                visible = true;
            }
            Change::Presence(p) => self.session_mut(user, session)?.presence = p,
            Change::Leave => {
                let member = self.members.get_mut(user)?;
                let i = member.sessions.iter().position(|s| s.session == *session)?;
                member.sessions.remove(i);
                self.sessions -= 1;
                visible = true;
            }
        }
        let (to, sessions) = match self.members.get_mut(user) {
            Some(member) if member.sessions.is_empty() => {
                self.members.remove(user);
                if wants_shrink(self.members.len(), self.members.capacity()) {
                    self.members.shrink_to(self.members.len() * 2);
                }
                (Presence::Offline, Vec::new())
            }
            Some(member) => {
                member.presence = member.highest();
                (member.presence, member.public_sessions())
            }
            None => (Presence::Offline, Vec::new()),
        };
        let change = match (from, to) {
            (Presence::Offline, Presence::Offline) => return None,
            (Presence::Offline, _) => RoomChange::Joined,
            (_, Presence::Offline) => RoomChange::Left,
            (a, b) if a != b => RoomChange::Presence,
            _ if visible => RoomChange::Updated,
            _ => return None,
        };
        if from != Presence::Offline {
            self.users[from.index()] -= 1;
        }
        if to != Presence::Offline {
            self.users[to.index()] += 1;
        }
        self.version += 1;
        Some(RoomEvent {
            room: room.clone(),
            user: user.clone(),
            change,
            from,
            to,
            sessions,
            at: Timestamp::from_millis(now),
            epoch: self.epoch,
            version: self.version,
        })
    }

    fn session_mut(&mut self, user: &U, session: &S) -> Option<&mut MemberSession<S, M>> {
        self.members
            .get_mut(user)?
            .sessions
            .iter_mut()
            .find(|s| s.session == *session)
    }

    /// When `user`'s `session` last set its metadata here, if it is in the room.
    pub(crate) fn meta_at(&self, user: &U, session: &S) -> Option<u64> {
        self.members
            .get(user)?
            .sessions
            .iter()
            .find(|s| s.session == *session)
            .map(|s| s.meta_at)
    }
}

/// One shard of the room table.
#[derive(Debug)]
pub(crate) struct RoomShard<U, S, R, M> {
    pub(crate) rooms: HashMap<R, RoomState<U, S, M>, Hasher>,
}

impl<U, S, R, M> RoomShard<U, S, R, M> {
    pub(crate) fn new(hasher: &Hasher) -> Self {
        RoomShard {
            rooms: HashMap::with_hasher(hasher.clone()),
        }
    }
}
