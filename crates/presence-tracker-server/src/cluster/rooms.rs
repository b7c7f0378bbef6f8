//! Rooms cluster-wide: what each node derives from the room channel — every room's members
//! (a user's presence in a room is the highest of its sessions there, on every node) with
//! their sessions' metadata — and the room events it hands to its subscribers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use presence_tracker::{Metadata, Presence, RoomChange};
use redis::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::feed::{ClusterCause, ClusterEvent};
use super::id::{decode, decode_text, encode, encode_text, ClusterId};
use super::message::presence;
use super::node::Shared;
use super::redis_io::{num, text};
use super::status::{Counters, Part};
use super::ClusterError;

/// Room metadata the cluster can carry: a [`Metadata`] that serde writes and reads (as JSON
/// in Redis). Implemented for every such type.
pub trait ClusterMeta: Metadata + Serialize + DeserializeOwned {}

impl<M: Metadata + Serialize + DeserializeOwned> ClusterMeta for M {}

/// A member of a room, cluster-wide.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterRoomMember<S, M> {
    /// Its presence in the room: the highest of its sessions there, on every node.
    pub presence: Presence,
    /// Its sessions in the room, on every node, with their metadata, by session id.
    pub sessions: Vec<(S, Arc<M>)>,
}

impl<S: Clone, M> Clone for ClusterRoomMember<S, M> {
    fn clone(&self) -> Self {
        ClusterRoomMember {
            presence: self.presence,
            sessions: self.sessions.clone(),
        }
    }
}

/// A room, cluster-wide, as this node knows it.
#[derive(Debug)]
#[non_exhaustive]
pub struct ClusterRoom<U, S, M> {
    /// The room's history in Redis: new when its record was made (first member, or after it
    /// was forgotten or Redis was wiped).
    pub epoch: u64,
    /// The version of its last change within that history.
    pub version: u64,
    /// Its members.
    pub members: HashMap<U, ClusterRoomMember<S, M>>,
}

impl<U: Clone, S: Clone, M> Clone for ClusterRoom<U, S, M> {
    fn clone(&self) -> Self {
        ClusterRoom {
            epoch: self.epoch,
            version: self.version,
            members: self.members.clone(),
        }
    }
}

/// A change of one member of one room, cluster-wide: `from` is what this node held before.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterRoomEvent<U, S, R, M> {
    /// The room.
    pub room: R,
    /// The member.
    pub user: U,
    /// What happened.
    pub change: RoomChange,
    /// Its presence in the room before (`Offline` if it was not there).
    pub from: Presence,
    /// Its presence in the room now (`Offline` once it left).
    pub to: Presence,
    /// Its sessions in the room now, with their metadata (empty once it left).
    pub sessions: Vec<(S, Arc<M>)>,
    /// The room's history.
    pub epoch: u64,
    /// The room's version after this change.
    pub version: u64,
    /// Why.
    pub cause: ClusterCause,
}

impl<U: Clone, S: Clone, R: Clone, M> Clone for ClusterRoomEvent<U, S, R, M> {
    fn clone(&self) -> Self {
        ClusterRoomEvent {
            room: self.room.clone(),
            user: self.user.clone(),
            change: self.change,
            from: self.from,
            to: self.to,
            sessions: self.sessions.clone(),
            epoch: self.epoch,
            version: self.version,
            cause: self.cause,
        }
    }
}

/// Metadata as it is stored: JSON, percent-encoded.
pub(crate) fn encode_meta<M: Serialize + ?Sized>(meta: &M) -> String {
    encode_text(&serde_json::to_string(meta).unwrap_or_else(|_| "null".into()))
}

fn decode_meta<M: DeserializeOwned>(encoded: &str) -> Option<M> {
    serde_json::from_str(&decode_text(encoded)?).ok()
}

/// A member's sessions as stored or published: `session:meta,...`, both encoded; with each
/// session's encoded metadata kept to compare.
type Sessions<S, M> = Vec<(S, Arc<M>, String)>;

fn parse_sessions<S: ClusterId, M: ClusterMeta>(list: &str) -> Option<Sessions<S, M>> {
    if list.is_empty() {
        return Some(Vec::new());
    }
    list.split(',')
        .map(|item| {
            let (s, m) = item.split_once(':')?;
            Some((
                decode::<S>(s)?,
                Arc::new(decode_meta::<M>(m)?),
                m.to_owned(),
            ))
        })
        .collect()
}

