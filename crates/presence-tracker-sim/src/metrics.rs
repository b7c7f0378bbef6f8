//! The ground truth's books: per user, the truth's class against the tracker's published
//! presence, integrated over virtual time. See [`Metrics`](super::Metrics) for the definitions.

use presence_tracker::Presence;

use super::report::{FlapKind, Latencies, Latency};

/// A session's (or user's) ground-truth class. Ordered: a user is the highest of its sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Truth {
    /// Closed, crashed, or suspended for good.
    Gone,
    /// Open but hidden: a background tab, or a suspended phone that will resume.
    Hidden,
    /// In the foreground, untouched.
    Idle,
    /// In the foreground, in use.
    Active,
}

impl Truth {
    /// What a perfect tracker would show.
    pub(crate) fn expected(self) -> Presence {
        match self {
            Truth::Gone => Presence::Offline,
            Truth::Hidden => Presence::Away,
            Truth::Idle => Presence::Idle,
            Truth::Active => Presence::Active,
        }
    }
}

/// One user's running state.
#[derive(Clone, Debug)]
struct Book {
    truth: Truth,
    shown: Presence,
    /// When `truth` or `shown` last changed: time before it is already integrated.
    since: u64,
    /// When the current false-offline stretch began.
    episode_since: Option<u64>,
    departure: Option<Departure>,
}

#[derive(Clone, Copy, Debug)]
struct Departure {
    at: u64,
    lost: bool,
    offline_at: Option<u64>,
    /// When the tracker first showed the user lower than at the departure.
    lowered_at: Option<u64>,
}

/// A flap as booked, for the world to attribute: `(user, expected, from, to)`.
pub(crate) type Flap = (usize, Presence, Presence, Presence);

/// Totals, read out by the engine when the run ends.
#[derive(Clone, Debug, Default)]
pub(crate) struct Totals {
    /// Time users had a session open (there or hidden).
    pub(crate) open_ms: u64,
    /// Time users were there (active or idle).
    pub(crate) there_ms: u64,
    /// ... and shown offline: false offline.
    pub(crate) there_offline_ms: u64,
    /// Time users' best session was hidden.
    pub(crate) hidden_ms: u64,
    /// ... and shown offline.
    pub(crate) hidden_offline_ms: u64,
    pub(crate) episodes: u64,
    pub(crate) flaps: u64,
    /// Flaps to or from offline.
    pub(crate) offline_flaps: u64,
    pub(crate) truth_changes: u64,
    pub(crate) user_events: u64,
    pub(crate) session_events: u64,
    pub(crate) brief_absences: u64,
    pub(crate) latency: Latencies,
    /// Departure to the first user event that lowers the shown presence.
    pub(crate) first_sign: Latency,
    /// Flaps by `[expected][from][to]`, presences by index in [`Presence::ALL`].
    pub(crate) flap_kinds: [[[u64; 5]; 5]; 5],
    pub(crate) open_at_end: u32,
    pub(crate) shown_online_at_end: u32,
}

/// The books of every user.
#[derive(Debug)]
pub(crate) struct Accounting {
    books: Vec<Book>,
    min_absence_ms: u64,
    totals: Totals,
    clean: Vec<u64>,
    lost: Vec<u64>,
    first_signs: Vec<u64>,
    /// Flaps booked since the world last took them (see [`Accounting::take_flaps`]).
    flaps: Vec<Flap>,
    /// Every user event, when recording (for replays).
    recorded: Option<Vec<(u64, usize, Presence)>>,
}

impl Accounting {
    pub(crate) fn new(users: usize, min_absence_ms: u64) -> Self {
        Accounting {
            books: vec![
                Book {
                    truth: Truth::Gone,
                    shown: Presence::Offline,
                    since: 0,
                    episode_since: None,
                    departure: None,
                };
                users
            ],
            min_absence_ms,
            totals: Totals::default(),
            clean: Vec::new(),
            lost: Vec::new(),
            first_signs: Vec::new(),
            flaps: Vec::new(),
            recorded: None,
        }
    }

    /// Books that also keep every user event: `(time, user, to)`, see [`Accounting::recorded`].
    pub(crate) fn recording(users: usize) -> Self {
        Accounting {
            recorded: Some(Vec::new()),
            ..Accounting::new(users, 0)
        }
    }

    /// The user events recorded so far (none unless built by [`Accounting::recording`]).
    pub(crate) fn recorded(&self) -> &[(u64, usize, Presence)] {
        self.recorded.as_deref().unwrap_or_default()
    }

