//! The dwell (`Policy::dwell`): hysteresis for silences.
//!
//! - [`derive`] against the rule as written, stepped one millisecond at a time: a silent
//!   session's shown presence falls once the presence the plain ladder gives has been below it
//!   for the dwell, to what the ladder gives then; offline is never held;
//! - monotonicity: a longer dwell never adds a downgrade to a silence, never publishes one
//!   earlier, and never moves offline;
//! - the tracker with a dwell against a reference built on that rule: every read, every event
//!   chain, and after every tick the published presences equal the derived ones (deadlines
//!   from `next_change` and the lazy wheel are never late);
//! - known answers on hand-made traces, and the builder's typed errors.

use std::collections::HashMap;
use std::time::Duration;

use presence_tracker::{
    derive, Activity, DisconnectKind, Error, ManualClock, Policy, Presence, PresenceTracker,
    SessionRecord, Subject, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

type Tracker = PresenceTracker<u64, u64, ManualClock>;

/// `PROPTEST_CASES` cases (256 by default), failures kept in `proptest-regressions/dwell.txt`.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/dwell.txt"
        )))),
        ..ProptestConfig::default()
    }
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Thresholds in milliseconds, small so that a step-by-step reference is cheap.
#[derive(Clone, Copy, Debug)]
struct Ladder {
    active: u64,
    idle: u64,
    away: u64,
    ttl: u64,
    dwell: u64,
    disconnect_grace: u64,
    leave_grace: u64,
}

impl Ladder {
    fn policy(&self) -> Policy {
        Policy::builder()
            .active(ms(self.active))
            .idle(ms(self.idle))
            .away(ms(self.away))
            .ttl(ms(self.ttl))
            .dwell(ms(self.dwell))
            .disconnect_grace(ms(self.disconnect_grace))
            .leave_grace(ms(self.leave_grace))
            .build()
            .expect("a valid ladder")
    }

    fn with_dwell(self, dwell: u64) -> Ladder {
        Ladder { dwell, ..self }
    }

    /// The presence without a dwell: by age, capped by the activity, offline at the TTL.
    fn plain(&self, age: u64, activity: Activity) -> Presence {
        let by_age = if age < self.active {
            Presence::Active
        } else if age < self.idle {
            Presence::Idle
        } else if age < self.away {
            Presence::Away
        } else if age < self.ttl {
            Presence::Stale
        } else {
            Presence::Offline
        };
        by_age.min(activity.cap())
    }

    /// The rule as written, one millisecond at a time from the last signal: the shown
    /// presence falls when the plain one has been below it for the dwell, to the plain one;
    /// offline at once; offline at the grace deadline.
    fn reference(
        &self,
        last_seen: u64,
        activity: Activity,
        grace: Option<u64>,
        now: u64,
    ) -> Presence {
        if grace.is_some_and(|g| now >= g) {
            return Presence::Offline;
        }
        let mut shown = activity.cap();
        let mut below_since = None;
        for t in last_seen..=now.max(last_seen) {
            let plain = self.plain(t - last_seen, activity);
            if plain == Presence::Offline {
                return Presence::Offline;
            }
            if plain < shown {
                let since = *below_since.get_or_insert(t);
                if t - since >= self.dwell {
                    shown = plain;
                    below_since = None;
                }
            } else {
                below_since = None;
            }
        }
        shown
    }

    /// Every change of a silent session's presence from its last signal at 0 to offline:
    /// `(age, presence)`, by [`derive`].
    fn changes(&self, activity: Activity, grace: Option<u64>) -> Vec<(u64, Presence)> {
        let policy = self.policy();
        let record = SessionRecord::new(
            Timestamp::EPOCH,
            activity,
            grace.map(Timestamp::from_millis),
        );
        let mut out = Vec::new();
        let mut shown = derive(&record, Timestamp::EPOCH, &policy);
        for t in 1..=self.ttl {
            let now = derive(&record, Timestamp::from_millis(t), &policy);
            if now != shown {
                out.push((t, now));
                shown = now;
            }
        }
        out
    }
}

fn ladder() -> impl Strategy<Value = Ladder> {
    (
        1..40u64,
        1..60u64,
        1..120u64,
        1..80u64,
        0..1_000u64,
        0..1_000u64,
        0..1_000u64,
    )
        .prop_map(|(active, idle, away, ttl, dwell, dg, lg)| {
            let idle = active + idle;
            let away = idle + away;
            let ttl = away + ttl;
            Ladder {
                active,
                idle,
                away,
                ttl,
                dwell: dwell * ttl / 1_000,
                disconnect_grace: dg * ttl / 1_000,
                leave_grace: lg * ttl / 1_000,
            }
        })
}

