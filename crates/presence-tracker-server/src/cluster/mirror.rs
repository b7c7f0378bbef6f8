//! The node's own sessions as the cluster layer last heard of them (with the rooms they are
//! in), and what each still has to write: each session's latest intent only, so a backlog
//! while Redis is away is bounded by the sessions and their rooms, not by their transitions.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use presence_tracker::Presence;

/// What a session still has to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pending {
    None,
    /// A connect: a new epoch.
    Claim,
    /// Re-publication: the epoch held, unless a newer one exists.
    Reassert,
    /// A new presence, under the epoch held.
    Put,
    /// The session ended here.
    Drop,
}

impl Pending {
    /// The intent after a write of `failed` did not reach Redis, given what came since.
    fn merge(current: Pending, failed: Pending) -> Pending {
        match (current, failed) {
            (Pending::None, f) => f,
            (Pending::Put, f @ (Pending::Claim | Pending::Reassert)) => f,
            (c, _) => c,
        }
    }
}

#[derive(Debug)]
struct Local<U> {
    user: U,
    presence: Presence,
    last_seen: u64,
    epoch: Option<u64>,
    pending: Pending,
    /// A write of it is in flight: the next waits for its outcome.
    busy: bool,
    /// Its rooms (encoded ids) with their encoded metadata; `None`: leaving.
    rooms: HashMap<String, Option<String>>,
    /// The rooms whose entry must be written again.
    dirty_rooms: HashSet<String>,
}

impl<U> Local<U> {
    fn has_work(&self) -> bool {
        self.pending != Pending::None || !self.dirty_rooms.is_empty()
    }

    /// Every room again (a new presence, an end, a re-publication).
    fn all_rooms_dirty(&mut self) {
        self.dirty_rooms.extend(self.rooms.keys().cloned());
    }
}

/// One write taken from the mirror: the session's, and its rooms'.
#[derive(Clone, Debug)]
pub(crate) struct Op<U, S> {
    pub(crate) session: S,
    pub(crate) user: U,
    pub(crate) kind: Pending,
    pub(crate) presence: Presence,
    pub(crate) last_seen: u64,
    pub(crate) epoch: Option<u64>,
    /// Room entries to write: (room, metadata), `None` to leave.
    pub(crate) rooms: Vec<(String, Option<String>)>,
    /// A write for a user the session no longer has here (its id was taken by another user
    /// after it expired), or for a session the cluster refused: not its current state.
    pub(crate) detached: bool,
}

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A claim was granted this epoch and stored.
    Claimed(u64),
    /// A put or drop was applied (a drop of nothing counts), or there was no session write.
    Applied,
    /// Redis holds no entry of this node and epoch: claim it again.
    Unknown,
    /// Refused: the session is no longer this node's.
    Refused,
    /// Did not reach Redis: try again.
    Failed,
}

#[derive(Debug)]
pub(crate) struct Mirror<U, S> {
    sessions: HashMap<S, Local<U>>,
    users: HashMap<U, HashSet<S>>,
    dirty: HashSet<S>,
    busy: usize,
    /// Writes for sessions' former states, each with whether it is in flight; the session's
    /// own writes wait for it (its owner record must be released first).
    retired: HashMap<S, (Op<U, S>, bool)>,
    /// Sessions the cluster refused while they were still online here: their later transitions
    /// (a decay while the node's tracker lets them go) are not theirs to write, and would
    /// otherwise claim them back from the node that holds them now. Forgotten when the session
    /// ends here or connects again (a connect claims it anew).
    refused: HashSet<S>,
}

impl<U: Clone + Eq + Hash, S: Clone + Eq + Hash> Mirror<U, S> {
    pub(crate) fn new() -> Self {
        Mirror {
            sessions: HashMap::new(),
            users: HashMap::new(),
            dirty: HashSet::new(),
            busy: 0,
            retired: HashMap::new(),
            refused: HashSet::new(),
        }
    }

    /// Nothing to write and nothing in flight.
    pub(crate) fn idle(&self) -> bool {
        self.dirty.is_empty() && self.busy == 0 && self.retired.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sessions.len()
    }

