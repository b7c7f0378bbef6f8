//! A room's members in order, for windows of big rooms: [`Listing`].
//!
//! Members are ordered by presence (active first), then by how long they have had it: each
//! member has a key, its presence's rank in the top bits and a number the room hands out in
//! sequence below, given anew when it joins or its presence changes. A window is a range of
//! keys, read from a `BTreeMap` in O(log members + window); a change invalidates only the
//! windows its old or new key falls in, so a join at the end of a busy room leaves the first
//! window as it was (and its JSON, made once, shared).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use presence_tracker::{Id, Presence};

use crate::wire::{MemberSession, RoomWindow, Window, WindowMember};

/// Bits of a key below the presence's rank: keys stay below 2^53, a JavaScript number.
const SEQ_BITS: u32 = 50;
const SEQ_MAX: u64 = (1 << SEQ_BITS) - 1;

/// A room's order of members, whether it is big, and the windows made of it at its version.
pub(super) struct Listing<U, S, R, M> {
    keys: HashMap<U, u64>,
    order: BTreeMap<u64, U>,
    /// The sequence number the next placed member gets.
    next: u64,
    big: bool,
    /// Windows made since the last change within them, shared by every connection sent them.
    windows: HashMap<Window, Arc<RoomWindow<U, S, R, M>>>,
}

impl<U, S, R, M> Default for Listing<U, S, R, M> {
    fn default() -> Self {
        Listing {
            keys: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
            big: false,
            windows: HashMap::new(),
        }
    }
}

/// The rank of a presence in the order: active first.
fn rank(presence: Presence) -> u64 {
    match presence {
        Presence::Active => 0,
        Presence::Idle => 1,
        Presence::Away => 2,
        _ => 3,
    }
}

impl<U: Id, S, R, M> Listing<U, S, R, M> {
    /// Whether the room is big: it became so with more than `big_room` members, and stays so
    /// until it has at most three quarters of that (a room at the bound does not flap between
    /// a list and counts).
    pub(super) fn big(&self) -> bool {
        self.big
    }

    /// Places `user` after a change: `presence` is its presence after (`None` or offline: it
    /// left). A member keeps its key while its presence stays; a metadata change still makes
    /// the windows it is in anew. Then sizes the room against `big_room`.
    pub(super) fn place(&mut self, user: &U, presence: Option<Presence>, big_room: usize) {
        let old = self.keys.get(user).copied();
        let new = match presence {
            None | Some(Presence::Offline) => None,
            Some(p) => match old {
                Some(key) if key >> SEQ_BITS == rank(p) => Some(key),
                _ => {
                    let key = (rank(p) << SEQ_BITS) | self.next.min(SEQ_MAX);
                    self.next = self.next.saturating_add(1);
                    Some(key)
                }
            },
        };
        if old != new {
            if let Some(old) = old {
                if self.order.get(&old) == Some(user) {
                    self.order.remove(&old);
                }
                self.keys.remove(user);
            }
            if let Some(new) = new {
                // Saturated sequence numbers (2^50 changes) share a key: the later wins the
                // slot and the earlier member drops out of windows, never out of the room.
                self.order.insert(new, user.clone());
                self.keys.insert(user.clone(), new);
            }
        }
        let order = &self.order;
        self.windows.retain(|_, w| {
            let touched = old.is_some_and(|k| w.covers(k)) || new.is_some_and(|k| w.covers(k));
            // The last member after a full window left it: nothing more follows.
            let ended = w.more
                && w.members.last().is_none_or(|last| {
                    order
                        .range((Bound::Excluded(last.key), Bound::Unbounded))
                        .next()
                        .is_none()
                });
            !touched && !ended
        });
        self.size(big_room);
    }

    fn size(&mut self, big_room: usize) {
        let members = self.keys.len();
        if members > big_room {
            self.big = true;
        } else if members <= big_room - big_room / 4 {
            self.big = false;
        }
    }

