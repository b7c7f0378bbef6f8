//! Snapshots: the whole tracker as plain data, to keep across a restart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::tracker::counters::Counters;
use crate::tracker::packed::{pack, MAX_SEQ};
use crate::tracker::session_table::{Hasher, SessionEntry};
use crate::tracker::user_table::{Retained, UserEntry};
use crate::tracker::NO_DEADLINE;
use crate::{
    Activity, Clock, ConnectionId, Error, Id, Metadata, Policy, Presence, PresenceTracker,
    Timestamp,
};

/// Everything a tracker knows, as data: take it with [`PresenceTracker::snapshot`], store it
/// (it is `serde`), and [`PresenceTracker::restore`] it after a restart.
///
/// Times are [`Timestamp`]s, which are wall-clock anchored, so a restored session keeps its
/// age: seen 10 s before the snapshot, it is still active right after the restore. Downtime
/// counts as age: a tracker restored ten minutes later derives what ten minutes of silence mean.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "U: Serialize, S: Serialize, R: Serialize, M: Serialize",
    deserialize = "U: Deserialize<'de>, S: Deserialize<'de>, R: Deserialize<'de>, M: Deserialize<'de>"
))]
#[non_exhaustive]
pub struct Snapshot<U, S, R = String, M = ()> {
    /// Format version, for future changes.
    pub version: u32,
    /// When it was taken.
    pub taken_at: Timestamp,
    /// Every user with a live session, and every retained offline user.
    pub users: Vec<UserSnapshot<U, S, R, M>>,
}

/// One user in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "U: Serialize, S: Serialize, R: Serialize, M: Serialize",
    deserialize = "U: Deserialize<'de>, S: Deserialize<'de>, R: Deserialize<'de>, M: Deserialize<'de>"
))]
#[non_exhaustive]
pub struct UserSnapshot<U, S, R = String, M = ()> {
    /// The user.
    pub user: U,
    /// The presence last published for it.
    pub published: Presence,
    /// Its last event sequence number.
    pub seq: u64,
    /// Its last-seen time, counting only sessions that expired; `None` if none has.
    pub gone_last_seen: Option<Timestamp>,
    /// For a retained offline user, when it is forgotten.
    pub retained_until: Option<Timestamp>,
    /// Its live sessions.
    pub sessions: Vec<SessionSnapshot<S, R, M>>,
}

/// One session in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "S: Serialize, R: Serialize, M: Serialize",
    deserialize = "S: Deserialize<'de>, R: Deserialize<'de>, M: Deserialize<'de>"
))]
#[non_exhaustive]
pub struct SessionSnapshot<S, R = String, M = ()> {
    /// The session.
    pub session: S,
    /// Its current connection.
    pub connection: ConnectionId,
    /// Server time of its last connect or heartbeat.
    pub last_seen: Timestamp,
    /// The activity last reported.
    pub activity: Activity,
    /// The presence last published for it.
    pub published: Presence,
    /// When it expires for want of a connection, if its connection closed.
    pub grace_deadline: Option<Timestamp>,
    /// The rooms it is in, in the order it joined them, with its metadata there. A restore
    /// makes each room anew (a new epoch: clients holding the old history ask again).
    #[serde(default)]
    pub rooms: Vec<RoomSnapshot<R, M>>,
}

/// One room of a session in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "R: Serialize, M: Serialize",
    deserialize = "R: Deserialize<'de>, M: Deserialize<'de>"
))]
#[non_exhaustive]
pub struct RoomSnapshot<R, M = ()> {
    /// The room.
    pub room: R,
    /// Its place in the room's joins, so a restore keeps a member's sessions in the order
    /// they joined (0 in older snapshots: the order listed).
    #[serde(default)]
    pub joined: u64,
    /// The session's metadata there.
    #[serde(
        serialize_with = "crate::room::ser_shared",
        deserialize_with = "de_shared"
    )]
    pub meta: Arc<M>,
}

fn de_shared<'de, M: Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Arc<M>, D::Error> {
    M::deserialize(d).map(Arc::new)
}

const VERSION: u32 = 1;

