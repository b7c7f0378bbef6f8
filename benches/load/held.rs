//! What one client holds of the protocol's state, kept by the resync rule, and whether it holds
//! the truth the run expects.
//!
//! A client subscribes to a ring of users: client `i` to `u{i+1}`, ..., `u{i+K}` (indices mod
//! N), or to all N (`--subscribe all`, itself included). It keeps only those users (a server
//! that ignores the interest sends more: they are counted, not kept), one slot per position in
//! the ring, so the truth check is counters, never a scan: `alive` slots held, `departed` slots
//! held, and how many subscribed users are alive.

use std::borrow::Cow;

use serde::Deserialize;

/// One message from the server, with only the fields the client reads (the others are skipped).
#[derive(Debug, Deserialize)]
pub(crate) struct Incoming<'a> {
    /// `state`, `updates`, `refused` (absent in a Socket.IO `refused` event's payload).
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    epoch: Option<u64>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    to: Option<u64>,
    /// `users`: a subscribed feed, whose versions skip; none or `all`: every user.
    #[serde(default, borrow)]
    scope: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    users: Vec<WireUser<'a>>,
    /// A refusal's code.
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
}

/// One user in a state or an update.
#[derive(Debug, Deserialize)]
struct WireUser<'a> {
    #[serde(borrow)]
    user: Cow<'a, str>,
    #[serde(borrow)]
    presence: Cow<'a, str>,
    #[serde(default)]
    seq: u64,
}

/// Which clients vanish in the departures phase: `count` of them, `stride` apart from 0, so
/// that they are spread over every client's ring.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Departures {
    stride: usize,
    count: usize,
}

impl Departures {
    /// `count` of `n` clients (at most `n - 1`, so someone remains).
    pub(crate) fn new(n: usize, count: usize) -> Self {
        let count = count.min(n.saturating_sub(1));
        let stride = n.checked_div(count).unwrap_or(1).max(1);
        Departures { stride, count }
    }

    /// Whether user (and client) `j` departs.
    pub(crate) fn contains(&self, j: usize) -> bool {
        j.is_multiple_of(self.stride) && j / self.stride < self.count
    }

    /// The departing clients.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count).map(move |m| m * self.stride)
    }

    /// How many depart.
    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

/// What applying one message did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// A state replaced what the client held.
    State,
    /// Updates were applied.
    Updates,
    /// Nothing to do: old news, or updates while a state is awaited.
    Skipped,
    /// Updates skipped a version or named another epoch: ask for the state again.
    Gap,
    /// The server refused something, with this code.
    Refused(String),
    /// A message of another type (a room's): ignored.
    Other,
}

/// One client's users, as of a version.
#[derive(Debug)]
pub(crate) struct Held {
    /// The number of users in the run.
    n: usize,
    /// The first user of the ring.
    first: usize,
    /// How many users the ring holds.
    k: usize,
    /// Per position in the ring: 0 when not held, else `seq << 3 | presence` (presence 1..=4).
    slots: Vec<u64>,
    epoch: Option<u64>,
    version: u64,
    /// The feed is subscribed (`scope: users`): versions skip, no gap check.
    scoped: bool,
    /// A state is awaited (after a connect, a gap, or the run's restart of the server).
    awaiting_state: bool,
    departures: Option<Departures>,
    /// Held slots whose user is alive, and whose user departed.
    held_alive: usize,
    held_departed: usize,
    /// Subscribed users that are alive.
    alive_subscribed: usize,
    /// Updates that skipped a version or named another epoch.
    pub(crate) gaps: u64,
    /// Users received that are outside the ring (a server that ignores the interest).
    pub(crate) outside: u64,
    /// Users in the latest state (inside the ring or not).
    pub(crate) last_state_users: usize,
}

const OFFLINE: u64 = 0;

fn presence_code(presence: &str) -> u64 {
    match presence {
        "active" => 4,
        "idle" => 3,
        "away" => 2,
        "stale" => 1,
        _ => OFFLINE,
    }
}

