//! The wire protocol, version [`PROTOCOL`]: what a server sends its clients and what they send
//! back, as serde types (JSON on both transports).
//!
//! # The resync rule
//!
//! A client holds the presence of the users it shows *as of a version*. The server sends:
//!
//! 1. a [`State`] when the client connects, when it asks ([`ClientMessage::Resync`]), and
//!    whenever it fell too far behind: every online user it is sent (see
//!    [Interest](#interest-which-users-a-connection-is-sent)), with the hub's `epoch` and
//!    `version`;
//! 2. then [`Updates`]: the versions `from..=to` that came next, as the whole state (not a
//!    delta) of each user they changed, the latest of each. A server gathers what came within a
//!    few milliseconds into one message, so a burst of a thousand transitions is one message
//!    per client, never a backlog of a thousand.
//!
//! The client applies updates whose `from` is exactly the version after what it holds, and
//! then holds `to`. It asks for a state again, and replaces everything it had with it, when
//! updates skip a version or name another `epoch` (the server restarted: its versions and the
//! users' `seq` started again), and after every reconnect. A user whose `seq` is not above the
//! one the client holds for that user is old news: it is skipped.
//!
//! A client that falls behind (a slow network, a frozen tab) is sent a fresh [`State`] instead
//! of the backlog: it may miss intermediate presences, never the last one.
//!
//! # Interest: which users a connection is sent
//!
//! A connection names the users it shows, the whole list each time (as Slack's
//! `presence_sub`): [`Hello::users`], then [`ClientMessage::Subscribe`] to replace it. It is
//! sent a [`State`] of those users (the online ones) with `scope` `users`, then the updates of
//! those users only. Their versions are the hub's, so they skip the versions of everyone
//! else: a client of scope `users` does not treat `from > V + 1` as a gap; it skips updates
//! whose `to` is not above the version it holds (the state had them) and applies the rest. The
//! server never skips one of its users silently: a connection that fell behind, or that
//! subscribed anew, is sent a fresh state. A new `epoch` still means: ask for the state again.
//!
//! Every user (`scope` `all`, the rule above, gaps included) is sent only where the server
//! enables its all-users feed: to a hello with [`Hello::all_users`], or that names no users,
//! and to `{"type":"subscribe","all_users":true}`. Elsewhere those are refused (`forbidden`)
//! and a hello that names no users is sent a state of nobody. Subscriptions are bounded in
//! size (`limit`), and the application may hide users from a connection (`forbidden`, the rest
//! subscribed).
//!
//! Numbers on the wire fit a JavaScript number: `epoch` is below 2^53, and versions and `seq`
//! would take centuries of transitions to get there.
//!
//! # Rooms
//!
//! A session joins rooms (a document, a channel) with metadata its members see
//! ([`ClientMessage::Join`], [`ClientMessage::Update`], [`ClientMessage::LeaveRoom`]); any
//! connection the application allows may also watch a room without being in it
//! ([`ClientMessage::Watch`]). A connection in a room, as a member or a watcher, is sent that
//! room's messages and no other room's. Each room is synced like the users, by its own rule:
//!
//! 1. a [`RoomState`] when the connection joins or watches the room, when it asks
//!    ([`ClientMessage::RoomResync`]), when it fell too far behind, and when the room's history
//!    starts anew (its `epoch` changes: the room emptied and filled again, or the server
//!    restarted): every member with its presence in the room and each of its sessions there
//!    with their metadata, with the room's `epoch` and `version`;
//! 2. then [`RoomUpdates`]: the room's versions `from..=to`, as the whole member (not a delta)
//!    for each member they changed, the latest of each, each with the version it came at.
//!
//! The client holds each room as of a version `V` and, for room updates of the same `epoch`:
//! ignores them if `to <= V` (it has them already); asks for the room again
//! ([`ClientMessage::RoomResync`]) if `from > V + 1` (a version skipped); otherwise applies the
//! members whose `version` is above `V` (replacing the member, or removing it when its
//! `presence` is `offline`) and then holds `to`. Room updates of another `epoch` mean the room's
//! history restarted: it asks for the room again. Updates for a room it holds no state of are
//! ignored (its state is on the way). A metadata change is one member update (`change`
//! `updated`), never a leave and a join.
//!
//! A server that could not give a connection some update (its buffer was full) may send the
//! room's connections a version check: room updates from `V + 1` to `V`, with no members. By
//! the rule above, a client holding `V` ignores it, and one behind asks for the room again.
//!
//! A watcher may ask for a room's occupancy instead of its members (`"view":"occupancy"` in
//! [`ClientMessage::Watch`]): it is sent [`RoomOccupancy`] messages, how many users and
//! sessions the room holds by presence, at most one per gathering window (the server's
//! linger, 50 ms by default) whatever the number of joins and leaves within it. Each is whole:
//! the client keeps the one of the highest `version` of an `epoch`, and takes any of another
//! `epoch`.
//!
//! A connection is sent a room in the view it watches it in, whether its session is in the room
//! or not; a member that does not watch its room is sent its members.
//!
//! ## Big rooms
//!
//! A room with more members than the server's bound ([`HubConfig::big_room`], 1,000 by
//! default) is big until it shrinks to three quarters of the bound. A big room's member list
//! goes only to connections that watch a window of it: every other connection sent the room in
//! the members view, its own members included, is sent its [`RoomOccupancy`] instead, by the
//! occupancy rule above, at most once per [`HubConfig::big_room_counts`] (1 s by default)
//! rather than once per gathering window. A client that holds a room's members and is sent its
//! occupancy drops the members (the room is too big to list); when the room is listed again, a
//! [`RoomState`] comes, and the rule for rooms applies from there.
//!
//! A window (`{"type":"watch","room":..,"view":"window","limit":50}`, with `"after":KEY` to page
//! on) is the first `limit` members in the room's order ([`RoomWindow`]: by presence, then by
//! how long each member has had it) whose key is above `after`. The connection is sent the
//! room's occupancy (by the occupancy rule) and a [`RoomWindow`] whenever the members in the
//! window changed, at most one of each per gathering window: whole, the client keeps the one of
//! the highest `version` of an `epoch` and takes any of another `epoch`. A change outside the
//! window (a join at the end of a busy room) sends the window nothing. A window is for any
//! room, big or not; `limit` is bounded by [`HubConfig::max_window`] (100 by default), a larger
//! one refused (`limit`).
//!
//! [`HubConfig::big_room`]: crate::HubConfig::big_room
//! [`HubConfig::max_window`]: crate::HubConfig::max_window
//! [`HubConfig::big_room_counts`]: crate::HubConfig::big_room_counts
//!
//! A connection's rooms survive its reconnects: the [`Hello`] names the rooms the session is in
//! after it (`rooms`), with their metadata, so a reload or a reconnect that names the same rooms
//! changes nothing anyone sees; rooms the hello leaves out are left.
//!
//! Rooms came into protocol 1 as additions: a client that never joins or watches a room is
//! sent nothing new, and nothing it sends means anything else. A client of rooms talking to a
//! server without them has its room messages refused (`bad_message`).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use presence_tracker::{Activity, Presence, RoomChange, Timestamp};
use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. A [`ClientMessage::Hello`] naming another is refused.
pub const PROTOCOL: u32 = 1;