/// # Snapshots
///
/// ## Graceful shutdown
///
/// The order matters, because a snapshot keeps what the sessions' connections were doing:
///
/// 1. Stop accepting connections and signals (close the listener; stop the handlers).
/// 2. Take the [`snapshot`](Self::snapshot) *while the clients' sockets are still open*: every
///    connected session is saved as connected, with no grace running.
/// 3. Store it, then close the sockets. Their disconnects need not reach the tracker: a
///    snapshot taken after them would save every session with the leave grace running (a clean
///    close), and a restart longer than `leave_grace` would then show everyone offline.
/// 4. On start, [`restore`](Self::restore) it, then accept connections. Clients reconnect with
///    new connection ids and re-attach their sessions; the ones that do not come back decay by
///    age like any silent session, so a crash (no snapshot at all) and a clean restart differ
///    only in what was not saved.
///
/// Downtime counts as age: a restart shorter than the active window shows nobody anything.
impl<U: Id, S: Id, C: Clock, R: Id, M: Metadata> PresenceTracker<U, S, C, R, M> {
    /// Everything the tracker knows, as of one instant: consistent across users (a session is
    /// listed once, under its owner), so [`restore`](Self::restore) accepts it.
    ///
    /// Takes every user shard's lock, in index order, for as long as it copies the tables:
    /// connects, disconnects, leaves, ticks and heartbeats that change a presence wait
    /// meanwhile; heartbeats that change none go on (their `last_seen` may or may not be in it).
    pub fn snapshot(&self) -> Snapshot<U, S, R, M> {
        let shards: Vec<_> = self.users.iter().map(|slot| slot.0.shard.lock()).collect();
        let taken_at = self.now();
        // The sessions by owner, from one pass over each session table (no lookups). A
        // session's owner and the user's list change only under the owner's lock, held here.
        let mut by_owner: HashMap<U, Vec<SessionSnapshot<S, R, M>>, Hasher> =
            HashMap::with_hasher(self.shard_hasher.clone());
        for slot in self.sessions.iter() {
            let map = slot.0.read();
            for e in map.iter() {
                let record = e.record();
                by_owner
                    .entry(e.user.clone())
                    .or_default()
                    .push(SessionSnapshot {
                        session: e.session.clone(),
                        connection: e.connection,
                        last_seen: record.last_seen,
                        activity: record.activity,
                        published: e.published(),
                        grace_deadline: record.grace_deadline,
                        rooms: Vec::new(),
                    });
            }
        }
        let mut users = Vec::new();
        // Shard by shard in index order, each shard's live users before its retained ones.
        for shard in &shards {
            for (user, entry) in shard.live.iter() {
                let mut sessions = by_owner.remove(user).unwrap_or_default();
                if let Some(list) = shard.memberships.get(user) {
                    self.snapshot_rooms(user, list, &mut sessions);
                }
                users.push(UserSnapshot {
                    user: user.clone(),
                    published: entry.published(),
                    seq: entry.seq(),
                    gone_last_seen: Some(shard.gone_last_seen(user))
                        .filter(|&t| t != 0)
                        .map(Timestamp::from_millis),
                    retained_until: None,
                    sessions,
                });
            }
            for (user, r) in shard.retained.iter() {
                users.push(UserSnapshot {
                    user: user.clone(),
                    published: Presence::Offline,
                    seq: r.seq,
                    gone_last_seen: Some(Timestamp::from_millis(r.last_seen)),
                    retained_until: Some(Timestamp::from_millis(r.until)),
                    sessions: Vec::new(),
                });
            }
        }
        drop(shards);
        Snapshot {
            version: VERSION,
            taken_at,
            users,
        }
    }

    /// A tracker holding what `snapshot` holds, on `clock` with `policy`.
    ///
    /// If `clock` is behind the snapshot (a wall clock set back across the restart), every time
    /// in it is moved back by the difference, so ages are kept. The published presences are
    /// those of the snapshot; the first [`tick`](Self::tick) publishes what changed since.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSnapshot`] for a session listed twice, a user listed twice, a retained user
    /// with sessions, a live user without, a seq of 2^61 or more, published presences a tracker
    /// never holds (a session published offline, a user published other than the highest of
    /// its sessions, a retained user published online), or more sessions than the policy
    /// allows;
    /// [`Error::EmptyId`] or [`Error::IdTooLong`] for an id the policy refuses.
    pub fn restore(
        snapshot: Snapshot<U, S, R, M>,
        policy: Policy,
        clock: C,
    ) -> Result<Self, Error> {
        let tracker = Self::with_clock(policy, clock);
        let now = tracker.now().as_millis();
        let shift = snapshot.taken_at.as_millis().saturating_sub(now);
        let at = |t: Timestamp| t.as_millis().saturating_sub(shift).min(now);
        tracker.validate(&snapshot)?;
        for u in snapshot.users {
            let slot = tracker.user_slot(&u.user);
            let mut shard = slot.shard.lock();
            let gone = u.gone_last_seen.map_or(0, at);
            if let Some(until) = u.retained_until {
                shard.retained.insert(
                    u.user.clone(),
                    Retained {
                        last_seen: gone,
                        seq: u.seq,
                        until: until.as_millis().saturating_sub(shift),
                    },
                );
                shard
                    .retention
                    .push(until.as_millis().saturating_sub(shift), u.user);
                Counters::add(&tracker.counters[shard.index].users, Presence::Offline);
            } else {
                Counters::add(&tracker.counters[shard.index].users, u.published);
                shard
                    .live
                    .insert(u.user.clone(), UserEntry::new(u.published, u.seq, now));
                shard.put_gone(&u.user, gone, false);
                // The same insertion as a connect's, with the snapshot's published presences.
                for s in u.sessions {
                    let grace = s
                        .grace_deadline
                        .map_or(NO_DEADLINE, |d| d.as_millis().saturating_sub(shift));
                    let (session_slot, hash) = tracker.locate(&s.session);
                    let entry = SessionEntry::new(
                        s.session.clone(),
                        u.user.clone(),
                        pack(at(s.last_seen), s.activity),
                        s.published,
                        s.connection,
                        grace,
                    );
                    tracker.insert_session(&mut session_slot.write(), hash, entry)?;
                    for r in s.rooms {
                        tracker.restore_membership(
                            &mut shard,
                            &u.user,
                            &s.session,
                            s.published,
                            r,
                            now,
                        );
                    }
                    tracker.list_session(&mut shard, &u.user, s.session, s.published);
                }
                // Due at once: the first tick publishes whatever changed while it was down.
                shard.queue.push(now, u.user);
            }
            tracker.store_earliest(&shard);
        }
        Ok(tracker)
    }