/// The index of user `u{j}`.
fn user_index(name: &str) -> Option<usize> {
    name.strip_prefix('u')?.parse().ok()
}

impl Held {
    /// Client `i` of `n`, subscribed to `k` users after itself (`k == n`: all of them).
    pub(crate) fn new(i: usize, n: usize, k: usize) -> Self {
        let k = k.min(n);
        Held {
            n,
            first: (i + 1) % n.max(1),
            k,
            slots: vec![0; k],
            epoch: None,
            version: 0,
            scoped: false,
            awaiting_state: true,
            departures: None,
            held_alive: 0,
            held_departed: 0,
            alive_subscribed: k,
            gaps: 0,
            outside: 0,
            last_state_users: 0,
        }
    }

    /// The position of user `j` in the ring, if the client subscribed to it.
    fn position(&self, j: usize) -> Option<usize> {
        if j >= self.n {
            return None;
        }
        let pos = (j + self.n - self.first) % self.n;
        (pos < self.k).then_some(pos)
    }

    fn departed(&self, j: usize) -> bool {
        self.departures.is_some_and(|d| d.contains(j))
    }

    /// The run's departures happened: the departed users are expected offline from now on.
    pub(crate) fn mark_departed(&mut self, departures: Departures) {
        if self.departures.is_some() {
            return;
        }
        for j in departures.iter() {
            if let Some(pos) = self.position(j) {
                self.alive_subscribed -= 1;
                if self.slots[pos] != 0 {
                    self.held_alive -= 1;
                    self.held_departed += 1;
                }
            }
        }
        self.departures = Some(departures);
    }

    /// A new connection (or the server's restart): updates wait for the next state.
    pub(crate) fn await_state(&mut self) {
        self.awaiting_state = true;
    }

    /// The client holds exactly the alive users it subscribed to, from a state of its current
    /// connection on.
    pub(crate) fn is_true(&self) -> bool {
        !self.awaiting_state && self.held_departed == 0 && self.held_alive == self.alive_subscribed
    }

    /// Holds user `j` at `pos` as `slot` (0: removes it), keeping the counters.
    fn set(&mut self, j: usize, pos: usize, slot: u64) {
        let was = self.slots[pos] != 0;
        let is = slot != 0;
        self.slots[pos] = slot;
        if was != is {
            let count = if self.departed(j) {
                &mut self.held_departed
            } else {
                &mut self.held_alive
            };
            if is {
                *count += 1;
            } else {
                *count -= 1;
            }
        }
    }

    fn clear(&mut self) {
        self.slots.fill(0);
        self.held_alive = 0;
        self.held_departed = 0;
    }

    /// Applies one message by the resync rule.
    pub(crate) fn apply(&mut self, message: &Incoming<'_>, refused_event: bool) -> Applied {
        if refused_event {
            return Applied::Refused(message.code.as_deref().unwrap_or("?").to_string());
        }
        match message.kind.as_deref() {
            Some("state") => {
                self.clear();
                self.awaiting_state = false;
                self.epoch = message.epoch;
                self.version = message.version.unwrap_or(0);
                self.scoped = message.scope.as_deref() == Some("users");
                self.last_state_users = message.users.len();
                for u in &message.users {
                    self.apply_user(u, true);
                }
                Applied::State
            }
            Some("updates") => {
                if self.awaiting_state {
                    return Applied::Skipped;
                }
                let (from, to) = (message.from.unwrap_or(0), message.to.unwrap_or(0));
                if message.epoch != self.epoch {
                    return self.gap();
                }
                if !self.scoped {
                    if to <= self.version {
                        return Applied::Skipped;
                    }
                    if from != self.version + 1 {
                        return self.gap();
                    }
                }
                self.version = self.version.max(to);
                for u in &message.users {
                    self.apply_user(u, false);
                }
                Applied::Updates
            }
            Some("refused") => Applied::Refused(message.code.as_deref().unwrap_or("?").to_string()),
            _ => Applied::Other,
        }
    }

    fn gap(&mut self) -> Applied {
        self.gaps += 1;
        self.awaiting_state = true;
        Applied::Gap
    }

