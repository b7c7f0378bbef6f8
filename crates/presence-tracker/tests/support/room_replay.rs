//! [`RoomReplay`]: the rooms a client rebuilds from room events alone, checking their chains on
//! the way.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;

use presence_tracker::{Presence, RoomChange, RoomEvent, RoomSession, RoomView, Timestamp};

/// A member of a room as a client holds it: `(user, presence, sessions)`.
pub(crate) type Member<U, S, M> = (U, Presence, Vec<RoomSession<S, M>>);

/// A room as a client holds it: `(epoch, version, members by user)`.
pub(crate) type HeldRoom<U, S, M> = (u64, u64, Vec<Member<U, S, M>>);

/// A room as a client holds it.
#[derive(Debug)]
struct Held<U, S, M> {
    epoch: u64,
    version: u64,
    at: Timestamp,
    members: HashMap<U, (Presence, Vec<RoomSession<S, M>>)>,
}

/// Every room, rebuilt from every room event since the tracker was made, as a client that saw
/// them all would.
///
/// [`RoomReplay::apply`] checks what such a client relies on: in each room and epoch the
/// versions run 1, 2, 3, ... with no gap; a new epoch starts only once the room emptied, and
/// no epoch comes back (in any room); each event's `from` is the previous `to` of its user in
/// the room, a `Joined` comes from offline and a `Left` goes to it (with no sessions), a
/// `Presence` changes the presence and an `Updated` does not; time never goes back in a room.
#[derive(Debug)]
pub(crate) struct RoomReplay<U, S, R, M> {
    rooms: HashMap<R, Held<U, S, M>>,
    epochs: HashSet<u64>,
    /// Events applied so far.
    pub(crate) applied: usize,
}

impl<U, S, R, M> Default for RoomReplay<U, S, R, M> {
    fn default() -> Self {
        RoomReplay {
            rooms: HashMap::new(),
            epochs: HashSet::new(),
            applied: 0,
        }
    }
}

impl<U, S, R, M> RoomReplay<U, S, R, M>
where
    U: Clone + Eq + Hash + Ord + Debug,
    S: Clone + Debug,
    R: Clone + Eq + Hash + Debug,
    M: Debug,
{
    /// No room yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Applies one event, or says which rule it breaks.
    pub(crate) fn apply(&mut self, e: &RoomEvent<U, S, R, M>) -> Result<(), String> {
        let fresh = |version| Held {
            epoch: e.epoch,
            version,
            at: e.at,
            members: HashMap::new(),
        };
        let held = match self.rooms.get_mut(&e.room) {
            Some(held) if held.epoch == e.epoch => {
                if e.version != held.version + 1 {
                    return Err(format!(
                        "version gap: held version {}, event {e:?}",
                        held.version
                    ));
                }
                if e.at < held.at {
                    return Err(format!("time went back from {:?}: {e:?}", held.at));
                }
                held
            }
            held => {
                if let Some(held) = &held {
                    if !held.members.is_empty() {
                        return Err(format!(
                            "a new epoch while the room held {:?}: {e:?}",
                            held.members
                        ));
                    }
                }
                if !self.epochs.insert(e.epoch) {
                    return Err(format!("an epoch came back: {e:?}"));
                }
                if e.version != 1 {
                    return Err(format!("a new history starts at version 1: {e:?}"));
                }
                self.rooms.insert(e.room.clone(), fresh(0));
                self.rooms.get_mut(&e.room).expect("just inserted")
            }
        };
        let from = held
            .members
            .get(&e.user)
            .map_or(Presence::Offline, |(p, _)| *p);
        if e.from != from {
            return Err(format!("member chain broken: held {from:?}, event {e:?}"));
        }
        let consistent = match e.change {
            RoomChange::Joined => e.from == Presence::Offline && e.to != Presence::Offline,
            RoomChange::Left => e.from != Presence::Offline && e.to == Presence::Offline,
            RoomChange::Presence => {
                e.from != e.to && e.from != Presence::Offline && e.to != Presence::Offline
            }
            RoomChange::Updated => e.from == e.to && e.to != Presence::Offline,
            _ => false,
        };
        if !consistent {
            return Err(format!(
                "{:?} from {:?} to {:?}: {e:?}",
                e.change, e.from, e.to
            ));
        }
        if (e.to == Presence::Offline) != e.sessions.is_empty() {
            return Err(format!("sessions do not match the presence: {e:?}"));
        }
        if e.to == Presence::Offline {
            held.members.remove(&e.user);
        } else {
            held.members
                .insert(e.user.clone(), (e.to, e.sessions.clone()));
        }
        held.version = e.version;
        held.at = e.at;
        self.applied += 1;
        Ok(())
    }

    /// Applies events in order.
    pub(crate) fn apply_all<'a>(
        &mut self,
        events: impl IntoIterator<Item = &'a RoomEvent<U, S, R, M>>,
    ) -> Result<(), String>
    where
        U: 'a,
        S: 'a,
        R: 'a,
        M: 'a,
    {
        events.into_iter().try_for_each(|e| self.apply(e))
    }

    /// The room as rebuilt: its epoch, version and members by user; `None` for a room nobody
    /// is in.
    pub(crate) fn view(&self, room: &R) -> Option<HeldRoom<U, S, M>> {
        let held = self.rooms.get(room).filter(|h| !h.members.is_empty())?;
        let mut members: Vec<Member<U, S, M>> = held
            .members
            .iter()
            .map(|(u, (p, s))| (u.clone(), *p, s.clone()))
            .collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        Some((held.epoch, held.version, members))
    }
}

/// A room as [`Rooms::get`](presence_tracker::Rooms::get) read it, in [`RoomReplay::view`]'s
/// form.
pub(crate) fn as_held<U: Ord + Clone, S: Clone, M>(view: RoomView<U, S, M>) -> HeldRoom<U, S, M> {
    let mut members: Vec<Member<U, S, M>> = view
        .members
        .into_iter()
        .map(|m| (m.user, m.presence, m.sessions))
        .collect();
    members.sort_by(|a, b| a.0.cmp(&b.0));
    (view.epoch, view.version, members)
}