    fn validate(&self, snapshot: &Snapshot<U, S, R, M>) -> Result<(), Error> {
        let mut users = HashSet::new();
        let mut sessions = HashSet::new();
        // Each room's members, to hold the room limit.
        let mut members: HashMap<&R, HashSet<&U>> = HashMap::new();
        for u in &snapshot.users {
            self.check_id(&u.user)?;
            if !users.insert(&u.user) {
                return Err(Error::InvalidSnapshot(format!(
                    "user {:?} listed twice",
                    u.user
                )));
            }
            if u.retained_until.is_some() != u.sessions.is_empty() {
                return Err(Error::InvalidSnapshot(format!(
                    "user {:?} is both retained and live, or neither",
                    u.user
                )));
            }
            if u.seq >= MAX_SEQ {
                return Err(Error::InvalidSnapshot(format!(
                    "user {:?} has seq {}, past the largest a tracker keeps ({})",
                    u.user,
                    u.seq,
                    MAX_SEQ - 1
                )));
            }
            // As a live tracker holds them: a retained user offline; a live user's sessions
            // online, and the user at the highest of them.
            let highest = u.sessions.iter().map(|s| s.published).max();
            let consistent = match highest {
                None => u.published == Presence::Offline,
                Some(highest) => {
                    u.published == highest
                        && u.sessions.iter().all(|s| s.published != Presence::Offline)
                }
            };
            if !consistent {
                return Err(Error::InvalidSnapshot(format!(
                    "user {:?} published {} over sessions published {:?}",
                    u.user,
                    u.published,
                    u.sessions.iter().map(|s| s.published).collect::<Vec<_>>()
                )));
            }
            if u.sessions.len() > self.policy.max_sessions_per_user {
                return Err(Error::InvalidSnapshot(format!(
                    "user {:?} has {} sessions, over the policy's limit of {}",
                    u.user,
                    u.sessions.len(),
                    self.policy.max_sessions_per_user
                )));
            }
            for s in &u.sessions {
                self.check_id(&s.session)?;
                self.validate_rooms(&u.user, s, &mut members)?;
                if !sessions.insert(&s.session) {
                    return Err(Error::InvalidSnapshot(format!(
                        "session {:?} listed twice",
                        s.session
                    )));
                }
            }
        }
        if sessions.len() > self.policy.max_sessions {
            return Err(Error::InvalidSnapshot(format!(
                "{} sessions, over the policy's limit of {}",
                sessions.len(),
                self.policy.max_sessions
            )));
        }
        Ok(())
    }

    /// A session's rooms as a live tracker holds them: each once, within the policy's limits.
    fn validate_rooms<'s>(
        &self,
        user: &'s U,
        s: &'s SessionSnapshot<S, R, M>,
        members: &mut HashMap<&'s R, HashSet<&'s U>>,
    ) -> Result<(), Error> {
        if s.rooms.len() > self.policy.max_rooms_per_session {
            return Err(Error::InvalidSnapshot(format!(
                "session {:?} is in {} rooms, over the policy's limit of {}",
                s.session,
                s.rooms.len(),
                self.policy.max_rooms_per_session
            )));
        }
        for (i, r) in s.rooms.iter().enumerate() {
            self.check_id(&r.room)?;
            if s.rooms[..i].iter().any(|earlier| earlier.room == r.room) {
                return Err(Error::InvalidSnapshot(format!(
                    "session {:?} lists room {:?} twice",
                    s.session, r.room
                )));
            }
            let size = r.meta.size();
            if size > self.policy.max_metadata_bytes {
                return Err(Error::MetadataTooLarge {
                    size,
                    max: self.policy.max_metadata_bytes,
                });
            }
            let room = members.entry(&r.room).or_default();
            room.insert(user);
            if room.len() > self.policy.max_members_per_room {
                return Err(Error::InvalidSnapshot(format!(
                    "room {:?} has more members than the policy's limit of {}",
                    r.room, self.policy.max_members_per_room
                )));
            }
        }
        Ok(())
    }
}