/// One user as clients see it: the whole state, so that applying the newest wins whatever
/// order updates took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserState<U> {
    /// The user.
    pub user: U,
    /// Its presence: the highest of its sessions'.
    pub presence: Presence,
    /// Its live sessions (tabs, devices); 0 when offline.
    pub sessions: usize,
    /// When it was last seen (its latest connect or heartbeat).
    pub last_seen: Timestamp,
    /// The user's event sequence number: strictly increasing per user within an epoch.
    pub seq: u64,
}

impl<U> UserState<U> {
    /// A user's state.
    pub fn new(
        user: U,
        presence: Presence,
        sessions: usize,
        last_seen: Timestamp,
        seq: u64,
    ) -> Self {
        UserState {
            user,
            presence,
            sessions,
            last_seen,
            seq,
        }
    }
}

/// Which users a [`State`], and the [`Updates`] after it, cover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Scope {
    /// Every user: the updates after the state come at every version (`from` is the version
    /// after the one held), so a client detects a skipped version.
    #[default]
    All,
    /// The users the connection subscribed to ([`ClientMessage::Subscribe`], [`Hello::users`]):
    /// the updates after the state carry the hub's versions of those users only, so versions
    /// skip; the server sends a fresh state whenever the connection fell behind.
    Users,
}

/// Everything a client needs to render: the online users it is sent (every one, or those it
/// subscribed to: see `scope`), as of `version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct State<U> {
    /// The protocol version, [`PROTOCOL`].
    pub protocol: u32,
    /// The hub's epoch: new at every start of the server.
    pub epoch: u64,
    /// The version this state is at; the next update carries a higher version (`version + 1`
    /// when `scope` is `all`).
    pub version: u64,
    /// The server's time, so a client can say "last seen 2 min ago" without trusting its clock.
    pub now: Timestamp,
    /// Which users this state and the updates after it cover (absent: `all`, as servers before
    /// interest sent).
    #[serde(default)]
    pub scope: Scope,
    /// Every user of the scope that is not offline, in no particular order.
    pub users: Vec<UserState<U>>,
    /// This state's JSON as a server message, made once however many connections are sent it.
    #[serde(skip)]
    pub(crate) encoded: Encoded<Bytes>,
}

impl<U> State<U> {
    /// A state.
    pub fn new(
        epoch: u64,
        version: u64,
        now: Timestamp,
        scope: Scope,
        users: Vec<UserState<U>>,
    ) -> Self {
        State {
            protocol: PROTOCOL,
            epoch,
            version,
            now,
            scope,
            users,
            encoded: Encoded::default(),
        }
    }
}

impl<U: Serialize> State<U> {
    /// The server message `{"type":"state",..}` of this state as JSON, made on the first call
    /// and shared (a clone of [`Bytes`] is a reference count) by every later one.
    ///
    /// # Errors
    ///
    /// `U`'s serialisation failed.
    pub fn to_json(&self) -> Result<Bytes, serde_json::Error> {
        #[derive(Serialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Tagged<'a, U> {
            State(&'a State<U>),
        }
        self.encoded
            .get_or_try_init(|| serde_json::to_vec(&Tagged::State(self)).map(Bytes::from))
    }
}

/// A message's JSON, made once and shared: equal to every other (it is a cache of what the
/// value it sits in serialises to).
#[derive(Clone, Default)]
pub(crate) struct Encoded<T>(std::sync::OnceLock<T>);

impl<T: Clone> Encoded<T> {
    pub(crate) fn get_or_try_init<E>(&self, make: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        if let Some(done) = self.0.get() {
            return Ok(done.clone());
        }
        let made = make()?;
        // Two threads may both make it: the first stored is kept, and both are the same bytes.
        Ok(self.0.get_or_init(|| made).clone())
    }
}

impl<T> PartialEq for Encoded<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Encoded<T> {}

impl<T> std::fmt::Debug for Encoded<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Encoded"
        } else {
            "NotEncoded"
        })
    }
}

/// The versions `from..=to` that came after what a client holds: the latest state of each
/// user they changed, in the order of their last change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Updates<U> {
    /// The hub's epoch.
    pub epoch: u64,
    /// The first version in this message: the one after what the client holds.
    pub from: u64,
    /// The last version in this message: what the client holds after applying it.
    pub to: u64,
    /// The users those versions changed, as they are at `to` (`presence` is `offline` for a
    /// user who left).
    pub users: Vec<UserState<U>>,
}

/// One published change: one user's new state, at the next version. What the hub publishes;
/// clients receive them gathered as [`Updates`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Update<U> {
    /// The hub's epoch.
    pub epoch: u64,
    /// This update's version: the previous one's plus one.
    pub version: u64,
    /// The user as it is now (`presence` is `offline` when it left).
    pub user: UserState<U>,
    /// The `updates` message of this update alone, and where the user's JSON starts in it.
    #[serde(skip)]
    pub(crate) encoded: Encoded<(Bytes, usize)>,
}

impl<U> Update<U> {
    /// An update.
    pub fn new(epoch: u64, version: u64, user: UserState<U>) -> Self {
        Update {
            epoch,
            version,
            user,
            encoded: Encoded::default(),
        }
    }
}

impl<U: Serialize> Update<U> {
    /// The server message `{"type":"updates","epoch":..,"from":v,"to":v,"users":[..]}` of
    /// this update alone, as JSON: made on the first call, shared by every later one.
    ///
    /// # Errors
    ///
    /// `U`'s serialisation failed.
    pub fn to_json(&self) -> Result<Bytes, serde_json::Error> {
        self.encoded().map(|(json, _)| json)
    }

    /// The user's JSON (`{"user":..,"presence":..}`), a slice of [`to_json`](Self::to_json)'s
    /// bytes: what a gathered message is spliced from.
    ///
    /// # Errors
    ///
    /// `U`'s serialisation failed.
    pub(crate) fn user_json(&self) -> Result<Bytes, serde_json::Error> {
        self.encoded()
            .map(|(json, start)| json.slice(start..json.len() - UPDATES_TAIL.len()))
    }