    /// Integrates the user's time up to `now`.
    fn settle(&mut self, user: usize, now: u64) {
        let book = &mut self.books[user];
        let dt = now.saturating_sub(book.since);
        let offline = book.shown == Presence::Offline;
        match book.truth {
            Truth::Gone => {}
            Truth::Hidden => {
                self.totals.open_ms += dt;
                self.totals.hidden_ms += dt;
                if offline {
                    self.totals.hidden_offline_ms += dt;
                }
            }
            Truth::Idle | Truth::Active => {
                self.totals.open_ms += dt;
                self.totals.there_ms += dt;
                if offline {
                    self.totals.there_offline_ms += dt;
                }
            }
        }
        book.since = now.max(book.since);
    }

    /// Opens or closes a false-offline stretch (there, shown offline) at `now`. A stretch counts
    /// as an episode only if it lasted: a user who arrives is there an instant before its
    /// connect is recorded.
    fn update_episode(&mut self, user: usize, now: u64) {
        let book = &mut self.books[user];
        let false_offline = book.truth >= Truth::Idle && book.shown == Presence::Offline;
        match (false_offline, book.episode_since) {
            (true, None) => book.episode_since = Some(now),
            (false, Some(since)) => {
                book.episode_since = None;
                if now > since {
                    self.totals.episodes += 1;
                }
            }
            _ => {}
        }
    }

    /// The user's ground truth changed at `now`. `lost` says, for a departure, whether some
    /// session left without a close frame.
    pub(crate) fn on_truth(&mut self, user: usize, truth: Truth, now: u64, lost: bool) {
        if self.books[user].truth == truth {
            return;
        }
        self.settle(user, now);
        self.totals.truth_changes += 1;
        let min_absence = self.min_absence_ms;
        let book = &mut self.books[user];
        let was = book.truth;
        book.truth = truth;
        if was != Truth::Gone && truth == Truth::Gone {
            let offline = (book.shown == Presence::Offline).then_some(now);
            book.departure = Some(Departure {
                at: now,
                lost,
                offline_at: offline,
                lowered_at: offline,
            });
        } else if was == Truth::Gone {
            if let Some(departure) = book.departure.take() {
                if now - departure.at >= min_absence {
                    self.record(departure, now);
                } else {
                    self.totals.brief_absences += 1;
                }
            }
        }
        self.update_episode(user, now);
    }

    /// Books a counted departure's latencies, counted up to `until` if not shown by then.
    fn record(&mut self, departure: Departure, until: u64) {
        let since = |shown: Option<u64>| shown.unwrap_or(until).min(until) - departure.at;
        let latency = since(departure.offline_at);
        if departure.lost {
            self.lost.push(latency);
        } else {
            self.clean.push(latency);
        }
        self.first_signs.push(since(departure.lowered_at));
    }

    /// The flaps booked since the last call, for attribution; `None` if there were none.
    pub(crate) fn take_flaps(&mut self) -> Option<Vec<Flap>> {
        (!self.flaps.is_empty()).then(|| std::mem::take(&mut self.flaps))
    }

    /// The tracker published a user event.
    pub(crate) fn on_user_event(&mut self, user: usize, from: Presence, to: Presence, now: u64) {
        self.settle(user, now);
        self.totals.user_events += 1;
        if let Some(recorded) = &mut self.recorded {
            recorded.push((now, user, to));
        }
        let book = &mut self.books[user];
        let expected = book.truth.expected();
        if (to < from && to < expected) || (to > from && to > expected) {
            self.totals.flaps += 1;
            if from == Presence::Offline || to == Presence::Offline {
                self.totals.offline_flaps += 1;
            }
            self.totals.flap_kinds[index(expected)][index(from)][index(to)] += 1;
            self.flaps.push((user, expected, from, to));
        }
        book.shown = to;
        if let Some(departure) = &mut book.departure {
            if to < from {
                departure.lowered_at.get_or_insert(now);
            }
            if to == Presence::Offline {
                departure.offline_at.get_or_insert(now);
            }
        }
        self.update_episode(user, now);
    }

    /// The tracker published a session event.
    pub(crate) fn on_session_event(&mut self) {
        self.totals.session_events += 1;
    }