fn activity() -> impl Strategy<Value = Activity> {
    prop_oneof![
        Just(Activity::Active),
        Just(Activity::Idle),
        Just(Activity::Background)
    ]
}

proptest! {
    #![proptest_config(config())]

    /// `derive`'s closed form is the rule stepped through time.
    #[test]
    fn derive_is_the_rule_as_written(ladder in ladder(), activity in activity(), grace in prop::option::of(0..500u64)) {
        let policy = ladder.policy();
        let grace = grace.map(|g| g % (ladder.ttl + 1));
        let record = SessionRecord::new(Timestamp::EPOCH, activity, grace.map(Timestamp::from_millis));
        for now in 0..=ladder.ttl + 1 {
            prop_assert_eq!(
                derive(&record, Timestamp::from_millis(now), &policy),
                ladder.reference(0, activity, grace, now),
                "at {} ms", now
            );
        }
    }

    /// A longer dwell: no more downgrades in a silence, the k-th no earlier, offline at the
    /// same instant; and at most one downgrade per dwell after the first band.
    #[test]
    fn a_longer_dwell_never_adds_nor_hastens_a_downgrade(
        ladder in ladder(),
        activity in activity(),
        grace in prop::option::of(0..500u64),
        extra in 0..1_000u64,
    ) {
        let grace = grace.map(|g| g % (ladder.ttl + 1));
        let longer = ladder.with_dwell(ladder.dwell + extra * (ladder.ttl - ladder.dwell) / 1_000);
        let short = ladder.changes(activity, grace);
        let long = longer.changes(activity, grace);
        let offline = |changes: &[(u64, Presence)]| changes.iter().find(|c| c.1 == Presence::Offline).map(|c| c.0);
        prop_assert_eq!(offline(&short), offline(&long));
        let downgrades = |changes: &[(u64, Presence)]| -> Vec<u64> {
            changes.iter().filter(|c| c.1 != Presence::Offline).map(|c| c.0).collect()
        };
        let (short, long) = (downgrades(&short), downgrades(&long));
        prop_assert!(long.len() <= short.len(), "{:?} vs {:?}", long, short);
        for (k, (&l, &s)) in long.iter().zip(&short).enumerate() {
            prop_assert!(l >= s, "downgrade {} at {} ms, {} ms without the longer dwell", k, l, s);
        }
        for pair in long.windows(2) {
            prop_assert!(pair[1] - pair[0] >= longer.dwell.max(1));
        }
    }
}

/// A reference tracker: records as the model of DESIGN.md keeps them, presences by
/// [`Ladder::reference`], users the highest of their live sessions.
#[derive(Debug, Default)]
struct Reference {
    sessions: HashMap<u64, Rec>,
}

#[derive(Clone, Copy, Debug)]
struct Rec {
    user: u64,
    last_seen: u64,
    activity: Activity,
    grace: Option<u64>,
    conn: u64,
}

impl Reference {
    fn presence(&self, ladder: &Ladder, session: u64, now: u64) -> Presence {
        self.sessions.get(&session).map_or(Presence::Offline, |r| {
            ladder.reference(r.last_seen, r.activity, r.grace, now)
        })
    }

    fn user(&self, ladder: &Ladder, user: u64, now: u64) -> Presence {
        self.sessions
            .iter()
            .filter(|(_, r)| r.user == user)
            .map(|(&s, _)| self.presence(ladder, s, now))
            .max()
            .unwrap_or(Presence::Offline)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Connect(u64, Activity),
    Heartbeat(u64, Activity),
    Disconnect(u64, DisconnectKind),
    Advance(u64),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..SESSIONS, activity()).prop_map(|(s, a)| Op::Connect(s, a)),
        4 => (0..SESSIONS, activity()).prop_map(|(s, a)| Op::Heartbeat(s, a)),
        1 => (0..SESSIONS, prop_oneof![Just(DisconnectKind::Clean), Just(DisconnectKind::Lost)])
            .prop_map(|(s, k)| Op::Disconnect(s, k)),
        4 => (1..200u64).prop_map(Op::Advance),
        3 => Just(Op::Tick),
    ]
}

const SESSIONS: u64 = 5;
const USERS: u64 = 3;

fn owner(session: u64) -> u64 {
    session % USERS
}