    fn encoded(&self) -> Result<(Bytes, usize), serde_json::Error> {
        self.encoded.get_or_try_init(|| {
            let mut json = updates_head(self.epoch, self.version, self.version).into_bytes();
            let start = json.len();
            serde_json::to_writer(&mut json, &self.user)?;
            json.extend_from_slice(UPDATES_TAIL.as_bytes());
            Ok((Bytes::from(json), start))
        })
    }
}

/// The start of an `updates` message, up to its first user.
pub(crate) fn updates_head(epoch: u64, from: u64, to: u64) -> String {
    format!(r#"{{"type":"updates","epoch":{epoch},"from":{from},"to":{to},"users":["#)
}

/// The end of an `updates` message, after its last user.
pub(crate) const UPDATES_TAIL: &str = "]}";

/// One session of a room's member, with its metadata there (shared with the hub, not copied).
///
/// On the wire, `session` is the session's [`MemberHandle`] where the hub gives one (its
/// [`MemberIds`] are opaque, the default), and the session's id otherwise.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de>, M: Deserialize<'de>"))]
#[non_exhaustive]
pub struct MemberSession<S, M> {
    /// The session (a tab's id). What a client reads here is its handle, when it has one.
    pub session: S,
    /// Its metadata in the room.
    pub meta: Arc<M>,
    /// What clients are shown instead of `session` (`None`: `session` itself).
    #[serde(skip)]
    handle: Option<MemberHandle>,
}

impl<S, M> MemberSession<S, M> {
    /// A session with its metadata, shown to clients by its id.
    pub fn new(session: S, meta: Arc<M>) -> Self {
        MemberSession {
            session,
            meta,
            handle: None,
        }
    }

    /// A session with its metadata, shown to clients as `ids` show it.
    pub fn shown(session: S, meta: Arc<M>, ids: &MemberIds) -> Self
    where
        S: Hash,
    {
        let handle = ids.handle(&session);
        MemberSession {
            session,
            meta,
            handle,
        }
    }

    /// What clients are shown instead of the session's id, if anything.
    pub fn handle(&self) -> Option<MemberHandle> {
        self.handle
    }
}

impl<S: Clone, M> Clone for MemberSession<S, M> {
    fn clone(&self) -> Self {
        MemberSession {
            session: self.session.clone(),
            meta: Arc::clone(&self.meta),
            handle: self.handle,
        }
    }
}

/// Equal when the sessions and their metadata are: the handle follows from the session.
impl<S: PartialEq, M: PartialEq> PartialEq for MemberSession<S, M> {
    fn eq(&self, other: &Self) -> bool {
        self.session == other.session && self.meta == other.meta
    }
}

impl<S: Eq, M: Eq> Eq for MemberSession<S, M> {}

impl<S: Serialize, M: Serialize> Serialize for MemberSession<S, M> {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("MemberSession", 2)?;
        match &self.handle {
            Some(handle) => out.serialize_field("session", handle)?,
            None => out.serialize_field("session", &self.session)?,
        }
        out.serialize_field("meta", &self.meta)?;
        out.end()
    }
}

/// How room states show sessions to clients: by an opaque handle (the default), or by their
/// ids ([`HubConfig::member_ids`](crate::HubConfig::member_ids)).
///
/// A session id is what a client presents to be that session again: one that other clients
/// read from a room could be taken once its session ends (a later hello naming it as another
/// user's session is its own), and an application may put something in it that others are not
/// to see. A handle is a keyed hash of the id (SipHash-2-4 under a 128-bit key, shown as 16 hex
/// digits): the same session has the same handle in every room and message of one hub, and
/// nothing tells the id from it. A connection is told its own session's handle (the `welcome`
/// message, [`Welcome`]), so its client recognises itself in a room.
///
/// [`opaque`](Self::opaque) draws a key for each hub: handles change when a node restarts, and
/// differ between the nodes of a cluster (a client that reconnects to another node is sent
/// every room whole, with its new handles). [`keyed`](Self::keyed) takes the key, so that nodes
/// sharing it (and built by the same compiler, which fixes how an id is hashed) agree.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MemberIds {
    key: Option<(u64, u64)>,
}

impl MemberIds {
    /// Handles under a key drawn from the operating system's randomness.
    pub fn opaque() -> Self {
        let mut key = [0u8; 16];
        if getrandom::fill(&mut key).is_err() {
            // No randomness from the system (it never happens on the platforms tokio runs
            // on): the standard library's per-process hash keys instead.
            use std::hash::BuildHasher;
            let state = std::collections::hash_map::RandomState::new();
            key[..8].copy_from_slice(&state.hash_one(1u8).to_le_bytes());
            key[8..].copy_from_slice(&state.hash_one(2u8).to_le_bytes());
        }
        MemberIds::keyed(key)
    }

    /// Handles under this key (keep it secret: with it, a handle can be checked against
    /// guessed ids).
    pub fn keyed(key: [u8; 16]) -> Self {
        let (k0, k1) = key.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        MemberIds {
            key: Some((word(k0), word(k1))),
        }
    }

    /// Sessions shown by their ids, as servers before handles showed them: for applications
    /// whose session ids are not secret (the server assigns them, and a client cannot claim
    /// another's).
    pub fn raw() -> Self {
        MemberIds { key: None }
    }

    /// Whether sessions are shown by handles.
    pub fn is_opaque(&self) -> bool {
        self.key.is_some()
    }

    /// The handle `session` is shown by (`None` for raw ids).
    pub fn handle<S: Hash + ?Sized>(&self, session: &S) -> Option<MemberHandle> {
        let (k0, k1) = self.key?;
        let mut hasher = siphasher::sip::SipHasher24::new_with_keys(k0, k1);
        session.hash(&mut hasher);
        Some(MemberHandle(hasher.finish()))
    }
}

impl Default for MemberIds {
    /// [`MemberIds::opaque`].
    fn default() -> Self {
        MemberIds::opaque()
    }
}

/// The key is not shown.
impl std::fmt::Debug for MemberIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_opaque() {
            "MemberIds::Opaque"
        } else {
            "MemberIds::Raw"
        })
    }
}

/// What clients are shown instead of a session's id (see [`MemberIds`]): 16 lowercase hex
/// digits on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberHandle(u64);

impl std::fmt::Display for MemberHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for MemberHandle {
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        serializer.collect_str(self)
    }
}

/// The first message to a connection with a session, where room states show sessions by
/// handle: the handle its own session is shown by, so that its client recognises itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Welcome {
    /// The connection's session as room states show it.
    pub session: String,
}

impl Welcome {
    /// The welcome of a session shown by `handle`.
    pub fn new(handle: MemberHandle) -> Self {
        Welcome {
            session: handle.to_string(),
        }
    }
}

