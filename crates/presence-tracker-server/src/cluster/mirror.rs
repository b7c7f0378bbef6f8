//! The node's own sessions as the cluster layer last heard of them, and what each still has to
//! write: each session's latest intent only, so a backlog while Redis is away is bounded by the
//! sessions, not by their transitions.

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
}

/// One write taken from the mirror.
#[derive(Clone, Debug)]
pub(crate) struct Op<U, S> {
    pub(crate) session: S,
    pub(crate) user: U,
    pub(crate) kind: Pending,
    pub(crate) presence: Presence,
    pub(crate) last_seen: u64,
    pub(crate) epoch: Option<u64>,
    /// A drop of what the session was under a user it no longer has (its id was taken by
    /// another user here after it expired): not the session's current state.
    pub(crate) detached: bool,
}

/// How a write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A claim was granted this epoch and stored.
    Claimed(u64),
    /// A put or drop was applied (a drop of nothing counts).
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
    users: HashMap<U, usize>,
    dirty: HashSet<S>,
    busy: usize,
    /// Drops of sessions' former users, each with whether it is in flight; the session's own
    /// writes wait for it (its owner record must be released first).
    retired: HashMap<S, (Op<U, S>, bool)>,
}

impl<U: Clone + Eq + Hash, S: Clone + Eq + Hash> Mirror<U, S> {
    pub(crate) fn new() -> Self {
        Mirror {
            sessions: HashMap::new(),
            users: HashMap::new(),
            dirty: HashSet::new(),
            busy: 0,
            retired: HashMap::new(),
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

    fn insert(&mut self, session: &S, user: &U, presence: Presence, last_seen: u64) {
        if let Some(local) = self.sessions.get_mut(session) {
            if local.user != *user {
                // The id expired under its user and was taken by another here: the former
                // user's entry is dropped first, the new one claimed afresh.
                let old = std::mem::replace(&mut local.user, user.clone());
                if let Some(epoch) = local.epoch.take() {
                    let drop = Op {
                        session: session.clone(),
                        user: old.clone(),
                        kind: Pending::Drop,
                        presence: Presence::Offline,
                        last_seen: local.last_seen,
                        epoch: Some(epoch),
                        detached: true,
                    };
                    self.retired.insert(session.clone(), (drop, false));
                }
                Self::count_down(&mut self.users, &old);
                *self.users.entry(user.clone()).or_insert(0) += 1;
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
            },
        );
        *self.users.entry(user.clone()).or_insert(0) += 1;
    }

    fn count_down(users: &mut HashMap<U, usize>, user: &U) -> bool {
        match users.get_mut(user) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                users.remove(user);
                true
            }
            None => false,
        }
    }

    fn set(&mut self, session: &S, pending: Pending) {
        if let Some(local) = self.sessions.get_mut(session) {
            local.pending = pending;
            if !local.busy && pending != Pending::None {
                self.dirty.insert(session.clone());
            }
        }
    }

