//! The cluster-wide view: what every node derives from the channel, and the events it hands
//! to its subscribers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use presence_tracker::{Presence, Timestamp};
use redis::Value;

use super::id::{decode, ClusterId};
use super::message::{presence, Message};
use super::node::Shared;
use super::redis_io::num;
use super::rooms::ClusterRoomEvent;
use super::status::{Counters, Part};
use super::ClusterMeta;
use super::{ClusterError, Diagnostic};

/// A user as the cluster sees it: the highest presence over the live sessions of every node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterUser {
    /// The user's history in Redis: new when its record was made (first seen, or after it was
    /// forgotten or Redis was wiped).
    pub epoch: u64,
    /// The version of its last change within that history.
    pub version: u64,
    /// The highest presence of its sessions on every node.
    pub presence: Presence,
    /// Its sessions on every node.
    pub sessions: usize,
    /// The latest last-seen time a node reported for it.
    pub last_seen: Timestamp,
}

/// Why a cluster-wide user changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClusterCause {
    /// A node claimed a session (a connect).
    Claim,
    /// A node published a session's new presence.
    Update,
    /// A session ended on its node.
    Drop,
    /// A dead or retired node's session ran out of grace without being claimed elsewhere.
    Expired,
    /// This node read the user again (after a gap, a new epoch or a reconnection of its feed).
    Resync,
}

/// A cluster-wide user transition, as this node applied it: `from` is what the node held
/// before, so each user's events form a chain.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterUserEvent<U> {
    /// The user.
    pub user: U,
    /// Its presence before.
    pub from: Presence,
    /// Its presence now.
    pub to: Presence,
    /// Its sessions now, on every node.
    pub sessions: usize,
    /// Its last-seen time.
    pub last_seen: Timestamp,
    /// Its history in Redis.
    pub epoch: u64,
    /// Its version.
    pub version: u64,
    /// Why.
    pub cause: ClusterCause,
}

/// Why Redis refused one of this node's writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// Another user owns the session id.
    Taken,
    /// A newer claim holds the session (it reconnected to another node, or this node was
    /// declared dead): the write came late and changed nothing.
    Superseded,
}

/// One of this node's sessions that the cluster refused, and that the node gave up: its later
/// transitions here are not written (a decay while the tracker lets it go would otherwise claim
/// it back), until it connects here again. The node should close the connection that carries
/// it, if one still does ([`Hub::with_cluster`](crate::Hub::with_cluster) does: see
/// [`Hub::watch_refusal`](crate::Hub::watch_refusal)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Refusal<U, S> {
    /// The session's user on this node.
    pub user: U,
    /// The session.
    pub session: S,
    /// Why.
    pub reason: RefusalReason,
}

/// What [`ClusterNode::subscribe`](super::ClusterNode::subscribe) hands out.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterEvent<U, S, R = String, M = ()> {
    /// A user's cluster-wide presence or session count changed.
    User(ClusterUserEvent<U>),
    /// A member of a room changed cluster-wide: appeared, changed presence there, changed its
    /// sessions or their metadata, or left.
    Room(ClusterRoomEvent<U, S, R, M>),
    /// Redis refused a write of one of this node's sessions, and the node gave the session up.
    /// A refused write of a session that connected here again meanwhile is not reported: its
    /// new claim goes out next.
    Refused(Refusal<U, S>),
    /// The node read every user and room again (its feed reconnected): the events since the
    /// last full read were applied, and the ones it could have missed were made up with
    /// [`ClusterCause::Resync`] events.
    Resynced,
}

impl<U: Clone, S: Clone, R: Clone, M> Clone for ClusterEvent<U, S, R, M> {
    fn clone(&self) -> Self {
        match self {
            ClusterEvent::User(e) => ClusterEvent::User(e.clone()),
            ClusterEvent::Room(e) => ClusterEvent::Room(e.clone()),
            ClusterEvent::Refused(r) => ClusterEvent::Refused(r.clone()),
            ClusterEvent::Resynced => ClusterEvent::Resynced,
        }
    }
}

/// What the feed does with a message.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Apply,
    Ignore,
    Reread,
}

/// The users this node knows, offline ones included for the retention (as Redis keeps their
/// versions), so an old message never brings one back.
#[derive(Debug)]
pub(crate) struct View<U> {
    pub(crate) users: HashMap<U, ClusterUser>,
    /// When each offline user went offline here.
    offline: HashMap<U, Instant>,
}

impl<U: ClusterId> View<U> {
    pub(crate) fn new() -> Self {
        View {
            users: HashMap::new(),
            offline: HashMap::new(),
        }
    }