/// A user or session event as [`Harness`] saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    at: u64,
    /// The user, or `SESSIONS + session` for a session.
    subject: u64,
    from: Presence,
    to: Presence,
    /// Published by a tick (silence), not by a signal.
    tick: bool,
}

/// The tracker and the reference side by side.
struct Harness<'a> {
    ladder: &'a Ladder,
    clock: ManualClock,
    origin: u64,
    tracker: Tracker,
    reference: Reference,
    published: HashMap<u64, Presence>,
    seen: Vec<Seen>,
    conns: u64,
}

impl<'a> Harness<'a> {
    fn new(ladder: &'a Ladder) -> Self {
        let clock = ManualClock::new();
        Harness {
            ladder,
            origin: clock.now().as_millis(),
            tracker: PresenceTracker::with_clock(ladder.policy(), clock.clone()),
            clock,
            reference: Reference::default(),
            published: HashMap::new(),
            seen: Vec::new(),
            conns: 0,
        }
    }

    fn now(&self) -> u64 {
        self.clock.now().as_millis() - self.origin
    }

    /// Applies one op; with `follow`, an advance ticks at every deadline on the way, as a
    /// driver that sleeps until `next_deadline` does.
    fn apply(&mut self, op: &Op, follow: bool) -> Result<(), TestCaseError> {
        let ladder = self.ladder;
        let now = self.now();
        // Expired sessions are gone for every signal.
        self.reference.sessions.retain(|_, r| {
            ladder.reference(r.last_seen, r.activity, r.grace, now) != Presence::Offline
        });
        let result = match *op {
            Op::Connect(s, activity) => {
                self.conns += 1;
                let rec = Rec {
                    user: owner(s),
                    last_seen: now,
                    activity,
                    grace: None,
                    conn: self.conns,
                };
                self.reference.sessions.insert(s, rec);
                self.tracker.connect(owner(s), s, self.conns, activity)
            }
            Op::Heartbeat(s, activity) => {
                let known = self.reference.sessions.get_mut(&s).map(|r| {
                    r.last_seen = now;
                    r.activity = activity;
                });
                let result = self.tracker.heartbeat(&s, activity);
                prop_assert_eq!(
                    known.is_some(),
                    result.is_ok(),
                    "heartbeat of {} at {}",
                    s,
                    now
                );
                result
            }
            Op::Disconnect(s, kind) => {
                let conn = self.reference.sessions.get_mut(&s).map(|r| {
                    let grace = match kind {
                        DisconnectKind::Clean => ladder.leave_grace,
                        DisconnectKind::Lost => ladder.disconnect_grace,
                    };
                    r.grace = Some(r.grace.unwrap_or(u64::MAX).min(now + grace));
                    r.conn
                });
                let result = self.tracker.disconnect(&s, conn.unwrap_or(0), kind);
                prop_assert_eq!(conn.is_some(), result.is_ok());
                result
            }
            Op::Advance(by) => {
                let target = self.clock.now() + ms(by);
                let due = |d: &Timestamp| follow && *d <= target;
                while let Some(deadline) = self.tracker.next_deadline().filter(due) {
                    self.clock.set(deadline.max(self.clock.now()));
                    self.apply(&Op::Tick, false)?;
                }
                self.clock.set(target);
                return Ok(());
            }
            Op::Tick => Ok(self.tracker.tick()),
        };
        let tick = matches!(op, Op::Tick);
        if let Ok(events) = result {
            for event in events {
                let at = event.at.as_millis() - self.origin;
                prop_assert_eq!(at, now);
                let subject = match event.subject {
                    Subject::User { user } => user,
                    Subject::Session { session, .. } => SESSIONS + session,
                };
                let from = self
                    .published
                    .insert(subject, event.to)
                    .unwrap_or(Presence::Offline);
                prop_assert_eq!(event.from, from, "{:?}'s chain at {}", event.subject, now);
                self.seen.push(Seen {
                    at,
                    subject,
                    from: event.from,
                    to: event.to,
                    tick,
                });
            }
        }
        self.verify(now, tick)
    }

