//! Rooms: what a room's members see, and the metadata a session carries into a room.
//!
//! A session joins rooms (a document, a channel, a call) with metadata of the application's
//! type: a display name, a colour, a cursor. A user's presence in a room is the highest
//! published presence of its sessions *in that room*; the room publishes a [`RoomEvent`] when
//! a user appears in it, changes presence there, changes its sessions or their metadata, or
//! leaves it. Each room event carries the room's `epoch` and `version`: a client holding the
//! room at version `V` applies `V + 1`, `V + 2`, ... and asks for the room again on a gap or a
//! new epoch.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Presence, Timestamp};

/// Metadata a session carries into a room: anything the application wants its members to see
/// of it. The policy bounds its [`size`](Metadata::size) and how often it changes.
///
/// Implemented for `()` (no metadata), the string types and byte buffers; implement it for
/// your own type (a struct of display name and colour, a JSON value) by reporting the bytes it
/// costs to hold or send.
pub trait Metadata: fmt::Debug + Send + Sync + 'static {
    /// What [`Policy::max_metadata_bytes`](crate::Policy::max_metadata_bytes) counts: the bytes
    /// this value costs (its serialised length is a good measure).
    fn size(&self) -> usize;
}

impl Metadata for () {
    fn size(&self) -> usize {
        0
    }
}

macro_rules! sized_by_len {
    ($($t:ty),*) => {$(
        impl Metadata for $t {
            fn size(&self) -> usize {
                self.len()
            }
        }
    )*};
}

sized_by_len!(String, Box<str>, Arc<str>, Vec<u8>, Box<[u8]>, Arc<[u8]>);

/// What a [`RoomEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RoomChange {
    /// The user appeared in the room: its first session joined.
    Joined,
    /// The user's presence in the room changed.
    Presence,
    /// The user's sessions in the room, or their metadata, changed; its presence there did not.
    Updated,
    /// The user left the room: its last session there left or expired.
    Left,
}

/// One of a member's sessions in a room, with its metadata (shared, not copied: reads and
/// events hand out the same `Arc`).
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(bound(serialize = "S: Serialize, M: Serialize"))]
#[non_exhaustive]
pub struct RoomSession<S, M> {
    /// The session.
    pub session: S,
    /// Its metadata in this room.
    #[serde(serialize_with = "ser_shared")]
    pub meta: Arc<M>,
}

/// Serialises what an `Arc` points to (serde's `rc` feature, for the metadata fields).
pub(crate) fn ser_shared<M: Serialize, Ser: serde::Serializer>(
    meta: &Arc<M>,
    s: Ser,
) -> Result<Ser::Ok, Ser::Error> {
    M::serialize(meta, s)
}

impl<S: Clone, M> Clone for RoomSession<S, M> {
    fn clone(&self) -> Self {
        RoomSession {
            session: self.session.clone(),
            meta: Arc::clone(&self.meta),
        }
    }
}

/// A change of one user in one room: published exactly once, atomically with the session
/// change that caused it.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RoomEvent<U, S, R, M> {
    /// The room.
    pub room: R,
    /// The user.
    pub user: U,
    /// What happened.
    pub change: RoomChange,
    /// The user's presence in the room before (`Offline` if it was not there).
    pub from: Presence,
    /// The user's presence in the room after (`Offline` once it left).
    pub to: Presence,
    /// The user's sessions in the room after the change, with their metadata (empty once it
    /// left): a client replaces the member with this.
    pub sessions: Vec<RoomSession<S, M>>,
    /// When.
    pub at: Timestamp,
    /// The room's history: new each time the room is made (its first member joins), so a
    /// client holding an older epoch asks for the room again.
    pub epoch: u64,
    /// The room's version after this event: one more than the previous event's of the room.
    pub version: u64,
}

impl<U: Clone, S: Clone, R: Clone, M> Clone for RoomEvent<U, S, R, M> {
    fn clone(&self) -> Self {
        RoomEvent {
            room: self.room.clone(),
            user: self.user.clone(),
            change: self.change,
            from: self.from,
            to: self.to,
            sessions: self.sessions.clone(),
            at: self.at,
            epoch: self.epoch,
            version: self.version,
        }
    }
}

/// A member of a room, as [`Rooms::get`](crate::Rooms::get) reads it.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RoomMember<U, S, M> {
    /// The user.
    pub user: U,
    /// Its presence in the room: the highest published presence of its sessions there.
    pub presence: Presence,
    /// Its sessions in the room, with their metadata, in the order they joined.
    pub sessions: Vec<RoomSession<S, M>>,
}

impl<U: Clone, S: Clone, M> Clone for RoomMember<U, S, M> {
    fn clone(&self) -> Self {
        RoomMember {
            user: self.user.clone(),
            presence: self.presence,
            sessions: self.sessions.clone(),
        }
    }
}

/// A room's members as published, at one version: what a client loads before it applies
/// [`RoomEvent`]s from `version + 1` on.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RoomView<U, S, M> {
    /// The room's history (see [`RoomEvent::epoch`]).
    pub epoch: u64,
    /// The version of the last event applied.
    pub version: u64,
    /// The members, in no particular order.
    pub members: Vec<RoomMember<U, S, M>>,
}

impl<U: Clone, S: Clone, M> Clone for RoomView<U, S, M> {
    fn clone(&self) -> Self {
        RoomView {
            epoch: self.epoch,
            version: self.version,
            members: self.members.clone(),
        }
    }
}

/// A room's occupancy without its member list, for large rooms: O(1) to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RoomCounts {
    /// The room's history (see [`RoomEvent::epoch`]).
    pub epoch: u64,
    /// The version of the last event.
    pub version: u64,
    /// Members in the room by their presence there.
    pub users: crate::Counts,
    /// Sessions in the room (a member's tabs each count).
    pub sessions: usize,
}