    /// Forgets users offline for longer than `retention`.
    fn prune(&mut self, retention: Duration) {
        let now = Instant::now();
        let users = &mut self.users;
        self.offline.retain(|user, since| {
            let keep = now.saturating_duration_since(*since) < retention;
            if !keep {
                users.remove(user);
            }
            keep
        });
    }

    fn verdict(&self, user: &U, m: &Message<'_>) -> Verdict {
        match self.users.get(user) {
            None if m.from == Presence::Offline => Verdict::Apply,
            None => Verdict::Reread,
            Some(k) if m.epoch == k.epoch && m.version <= k.version => Verdict::Ignore,
            Some(k) if m.epoch == k.epoch && m.version == k.version + 1 => Verdict::Apply,
            Some(k) if m.epoch < k.epoch => Verdict::Ignore,
            Some(k) if m.epoch > k.epoch && m.version == 1 => Verdict::Apply,
            Some(_) => Verdict::Reread,
        }
    }

    /// Sets a user's state; the event if what subscribers see changed.
    fn set(
        &mut self,
        user: U,
        now: ClusterUser,
        cause: ClusterCause,
    ) -> Option<ClusterUserEvent<U>> {
        let before = self.users.insert(user.clone(), now);
        let (from, sessions) = before.map_or((Presence::Offline, 0), |b| (b.presence, b.sessions));
        if (from, sessions) == (now.presence, now.sessions) {
            return None;
        }
        Some(ClusterUserEvent {
            user,
            from,
            to: now.presence,
            sessions: now.sessions,
            last_seen: now.last_seen,
            epoch: now.epoch,
            version: now.version,
            cause,
        })
    }

    /// A state read from Redis, unless the view already holds a later one.
    fn read(&mut self, user: U, now: ClusterUser) -> Option<ClusterUserEvent<U>> {
        if let Some(k) = self.users.get(&user) {
            if (now.epoch, now.version) < (k.epoch, k.version) {
                return None;
            }
        }
        self.set(user, now, ClusterCause::Resync)
    }
}

/// A user hash's fields (`e v p n ls`) as a state; `None` if absent or garbled.
fn state(fields: &[Value]) -> Option<ClusterUser> {
    let f = |i: usize| num(fields.get(i));
    Some(ClusterUser {
        epoch: f(0)?,
        version: f(1)?,
        presence: presence(f(2)?)?,
        sessions: usize::try_from(f(3)?).ok()?,
        last_seen: Timestamp::from_millis(f(4)?),
    })
}

impl<U: ClusterId, S: ClusterId, R: ClusterId, M: ClusterMeta> Shared<U, S, R, M> {
    /// Hands an event to the subscribers (none listening is fine).
    pub(crate) fn emit(&self, event: ClusterEvent<U, S, R, M>) {
        let _ = self.events.send(event);
    }

    pub(crate) fn garbage(&self, at: String) {
        Counters::add(&self.counters.garbage, 1);
        self.config.diagnose(Diagnostic::Garbage { at });
    }