/// A member of a room as clients see it: the whole member, so that applying the newest wins.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "U: Deserialize<'de>, S: Deserialize<'de>, M: Deserialize<'de>"))]
#[non_exhaustive]
pub struct Member<U, S, M> {
    /// The user.
    pub user: U,
    /// Its presence in the room: the highest of its sessions there.
    pub presence: Presence,
    /// Its sessions in the room with their metadata, in the order they joined.
    pub sessions: Vec<MemberSession<S, M>>,
}

impl<U: Clone, S: Clone, M> Clone for Member<U, S, M> {
    fn clone(&self) -> Self {
        Member {
            user: self.user.clone(),
            presence: self.presence,
            sessions: self.sessions.clone(),
        }
    }
}

/// A room's members as of `version`: what a client replaces what it holds of the room with.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    deserialize = "U: Deserialize<'de>, S: Deserialize<'de>, R: Deserialize<'de>, M: Deserialize<'de>"
))]
#[non_exhaustive]
pub struct RoomState<U, S, R, M> {
    /// The room.
    pub room: R,
    /// The room's history as the server shows it: new when the room empties and fills again,
    /// and at every start of the server; `0` for a room nobody is in.
    pub epoch: u64,
    /// The version this state is at; the room's next update carries `version + 1`.
    pub version: u64,
    /// Every member, in no particular order.
    pub members: Vec<Member<U, S, M>>,
    /// Whether the room is big (more members than the hub's
    /// [`big_room`](crate::HubConfig::big_room)): then the integrations list it only to
    /// connections that ask for a [`RoomView::Window`], and count it to the others. Not on the
    /// wire.
    #[serde(skip)]
    pub big: bool,
    /// Its `room_state` message's JSON, made once and shared.
    #[serde(skip)]
    pub(crate) encoded: Encoded<Bytes>,
}

impl<U: Clone, S: Clone, R: Clone, M> Clone for RoomState<U, S, R, M> {
    fn clone(&self) -> Self {
        RoomState {
            room: self.room.clone(),
            epoch: self.epoch,
            version: self.version,
            members: self.members.clone(),
            big: self.big,
            encoded: self.encoded.clone(),
        }
    }
}

/// One member's change in a room, at the room's version `version`: the member as it is after.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "U: Deserialize<'de>, S: Deserialize<'de>, M: Deserialize<'de>"))]
#[non_exhaustive]
pub struct MemberChange<U, S, M> {
    /// The room's version this change came at.
    pub version: u64,
    /// What happened: `joined`, `presence` (its presence in the room changed), `updated` (its
    /// sessions there or their metadata changed, nothing else), `left`.
    pub change: RoomChange,
    /// The user.
    pub user: U,
    /// Its presence in the room after the change (`offline`: it left).
    pub presence: Presence,
    /// Its sessions in the room after the change, with their metadata (empty once it left).
    pub sessions: Vec<MemberSession<S, M>>,
}

impl<U: Clone, S: Clone, M> Clone for MemberChange<U, S, M> {
    fn clone(&self) -> Self {
        MemberChange {
            version: self.version,
            change: self.change,
            user: self.user.clone(),
            presence: self.presence,
            sessions: self.sessions.clone(),
        }
    }
}

/// One published change of a room: one member's, at the room's next version. What the hub
/// publishes; clients receive them gathered as [`RoomUpdates`].
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    deserialize = "U: Deserialize<'de>, S: Deserialize<'de>, R: Deserialize<'de>, M: Deserialize<'de>"
))]
#[non_exhaustive]
pub struct RoomUpdate<U, S, R, M> {
    /// The room.
    pub room: R,
    /// The room's epoch.
    pub epoch: u64,
    /// The member as it is after the change, with the version.
    pub member: MemberChange<U, S, M>,
    /// The room's occupancy after the change (not on the wire: [`RoomUpdates`] carry members).
    #[serde(skip)]
    pub occupancy: Occupancy,
    /// Whether the room is big after the change (see [`RoomState::big`]). Not on the wire.
    #[serde(skip)]
    pub big: bool,
    /// `member`'s JSON, made once and shared by every batch that carries it.
    #[serde(skip)]
    pub(crate) encoded: Encoded<Bytes>,
}

/// A room's versions `from..=to` that came after what a client holds of it: the latest change
/// of each member they changed, in the order of their last change.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    deserialize = "U: Deserialize<'de>, S: Deserialize<'de>, R: Deserialize<'de>, M: Deserialize<'de>"
))]
#[non_exhaustive]
pub struct RoomUpdates<U, S, R, M> {
    /// The room.
    pub room: R,
    /// The room's epoch.
    pub epoch: u64,
    /// The first version in this message.
    pub from: u64,
    /// The last version in this message: what the client holds after applying it.
    pub to: u64,
    /// The members those versions changed, each as it is after its last change here.
    pub members: Vec<MemberChange<U, S, M>>,
}

impl<U: Clone, S: Clone, R: Clone, M> Clone for RoomUpdates<U, S, R, M> {
    fn clone(&self) -> Self {
        RoomUpdates {
            room: self.room.clone(),
            epoch: self.epoch,
            from: self.from,
            to: self.to,
            members: self.members.clone(),
        }
    }
}

impl<U, S: Serialize, R, M: Serialize> RoomUpdate<U, S, R, M>
where
    U: Serialize,
{
    /// The member's JSON, made once.
    pub(crate) fn member_json(&self) -> Result<Bytes, serde_json::Error> {
        self.encoded
            .get_or_try_init(|| serde_json::to_vec(&self.member).map(Bytes::from))
    }
}

/// How a connection is sent a room it watches: its members (the default), or only how many
/// there are ([`RoomOccupancy`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RoomView {
    /// Every member with its sessions: [`RoomState`], then [`RoomUpdates`].
    #[default]
    Members,
    /// The counts only: [`RoomOccupancy`], at most one per gathering window.
    Occupancy,
    /// A window of the members, the first `limit` in [`RoomWindow`]'s order after a key
    /// (`limit` and `after` in [`ClientMessage::Watch`]), whole each time it changes, with the
    /// room's [`RoomOccupancy`]: how a big room is listed.
    Window,
}

/// Which members of a room a connection that watches a [`RoomView::Window`] is sent: the
/// first `limit` whose key is above `after` (from the first member with no `after`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Window {
    /// How many members at most (at least 1; the server bounds it, 100 by default).
    pub limit: usize,
    /// The key of the member the window starts after (the last `key` of the window before,
    /// to page on); `None` from the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

impl Window {
    /// The first `limit` members.
    pub fn first(limit: usize) -> Self {
        Window { limit, after: None }
    }