/// A room message: `1|room|epoch|version|user|change|from|to|at|cause|node|sessions`.
struct RoomMessage<'a, S, M> {
    room: &'a str,
    epoch: u64,
    version: u64,
    user: &'a str,
    change: RoomChange,
    to: Presence,
    cause: ClusterCause,
    sessions: Sessions<S, M>,
}

impl<'a, S: ClusterId, M: ClusterMeta> RoomMessage<'a, S, M> {
    fn parse(text: &'a str) -> Option<Self> {
        let mut f = text.splitn(12, '|');
        if f.next()? != "1" {
            return None;
        }
        let room = f.next().filter(|r| !r.is_empty())?;
        let epoch = f.next()?.parse().ok()?;
        let version = f.next()?.parse().ok()?;
        let user = f.next().filter(|u| !u.is_empty())?;
        let change = match f.next()? {
            "j" => RoomChange::Joined,
            "p" => RoomChange::Presence,
            "u" => RoomChange::Updated,
            "l" => RoomChange::Left,
            _ => return None,
        };
        let _from = presence(f.next()?.parse().ok()?)?;
        let to = presence(f.next()?.parse().ok()?)?;
        let _at: u64 = f.next()?.parse().ok()?;
        let cause = match f.next()? {
            "j" => ClusterCause::Update,
            "l" => ClusterCause::Drop,
            "x" => ClusterCause::Expired,
            _ => return None,
        };
        let _node = f.next()?;
        let sessions = parse_sessions(f.next()?)?;
        Some(RoomMessage {
            room,
            epoch,
            version,
            user,
            change,
            to,
            cause,
            sessions,
        })
    }
}

/// A member as held here.
struct Held<S, M> {
    presence: Presence,
    sessions: Sessions<S, M>,
}

struct HeldRoom<U, S, M> {
    epoch: u64,
    version: u64,
    members: HashMap<U, Held<S, M>>,
}

/// The rooms this node knows (rooms without members are forgotten: a later message of one
/// reads it again unless it starts a new history).
pub(crate) struct RoomView<U, S, R, M> {
    rooms: HashMap<R, HeldRoom<U, S, M>>,
}

impl<U, S, R, M> std::fmt::Debug for RoomView<U, S, R, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomView")
            .field("rooms", &self.rooms.len())
            .finish()
    }
}

impl<U: ClusterId, S: ClusterId, R: ClusterId, M: ClusterMeta> RoomView<U, S, R, M> {
    pub(crate) fn new() -> Self {
        RoomView {
            rooms: HashMap::new(),
        }
    }

    pub(crate) fn get(&self, room: &R) -> Option<ClusterRoom<U, S, M>> {
        let held = self.rooms.get(room)?;
        Some(ClusterRoom {
            epoch: held.epoch,
            version: held.version,
            members: held
                .members
                .iter()
                .map(|(u, m)| {
                    let member = ClusterRoomMember {
                        presence: m.presence,
                        sessions: m
                            .sessions
                            .iter()
                            .map(|(s, m, _)| (s.clone(), Arc::clone(m)))
                            .collect(),
                    };
                    (u.clone(), member)
                })
                .collect(),
        })
    }

    /// Whether a message is the next of its room (`Some(true)`), old news (`Some(false)`), or
    /// leaves a gap (`None`: read the room again).
    fn next(&self, room: &R, epoch: u64, version: u64) -> Option<bool> {
        match self.rooms.get(room) {
            None => (version == 1).then_some(true),
            Some(h) if epoch == h.epoch && version <= h.version => Some(false),
            Some(h) if epoch == h.epoch && version == h.version + 1 => Some(true),
            Some(h) if epoch < h.epoch => Some(false),
            Some(_) if version == 1 => Some(true),
            Some(_) => None,
        }
    }