    /// Reads derive at the clock's time; after a tick, the published presences are those too.
    fn verify(&self, now: u64, tick: bool) -> Result<(), TestCaseError> {
        let (ladder, reference) = (self.ladder, &self.reference);
        let shown = |subject| {
            self.published
                .get(&subject)
                .copied()
                .unwrap_or(Presence::Offline)
        };
        for s in 0..SESSIONS {
            let expected = reference.presence(ladder, s, now);
            let read = self
                .tracker
                .session(&s)
                .map_or(Presence::Offline, |v| v.presence);
            prop_assert_eq!(read, expected, "session {} read at {}", s, now);
            if tick {
                prop_assert_eq!(
                    shown(SESSIONS + s),
                    expected,
                    "session {} after the tick at {}",
                    s,
                    now
                );
            }
        }
        for u in 0..USERS {
            let expected = reference.user(ladder, u, now);
            prop_assert_eq!(
                self.tracker.user(&u).presence,
                expected,
                "user {} read at {}",
                u,
                now
            );
            if tick {
                prop_assert_eq!(shown(u), expected, "user {} after the tick at {}", u, now);
            }
        }
        if tick {
            let online = (0..USERS)
                .filter(|&u| reference.user(ladder, u, now).is_online())
                .count();
            prop_assert_eq!(self.tracker.census().users.online(), online);
        }
        Ok(())
    }
}

/// Runs `ops` on a tracker with `ladder` and on the reference, checking every read, every
/// event chain, and after every tick the published presences; `follow`: see
/// [`Harness::apply`]. Returns the events seen.
fn check(ladder: &Ladder, ops: &[Op], follow: bool) -> Result<Vec<Seen>, TestCaseError> {
    let mut harness = Harness::new(ladder);
    for op in ops {
        harness.apply(op, follow)?;
    }
    Ok(harness.seen)
}

proptest! {
    #![proptest_config(config())]

    /// The tracker with a dwell: reads, chains, and published = derived after every tick,
    /// ticked at random instants or at every deadline.
    #[test]
    fn the_tracker_publishes_what_the_rule_derives(
        ladder in ladder(),
        ops in prop::collection::vec(op(), 1..60),
        follow in any::<bool>(),
    ) {
        check(&ladder, &ops, follow)?;
    }

    /// The same signals with a longer dwell, ticked at every deadline (so each change is
    /// published at its instant): the same subjects go offline at the same instants; no
    /// session, and no user with one session, sees more downgrades published by ticks, nor
    /// its k-th one earlier. (A user with several sessions may: its presence is the highest of
    /// theirs, and a longer dwell can move one session's fall past another's signal.)
    #[test]
    fn a_longer_dwell_publishes_offline_alike_and_no_more_or_earlier_downgrades(
        ladder in ladder(),
        extra in 1..1_000u64,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let longer = ladder.with_dwell(ladder.dwell + extra * (ladder.ttl - ladder.dwell) / 1_000);
        let short = check(&ladder, &ops, true)?;
        let long = check(&longer, &ops, true)?;
        let offline = |seen: &[Seen]| -> Vec<(u64, u64)> {
            // Sorted: one tick publishes users in no particular order.
            let mut offline: Vec<_> =
                seen.iter().filter(|e| e.to == Presence::Offline).map(|e| (e.at, e.subject)).collect();
            offline.sort_unstable();
            offline
        };
        prop_assert_eq!(offline(&short), offline(&long));
        let single = |subject: u64| {
            subject >= SESSIONS || (0..SESSIONS).filter(|&s| owner(s) == subject).count() == 1
        };
        let downgrades = |seen: &[Seen], subject: u64| -> Vec<u64> {
            seen.iter()
                .filter(|e| e.subject == subject && e.tick && e.to < e.from && e.to != Presence::Offline)
                .map(|e| e.at)
                .collect()
        };
        for subject in (0..USERS).chain(SESSIONS..2 * SESSIONS).filter(|&s| single(s)) {
            let (short, long) = (downgrades(&short, subject), downgrades(&long, subject));
            prop_assert!(long.len() <= short.len(), "subject {}: {:?} vs {:?}", subject, long, short);
            for (l, s) in long.iter().zip(&short) {
                prop_assert!(l >= s, "subject {}: {:?} vs {:?}", subject, long, short);
            }
        }
    }
}

fn tracker(policy: Policy) -> (Tracker, ManualClock) {
    let clock = ManualClock::new();
    (PresenceTracker::with_clock(policy, clock.clone()), clock)
}

/// The user events of a tick, as `(from, to)`.
fn user_changes(events: presence_tracker::Transitions<u64, u64>) -> Vec<(Presence, Presence)> {
    events.users().map(|e| (e.from, e.to)).collect()
}