    /// The first `limit` members after the one of key `after`.
    pub fn after(limit: usize, after: u64) -> Self {
        Window {
            limit,
            after: Some(after),
        }
    }
}

/// A member of a [`RoomWindow`], with its key (its place in the room's order).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "U: Deserialize<'de>, S: Deserialize<'de>, M: Deserialize<'de>"))]
#[non_exhaustive]
pub struct WindowMember<U, S, M> {
    /// Its place in the room's order: the members of a window come by increasing key.
    pub key: u64,
    /// The user.
    pub user: U,
    /// Its presence in the room.
    pub presence: Presence,
    /// Its sessions in the room with their metadata.
    pub sessions: Vec<MemberSession<S, M>>,
}

impl<U: Clone, S: Clone, M> Clone for WindowMember<U, S, M> {
    fn clone(&self) -> Self {
        WindowMember {
            key: self.key,
            user: self.user.clone(),
            presence: self.presence,
            sessions: self.sessions.clone(),
        }
    }
}

/// Some of a room's members, in the room's order, as of `version` of its `epoch`: what a
/// connection that watches the room's [`RoomView::Window`] is sent, whole, at most once per
/// gathering window and only when the members in it changed (its [`RoomOccupancy`] comes as
/// its own message).
///
/// The order is by presence (active first, then idle, away, stale), then by how long a member
/// has had that presence (longest first): a member that joins, or whose presence changes, goes
/// to the end of its presence's members, so a window of a busy room moves only when its own
/// members change. Each member carries its `key` in that order, below 2^53; the next window
/// starts `after` the last key of this one.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    deserialize = "U: Deserialize<'de>, S: Deserialize<'de>, R: Deserialize<'de>, M: Deserialize<'de>"
))]
#[non_exhaustive]
pub struct RoomWindow<U, S, R, M> {
    /// The room.
    pub room: R,
    /// The room's epoch (`0` for a room nobody is in).
    pub epoch: u64,
    /// The room's version this window shows.
    pub version: u64,
    /// The key the window starts after, as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// How many members it holds at most, as asked.
    pub limit: usize,
    /// The members, by increasing key.
    pub members: Vec<WindowMember<U, S, M>>,
    /// Whether the room has members after these.
    pub more: bool,
    /// Its `room_window` message's JSON, made once and shared.
    #[serde(skip)]
    pub(crate) encoded: Encoded<Bytes>,
}

impl<U: Clone, S: Clone, R: Clone, M> Clone for RoomWindow<U, S, R, M> {
    fn clone(&self) -> Self {
        RoomWindow {
            room: self.room.clone(),
            epoch: self.epoch,
            version: self.version,
            after: self.after,
            limit: self.limit,
            members: self.members.clone(),
            more: self.more,
            encoded: self.encoded.clone(),
        }
    }
}

impl<U, S, R, M> RoomWindow<U, S, R, M> {
    /// The window `window` of `room` at `version` of `epoch`.
    pub fn new(
        room: R,
        epoch: u64,
        version: u64,
        window: Window,
        members: Vec<WindowMember<U, S, M>>,
        more: bool,
    ) -> Self {
        RoomWindow {
            room,
            epoch,
            version,
            after: window.after,
            limit: window.limit,
            members,
            more,
            encoded: Encoded::default(),
        }
    }

    /// Whether a member of key `key` is (or would be) among these: after `after`, and not past
    /// the last member when more come after it.
    pub(crate) fn covers(&self, key: u64) -> bool {
        self.after.is_none_or(|after| key > after)
            && (!self.more || self.members.last().is_some_and(|last| key <= last.key))
    }
}

impl<U: Serialize, S: Serialize, R: Serialize, M: Serialize> RoomWindow<U, S, R, M> {
    /// Its `room_window` message as JSON, made once and shared by every connection sent it.
    ///
    /// # Errors
    ///
    /// The serialisation of an id or of metadata failed.
    pub fn to_json(&self) -> Result<Bytes, serde_json::Error> {
        /// The window with its message's `type`.
        struct Tagged<'a, U, S, R, M>(&'a RoomWindow<U, S, R, M>);
        impl<U: Serialize, S: Serialize, R: Serialize, M: Serialize> Serialize for Tagged<'_, U, S, R, M> {
            fn serialize<Ser: serde::Serializer>(
                &self,
                serializer: Ser,
            ) -> Result<Ser::Ok, Ser::Error> {
                use serde::ser::SerializeStruct;
                let w = self.0;
                let mut m = serializer.serialize_struct("RoomWindow", 8)?;
                m.serialize_field("type", "room_window")?;
                m.serialize_field("room", &w.room)?;
                m.serialize_field("epoch", &w.epoch)?;
                m.serialize_field("version", &w.version)?;
                if let Some(after) = w.after {
                    m.serialize_field("after", &after)?;
                }
                m.serialize_field("limit", &w.limit)?;
                m.serialize_field("members", &w.members)?;
                m.serialize_field("more", &w.more)?;
                m.end()
            }
        }
        self.encoded
            .get_or_try_init(|| serde_json::to_vec(&Tagged(self)).map(Bytes::from))
    }
}

/// Counts by presence (`offline` is never counted: who left is not in the room).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ByPresence {
    /// Active.
    pub active: u64,
    /// Idle.
    pub idle: u64,
    /// Away.
    pub away: u64,
    /// Stale.
    pub stale: u64,
}

impl ByPresence {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.active
            .saturating_add(self.idle)
            .saturating_add(self.away)
            .saturating_add(self.stale)
    }

    fn slot(&mut self, presence: Presence) -> Option<&mut u64> {
        match presence {
            Presence::Active => Some(&mut self.active),
            Presence::Idle => Some(&mut self.idle),
            Presence::Away => Some(&mut self.away),
            Presence::Stale => Some(&mut self.stale),
            _ => None,
        }
    }

    fn add(&mut self, presence: Presence, n: u64) {
        if let Some(slot) = self.slot(presence) {
            *slot = slot.saturating_add(n);
        }
    }

    fn remove(&mut self, presence: Presence, n: u64) {
        if let Some(slot) = self.slot(presence) {
            *slot = slot.saturating_sub(n);
        }
    }
}

/// How many users and sessions a room holds, by presence: a session counts under its user's
/// presence in the room.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Occupancy {
    /// Users (members), by their presence in the room.
    pub users: ByPresence,
    /// Sessions in the room, by their user's presence there.
    pub sessions: ByPresence,
}

impl Occupancy {
    /// The occupancy of these members.
    pub fn of<'a, U: 'a, S: 'a, M: 'a>(
        members: impl IntoIterator<Item = &'a Member<U, S, M>>,
    ) -> Self {
        let mut occupancy = Occupancy::default();
        for m in members {
            occupancy.add(m.presence, m.sessions.len());
        }
        occupancy
    }

