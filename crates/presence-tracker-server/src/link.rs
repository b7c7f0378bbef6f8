//! What one connection is to the hub, whatever carries it: who it speaks for, its session,
//! the rooms its session joined through it and the rooms it watches; and the client messages
//! that change them. Both integrations handle messages here, so they refuse the same things
//! the same way, and only the fan-out (which room's messages reach the connection) is theirs.

#![cfg_attr(not(any(feature = "socketioxide", feature = "axum")), allow(dead_code))]

use std::collections::HashMap;

use std::sync::Arc;
use std::time::Duration;

use presence_tracker::{Activity, Clock, ConnectionId, Error, Id, Metadata, Timestamp};

use crate::limit::{Taken, TokenBucket};

use crate::wire::{ClientMessage, JoinRoom, Refusal, RoomView, Subscribe, Welcome, Window};
use crate::{Authenticate, Hub, Identity, Interest, RoomAccess};

/// How a connection is sent a room: a [`RoomView`], with its window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) enum Sent {
    /// Its members (its occupancy while it is big).
    #[default]
    Members,
    /// Its occupancy.
    Occupancy,
    /// A window of its members, and its occupancy.
    Window(Window),
}

/// What a transport does about a room's messages after a client message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fanout {
    /// Start sending the connection the room's state and updates.
    Open(String),
    /// Stop (it was sent the room this way).
    Close(String, Sent),
    /// Send the connection the room's state again (it was sent the room this way; now in the
    /// way [`Link::view`] gives: it may have changed).
    Resync(String, Sent),
}

impl Fanout {
    /// The room it is about.
    #[cfg_attr(not(feature = "socketioxide"), allow(dead_code))]
    pub(crate) fn room(&self) -> &str {
        match self {
            Fanout::Open(room) | Fanout::Close(room, _) | Fanout::Resync(room, _) => room,
        }
    }
}

/// The fan-out that takes a room from being sent `before` to `after` (`None`: not sent).
fn fanout_between(room: String, before: Option<Sent>, after: Option<Sent>) -> Option<Fanout> {
    match (before, after) {
        (None, Some(_)) => Some(Fanout::Open(room)),
        (Some(was), None) => Some(Fanout::Close(room, was)),
        (Some(a), Some(b)) if a != b => Some(Fanout::Resync(room, a)),
        _ => None,
    }
}

/// What handling a message came to: refusals to send back, fan-out to change, and the users
/// the connection is sent from now on.
#[derive(Debug)]
pub(crate) struct Outcome<U> {
    pub(crate) refusals: Vec<Refusal>,
    pub(crate) fanout: Vec<Fanout>,
    pub(crate) interest: Option<Interest<U>>,
}

impl<U> Default for Outcome<U> {
    fn default() -> Self {
        Outcome {
            refusals: Vec::new(),
            fanout: Vec::new(),
            interest: None,
        }
    }
}

impl<U> Outcome<U> {
    pub(crate) fn refused(refusal: Refusal) -> Self {
        Outcome {
            refusals: vec![refusal],
            ..Outcome::default()
        }
    }

    fn fanout(fanout: Fanout) -> Self {
        Outcome {
            fanout: vec![fanout],
            ..Outcome::default()
        }
    }
}

/// What to do with a client's message, by the connection's rate.
#[derive(Debug)]
pub(crate) enum Admitted {
    /// Handle it.
    Yes,
    /// Answer it with this refusal only.
    Refuse(Refusal),
    /// Drop it unanswered (a refusal went out since the last one taken).
    Drop,
    /// Close the connection: it floods.
    Close,
}