#[test]
fn one_missed_heartbeat_shows_nothing_with_a_dwell_and_idle_without() {
    for (dwell, expected) in [
        (
            Duration::ZERO,
            vec![
                (Presence::Active, Presence::Idle),
                (Presence::Idle, Presence::Active),
            ],
        ),
        (secs(15), vec![]),
    ] {
        let policy = Policy::builder().dwell(dwell).build().expect("valid");
        let (tracker, clock) = tracker(policy);
        let _ = tracker.connect(1, 1, 1, Activity::Active).expect("connect");
        // Heartbeats every 10 s; the one at 10 s is lost.
        let mut seen = Vec::new();
        for t in 1..=30 {
            clock.advance(secs(1));
            if t == 20 || t == 30 {
                seen.extend(user_changes(
                    tracker.heartbeat(&1, Activity::Active).expect("live"),
                ));
            }
            seen.extend(user_changes(tracker.tick()));
        }
        assert_eq!(seen, expected, "dwell {dwell:?}");
    }
}

#[test]
fn a_long_silence_shows_away_once_and_offline_on_time() {
    let policy = Policy::builder().dwell(secs(60)).build().expect("valid");
    let (tracker, clock) = tracker(policy);
    let _ = tracker.connect(1, 1, 1, Activity::Active).expect("connect");
    let mut seen = Vec::new();
    for t in 1..=300 {
        clock.advance(secs(1));
        for (from, to) in user_changes(tracker.tick()) {
            seen.push((t, from, to));
        }
    }
    assert_eq!(
        seen,
        [
            (75, Presence::Active, Presence::Away),
            (240, Presence::Away, Presence::Offline)
        ]
    );
}

#[test]
fn a_lost_connection_expires_at_its_grace_whatever_the_dwell() {
    for dwell in [Duration::ZERO, secs(45), secs(240)] {
        let policy = Policy::builder().dwell(dwell).build().expect("valid");
        let (tracker, clock) = tracker(policy);
        let _ = tracker.connect(1, 1, 1, Activity::Active).expect("connect");
        let _ = tracker
            .disconnect(&1, 1, DisconnectKind::Lost)
            .expect("live");
        clock.advance(secs(119));
        let _ = tracker.tick();
        assert!(tracker.user(&1).presence.is_online());
        clock.advance(secs(1));
        let offline: Vec<_> = tracker.tick().users().map(|e| e.to).collect();
        assert_eq!(offline, [Presence::Offline], "dwell {dwell:?}");
        // Held at active until then with the TTL as the dwell.
        if dwell == secs(240) {
            assert_eq!(offline.len(), 1);
        }
    }
}

#[test]
fn a_dwell_of_the_ttl_holds_the_last_signal_until_offline() {
    let policy = Policy::builder().dwell(secs(240)).build().expect("valid");
    let (tracker, clock) = tracker(policy);
    let _ = tracker.connect(1, 1, 1, Activity::Idle).expect("connect");
    clock.advance(secs(239));
    assert!(tracker.tick().is_empty());
    assert_eq!(tracker.user(&1).presence, Presence::Idle);
    assert_eq!(tracker.next_deadline(), Some(tracker.now() + secs(1)));
    clock.advance(secs(1));
    assert_eq!(
        user_changes(tracker.tick()),
        [(Presence::Idle, Presence::Offline)]
    );
}

#[test]
fn signals_are_shown_at_once_with_a_dwell() {
    let policy = Policy::builder().dwell(secs(60)).build().expect("valid");
    let (tracker, _clock) = tracker(policy);
    let _ = tracker.connect(1, 1, 1, Activity::Active).expect("connect");
    let hidden = tracker.heartbeat(&1, Activity::Background).expect("live");
    assert_eq!(user_changes(hidden), [(Presence::Active, Presence::Away)]);
    let back = tracker.heartbeat(&1, Activity::Active).expect("live");
    assert_eq!(user_changes(back), [(Presence::Away, Presence::Active)]);
}

#[test]
fn the_builder_refuses_a_dwell_past_the_ttl_or_under_a_millisecond() {
    let over = Policy::builder().dwell(secs(241)).build();
    assert_eq!(
        over,
        Err(Error::DwellLongerThanTtl {
            dwell: secs(241),
            ttl: secs(240)
        })
    );
    assert_eq!(
        over.unwrap_err().to_string(),
        "dwell (241s) is longer than the ttl (240s)"
    );
    let tiny = Policy::builder().dwell(Duration::from_micros(999)).build();
    assert!(matches!(
        tiny,
        Err(Error::PolicyValueTooSmall { name: "dwell", .. })
    ));
    assert_eq!(
        Policy::builder().dwell(Duration::ZERO).build(),
        Ok(Policy::default())
    );
}
