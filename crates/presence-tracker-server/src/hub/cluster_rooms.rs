//! The rooms of a hub that is one node of a cluster: held while they have subscribers here,
//! at the cluster's epoch and version (see [`super::cluster`]).

use std::collections::HashMap;
use std::sync::Arc;

use presence_tracker::{Id, Metadata, Presence, RoomChange};

use super::cluster::Node;
use super::listing::Listing;
use super::room_feed::RoomItem;
use super::rooms::RoomsPublished;
use crate::cluster::{ClusterCause, ClusterRoomEvent};
use crate::wire::Encoded;
use crate::wire::{
    Member, MemberChange, MemberIds, MemberSession, Occupancy, RoomOccupancy, RoomState,
    RoomUpdate, RoomWindow, Window,
};

/// A room as the hub holds it in a cluster: the cluster's epoch and version, and its members.
pub(super) struct HeldRoom<U, S, R, M> {
    epoch: u64,
    version: u64,
    members: HashMap<U, (Presence, Vec<MemberSession<S, M>>)>,
    /// The state at `version`, made once and shared.
    state: Option<Arc<RoomState<U, S, R, M>>>,
    /// How many `members` holds, by presence: kept with each change.
    occupancy: Occupancy,
    /// The members in order, for windows.
    listing: Listing<U, S, R, M>,
}

impl<U: Id, S: Id, R: Id, M: Metadata> HeldRoom<U, S, R, M> {
    /// The room as the node has it now (epoch 0 and no members for a room nobody is in).
    fn read(node: &Node<U, S, R, M>, room: &R, big_room: usize, ids: &MemberIds) -> Self {
        let Some(c) = node.room(room) else {
            return HeldRoom {
                epoch: 0,
                version: 0,
                members: HashMap::new(),
                state: None,
                occupancy: Occupancy::default(),
                listing: Listing::default(),
            };
        };
        let members: HashMap<U, (Presence, Vec<MemberSession<S, M>>)> = c
            .members
            .into_iter()
            .map(|(user, m)| {
                let sessions = m
                    .sessions
                    .into_iter()
                    .map(|(s, meta)| MemberSession::shown(s, meta, ids))
                    .collect();
                (user, (m.presence, sessions))
            })
            .collect();
        let mut occupancy = Occupancy::default();
        let mut listing = Listing::default();
        for (user, (presence, sessions)) in &members {
            occupancy.add(*presence, sessions.len());
            listing.place(user, Some(*presence), big_room);
        }
        HeldRoom {
            epoch: c.epoch,
            version: c.version,
            members,
            state: None,
            occupancy,
            listing,
        }
    }

    fn window(&mut self, room: &R, window: Window) -> Arc<RoomWindow<U, S, R, M>> {
        let members = &self.members;
        self.listing
            .window(room, self.epoch, self.version, window, |user| {
                members.get(user).map(|(p, sessions)| (*p, &sessions[..]))
            })
    }

    fn state(&mut self, room: &R) -> Arc<RoomState<U, S, R, M>> {
        if let Some(state) = &self.state {
            return Arc::clone(state);
        }
        let state = Arc::new(RoomState {
            room: room.clone(),
            epoch: self.epoch,
            version: self.version,
            members: self
                .members
                .iter()
                .map(|(user, (presence, sessions))| Member {
                    user: user.clone(),
                    presence: *presence,
                    sessions: sessions.clone(),
                })
                .collect(),
            big: self.listing.big(),
            encoded: Encoded::default(),
        });
        self.state = Some(Arc::clone(&state));
        state
    }
}