    fn apply(
        &mut self,
        room: R,
        user: U,
        m: RoomMessage<'_, S, M>,
    ) -> ClusterRoomEvent<U, S, R, M> {
        let held = self.rooms.entry(room.clone()).or_insert_with(|| HeldRoom {
            epoch: m.epoch,
            version: 0,
            members: HashMap::new(),
        });
        if held.epoch != m.epoch {
            held.members.clear();
            held.epoch = m.epoch;
        }
        held.version = m.version;
        let from = held
            .members
            .get(&user)
            .map_or(Presence::Offline, |h| h.presence);
        let sessions = m
            .sessions
            .iter()
            .map(|(s, meta, _)| (s.clone(), Arc::clone(meta)))
            .collect();
        if m.change == RoomChange::Left {
            held.members.remove(&user);
        } else {
            held.members.insert(
                user.clone(),
                Held {
                    presence: m.to,
                    sessions: m.sessions,
                },
            );
        }
        let event = ClusterRoomEvent {
            room: room.clone(),
            user,
            change: m.change,
            from,
            to: m.to,
            sessions,
            epoch: m.epoch,
            version: m.version,
            cause: m.cause,
        };
        if held.members.is_empty() {
            self.rooms.remove(&room);
        }
        event
    }

    /// A room as read from Redis (`None`: gone), unless this node holds a later version; the
    /// events that take what it held there.
    fn replace(
        &mut self,
        room: R,
        now: Option<HeldRoom<U, S, M>>,
    ) -> Vec<ClusterRoomEvent<U, S, R, M>> {
        if let (Some(h), Some(n)) = (self.rooms.get(&room), &now) {
            if (n.epoch, n.version) < (h.epoch, h.version) {
                return Vec::new();
            }
        }
        let before = self.rooms.remove(&room);
        let (epoch, version) = now
            .as_ref()
            .or(before.as_ref())
            .map_or((0, 0), |r| (r.epoch, r.version));
        let mut old = before.map(|r| r.members).unwrap_or_default();
        let empty = HashMap::new();
        let new = now.as_ref().map_or(&empty, |r| &r.members);
        let mut events = Vec::new();
        let users: HashSet<U> = old.keys().chain(new.keys()).cloned().collect();
        for user in users {
            let was = old.remove(&user);
            let is = new.get(&user);
            let change = match (&was, is) {
                (None, Some(_)) => RoomChange::Joined,
                (Some(_), None) => RoomChange::Left,
                (Some(w), Some(i)) if w.presence != i.presence => RoomChange::Presence,
                (Some(w), Some(i)) if !same(&w.sessions, &i.sessions) => RoomChange::Updated,
                _ => continue,
            };
            events.push(ClusterRoomEvent {
                room: room.clone(),
                user,
                change,
                from: was.map_or(Presence::Offline, |w| w.presence),
                to: is.map_or(Presence::Offline, |i| i.presence),
                sessions: is.map_or_else(Vec::new, |i| {
                    i.sessions
                        .iter()
                        .map(|(s, m, _)| (s.clone(), Arc::clone(m)))
                        .collect()
                }),
                epoch,
                version,
                cause: ClusterCause::Resync,
            });
        }
        if let Some(now) = now.filter(|r| !r.members.is_empty()) {
            self.rooms.insert(room, now);
        }
        events
    }
}

fn same<S: PartialEq, M>(a: &Sessions<S, M>, b: &Sessions<S, M>) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.2 == y.2)
}

impl<U: ClusterId, S: ClusterId, R: ClusterId, M: ClusterMeta> Shared<U, S, R, M> {
    pub(crate) async fn on_room_message(&self, payload: &[u8]) {
        let parsed = std::str::from_utf8(payload)
            .ok()
            .and_then(RoomMessage::<S, M>::parse);
        let Some(m) = parsed else {
            self.garbage(format!("message on {}", self.keys.room_channel));
            return;
        };
        let (Some(room), Some(user)) = (decode::<R>(m.room), decode::<U>(m.user)) else {
            self.garbage(format!(
                "room {:?} or user {:?} in a message",
                m.room, m.user
            ));
            return;
        };
        let encoded = m.room.to_owned();
        let event = {
            let mut view = self.rooms.lock();
            match view.next(&room, m.epoch, m.version) {
                Some(false) => return,
                Some(true) => {
                    Counters::add(&self.counters.messages, 1);
                    Some(view.apply(room.clone(), user, m))
                }
                None => None,
            }
        };
        match event {
            Some(e) => self.emit(ClusterEvent::Room(e)),
            None => {
                Counters::add(&self.counters.user_reads, 1);
                if let Err(e) = self.reread_room(room, &encoded).await {
                    self.failed(Part::Feed, e.to_string());
                }
            }
        }
    }