    /// A member of `presence` with `sessions` sessions came in.
    pub(crate) fn add(&mut self, presence: Presence, sessions: usize) {
        self.users.add(presence, 1);
        self.sessions
            .add(presence, u64::try_from(sessions).unwrap_or(u64::MAX));
    }

    /// A member of `presence` with `sessions` sessions went (or is about to be counted anew).
    pub(crate) fn remove(&mut self, presence: Presence, sessions: usize) {
        self.users.remove(presence, 1);
        self.sessions
            .remove(presence, u64::try_from(sessions).unwrap_or(u64::MAX));
    }
}

/// A room's occupancy as of `version` of its `epoch`: what a connection that watches the room
/// with [`RoomView::Occupancy`] is sent, whole each time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
#[non_exhaustive]
pub struct RoomOccupancy<R> {
    /// The room.
    pub room: R,
    /// The room's epoch.
    pub epoch: u64,
    /// The room's version this counts.
    pub version: u64,
    /// Users, by presence in the room.
    pub users: ByPresence,
    /// Sessions, by their user's presence in the room.
    pub sessions: ByPresence,
    /// Whether the room is big (see [`RoomState::big`]). Not on the wire.
    #[serde(skip)]
    pub big: bool,
}

impl<R> RoomOccupancy<R> {
    /// Whether `other` counts the same as this in the same epoch (whatever its version): then
    /// a client holding this has nothing to learn from it.
    pub fn counts_as(&self, other: &RoomOccupancy<R>) -> bool {
        (self.epoch, self.users, self.sessions) == (other.epoch, other.users, other.sessions)
    }

    /// The occupancy of `room` at `version` of `epoch`.
    pub fn new(room: R, epoch: u64, version: u64, occupancy: Occupancy) -> Self {
        RoomOccupancy {
            room,
            epoch,
            version,
            users: occupancy.users,
            sessions: occupancy.sessions,
            big: false,
        }
    }

    /// The same, saying whether the room is big.
    pub fn with_big(mut self, big: bool) -> Self {
        self.big = big;
        self
    }
}

/// A refusal: the client sent something the server will not act on. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Refusal {
    /// A stable, machine-readable code: `unknown_session`, `bad_message`, `unauthorized`,
    /// `session_taken`, `limit`, `protocol`, `watch_only`; for rooms `not_in_room`,
    /// `room_full`, `metadata_too_large`, `metadata_too_frequent` (see `retry_after_ms`),
    /// `forbidden` (the application does not let this connection into the room); `busy` for
    /// a Socket.IO handshake over the node's admission rate (see `retry_after_ms`);
    /// `rate_limited` for the first message over the connection's
    /// [rate](crate::HubConfig::client_rate) (see `retry_after_ms`; those after it, until one
    /// is taken, are dropped without an answer).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The room the refused message named, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// When the same message would be accepted, in milliseconds (`metadata_too_frequent`,
    /// `busy`, `rate_limited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Refusal {
    /// A refusal with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Refusal {
            code: code.into(),
            message: message.into(),
            room: None,
            retry_after_ms: None,
        }
    }

    /// The same refusal, naming the room the refused message was about.
    pub fn in_room(mut self, room: impl Into<String>) -> Self {
        self.room = Some(room.into());
        self
    }

    /// The refusal of a connection over the node's [`Admission`](crate::Admission) rate: code
    /// `busy`, with `retry_after_ms` (come back then, with jitter).
    pub fn busy(busy: crate::Busy) -> Self {
        let mut refusal = Refusal::new("busy", "the server is admitting others: come back later");
        let ms = busy.retry_after.as_micros().div_ceil(1000);
        refusal.retry_after_ms = Some(u64::try_from(ms).unwrap_or(u64::MAX));
        refusal
    }

    /// The refusal of a message over the connection's [rate](crate::HubConfig::client_rate):
    /// code `rate_limited`, with `retry_after_ms`.
    pub fn rate_limited(retry_after: std::time::Duration) -> Self {
        let mut refusal = Refusal::new(
            "rate_limited",
            "too many messages: this one and those until the retry changed nothing",
        );
        let ms = retry_after.as_micros().div_ceil(1000);
        refusal.retry_after_ms = Some(u64::try_from(ms).unwrap_or(u64::MAX));
        refusal
    }

    /// The refusal for a tracker error: its code, and its message (which never echoes ids).
    pub fn from_error(error: &presence_tracker::Error) -> Self {
        use presence_tracker::Error;
        let code = match error {
            Error::UnknownSession => "unknown_session",
            Error::SessionOwnedByOtherUser => "session_taken",
            Error::TooManySessionsForUser { .. }
            | Error::TooManySessions { .. }
            | Error::TooManyRooms { .. } => "limit",
            Error::RoomFull { .. } => "room_full",
            Error::NotInRoom => "not_in_room",
            Error::MetadataTooLarge { .. } => "metadata_too_large",
            Error::MetadataTooFrequent { .. } => "metadata_too_frequent",
            _ => "bad_message",
        };
        let mut refusal = Refusal::new(code, error.to_string());
        if let Error::MetadataTooFrequent { retry_after } = error {
            // Rounded up: retrying after it is never too early.
            let ms = retry_after.as_micros().div_ceil(1000);
            refusal.retry_after_ms = Some(u64::try_from(ms).unwrap_or(u64::MAX));
        }
        refusal
    }
}

/// What the server sends, tagged by `type` (`welcome`, `state`, `updates`, `room_state`,
/// `room_updates`, `room_occupancy`, `room_window`, `refused`).
///
/// `S`, `R` and `M` (sessions, rooms, metadata) appear in the room messages only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage<U, S = String, R = String, M = ()> {
    /// The whole state: replace what you hold.
    State(State<U>),
    /// The next versions.
    Updates(Updates<U>),
    /// A room's whole state: replace what you hold of that room.
    RoomState(RoomState<U, S, R, M>),
    /// A room's next versions.
    RoomUpdates(RoomUpdates<U, S, R, M>),
    /// How many a room holds, for a connection that watches its occupancy.
    RoomOccupancy(RoomOccupancy<R>),
    /// Some of a room's members, for a connection that watches a window of it.
    RoomWindow(RoomWindow<U, S, R, M>),
    /// Something the client sent was refused.
    Refused(Refusal),
    /// The connection's session as room states show it: first, where they show handles.
    Welcome(Welcome),
}