    /// What the session's entries were, written off: a drop (if `drop`) and leaves of its
    /// rooms, under the epoch it had. Nothing if it never had one.
    fn retire(&mut self, session: &S, user: U, local: &Local<U>, drop: bool) {
        let Some(epoch) = local.epoch else { return };
        let op = Op {
            session: session.clone(),
            user,
            kind: if drop { Pending::Drop } else { Pending::None },
            presence: Presence::Offline,
            last_seen: local.last_seen,
            epoch: Some(epoch),
            rooms: local.rooms.keys().map(|r| (r.clone(), None)).collect(),
            detached: true,
        };
        if op.kind != Pending::None || !op.rooms.is_empty() {
            self.retired.insert(session.clone(), (op, false));
        }
    }

    fn insert(&mut self, session: &S, user: &U, presence: Presence, last_seen: u64) {
        if let Some(local) = self.sessions.get(session) {
            if local.user != *user {
                // The id expired under its user and was taken by another here: the former
                // user's entries go first, the new one is claimed afresh.
                let old = local.user.clone();
                let local = self.sessions.remove(session).map(|l| (l.user.clone(), l));
                if let Some((old_user, l)) = local {
                    self.retire(session, old_user, &l, true);
                    if l.busy {
                        self.busy -= 1;
                    }
                }
                self.forget_user_session(&old, session);
            }
        }
        if let Some(local) = self.sessions.get_mut(session) {
            if presence != local.presence {
                local.all_rooms_dirty();
            }
            local.presence = presence;
            local.last_seen = local.last_seen.max(last_seen);
            return;
        }
        self.sessions.insert(
            session.clone(),
            Local {
                user: user.clone(),
                presence,
                last_seen,
                epoch: None,
                pending: Pending::None,
                busy: false,
                rooms: HashMap::new(),
                dirty_rooms: HashSet::new(),
            },
        );
        self.users
            .entry(user.clone())
            .or_default()
            .insert(session.clone());
    }

    /// Takes the session off its user's list; true if that was the user's last here.
    fn forget_user_session(&mut self, user: &U, session: &S) -> bool {
        match self.users.get_mut(user) {
            Some(set) => {
                set.remove(session);
                if set.is_empty() {
                    self.users.remove(user);
                    true
                } else {
                    false
                }
            }
            None => false,
        }
    }

    fn set(&mut self, session: &S, pending: Option<Pending>) {
        if let Some(local) = self.sessions.get_mut(session) {
            if let Some(pending) = pending {
                local.pending = pending;
            }
            if !local.busy && local.has_work() {
                self.dirty.insert(session.clone());
            }
        }
    }

    /// A connect of the session here (new, or a re-attach): claim it with a new epoch.
    pub(crate) fn connected(&mut self, user: &U, session: &S, presence: Presence, last_seen: u64) {
        self.refused.remove(session);
        self.insert(session, user, presence, last_seen);
        self.set(session, Some(Pending::Claim));
    }

    /// A session's published transition.
    pub(crate) fn transition(
        &mut self,
        user: &U,
        session: &S,
        from: Presence,
        to: Presence,
        at: u64,
    ) {
        if !self.refused.is_empty() && self.refused.contains(session) {
            if !to.is_online() {
                self.refused.remove(session);
            }
            return;
        }
        if !to.is_online() {
            if let Some(local) = self.sessions.get_mut(session) {
                local.presence = to;
                // Its rooms are left with it.
                for meta in local.rooms.values_mut() {
                    *meta = None;
                }
                local.all_rooms_dirty();
                self.set(session, Some(Pending::Drop));
            }
            return;
        }
        let known = self.sessions.get(session).map(|l| l.pending);
        self.insert(session, user, to, at);
        let next = match known {
            // A new session, one the layer never heard of, or one that ended and came back.
            _ if !from.is_online() => Pending::Claim,
            None | Some(Pending::Drop) => Pending::Claim,
            Some(Pending::None | Pending::Put) => Pending::Put,
            Some(p) => p,
        };
        self.set(session, Some(next));
    }