    /// Reads one room again: its version, its members, each member's sessions.
    async fn reread_room(&self, room: R, encoded: &str) -> Result<(), ClusterError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(self.keys.room(encoded))
            .arg(&["e", "v"]);
        pipe.cmd("HGETALL").arg(self.keys.room_members(encoded));
        let replies = self.io.query(&pipe, 2).await?;
        let head = match replies.first() {
            Some(Value::Array(f)) => (num(f.first()), num(f.get(1))),
            _ => (None, None),
        };
        let users: Vec<String> = match replies.get(1) {
            Some(Value::Array(items)) => items
                .chunks(2)
                .filter_map(|pair| text(pair.first()))
                .collect(),
            Some(Value::Map(pairs)) => pairs.iter().filter_map(|(k, _)| text(Some(k))).collect(),
            _ => Vec::new(),
        };
        let now = match head {
            (Some(epoch), Some(version)) => {
                let mut pipe = redis::pipe();
                for u in &users {
                    pipe.cmd("HGETALL").arg(self.keys.room_sessions(encoded, u));
                }
                let all = if users.is_empty() {
                    Vec::new()
                } else {
                    self.io.query(&pipe, users.len()).await?
                };
                let mut members = HashMap::new();
                for (u, reply) in users.iter().zip(all) {
                    let Some(user) = decode::<U>(u) else {
                        self.garbage(format!("member {u:?} of room {encoded:?}"));
                        continue;
                    };
                    if let Some(held) = self.member(reply) {
                        members.insert(user, held);
                    }
                }
                Some(HeldRoom {
                    epoch,
                    version,
                    members,
                })
            }
            _ => None,
        };
        let events = self.rooms.lock().replace(room, now);
        for e in events {
            self.emit(ClusterEvent::Room(e));
        }
        Ok(())
    }

    /// A member's sessions hash as held: its live entries.
    fn member(&self, reply: Value) -> Option<Held<S, M>> {
        let pairs: Vec<(String, String)> = match reply {
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|p| Some((text(p.first())?, text(p.get(1))?)))
                .collect(),
            Value::Map(pairs) => pairs
                .iter()
                .filter_map(|(k, v)| Some((text(Some(k))?, text(Some(v))?)))
                .collect(),
            _ => return None,
        };
        let mut best = Presence::Offline;
        let mut sessions = Vec::new();
        for (sid, entry) in pairs {
            let f: Vec<&str> = entry.split('|').collect();
            let parsed = (f.len() == 5)
                .then(|| {
                    let p = presence(f[2].parse().ok()?)?;
                    let meta = decode_meta::<M>(f[4])?;
                    Some((decode::<S>(&sid)?, p, meta, f[4].to_owned()))
                })
                .flatten();
            match parsed {
                Some((s, p, meta, raw)) => {
                    best = best.max(p);
                    sessions.push((s, Arc::new(meta), raw));
                }
                None => self.garbage(format!("room entry {sid:?}")),
            }
        }
        sessions.sort_by_key(|(s, _, _)| encode(s));
        (!sessions.is_empty()).then_some(Held {
            presence: best,
            sessions,
        })
    }

    /// Reads every room again (`SCAN` of the room hashes).
    pub(crate) async fn resync_rooms(&self) -> Result<(), ClusterError> {
        let pattern = self.keys.room_pattern();
        let mut cursor: u64 = 0;
        let mut seen = HashSet::new();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500);
            let (next, keys): (u64, Vec<String>) = self.io.cmd(&cmd).await?;
            for key in keys {
                let Some(encoded) = self.keys.room_of_key(&key) else {
                    self.garbage(format!("key {key:?}"));
                    continue;
                };
                let Some(room) = decode::<R>(encoded) else {
                    self.garbage(format!("key {key:?}"));
                    continue;
                };
                if seen.insert(room.clone()) {
                    self.reread_room(room, encoded).await?;
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let gone: Vec<R> = self
            .rooms
            .lock()
            .rooms
            .keys()
            .filter(|r| !seen.contains(*r))
            .cloned()
            .collect();
        for room in gone {
            let events = self.rooms.lock().replace(room, None);
            for e in events {
                self.emit(ClusterEvent::Room(e));
            }
        }
        Ok(())
    }
}