/// What a client sends, tagged by `type`: `hello` first, then `heartbeat`, `leave`, `resync`
/// and the room messages (`join`, `update`, `leave_room`, `watch`, `unwatch`, `room_resync`)
/// in any order. On Socket.IO the hello is the handshake's `auth` and the others are events of
/// those names, with the other fields as the payload. Fields a message does not know are
/// ignored, so a newer client's additions do not break an older server of the same protocol
/// version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    bound(
        deserialize = "S: Deserialize<'de>, R: Deserialize<'de>, M: Deserialize<'de> + Default, U: Deserialize<'de>"
    )
)]
#[non_exhaustive]
pub enum ClientMessage<S, R = String, M = (), U = String> {
    /// Who is connecting, for which tab, doing what, in which rooms, shown which users.
    Hello(Hello<S, R, M, U>),
    /// The client is there, doing `activity`.
    Heartbeat {
        /// What the client reports.
        activity: Activity,
    },
    /// The client is leaving (logout, `pagehide`).
    Leave,
    /// Send me the whole state again.
    Resync,
    /// Show me these users (the whole list, replacing what was asked before), or every user:
    /// answered with a [`State`] of that scope, then its updates.
    Subscribe(Subscribe<U>),
    /// The session joins `room` with `meta` (`null` if absent); already in it: its metadata
    /// there becomes `meta`. The connection is then sent the room's state and updates.
    Join {
        /// The room.
        room: R,
        /// What the room's members see of this session.
        #[serde(default)]
        meta: M,
    },
    /// The session's metadata in `room` becomes `meta`: one update, never a leave and a join.
    Update {
        /// The room, which the session is in.
        room: R,
        /// The new metadata.
        #[serde(default)]
        meta: M,
    },
    /// The session leaves `room`.
    LeaveRoom {
        /// The room, which the session is in.
        room: R,
    },
    /// Send me `room`'s state and updates without joining it (no presence of mine there).
    Watch {
        /// The room.
        room: R,
        /// Its members (the default), its occupancy only, or a window of its members;
        /// watching a watched room with another view (or window) switches to it and sends it
        /// whole. A member of the room is sent it in the view it watches it in, its members
        /// if it does not watch it.
        #[serde(default)]
        view: RoomView,
        /// With `"view":"window"`: how many members (at most the server's bound).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
        /// With `"view":"window"`: the key of the member the window starts after.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
    },
    /// Stop watching `room` (a room the session is in keeps coming).
    Unwatch {
        /// The room.
        room: R,
    },
    /// Send me `room`'s whole state again.
    RoomResync {
        /// A room this connection is in or watches.
        room: R,
    },
}

/// What a [`ClientMessage::Subscribe`] asks for: `{"type":"subscribe","users":["ada","bob"]}`
/// (those users, and no others), or `{"type":"subscribe","all_users":true}` (every user, where
/// the server enables that feed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "U: Deserialize<'de>"))]
#[non_exhaustive]
pub struct Subscribe<U> {
    /// The users to be sent, replacing the list before (empty: none).
    #[serde(default = "Vec::new")]
    pub users: Vec<U>,
    /// Every user instead (`users` is then ignored).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_users: bool,
}

impl<U> Subscribe<U> {
    /// Subscribe to exactly these users.
    pub fn users(users: Vec<U>) -> Self {
        Subscribe {
            users,
            all_users: false,
        }
    }

    /// Subscribe to every user.
    pub fn all_users() -> Self {
        Subscribe {
            users: Vec::new(),
            all_users: true,
        }
    }
}

/// A room a [`Hello`] names, with the session's metadata there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>, M: Deserialize<'de> + Default"))]
#[non_exhaustive]
pub struct JoinRoom<R, M> {
    /// The room.
    pub room: R,
    /// The session's metadata there (`null` if absent).
    #[serde(default)]
    pub meta: M,
}

impl<R, M> JoinRoom<R, M> {
    /// `room`, with `meta`.
    pub fn new(room: R, meta: M) -> Self {
        JoinRoom { room, meta }
    }
}

/// The first message of a connection (a WebSocket `hello`, a Socket.IO handshake's `auth`).
///
/// It names no user: who the connection speaks for is the application's decision, taken from
/// the handshake (a cookie, a token) by its [`Authenticate`](crate::Authenticate) hook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    deserialize = "S: Deserialize<'de>, R: Deserialize<'de>, M: Deserialize<'de> + Default, U: Deserialize<'de>"
))]
#[non_exhaustive]
pub struct Hello<S, R = String, M = (), U = String> {
    /// The protocol version the client speaks.
    pub protocol: u32,
    /// The tab's stable session id; `None` for a watcher (observes, has no presence of its
    /// own).
    #[serde(default)]
    pub session: Option<S>,
    /// The client's activity as it connects (a hidden tab: `background`).
    #[serde(default = "active")]
    pub activity: Activity,
    /// A credential for the application's [`Authenticate`](crate::Authenticate) hook (a signed
    /// token); cookies and headers come with the handshake instead.
    #[serde(default)]
    pub token: Option<String>,
    /// The rooms the session is in after this hello, with its metadata there: it joins those it
    /// is not in, takes the metadata given where it differs, and leaves the rooms not named.
    /// Absent: the session stays in the rooms it is in (a connection of a session that joined
    /// rooms is sent them all the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<JoinRoom<R, M>>>,
    /// The users this connection is sent (as a [`ClientMessage::Subscribe`] would set them).
    /// Absent: the server's default, every user where it enables the all-users feed and none
    /// elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<U>>,
    /// Every user instead (where the server enables the all-users feed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_users: bool,
}

fn active() -> Activity {
    Activity::Active
}

impl<S, R, M, U> Hello<S, R, M, U> {
    /// A hello for a session doing `activity`.
    pub fn session(session: S, activity: Activity) -> Self {
        Hello {
            protocol: PROTOCOL,
            session: Some(session),
            activity,
            token: None,
            rooms: None,
            users: None,
            all_users: false,
        }
    }

    /// A hello for a watcher.
    pub fn watcher() -> Self {
        Hello {
            protocol: PROTOCOL,
            session: None,
            activity: Activity::Active,
            token: None,
            rooms: None,
            users: None,
            all_users: false,
        }
    }

    /// The same hello with a token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same hello, naming the rooms the session is in after it.
    pub fn with_rooms(mut self, rooms: Vec<JoinRoom<R, M>>) -> Self {
        self.rooms = Some(rooms);
        self
    }

    /// The same hello, subscribing to these users.
    pub fn with_users(mut self, users: Vec<U>) -> Self {
        self.users = Some(users);
        self
    }