    /// A room event of `user`: `present` are its sessions in the room on this node now, with
    /// their encoded metadata; its other sessions here leave the room.
    pub(crate) fn room(&mut self, user: &U, room: &str, present: &[(S, String)]) {
        let sessions: Vec<S> = self
            .users
            .get(user)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for session in sessions {
            let Some(local) = self.sessions.get_mut(&session) else {
                continue;
            };
            let want = present
                .iter()
                .find(|(s, _)| *s == session)
                .map(|(_, m)| m.clone());
            let had = local.rooms.get(room);
            let changed = match (&want, had) {
                (Some(m), Some(Some(h))) => m != h,
                (Some(_), _) => true,
                (None, Some(Some(_))) => true,
                (None, _) => false,
            };
            if changed {
                local.rooms.insert(room.to_owned(), want);
                local.dirty_rooms.insert(room.to_owned());
                self.set(&session, None);
            }
        }
    }

    /// Every session again (Redis was wiped, or this node was declared dead): its epoch where
    /// it holds one, a new one where it never got one; its rooms too.
    pub(crate) fn reassert_all(&mut self) -> usize {
        let all: Vec<(S, Pending)> = self
            .sessions
            .iter_mut()
            .filter(|(_, l)| l.pending != Pending::Drop)
            .map(|(s, l)| {
                l.all_rooms_dirty();
                let kind = if l.epoch.is_some() {
                    Pending::Reassert
                } else {
                    Pending::Claim
                };
                (s.clone(), kind)
            })
            .collect();
        let n = all.len();
        for (s, kind) in all {
            self.set(&s, Some(kind));
        }
        n
    }

    /// Up to `max` writes, each marked in flight. Sessions that end without having reached
    /// Redis end here; their users are appended to `gone` if they have no other session.
    pub(crate) fn take(&mut self, max: usize, gone: &mut Vec<U>) -> Vec<Op<U, S>> {
        let mut ops: Vec<Op<U, S>> = self
            .retired
            .values_mut()
            .filter(|(_, in_flight)| !*in_flight)
            .take(max)
            .map(|(op, in_flight)| {
                *in_flight = true;
                op.clone()
            })
            .collect();
        let picked: Vec<S> = self
            .dirty
            .iter()
            .filter(|s| !self.retired.contains_key(*s))
            .take(max.saturating_sub(ops.len()))
            .cloned()
            .collect();
        for session in picked {
            self.dirty.remove(&session);
            let Some(local) = self.sessions.get_mut(&session) else {
                continue;
            };
            if local.busy || !local.has_work() {
                continue;
            }
            let mut kind = std::mem::replace(&mut local.pending, Pending::None);
            if local.epoch.is_none() {
                match kind {
                    Pending::Drop => {
                        if let Some(l) = self.sessions.remove(&session) {
                            if self.forget_user_session(&l.user, &session) {
                                gone.push(l.user);
                            }
                        }
                        continue;
                    }
                    // Rooms wait for the claim that grants the epoch they are written under.
                    Pending::Put | Pending::Reassert | Pending::None => kind = Pending::Claim,
                    Pending::Claim => {}
                }
            }
            let rooms = local
                .dirty_rooms
                .drain()
                .map(|r| {
                    let meta = local.rooms.get(&r).cloned().flatten();
                    (r, meta)
                })
                .collect();
            local.busy = true;
            self.busy += 1;
            ops.push(Op {
                session,
                user: local.user.clone(),
                kind,
                presence: local.presence,
                last_seen: local.last_seen,
                epoch: local.epoch,
                rooms,
                detached: false,
            });
        }
        ops
    }