    /// A connect of the session here (new, or a re-attach): claim it with a new epoch.
    pub(crate) fn connected(&mut self, user: &U, session: &S, presence: Presence, last_seen: u64) {
        self.insert(session, user, presence, last_seen);
        self.set(session, Pending::Claim);
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
        if !to.is_online() {
            if self.sessions.contains_key(session) {
                if let Some(local) = self.sessions.get_mut(session) {
                    local.presence = to;
                }
                self.set(session, Pending::Drop);
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
        self.set(session, next);
    }

    /// Every session again (Redis was wiped, or this node was declared dead): its epoch where
    /// it holds one, a new one where it never got one.
    pub(crate) fn reassert_all(&mut self) -> usize {
        let all: Vec<(S, Pending)> = self
            .sessions
            .iter()
            .filter(|(_, l)| l.pending != Pending::Drop)
            .map(|(s, l)| {
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
            self.set(&s, kind);
        }
        n
    }

    /// Up to `max` writes, each marked in flight. Drops of sessions that never reached Redis
    /// end here; their users are appended to `gone` if they have no other session.
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
            let mut kind = std::mem::replace(&mut local.pending, Pending::None);
            if kind == Pending::None || local.busy {
                local.pending = kind;
                continue;
            }
            if local.epoch.is_none() {
                match kind {
                    Pending::Drop => {
                        if let Some(l) = self.sessions.remove(&session) {
                            if Self::count_down(&mut self.users, &l.user) {
                                gone.push(l.user);
                            }
                        }
                        continue;
                    }
                    Pending::Put | Pending::Reassert => kind = Pending::Claim,
                    _ => {}
                }
            }
            local.busy = true;
            self.busy += 1;
            ops.push(Op {
                session,
                user: local.user.clone(),
                kind,
                presence: local.presence,
                last_seen: local.last_seen,
                epoch: local.epoch,
                detached: false,
            });
        }
        ops
    }

    /// Applies a write's outcome. Returns the user if the session ended here and was its last.
    pub(crate) fn done(&mut self, op: &Op<U, S>, outcome: Outcome) -> Option<U> {
        if op.detached {
            match outcome {
                Outcome::Failed => {
                    if let Some((_, in_flight)) = self.retired.get_mut(&op.session) {
                        *in_flight = false;
                    }
                }
                _ => {
                    self.retired.remove(&op.session);
                }
            }
            return None;
        }
        let local = self.sessions.get_mut(&op.session)?;
        if local.busy {
            local.busy = false;
            self.busy -= 1;
        }
        if local.user != op.user {
            // Written for the user the session had before its id was taken here.
            if let (Outcome::Claimed(epoch), false) =
                (outcome, self.retired.contains_key(&op.session))
            {
                let mut drop = op.clone();
                (drop.kind, drop.epoch, drop.detached) = (Pending::Drop, Some(epoch), true);
                self.retired.insert(op.session.clone(), (drop, false));
            }
            local.pending = Pending::merge(local.pending, Pending::Claim);
            self.dirty.insert(op.session.clone());
            return None;
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
            // no longer this node's.
            Outcome::Refused => remove = local.pending != Pending::Claim,
            Outcome::Failed => local.pending = Pending::merge(local.pending, op.kind),
        }
        if remove {
            let l = self.sessions.remove(&op.session)?;
            return Self::count_down(&mut self.users, &l.user).then_some(l.user);
        }
        if local.pending != Pending::None {
            self.dirty.insert(op.session.clone());
        }
        None
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
        assert_eq!(m.done(&ops[0], Outcome::Failed), None);
        let ops = m.take(10, &mut gone);
        assert_eq!((ops[0].kind, ops[0].presence), (Pending::Claim, Active));
        assert_eq!(m.done(&ops[0], Outcome::Claimed(7)), None);
        assert!(m.idle());
        m.transition(&"ada", &"t1", Active, Offline, 4);
        let ops = m.take(10, &mut gone);
        assert_eq!((ops[0].kind, ops[0].epoch), (Pending::Drop, Some(7)));
        assert_eq!(m.done(&ops[0], Outcome::Applied), Some("ada"));
        assert_eq!(m.len(), 0);
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
        let mut m: Mirror<&str, &str> = Mirror::new();
        let mut gone = Vec::new();
        m.connected(&"ada", &"t1", Active, 1);
        let ops = m.take(10, &mut gone);
        m.done(&ops[0], Outcome::Claimed(5));
        // The session expired here (its drop not yet written) and bob took the id.
        m.transition(&"ada", &"t1", Active, Offline, 2);
        m.connected(&"bob", &"t1", Active, 3);
        let ops = m.take(10, &mut gone);
        assert_eq!(ops.len(), 1, "bob's claim waits for ada's drop: {ops:?}");
        assert_eq!(
            (ops[0].user, ops[0].kind, ops[0].epoch),
            ("ada", Pending::Drop, Some(5))
        );
        m.done(&ops[0], Outcome::Applied);
        let ops = m.take(10, &mut gone);
        assert_eq!(
            (ops[0].user, ops[0].kind, ops[0].epoch),
            ("bob", Pending::Claim, None)
        );
    }
}