    /// The same hello, subscribing to every user.
    pub fn with_all_users(mut self) -> Self {
        self.all_users = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_json() {
        let m: ServerMessage<String> = ServerMessage::Updates(Updates {
            epoch: 7,
            from: 3,
            to: 4,
            users: vec![UserState::new(
                "ada".into(),
                Presence::Idle,
                2,
                Timestamp::from_millis(5),
                9,
            )],
        });
        let json = serde_json::to_value(&m).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"type": "updates", "epoch": 7, "from": 3, "to": 4,
                "users": [{"user": "ada", "presence": "idle", "sessions": 2, "last_seen": 5, "seq": 9}]})
        );
        let back: ServerMessage<String> = serde_json::from_value(json).expect("parses");
        assert_eq!(back, m);
    }

    #[test]
    fn a_hello_takes_defaults() {
        let m: ClientMessage<String> =
            serde_json::from_str(r#"{"type":"hello","protocol":1,"session":"tab-1"}"#)
                .expect("parses");
        assert_eq!(
            m,
            ClientMessage::Hello(Hello::session("tab-1".to_string(), Activity::Active))
        );
        let w: ClientMessage<String> =
            serde_json::from_str(r#"{"type":"hello","protocol":1}"#).expect("parses");
        assert_eq!(w, ClientMessage::Hello(Hello::watcher()));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let m: ClientMessage<String> =
            serde_json::from_str(r#"{"type":"leave","extra":1}"#).expect("parses");
        assert_eq!(m, ClientMessage::Leave);
    }

    #[test]
    fn room_messages_are_tagged_json() {
        let ada = MemberChange {
            version: 4,
            change: RoomChange::Updated,
            user: "ada".to_string(),
            presence: Presence::Active,
            sessions: vec![MemberSession::new(
                "tab-1".to_string(),
                Arc::new(crate::Meta::from_json(r#"{"section":2}"#).expect("json")),
            )],
        };
        let m: ServerMessage<String, String, String, crate::Meta> =
            ServerMessage::RoomUpdates(RoomUpdates {
                room: "doc-1".into(),
                epoch: 9,
                from: 4,
                to: 4,
                members: vec![ada],
            });
        let json = serde_json::to_value(&m).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"type": "room_updates", "room": "doc-1", "epoch": 9, "from": 4, "to": 4,
                "members": [{"version": 4, "change": "updated", "user": "ada", "presence": "active",
                    "sessions": [{"session": "tab-1", "meta": {"section": 2}}]}]})
        );
        let back: ServerMessage<String, String, String, crate::Meta> =
            serde_json::from_value(json).expect("parses");
        assert_eq!(back, m);
    }

    #[test]
    fn room_client_messages_take_defaults_and_refuse_garbage() {
        type Message = ClientMessage<String, String, crate::Meta>;
        let join: Message =
            serde_json::from_str(r#"{"type":"join","room":"doc-1"}"#).expect("parses");
        let ClientMessage::Join { room, meta } = join else {
            panic!("a join")
        };
        assert_eq!((room.as_str(), meta.is_null()), ("doc-1", true));
        let hello: Message = serde_json::from_str(
            r#"{"type":"hello","protocol":1,"session":"t","rooms":[{"room":"a","meta":{"n":1}},{"room":"b"}]}"#,
        )
        .expect("parses");
        let ClientMessage::Hello(hello) = hello else {
            panic!("a hello")
        };
        let rooms = hello.rooms.expect("rooms");
        assert_eq!(rooms[0].meta.to_string(), r#"{"n":1}"#);
        assert!(rooms[1].meta.is_null());
        for text in [
            r#"{"type":"join"}"#,
            r#"{"type":"join","room":7}"#,
            r#"{"type":"leave_room"}"#,
            r#"{"type":"update","room":null}"#,
            r#"{"type":"hello","protocol":1,"rooms":{"a":1}}"#,
        ] {
            assert!(
                serde_json::from_str::<Message>(text).is_err(),
                "{text:?} parsed"
            );
        }
    }

    #[test]
    fn a_too_frequent_refusal_says_when_to_retry() {
        let e = presence_tracker::Error::MetadataTooFrequent {
            retry_after: std::time::Duration::from_micros(12_001),
        };
        let refusal = Refusal::from_error(&e).in_room("doc-1");
        assert_eq!(refusal.code, "metadata_too_frequent");
        assert_eq!(refusal.retry_after_ms, Some(13), "rounded up");
        assert_eq!(
            serde_json::to_value(&refusal).expect("serialises")["room"],
            "doc-1"
        );
        // Fields of refusals that are not about rooms stay off the wire.
        let plain = serde_json::to_value(Refusal::new("bad_message", "x")).expect("serialises");
        assert_eq!(
            plain,
            serde_json::json!({"code": "bad_message", "message": "x"})
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "{}",
            r#"{"type":"heartbeat"}"#,
            r#"{"type":"heartbeat","activity":"dancing"}"#,
            r#"{"type":"nope"}"#,
            "[1,2,3]",
        ] {
            assert!(
                serde_json::from_str::<ClientMessage<String>>(text).is_err(),
                "{text:?} parsed"
            );
        }
    }

    #[test]
    fn a_handle_is_the_same_under_one_key_and_tells_nothing_under_another() {
        let key = [7u8; 16];
        let ids = MemberIds::keyed(key);
        let a = ids.handle("tab-a").expect("opaque");
        assert_eq!(Some(a), MemberIds::keyed(key).handle("tab-a"));
        assert_ne!(Some(a), ids.handle("tab-b"));
        assert_ne!(Some(a), MemberIds::keyed([8u8; 16]).handle("tab-a"));
        assert_ne!(
            MemberIds::opaque().handle("tab-a"),
            MemberIds::opaque().handle("tab-a")
        );
        assert_eq!(MemberIds::raw().handle("tab-a"), None);
        assert_eq!(a.to_string().len(), 16);
        assert_eq!(
            format!("{ids:?}"),
            "MemberIds::Opaque",
            "the key is not shown"
        );
    }

    #[test]
    fn a_member_session_is_written_with_its_handle_and_compared_by_its_id() {
        let ids = MemberIds::keyed([1u8; 16]);
        let shown = MemberSession::shown("tab-a".to_string(), Arc::new(()), &ids);
        let handle = ids.handle("tab-a").expect("opaque").to_string();
        assert_eq!(
            serde_json::to_value(&shown).expect("serialises"),
            serde_json::json!({"session": handle, "meta": null})
        );
        let plain = MemberSession::new("tab-a".to_string(), Arc::new(()));
        assert_eq!(
            serde_json::to_value(&plain).expect("serialises"),
            serde_json::json!({"session": "tab-a", "meta": null})
        );
        assert_eq!(shown, plain);
        assert_eq!(shown.handle().map(|h| h.to_string()), Some(handle));
    }
}