    /// Applies a write's outcome (`rooms_written`: whether its room entries reached Redis).
    pub(crate) fn done(&mut self, op: &Op<U, S>, outcome: Outcome, rooms_written: bool) -> Done<U> {
        if op.detached {
            match (outcome, rooms_written) {
                (Outcome::Failed, _) | (_, false) => {
                    if let Some((_, in_flight)) = self.retired.get_mut(&op.session) {
                        *in_flight = false;
                    }
                }
                _ => {
                    self.retired.remove(&op.session);
                    if self.sessions.get(&op.session).is_some_and(Local::has_work) {
                        self.dirty.insert(op.session.clone());
                    }
                }
            }
            return Done::default();
        }
        let Some(local) = self.sessions.get_mut(&op.session) else {
            return Done::default();
        };
        if local.busy {
            local.busy = false;
            self.busy -= 1;
        }
        if rooms_written {
            // Rooms left for good are forgotten, unless joined again since.
            for (room, meta) in &op.rooms {
                if meta.is_none() && matches!(local.rooms.get(room), Some(None)) {
                    local.rooms.remove(room);
                }
            }
        } else {
            local
                .dirty_rooms
                .extend(op.rooms.iter().map(|(r, _)| r.clone()));
        }
        let mut remove = false;
        match outcome {
            Outcome::Claimed(epoch) => local.epoch = Some(epoch),
            Outcome::Applied => remove = op.kind == Pending::Drop && local.pending == Pending::None,
            Outcome::Unknown if op.kind == Pending::Drop => {
                remove = local.pending == Pending::None;
            }
            Outcome::Unknown => {
                let again = if local.epoch.is_some() {
                    Pending::Reassert
                } else {
                    Pending::Claim
                };
                local.pending = Pending::merge(local.pending, again);
            }
            // A connect since then claims it anew; anything else was about a session that is
            // no longer this node's: its room entries under its epoch are left.
            Outcome::Refused => remove = local.pending != Pending::Claim,
            Outcome::Failed => local.pending = Pending::merge(local.pending, op.kind),
        }
        if remove {
            let Some(l) = self.sessions.remove(&op.session) else {
                return Done::default();
            };
            let given_up = outcome == Outcome::Refused;
            if given_up {
                self.retire(&op.session, l.user.clone(), &l, false);
                if l.presence.is_online() {
                    self.refused.insert(op.session.clone());
                }
            }
            let gone = self
                .forget_user_session(&l.user, &op.session)
                .then_some(l.user);
            return Done { gone, given_up };
        }
        if local.has_work() {
            self.dirty.insert(op.session.clone());
        }
        Done::default()
    }
}

/// What applying a write's outcome came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Done<U> {
    /// The session's user, if the session ended here and was its last.
    pub(crate) gone: Option<U>,
    /// The cluster refused the session and this node gave it up (a connect since would have
    /// kept it: its claim goes out next).
    pub(crate) given_up: bool,
}