    /// The feed: subscribe, read everything, apply messages; again after every loss of the
    /// connection or kick (Redis wiped, Redis back after a failure).
    pub(crate) async fn run_feed(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let kicked = self.kick_feed.notified();
            tokio::pin!(kicked);
            kicked.as_mut().enable();
            match self.feed_once(kicked).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    self.failed(Part::Feed, e.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    async fn feed_once(
        &self,
        mut kicked: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Result<(), ClusterError> {
        let timeout = self.config.response_timeout;
        let mut pubsub = tokio::time::timeout(timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| ClusterError::Redis("feed connection timed out".into()))??;
        let channels = [self.keys.channel.as_str(), self.keys.room_channel.as_str()];
        tokio::time::timeout(timeout, pubsub.subscribe(&channels[..]))
            .await
            .map_err(|_| ClusterError::Redis("subscribe timed out".into()))??;
        self.resync_all().await?;
        self.recovered(Part::Feed);
        let mut stream = pubsub.into_on_message();
        let retention = self.config.retention;
        let mut prune = tokio::time::interval(retention.min(Duration::from_secs(60)));
        loop {
            tokio::select! {
                _ = prune.tick() => self.view.lock().prune(retention),
                msg = stream.next() => match msg {
                    Some(msg) if msg.get_channel_name() == self.keys.room_channel => {
                        self.on_room_message(msg.get_payload_bytes()).await;
                    }
                    Some(msg) => self.on_message(msg.get_payload_bytes()).await,
                    None => return Err(ClusterError::Redis("feed connection closed".into())),
                },
                () = kicked.as_mut() => return Ok(()),
            }
        }
    }

    async fn on_message(&self, payload: &[u8]) {
        let Some(m) = std::str::from_utf8(payload).ok().and_then(Message::parse) else {
            self.garbage(format!("message on {}", self.keys.channel));
            return;
        };
        let Some(user) = decode::<U>(m.user) else {
            self.garbage(format!("user {:?} in a message", m.user));
            return;
        };
        let event = {
            let mut view = self.view.lock();
            match view.verdict(&user, &m) {
                Verdict::Ignore => return,
                Verdict::Reread => None,
                Verdict::Apply => {
                    Counters::add(&self.counters.messages, 1);
                    let now = ClusterUser {
                        epoch: m.epoch,
                        version: m.version,
                        presence: m.to,
                        sessions: m.sessions,
                        last_seen: Timestamp::from_millis(m.last_seen),
                    };
                    Some(view.set(user.clone(), now, m.cause))
                }
            }
        };
        match event {
            Some(Some(e)) => self.emit(ClusterEvent::User(e)),
            Some(None) => {}
            None => {
                Counters::add(&self.counters.user_reads, 1);
                if let Err(e) = self.reread(user, m.user).await {
                    self.failed(Part::Feed, e.to_string());
                }
            }
        }
    }

    /// Reads one user again.
    async fn reread(&self, user: U, encoded: &str) -> Result<(), ClusterError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.user(encoded))
            .arg(&["e", "v", "p", "n", "ls"]);
        let fields: Vec<Value> = self.io.cmd(&cmd).await?;
        let now = state(&fields).unwrap_or(ClusterUser {
            epoch: 0,
            version: 0,
            presence: Presence::Offline,
            sessions: 0,
            last_seen: Timestamp::EPOCH,
        });
        let event = self.view.lock().read(user, now);
        if let Some(e) = event {
            self.emit(ClusterEvent::User(e));
        }
        Ok(())
    }

    /// Reads every user: `SCAN` of the user hashes, `HMGET` in pipelines.
    pub(crate) async fn resync_all(&self) -> Result<(), ClusterError> {
        let pattern = self.keys.user_pattern();
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
            let mut users = Vec::with_capacity(keys.len());
            for key in keys {
                match self.keys.user_of_key(&key).and_then(decode::<U>) {
                    Some(user) if seen.insert(user.clone()) => users.push((user, key)),
                    Some(_) => {}
                    None => self.garbage(format!("key {key:?}")),
                }
            }
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for (_, key) in &users {
                pipe.cmd("HMGET").arg(key).arg(&["e", "v", "p", "n", "ls"]);
            }
            let replies = if users.is_empty() {
                Vec::new()
            } else {
                self.io.query(&pipe, users.len()).await?
            };
            let mut events = Vec::new();
            {
                let mut view = self.view.lock();
                for ((user, key), reply) in users.into_iter().zip(replies) {
                    let now = match &reply {
                        // Expired between the scan and the read: offline.
                        Value::Array(fields) if fields.iter().all(|f| *f == Value::Nil) => {
                            seen.remove(&user);
                            continue;
                        }
                        Value::Array(fields) => state(fields),
                        _ => None,
                    };
                    match now {
                        Some(now) => events.extend(view.read(user, now)),
                        None => {
                            seen.remove(&user);
                            self.garbage(format!("user hash {key:?}"));
                        }
                    }
                }
            }
            for e in events {
                self.emit(ClusterEvent::User(e));
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        // Users no longer in Redis: offline, and forgotten.
        let events: Vec<_> = {
            let mut view = self.view.lock();
            let gone: Vec<U> = view
                .users
                .keys()
                .filter(|u| !seen.contains(*u))
                .cloned()
                .collect();
            gone.into_iter()
                .filter_map(|user| {
                    view.offline.remove(&user);
                    let k = view.users.remove(&user)?;
                    k.presence.is_online().then(|| ClusterUserEvent {
                        user,
                        from: k.presence,
                        to: Presence::Offline,
                        sessions: 0,
                        last_seen: k.last_seen,
                        epoch: k.epoch,
                        version: k.version,
                        cause: ClusterCause::Resync,
                    })
                })
                .collect()
        };
        for e in events {
            self.emit(ClusterEvent::User(e));
        }
        self.resync_rooms().await?;
        Counters::add(&self.counters.resyncs, 1);
        self.emit(ClusterEvent::Resynced);
        self.synced.notify_waiters();
        Ok(())
    }
}