    /// The window of the room (at `epoch` and `version`), made once per change within it;
    /// `member` gives a member's presence and sessions.
    pub(super) fn window<'m>(
        &mut self,
        room: &R,
        epoch: u64,
        version: u64,
        window: Window,
        member: impl Fn(&U) -> Option<(Presence, &'m [MemberSession<S, M>])>,
    ) -> Arc<RoomWindow<U, S, R, M>>
    where
        R: Clone,
        S: Clone + 'm,
        M: 'm,
    {
        if let Some(made) = self.windows.get(&window) {
            return Arc::clone(made);
        }
        let start = window.after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut members = Vec::with_capacity(window.limit.min(self.keys.len()));
        let mut more = false;
        for (&key, user) in self.order.range((start, Bound::Unbounded)) {
            if members.len() == window.limit {
                more = true;
                break;
            }
            if let Some((presence, sessions)) = member(user) {
                members.push(WindowMember {
                    key,
                    user: user.clone(),
                    presence,
                    sessions: sessions.to_vec(),
                });
            }
        }
        let made = Arc::new(RoomWindow::new(
            room.clone(),
            epoch,
            version,
            window,
            members,
            more,
        ));
        self.windows.insert(window, Arc::clone(&made));
        made
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type L = Listing<&'static str, u8, &'static str, ()>;

    fn keys(l: &mut L, window: Window) -> (Vec<&'static str>, bool) {
        let w = l.window(&"r", 1, 1, window, |_| Some((Presence::Active, &[])));
        (w.members.iter().map(|m| m.user).collect(), w.more)
    }

    #[test]
    fn members_come_by_presence_then_by_how_long_they_had_it() {
        let mut l = L::default();
        l.place(&"a", Some(Presence::Idle), 100);
        l.place(&"b", Some(Presence::Active), 100);
        l.place(&"c", Some(Presence::Active), 100);
        l.place(&"a", Some(Presence::Idle), 100); // a metadata change: it keeps its place
        assert_eq!(keys(&mut l, Window::first(10)).0, ["b", "c", "a"]);
        l.place(&"b", Some(Presence::Idle), 100); // b goes idle after a
        l.place(&"d", Some(Presence::Stale), 100);
        assert_eq!(keys(&mut l, Window::first(10)).0, ["c", "a", "b", "d"]);
        l.place(&"a", None, 100);
        assert_eq!(keys(&mut l, Window::first(10)).0, ["c", "b", "d"]);
    }

    #[test]
    fn windows_page_by_key_and_say_whether_more_follow() {
        let mut l = L::default();
        for u in ["a", "b", "c", "d", "e"] {
            l.place(&u, Some(Presence::Active), 100);
        }
        let first = l.window(&"r", 1, 1, Window::first(2), |_| {
            Some((Presence::Active, &[]))
        });
        assert_eq!(first.members.len(), 2);
        assert!(first.more);
        let last = first.members[1].key;
        assert_eq!(keys(&mut l, Window::after(2, last)), (vec!["c", "d"], true));
        let (rest, more) = keys(&mut l, Window::after(5, last));
        assert_eq!((rest, more), (vec!["c", "d", "e"], false));
    }

    #[test]
    fn a_change_outside_a_window_keeps_it_and_one_inside_makes_it_anew() {
        let mut l = L::default();
        for u in ["a", "b", "c"] {
            l.place(&u, Some(Presence::Active), 100);
        }
        let before = l.window(&"r", 1, 1, Window::first(2), |_| {
            Some((Presence::Active, &[]))
        });
        l.place(&"z", Some(Presence::Active), 100); // joins at the end
        l.place(&"c", Some(Presence::Idle), 100); // moves, past the window
        let same = l.window(&"r", 1, 2, Window::first(2), |_| {
            Some((Presence::Active, &[]))
        });
        assert!(Arc::ptr_eq(&before, &same));
        l.place(&"b", Some(Presence::Active), 100); // its metadata changed
        let anew = l.window(&"r", 1, 3, Window::first(2), |_| {
            Some((Presence::Active, &[]))
        });
        assert!(!Arc::ptr_eq(&before, &anew));
        assert_eq!(anew.version, 3);
        // A window that is not full covers every key after it: a joiner lands in it.
        let open = l.window(&"r", 1, 3, Window::first(10), |_| {
            Some((Presence::Active, &[]))
        });
        l.place(&"y", Some(Presence::Stale), 100);
        let grown = l.window(&"r", 1, 4, Window::first(10), |_| {
            Some((Presence::Active, &[]))
        });
        assert_eq!((open.members.len() + 1, grown.members.len()), (5, 5));
    }

    #[test]
    fn a_room_is_big_above_the_bound_and_small_again_at_three_quarters() {
        let mut l = L::default();
        let users = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for u in &users[..8] {
            l.place(u, Some(Presence::Active), 8);
        }
        assert!(!l.big());
        l.place(&"i", Some(Presence::Active), 8);
        assert!(l.big());
        for u in &users[..2] {
            l.place(u, None, 8);
            assert!(l.big(), "7 members, still big");
        }
        l.place(&"c", None, 8);
        assert!(!l.big(), "6 members: three quarters of 8");
    }
}