/// The refusal of a connection without a user, where the hub takes none.
pub(crate) fn check_watcher<U, S, C, M>(
    hub: &Hub<U, S, C, String, M>,
    identity: &Identity<U>,
) -> Result<(), Refusal>
where
    U: Id,
    S: Id,
    C: Clock,
    M: Metadata,
{
    if matches!(identity, Identity::Watcher) && !hub.config().watchers {
        return Err(Refusal::new(
            "unauthorized",
            "this server takes no connection without a user: sign in",
        ));
    }
    Ok(())
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Link<U, S, M> {
    identity: Identity<U>,
    /// The user and the session it carries; `None` for a watcher.
    session: Option<(U, S)>,
    connection: ConnectionId,
    /// The rooms its session is in as far as this connection knows (joined through it, or in
    /// at its hello), with the metadata last set: joined again with it if the session has to be
    /// connected again.
    member: HashMap<String, M>,
    /// The rooms it watches, each in the view it asked for.
    watching: HashMap<String, Sent>,
    max_watched: usize,
    /// The most members of a window.
    max_window: usize,
    /// The connection's messages against the hub's [`client_rate`](crate::HubConfig::client_rate):
    /// made at the first message.
    bucket: Option<TokenBucket>,
    /// Rooms its session left through it lately, with when: joined again sooner than the
    /// policy's metadata interval after, it would be a metadata change the interval refuses.
    left: Vec<(String, Timestamp)>,
    /// Its session's messages against the hub's
    /// [`session_rate`](crate::HubConfig::session_rate), shared with the session's other
    /// connections and its reconnects.
    session_bucket: Option<Arc<parking_lot::Mutex<TokenBucket>>>,
}

/// A hello naming `session`, against the session's rate: the bucket its connection counts its
/// messages in, or the refusal of the hello (`rate_limited`, with when to retry).
pub(crate) fn session_hello<U, S, C, M>(
    hub: &Hub<U, S, C, String, M>,
    session: &S,
) -> Result<Option<Arc<parking_lot::Mutex<TokenBucket>>>, Refusal>
where
    U: Id,
    S: Id,
    C: Clock,
    M: Metadata,
{
    match hub.session_hello(session) {
        None => Ok(None),
        Some((bucket, Taken::Yes)) => Ok(Some(bucket)),
        Some((_, Taken::Refuse(retry_after))) => Err(Refusal::rate_limited(retry_after)),
        // Refused before, and again: still refused, with no better time to give.
        Some((_, Taken::Drop | Taken::Close)) => Err(Refusal::rate_limited(Duration::from_secs(1))),
    }
}

impl<U: Id, S: Id, M: Metadata + Clone + PartialEq + Default> Link<U, S, M> {
    pub(crate) fn new(
        identity: Identity<U>,
        session: Option<(U, S)>,
        connection: ConnectionId,
        max_watched: usize,
        max_window: usize,
    ) -> Self {
        Link {
            identity,
            session,
            connection,
            member: HashMap::new(),
            watching: HashMap::new(),
            max_watched,
            max_window,
            bucket: None,
            left: Vec::new(),
            session_bucket: None,
        }
    }

    /// With the bucket its session's messages are counted in (see [`session_hello`]).
    pub(crate) fn with_session_bucket(
        mut self,
        bucket: Option<Arc<parking_lot::Mutex<TokenBucket>>>,
    ) -> Self {
        self.session_bucket = bucket;
        self
    }

    /// Counts one message of the client against the connection's rate, before anything else
    /// is done with it.
    pub(crate) fn admit<C: Clock>(&mut self, hub: &Hub<U, S, C, String, M>) -> Admitted {
        let now = hub.tracker().now();
        let bucket = self
            .bucket
            .get_or_insert_with(|| TokenBucket::new(hub.config().client_rate));
        let taken = match bucket.take(now) {
            // Taken by the connection: then by its session, which its other connections share.
            Taken::Yes => self
                .session_bucket
                .as_ref()
                .map_or(Taken::Yes, |b| b.lock().take(now)),
            over => over,
        };
        match taken {
            Taken::Yes => Admitted::Yes,
            Taken::Refuse(retry_after) => Admitted::Refuse(Refusal::rate_limited(retry_after)),
            Taken::Drop => Admitted::Drop,
            Taken::Close => Admitted::Close,
        }
    }

    /// How long until the session may join `room` again, if it left it through this
    /// connection within `interval` of `now`: leaving and joining is a metadata change, and
    /// does not get around the interval.
    fn rejoin_wait(&mut self, room: &str, now: Timestamp, interval: Duration) -> Option<Duration> {
        self.left
            .retain(|(_, at)| now.saturating_duration_since(*at) < interval);
        let (_, at) = self.left.iter().find(|(r, _)| r == room)?;
        Some(interval.saturating_sub(now.saturating_duration_since(*at)))
    }

    /// The user and session, `None` for a watcher.
    pub(crate) fn session(&self) -> Option<&(U, S)> {
        self.session.as_ref()
    }

    /// What tells the client its session's handle, where room states show handles.
    pub(crate) fn welcome<C: Clock, R>(&self, hub: &Hub<U, S, C, R, M>) -> Option<Welcome>
    where
        U: Id,
        S: Id,
        R: Id,
        M: Metadata,
    {
        let (_, session) = self.session.as_ref()?;
        hub.config().member_ids.handle(session).map(Welcome::new)
    }

    #[cfg_attr(not(feature = "socketioxide"), allow(dead_code))]
    pub(crate) fn connection(&self) -> ConnectionId {
        self.connection
    }

    /// Every room whose messages the connection is sent: joined or watched.
    pub(crate) fn rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self.member.keys().cloned().collect();
        rooms.extend(
            self.watching
                .keys()
                .filter(|r| !self.member.contains_key(*r))
                .cloned(),
        );
        rooms
    }

    /// How the connection is sent `room`: in the view it watches it in, else its members if
    /// its session is in the room; `None` if it is not sent the room.
    pub(crate) fn view(&self, room: &str) -> Option<Sent> {
        match self.watching.get(room) {
            Some(sent) => Some(*sent),
            None => self.member.contains_key(room).then_some(Sent::Members),
        }
    }

    /// The rooms of the hello: the session ends up in exactly those it may join (or, with no
    /// list, stays in its rooms). Returns the refusals; the connection is then sent every room
    /// of [`rooms`](Self::rooms).
    pub(crate) fn hello_rooms<C, A>(
        &mut self,
        hub: &Hub<U, S, C, String, M>,
        auth: &A,
        rooms: Option<Vec<JoinRoom<String, M>>>,
    ) -> Vec<Refusal>
    where
        C: Clock,
        A: Authenticate<U>,
    {
        let Some((user, session)) = self.session.clone() else {
            return rooms
                .into_iter()
                .flatten()
                .map(|r| {
                    Refusal::new("watch_only", "a watcher joins no room: watch it").in_room(r.room)
                })
                .collect();
        };
        let Some(rooms) = rooms else {
            // The session stays where it is, where it may still be (the application may have
            // taken a room from this user since): this connection learns where that is.
            let mut refusals = Vec::new();
            for room in hub.tracker().rooms().of_session(&session) {
                if let Err(refusal) = auth.authorize_room(&self.identity, &room, RoomAccess::Join) {
                    // Not in it any more: gone already is as good.
                    let _ = hub.rooms().leave(&session, room.as_str());
                    refusals.push(refusal.in_room(room));
                    continue;
                }
                let meta = hub.rooms().meta_of(&room, &user, &session);
                self.member.insert(room, meta.unwrap_or_default());
            }
            return refusals;
        };
        let mut refusals = Vec::new();
        let mut wanted = Vec::new();
        for JoinRoom { room, meta } in rooms {
            match auth.authorize_room(&self.identity, &room, RoomAccess::Join) {
                Ok(()) => wanted.push((room, meta)),
                Err(refusal) => refusals.push(refusal.in_room(room)),
            }
        }
        let metas: HashMap<String, M> = wanted.iter().cloned().collect();
        for (room, error) in hub.rooms().set(&session, wanted) {
            refusals.push(Refusal::from_error(&error).in_room(room));
        }
        for room in hub.tracker().rooms().of_session(&session) {
            let meta = metas.get(&room).cloned().unwrap_or_default();
            self.member.insert(room, meta);
        }
        refusals
    }

    /// What the hello's `users` and `all_users` come to: the interest the connection starts
    /// with, and what to tell it. A hello that names neither gets the all-users feed where the
    /// hub enables it, and no users elsewhere; a refused request starts with no users.
    pub(crate) fn hello_interest<C, A>(
        &self,
        hub: &Hub<U, S, C, String, M>,
        auth: &A,
        users: Option<Vec<U>>,
        all_users: bool,
    ) -> (Interest<U>, Option<Refusal>)
    where
        C: Clock,
        A: Authenticate<U>,
    {
        let wanted = match (users, all_users) {
            (_, true) => None,
            (Some(users), false) => Some(users),
            (None, false) if hub.config().all_users_feed => None,
            (None, false) => return (Interest::Users(Vec::new()), None),
        };
        match self.interest(hub, auth, wanted) {
            Ok(done) => done,
            Err(refusal) => (Interest::Users(Vec::new()), Some(refusal)),
        }
    }

    /// The interest a connection asked for (`None`: every user), as the hub's configuration
    /// and the application's hook allow: refused whole (every user where the feed is off, more
    /// users than the limit), or with the users the hook refused left out (and a refusal
    /// saying how many).
    fn interest<C, A>(
        &self,
        hub: &Hub<U, S, C, String, M>,
        auth: &A,
        wanted: Option<Vec<U>>,
    ) -> Result<(Interest<U>, Option<Refusal>), Refusal>
    where
        C: Clock,
        A: Authenticate<U>,
    {
        let config = hub.config();
        let Some(users) = wanted else {
            if !config.all_users_feed {
                return Err(Refusal::new(
                    "forbidden",
                    "this server does not send every user: subscribe to the users to show",
                ));
            }
            return Ok((Interest::All, None));
        };
        if users.len() > config.max_interest {
            return Err(Refusal::new(
                "limit",
                format!(
                    "a connection subscribes to at most {} users",
                    config.max_interest
                ),
            ));
        }
        let named = users.len();
        let allowed: Vec<U> = users
            .into_iter()
            .filter(|user| auth.authorize_user(&self.identity, user).is_ok())
            .collect();
        let refusal = (allowed.len() < named).then(|| {
            Refusal::new(
                "forbidden",
                format!(
                    "{} of the {named} users named may not be shown to this connection",
                    named - allowed.len()
                ),
            )
        });
        Ok((Interest::Users(allowed), refusal))
    }

    /// A message after the hello (`hello` and `resync` are the transport's).
    pub(crate) fn handle<C, A>(
        &mut self,
        hub: &Hub<U, S, C, String, M>,
        auth: &A,
        message: ClientMessage<S, String, M, U>,
    ) -> Outcome<U>
    where
        C: Clock,
        A: Authenticate<U>,
    {
        match message {
            ClientMessage::Watch {
                room,
                view,
                limit,
                after,
            } => {
                let sent = match view {
                    RoomView::Occupancy => Sent::Occupancy,
                    RoomView::Window => {
                        let limit = limit.unwrap_or(self.max_window);
                        if limit == 0 || limit > self.max_window {
                            return Outcome::refused(
                                Refusal::new(
                                    "limit",
                                    format!("a window holds 1 to {} members", self.max_window),
                                )
                                .in_room(room),
                            );
                        }
                        Sent::Window(Window { limit, after })
                    }
                    _ => Sent::Members,
                };
                self.watch(hub, auth, room, sent)
            }
            ClientMessage::Unwatch { room } => {
                let before = self.view(&room);
                if self.watching.remove(&room).is_none() {
                    return Outcome::refused(
                        Refusal::new("not_watching", "this connection does not watch that room")
                            .in_room(room),
                    );
                }
                let after = self.view(&room);
                fanout_between(room, before, after).map_or_else(Outcome::default, Outcome::fanout)
            }
            ClientMessage::RoomResync { room } => {
                if let Some(sent) = self.view(&room) {
                    Outcome::fanout(Fanout::Resync(room, sent))
                } else {
                    Outcome::refused(
                        Refusal::new("not_in_room", "this connection is not sent that room")
                            .in_room(room),
                    )
                }
            }
            ClientMessage::Subscribe(Subscribe { users, all_users }) => {
                let wanted = if all_users { None } else { Some(users) };
                match self.interest(hub, auth, wanted) {
                    Ok((interest, refusal)) => Outcome {
                        refusals: refusal.into_iter().collect(),
                        interest: Some(interest),
                        ..Outcome::default()
                    },
                    // Refused whole: the connection keeps what it was sent.
                    Err(refusal) => Outcome::refused(refusal),
                }
            }
            ClientMessage::Hello(_) | ClientMessage::Resync => {
                Outcome::refused(Refusal::new("bad_message", "hello was already said"))
            }
            message => match self.session.clone() {
                None => Outcome::refused(Refusal::new("watch_only", "a watcher sends no signal")),
                Some((user, session)) => self.signal(hub, auth, &user, &session, message),
            },
        }
    }

    /// A message of a connection with a session.
    fn signal<C, A>(
        &mut self,
        hub: &Hub<U, S, C, String, M>,
        auth: &A,
        user: &U,
        session: &S,
        message: ClientMessage<S, String, M, U>,
    ) -> Outcome<U>
    where
        C: Clock,
        A: Authenticate<U>,
    {
        let refuse =
            |e: Error, room: String| Outcome::<U>::refused(Refusal::from_error(&e).in_room(room));
        match message {
            ClientMessage::Heartbeat { activity } => {
                self.heartbeat(hub, auth, user, session, activity)
            }
            ClientMessage::Leave => match hub.leave(session, self.connection) {
                Ok(()) => Outcome::default(),
                Err(e) => Outcome::refused(Refusal::from_error(&e)),
            },
            ClientMessage::Join { room, meta } => {
                if let Err(refusal) = auth.authorize_room(&self.identity, &room, RoomAccess::Join) {
                    return Outcome::refused(refusal.in_room(room));
                }
                if self.member.get(&room) == Some(&meta)
                    && hub.rooms().shows(&room, user, session, &meta)
                {
                    // Joined already with this metadata (a client that joins again after a
                    // reconnect): nothing to publish, nothing against the metadata interval.
                    return Outcome::default();
                }
                if !self.member.contains_key(&room) {
                    let now = hub.tracker().now();
                    let interval = hub.tracker().policy().metadata_interval();
                    if let Some(retry_after) = self.rejoin_wait(&room, now, interval) {
                        return refuse(Error::MetadataTooFrequent { retry_after }, room);
                    }
                }
                match hub.rooms().join(session, room.clone(), meta.clone()) {
                    Ok(()) => {
                        let before = self.view(&room);
                        self.member.insert(room.clone(), meta);
                        let after = self.view(&room);
                        fanout_between(room, before, after)
                            .map_or_else(Outcome::default, Outcome::fanout)
                    }
                    Err(e) => refuse(e, room),
                }
            }
            ClientMessage::Update { room, meta } => {
                if let Err(refusal) = auth.authorize_room(&self.identity, &room, RoomAccess::Join) {
                    return Outcome::refused(refusal.in_room(room));
                }
                match hub.rooms().update(session, room.as_str(), meta.clone()) {
                    Ok(()) => {
                        let before = self.view(&room);
                        self.member.insert(room.clone(), meta);
                        let after = self.view(&room);
                        fanout_between(room, before, after)
                            .map_or_else(Outcome::default, Outcome::fanout)
                    }
                    Err(e) => refuse(e, room),
                }
            }
            ClientMessage::LeaveRoom { room } => {
                let result = hub.rooms().leave(session, room.as_str());
                if result.is_ok() {
                    let now = hub.tracker().now();
                    let interval = hub.tracker().policy().metadata_interval();
                    self.left.retain(|(r, at)| {
                        r != &room && now.saturating_duration_since(*at) < interval
                    });
                    self.left.push((room.clone(), now));
                }
                let before = self.view(&room);
                self.member.remove(&room);
                let after = self.view(&room);
                let mut outcome = match result {
                    Ok(()) => Outcome::default(),
                    Err(e) => Outcome::refused(Refusal::from_error(&e).in_room(room.clone())),
                };
                outcome.fanout.extend(fanout_between(room, before, after));
                outcome
            }
            _ => Outcome::refused(Refusal::new("bad_message", "not a message after the hello")),
        }
    }

    /// A heartbeat; if the session expired while the connection stayed open, it is connected
    /// again on this connection and joins its rooms again with the metadata last set.
    fn heartbeat<C: Clock, A: Authenticate<U>>(
        &mut self,
        hub: &Hub<U, S, C, String, M>,
        auth: &A,
        user: &U,
        session: &S,
        activity: Activity,
    ) -> Outcome<U> {
        match hub.heartbeat(session, activity) {
            Ok(()) => return Outcome::default(),
            Err(Error::UnknownSession) => {}
            Err(e) => return Outcome::refused(Refusal::from_error(&e)),
        }
        if let Err(e) = hub.connect(user.clone(), session.clone(), self.connection, activity) {
            return Outcome::refused(Refusal::from_error(&e));
        }
        let mut outcome = Outcome::default();
        let rooms: Vec<(String, M)> = self.member.drain().collect();
        for (room, meta) in rooms {
            let joined = auth
                .authorize_room(&self.identity, &room, RoomAccess::Join)
                .and_then(|()| {
                    hub.rooms()
                        .join(session, room.clone(), meta.clone())
                        .map_err(|e| Refusal::from_error(&e))
                });
            match joined {
                Ok(()) => {
                    self.member.insert(room, meta);
                }
                Err(refusal) => {
                    outcome.refusals.push(refusal.in_room(room.clone()));
                    // It was sent the room as a member, or as it watches it.
                    let before = self.watching.get(&room).copied().unwrap_or(Sent::Members);
                    let after = self.view(&room);
                    outcome
                        .fanout
                        .extend(fanout_between(room, Some(before), after));
                }
            }
        }
        outcome
    }

    fn watch<C, A>(
        &mut self,
        hub: &Hub<U, S, C, String, M>,
        auth: &A,
        room: String,
        view: Sent,
    ) -> Outcome<U>
    where
        C: Clock,
        A: Authenticate<U>,
    {
        if let Err(e) = hub.rooms().check_id(&room) {
            return Outcome::refused(Refusal::from_error(&e).in_room(room));
        }
        if let Err(refusal) = auth.authorize_room(&self.identity, &room, RoomAccess::Watch) {
            return Outcome::refused(refusal.in_room(room));
        }
        if !self.watching.contains_key(&room) && self.watching.len() >= self.max_watched {
            return Outcome::refused(
                Refusal::new(
                    "limit",
                    format!("a connection watches at most {} rooms", self.max_watched),
                )
                .in_room(room),
            );
        }
        let before = self.view(&room);
        self.watching.insert(room.clone(), view);
        let after = self.view(&room);
        fanout_between(room, before, after).map_or_else(Outcome::default, Outcome::fanout)
    }
}