impl<U> Default for Done<U> {
    fn default() -> Self {
        Done {
            gone: None,
            given_up: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Presence::{Active, Idle, Offline};

    #[test]
    fn a_backlog_keeps_each_sessions_latest_intent() {
        let mut m: Mirror<&str, &str> = Mirror::new();
        m.connected(&"ada", &"t1", Active, 1);
        m.transition(&"ada", &"t1", Active, Idle, 2);
        let mut gone = Vec::new();
        let ops = m.take(10, &mut gone);
        assert_eq!(ops.len(), 1);
        assert_eq!((ops[0].kind, ops[0].presence), (Pending::Claim, Idle));
        // Redis away: the claim comes back, merged with what happened meanwhile.
        m.transition(&"ada", &"t1", Idle, Active, 3);
        assert_eq!(m.done(&ops[0], Outcome::Failed, true).gone, None);
        let ops = m.take(10, &mut gone);
        assert_eq!((ops[0].kind, ops[0].presence), (Pending::Claim, Active));
        assert_eq!(m.done(&ops[0], Outcome::Claimed(7), true).gone, None);
        assert!(m.idle());
        m.transition(&"ada", &"t1", Active, Offline, 4);
        let ops = m.take(10, &mut gone);
        assert_eq!((ops[0].kind, ops[0].epoch), (Pending::Drop, Some(7)));
        assert_eq!(m.done(&ops[0], Outcome::Applied, true).gone, Some("ada"));
        assert_eq!(m.len(), 0);
    }

    /// A mirror in which ada's session t1 connected and was claimed in Redis at `epoch`, and
    /// the list its `take` fills with users gone.
    fn claimed_t1(epoch: u64) -> (Mirror<&'static str, &'static str>, Vec<&'static str>) {
        let mut m = Mirror::new();
        let mut gone = Vec::new();
        m.connected(&"ada", &"t1", Active, 1);
        let ops = m.take(10, &mut gone);
        m.done(&ops[0], Outcome::Claimed(epoch), true);
        (m, gone)
    }

    #[test]
    fn a_session_that_never_reached_redis_ends_without_a_write() {
        let mut m: Mirror<&str, &str> = Mirror::new();
        m.connected(&"ada", &"t1", Active, 1);
        m.transition(&"ada", &"t1", Active, Offline, 2);
        let mut gone = Vec::new();
        assert!(m.take(10, &mut gone).is_empty());
        assert_eq!(gone, ["ada"]);
        assert!(m.idle());
    }

    #[test]
    fn an_id_taken_by_another_user_drops_the_former_first() {
        let (mut m, mut gone) = claimed_t1(5);
        // The session expired here (its drop not yet written) and bob took the id.
        m.transition(&"ada", &"t1", Active, Offline, 2);
        m.connected(&"bob", &"t1", Active, 3);
        let ops = m.take(10, &mut gone);
        assert_eq!(ops.len(), 1, "bob's claim waits for ada's drop: {ops:?}");
        assert_eq!(
            (ops[0].user, ops[0].kind, ops[0].epoch),
            ("ada", Pending::Drop, Some(5))
        );
        m.done(&ops[0], Outcome::Applied, true);
        let ops = m.take(10, &mut gone);
        assert_eq!(
            (ops[0].user, ops[0].kind, ops[0].epoch),
            ("bob", Pending::Claim, None)
        );
    }

    #[test]
    fn rooms_follow_their_sessions() {
        let mut m: Mirror<&str, &str> = Mirror::new();
        let mut gone = Vec::new();
        m.connected(&"ada", &"t1", Active, 1);
        m.connected(&"ada", &"t2", Active, 1);
        m.room(&"ada", "doc", &[("t1", "m1".into())]);
        let ops = m.take(10, &mut gone);
        let t1 = ops.iter().find(|o| o.session == "t1").expect("t1");
        assert_eq!(t1.rooms, [("doc".to_string(), Some("m1".to_string()))]);
        for op in &ops {
            m.done(op, Outcome::Claimed(3), true);
        }
        // A new presence rewrites the session's rooms; an end leaves them.
        m.transition(&"ada", &"t1", Active, Idle, 2);
        let ops = m.take(10, &mut gone);
        assert_eq!((ops[0].kind, ops[0].rooms.len()), (Pending::Put, 1));
        m.done(&ops[0], Outcome::Applied, true);
        m.transition(&"ada", &"t1", Idle, Offline, 3);
        let ops = m.take(10, &mut gone);
        assert_eq!(ops[0].rooms, [("doc".to_string(), None)]);
        assert_eq!(
            m.done(&ops[0], Outcome::Applied, true).gone,
            None,
            "t2 is still here"
        );
        assert!(m.idle());
    }

    #[test]
    fn a_refused_session_is_not_claimed_back_by_its_later_decay() {
        let (mut m, mut gone) = claimed_t1(5);
        // Another node claimed t1 since: this node's next write is refused, and it gives up.
        m.transition(&"ada", &"t1", Active, Idle, 2);
        let ops = m.take(10, &mut gone);
        let done = m.done(&ops[0], Outcome::Refused, true);
        assert_eq!(
            done,
            Done {
                gone: Some("ada"),
                given_up: true
            }
        );
        // Its tracker lets the session decay here: nothing to write, no new claim.
        m.transition(&"ada", &"t1", Idle, Presence::Away, 3);
        assert!(m.take(10, &mut gone).is_empty() && m.idle());
        m.transition(&"ada", &"t1", Presence::Away, Offline, 4);
        assert!(m.take(10, &mut gone).is_empty() && m.idle());
        // A connect here later is the tab coming back: claimed anew.
        m.connected(&"ada", &"t1", Active, 5);
        let ops = m.take(10, &mut gone);
        assert_eq!((ops[0].kind, ops[0].epoch), (Pending::Claim, None));
    }

    #[test]
    fn a_refusal_while_a_new_connect_waits_gives_nothing_up() {
        let (mut m, mut gone) = claimed_t1(5);
        m.transition(&"ada", &"t1", Active, Idle, 2);
        let ops = m.take(10, &mut gone);
        // The tab reconnected here while the put was in flight: its claim goes out next.
        m.connected(&"ada", &"t1", Active, 3);
        assert_eq!(m.done(&ops[0], Outcome::Refused, true), Done::default());
        let ops = m.take(10, &mut gone);
        assert_eq!(ops[0].kind, Pending::Claim);
    }
}