    fn apply_user(&mut self, u: &WireUser<'_>, in_state: bool) {
        let Some((j, pos)) = user_index(&u.user).and_then(|j| Some((j, self.position(j)?))) else {
            self.outside += 1;
            return;
        };
        let held = self.slots[pos];
        if !in_state && held != 0 && u.seq <= held >> 3 {
            return;
        }
        let code = presence_code(&u.presence);
        let slot = if code == OFFLINE {
            0
        } else {
            u.seq << 3 | code
        };
        self.set(j, pos, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(held: &mut Held, json: &str) -> Applied {
        let message: Incoming<'_> = serde_json::from_str(json).expect("test JSON");
        held.apply(&message, false)
    }

    fn user(j: usize, presence: &str, seq: u64) -> String {
        format!(
            r#"{{"user":"u{j}","presence":"{presence}","sessions":1,"last_seen":5,"seq":{seq}}}"#
        )
    }

    #[test]
    fn a_state_then_updates_reach_the_truth_and_a_gap_asks_again() {
        // Client 0 of 4, all users: 0, 1, 2, 3.
        let mut held = Held::new(0, 4, 4);
        assert!(!held.is_true());
        let users: Vec<String> = (0..4).map(|j| user(j, "active", 1)).collect();
        let state = format!(
            r#"{{"type":"state","protocol":1,"epoch":7,"version":10,"now":5,"users":[{}]}}"#,
            users.join(",")
        );
        assert_eq!(apply(&mut held, &state), Applied::State);
        assert!(held.is_true());

        let departures = Departures::new(4, 2);
        assert!(departures.contains(0) && departures.contains(2) && !departures.contains(1));
        held.mark_departed(departures);
        assert!(!held.is_true());
        let gone = format!(
            r#"{{"type":"updates","epoch":7,"from":11,"to":12,"users":[{},{}]}}"#,
            user(0, "offline", 2),
            user(2, "offline", 2)
        );
        assert_eq!(apply(&mut held, &gone), Applied::Updates);
        assert!(held.is_true());

        // Old news is skipped; a skipped version is a gap.
        let old = format!(
            r#"{{"type":"updates","epoch":7,"from":12,"to":12,"users":[{}]}}"#,
            user(0, "active", 1)
        );
        assert_eq!(apply(&mut held, &old), Applied::Skipped);
        let skipped = format!(
            r#"{{"type":"updates","epoch":7,"from":14,"to":14,"users":[{}]}}"#,
            user(1, "idle", 3)
        );
        assert_eq!(apply(&mut held, &skipped), Applied::Gap);
        assert!(!held.is_true());
        assert_eq!(held.gaps, 1);
    }

    #[test]
    fn a_subscribed_feed_skips_versions_and_users_outside_the_ring_are_not_kept() {
        // Client 3 of 10, subscribed to u4 and u5.
        let mut held = Held::new(3, 10, 2);
        let state = format!(
            r#"{{"type":"state","epoch":1,"version":3,"scope":"users","users":[{},{},{}]}}"#,
            user(4, "active", 1),
            user(5, "idle", 1),
            user(9, "active", 1)
        );
        assert_eq!(apply(&mut held, &state), Applied::State);
        assert!(held.is_true());
        assert_eq!(held.outside, 1);
        let later = format!(
            r#"{{"type":"updates","epoch":1,"from":9,"to":9,"users":[{}]}}"#,
            user(5, "offline", 2)
        );
        assert_eq!(apply(&mut held, &later), Applied::Updates);
        assert!(!held.is_true());
    }

    #[test]
    fn a_socket_io_event_parses_as_name_and_payload() {
        let text = r#"["presence",{"type":"state","epoch":1,"version":0,"users":[]}]"#;
        let (name, message): (Cow<'_, str>, Incoming<'_>) =
            serde_json::from_str(text).expect("test JSON");
        assert_eq!(name, "presence");
        let mut held = Held::new(0, 1, 1);
        assert_eq!(held.apply(&message, false), Applied::State);
    }
}