impl<U: Id, S: Id, R: Id, M: Metadata> RoomsPublished<U, S, R, M> {
    /// What a cluster room event changes in the room as held; the item to send its subscribers.
    /// Rooms without subscribers here are not held.
    pub(super) fn cluster_event(
        &mut self,
        node: &Node<U, S, R, M>,
        e: ClusterRoomEvent<U, S, R, M>,
    ) -> Option<RoomItem<U, S, R, M>> {
        let (big_room, ids) = (self.big_room, self.ids);
        if !self.feeds.contains_key(&e.room) {
            self.held.remove(&e.room);
            return None;
        }
        if let Some(held) = self.held.get_mut(&e.room) {
            if held.epoch == e.epoch && e.version <= held.version {
                return None; // old news: the room was read at a later version
            }
            // A re-read's events may share a version: only the next one of a history is applied.
            if held.epoch == e.epoch
                && e.version == held.version + 1
                && e.cause != ClusterCause::Resync
            {
                let sessions: Vec<MemberSession<S, M>> = e
                    .sessions
                    .into_iter()
                    .map(|(s, meta)| MemberSession::shown(s, meta, &ids))
                    .collect();
                held.version = e.version;
                held.state = None;
                let before = if e.change == RoomChange::Left {
                    held.members.remove(&e.user)
                } else {
                    held.occupancy.add(e.to, sessions.len());
                    held.members
                        .insert(e.user.clone(), (e.to, sessions.clone()))
                };
                if let Some((presence, sessions)) = before {
                    held.occupancy.remove(presence, sessions.len());
                }
                let after = (e.change != RoomChange::Left).then_some(e.to);
                held.listing.place(&e.user, after, big_room);
                return Some(RoomItem::Update(Arc::new(RoomUpdate {
                    room: e.room,
                    epoch: e.epoch,
                    member: MemberChange {
                        version: e.version,
                        change: e.change,
                        user: e.user,
                        presence: e.to,
                        sessions,
                    },
                    occupancy: held.occupancy,
                    big: held.listing.big(),
                    encoded: Encoded::default(),
                })));
            }
        }
        self.cluster_reload(node, &e.room)
    }

    /// Holds the room as the node has it now; its state to send, if that is not what was held.
    pub(super) fn cluster_reload(
        &mut self,
        node: &Node<U, S, R, M>,
        room: &R,
    ) -> Option<RoomItem<U, S, R, M>> {
        let mut now = HeldRoom::read(node, room, self.big_room, &self.ids);
        if self
            .held
            .get(room)
            .is_some_and(|h| (h.epoch, h.version) == (now.epoch, now.version))
        {
            return None;
        }
        let state = now.state(room);
        self.held.insert(room.clone(), now);
        Some(RoomItem::State(state))
    }

    /// Sends to the room's subscribers; a room nobody listens to any more is no longer held.
    pub(super) fn cluster_send(&mut self, room: &R, item: RoomItem<U, S, R, M>) {
        self.send(room, item);
        if !self.feeds.contains_key(room) {
            self.held.remove(room);
        }
    }

    /// The room's state as held (read and held if it was not: a subscriber is coming).
    pub(super) fn cluster_hold(
        &mut self,
        node: &Node<U, S, R, M>,
        room: &R,
    ) -> Arc<RoomState<U, S, R, M>> {
        if let Some(held) = self.held.get_mut(room) {
            return held.state(room);
        }
        let mut held = HeldRoom::read(node, room, self.big_room, &self.ids);
        let state = held.state(room);
        self.held.insert(room.clone(), held);
        state
    }

    /// The room's state: as held if it has subscribers here, else as the node has it now.
    pub(super) fn cluster_state(
        &mut self,
        node: &Node<U, S, R, M>,
        room: &R,
    ) -> Arc<RoomState<U, S, R, M>> {
        match self.held.get_mut(room) {
            Some(held) => held.state(room),
            None => HeldRoom::read(node, room, self.big_room, &self.ids).state(room),
        }
    }

    /// The room's occupancy: as held if it has subscribers here, else as the node has it now.
    pub(super) fn cluster_occupancy(
        &mut self,
        node: &Node<U, S, R, M>,
        room: &R,
    ) -> RoomOccupancy<R> {
        let of = |h: &HeldRoom<U, S, R, M>| {
            RoomOccupancy::new(room.clone(), h.epoch, h.version, h.occupancy)
                .with_big(h.listing.big())
        };
        match self.held.get(room) {
            Some(held) => of(held),
            None => of(&HeldRoom::read(node, room, self.big_room, &self.ids)),
        }
    }

    /// A window of the room: as held if it has subscribers here, else as the node has it now.
    pub(super) fn cluster_window(
        &mut self,
        node: &Node<U, S, R, M>,
        room: &R,
        window: Window,
    ) -> Arc<RoomWindow<U, S, R, M>> {
        match self.held.get_mut(room) {
            Some(held) => held.window(room, window),
            None => HeldRoom::read(node, room, self.big_room, &self.ids).window(room, window),
        }
    }
}