    /// Closes the books at `end`.
    pub(crate) fn finish(mut self, end: u64) -> Totals {
        for user in 0..self.books.len() {
            self.settle(user, end);
            let book = &self.books[user];
            if book.episode_since.is_some_and(|since| end > since) {
                self.totals.episodes += 1;
            }
            if book.truth != Truth::Gone {
                self.totals.open_at_end += 1;
            }
            if book.shown != Presence::Offline {
                self.totals.shown_online_at_end += 1;
            }
            if let Some(departure) = book.departure {
                if end - departure.at >= self.min_absence_ms {
                    self.record(departure, end);
                } else {
                    self.totals.brief_absences += 1;
                }
            }
        }
        let mut all: Vec<u64> = self.clean.iter().chain(&self.lost).copied().collect();
        self.totals.latency = Latencies {
            all: Latency::of(&mut all),
            clean: Latency::of(&mut self.clean),
            lost: Latency::of(&mut self.lost),
        };
        self.totals.first_sign = Latency::of(&mut self.first_signs);
        self.totals
    }
}

/// A presence's position in [`Presence::ALL`] (lowest first).
pub(crate) fn index(p: Presence) -> usize {
    Presence::ALL.iter().position(|&q| q == p).unwrap_or(0)
}

/// The flaps of `kinds` (`[expected][from][to]`), most frequent first.
pub(crate) fn flap_kinds(kinds: &[[[u64; 5]; 5]; 5]) -> Vec<FlapKind> {
    let mut out = Vec::new();
    for (e, froms) in kinds.iter().enumerate() {
        for (f, tos) in froms.iter().enumerate() {
            for (t, &count) in tos.iter().enumerate() {
                if count > 0 {
                    out.push(FlapKind {
                        expected: Presence::ALL[e],
                        from: Presence::ALL[f],
                        to: Presence::ALL[t],
                        count,
                    });
                }
            }
        }
    }
    out.sort_by_key(|k| std::cmp::Reverse(k.count));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn false_offline_time_episodes_and_flaps() {
        let mut books = Accounting::new(1, 60_000);
        books.on_truth(0, Truth::Active, 0, false);
        books.on_user_event(0, Presence::Offline, Presence::Active, 0);
        // A jittered heartbeat: active -> idle while active is a flap; the recovery is not.
        books.on_user_event(0, Presence::Active, Presence::Idle, 10_000);
        books.on_user_event(0, Presence::Idle, Presence::Active, 11_000);
        // Shown offline for 5 s while there: one episode, one flap (the recovery is none).
        books.on_user_event(0, Presence::Active, Presence::Offline, 20_000);
        books.on_user_event(0, Presence::Offline, Presence::Active, 25_000);
        // Leaves at 30 s; the decay toward offline is not a flap; detected 100 s later.
        books.on_truth(0, Truth::Gone, 30_000, true);
        books.on_user_event(0, Presence::Active, Presence::Idle, 40_000);
        books.on_user_event(0, Presence::Idle, Presence::Offline, 130_000);
        let totals = books.finish(1_000_000);
        assert_eq!((totals.open_ms, totals.there_ms), (30_000, 30_000));
        assert_eq!(totals.there_offline_ms, 5_000);
        assert_eq!((totals.hidden_ms, totals.hidden_offline_ms), (0, 0));
        assert_eq!(totals.episodes, 1);
        assert_eq!(totals.flaps, 2);
        assert_eq!(totals.offline_flaps, 1);
        assert_eq!(totals.user_events, 7);
        assert_eq!(totals.latency.lost.count, 1);
        assert_eq!(totals.latency.lost.p50, Duration::from_secs(100));
        assert_eq!(totals.latency.clean.count, 0);
    }

    #[test]
    fn brief_absences_are_not_latencies_and_undetected_ones_count_until_return() {
        let mut books = Accounting::new(1, 60_000);
        books.on_truth(0, Truth::Idle, 0, false);
        books.on_user_event(0, Presence::Offline, Presence::Idle, 0);
        books.on_truth(0, Truth::Gone, 1_000, false);
        books.on_truth(0, Truth::Idle, 31_000, false); // back after 30 s: brief
        books.on_truth(0, Truth::Gone, 40_000, false);
        books.on_truth(0, Truth::Idle, 140_000, false); // back after 100 s, never shown offline
        let totals = books.finish(200_000);
        assert_eq!(totals.brief_absences, 1);
        assert_eq!(totals.latency.clean.count, 1);
        assert_eq!(totals.latency.clean.max, Duration::from_secs(100));
        assert_eq!(totals.there_offline_ms, 0);
        assert_eq!((totals.open_at_end, totals.shown_online_at_end), (1, 1));
    }
}
