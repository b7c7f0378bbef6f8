//! The tracker against a brute-force model.
//!
//! proptest generates sequences of signals (several users, sessions drawn from a small pool so
//! they collide across users, connection ids from a small pool so disconnects go stale) and clock
//! moves (forward by sub-threshold to multi-minute amounts, sometimes backwards). Each sequence
//! runs on the tracker and on [`Model`], which keeps plain records and recomputes every presence
//! from scratch with the rules of DESIGN.md. After every step the test compares every view, the
//! aggregation rule, the event chains (replayed after every tick they must give exactly the
//! current presences), the absence of any rise without a signal, and a snapshot restored through
//! JSON into a fresh tracker.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use presence_tracker::{
    Activity, ConnectionId, DisconnectKind, Error, Event, ManualClock, Policy, Presence,
    PresenceTracker, SessionView, Snapshot, Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use support::{ms, Replay, Tracker};

const USERS: u64 = 4;
const SESSIONS: u64 = 7;
const CONNECTIONS: u64 = 4;

// Small thresholds so that short sequences cross all of them.
const ACTIVE: u64 = 1_000;
const IDLE: u64 = 3_000;
const AWAY: u64 = 6_000;
const TTL: u64 = 10_000;
const DISCONNECT_GRACE: u64 = 4_000;
const LEAVE_GRACE: u64 = 1_000;
const RETENTION: u64 = 20_000;
const PER_USER: usize = 100;

fn policy() -> Policy {
    Policy::builder()
        .active(ms(ACTIVE))
        .idle(ms(IDLE))
        .away(ms(AWAY))
        .ttl(ms(TTL))
        .disconnect_grace(ms(DISCONNECT_GRACE))
        .leave_grace(ms(LEAVE_GRACE))
        .retention(ms(RETENTION))
        .max_sessions_per_user(PER_USER)
        .build()
        .expect("the model's policy is valid")
}

/// One step of a generated sequence.
#[derive(Clone, Debug)]
enum Op {
    Connect {
        user: u64,
        session: u64,
        conn: u64,
        explicit: bool,
    },
    Heartbeat {
        session: u64,
        activity: Activity,
        explicit: bool,
    },
    /// `conn: None` names the session's current connection; `Some` one from the pool, often stale.
    Disconnect {
        session: u64,
        conn: Option<u64>,
        kind: DisconnectKind,
        explicit: bool,
    },
    Leave {
        session: u64,
        explicit: bool,
    },
    Advance(u64),
    SetBack(u64),
    Tick,
}

fn op() -> impl Strategy<Value = Op> {
    let activity = prop_oneof![
        Just(Activity::Active),
        Just(Activity::Idle),
        Just(Activity::Background)
    ];
    let kind = prop_oneof![Just(DisconnectKind::Clean), Just(DisconnectKind::Lost)];
    // Thresholds and graces are whole seconds: steps of 500 ms land on them exactly, so the
    // boundaries (strict `<` on age, `<=` on deadlines) are exercised, not just crossed.
    let advance = prop_oneof![
        3 => 0..1_500u64,
        3 => (0..24u64).prop_map(|n| n * 500),
        2 => 1_000..12_000u64,
        1 => 12_000..400_000u64,
    ];
    prop_oneof![
        4 => (0..USERS, 0..SESSIONS, 0..CONNECTIONS, any::<bool>()).prop_map(
            |(user, session, conn, explicit)| Op::Connect { user, session, conn, explicit }
        ),
        5 => (0..SESSIONS, activity, any::<bool>())
            .prop_map(|(session, activity, explicit)| Op::Heartbeat { session, activity, explicit }),
        3 => (0..SESSIONS, prop::option::weighted(0.5, 0..CONNECTIONS), kind, any::<bool>())
            .prop_map(|(session, conn, kind, explicit)| Op::Disconnect { session, conn, kind, explicit }),
        1 => (0..SESSIONS, any::<bool>()).prop_map(|(session, explicit)| Op::Leave { session, explicit }),
        6 => advance.prop_map(Op::Advance),
        1 => (0..30_000u64).prop_map(Op::SetBack),
        3 => Just(Op::Tick),
    ]
}

/// The error variants the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    UnknownSession,
    OwnedByOther,
    TooManyForUser,
}

fn refusal(e: &Error) -> Option<Refusal> {
    match e {
        Error::UnknownSession { .. } => Some(Refusal::UnknownSession),
        Error::SessionOwnedByOtherUser { .. } => Some(Refusal::OwnedByOther),
        Error::TooManySessionsForUser { .. } => Some(Refusal::TooManyForUser),
        _ => None,
    }
}

/// A session as the model keeps it: plain fields, nothing precomputed.
#[derive(Clone, Debug)]
struct Record {
    user: u64,
    last_seen: u64,
    activity: Activity,
    conn: u64,
    connected: bool,
    grace: Option<u64>,
}

impl Record {
    /// The pure rule: offline once the grace deadline is reached, else the lower of the presence
    /// by age and the activity's cap.
    fn presence(&self, now: u64) -> Presence {
        if self.grace.is_some_and(|g| g <= now) {
            return Presence::Offline;
        }
        let age = now.saturating_sub(self.last_seen);
        let by_age = if age < ACTIVE {
            Presence::Active
        } else if age < IDLE {
            Presence::Idle
        } else if age < AWAY {
            Presence::Away
        } else if age < TTL {
            Presence::Stale
        } else {
            Presence::Offline
        };
        let cap = match self.activity {
            Activity::Active => Presence::Active,
            Activity::Idle => Presence::Idle,
            Activity::Background => Presence::Away,
        };
        by_age.min(cap)
    }

    fn expires_at(&self) -> u64 {
        let ttl = self.last_seen + TTL;
        self.grace.map_or(ttl, |g| g.min(ttl))
    }
}

/// The brute-force model: a map of records and a high-water clock.
#[derive(Debug, Default)]
struct Model {
    now: u64,
    sessions: BTreeMap<u64, Record>,
    /// The latest `last_seen` each user ever had (bounds for `UserView::last_seen`).
    ever_seen: BTreeMap<u64, u64>,
}

impl Model {
    /// A session the tracker must still know: its derived presence is not offline.
    fn live(&self, session: u64) -> Option<&Record> {
        self.sessions
            .get(&session)
            .filter(|r| r.presence(self.now) != Presence::Offline)
    }

    fn live_sessions_of(&self, user: u64) -> impl Iterator<Item = (u64, &Record)> {
        self.sessions
            .iter()
            .filter(move |(_, r)| r.user == user && r.presence(self.now) != Presence::Offline)
            .map(|(s, r)| (*s, r))
    }

    fn user_presence(&self, user: u64) -> Presence {
        self.live_sessions_of(user)
            .map(|(_, r)| r.presence(self.now))
            .max()
            .unwrap_or(Presence::Offline)
    }

    /// Moves to the tracker's time (the high-water mark) and forgets expired records, which
    /// once offline stay offline whatever the clock does.
    fn at(&mut self, clock: u64) {
        self.now = self.now.max(clock);
        let now = self.now;
        self.sessions
            .retain(|_, r| r.presence(now) != Presence::Offline);
    }

    fn seen(&mut self, user: u64) {
        let e = self.ever_seen.entry(user).or_insert(self.now);
        *e = (*e).max(self.now);
    }

    fn connect(&mut self, user: u64, session: u64, conn: u64) -> Result<(), Refusal> {
        let now = self.now;
        if let Some(r) = self.sessions.get_mut(&session) {
            if r.user != user {
                return Err(Refusal::OwnedByOther);
            }
            r.conn = conn;
            r.connected = true;
            r.grace = None;
            r.last_seen = now;
        } else {
            if self.live_sessions_of(user).count() >= PER_USER {
                return Err(Refusal::TooManyForUser);
            }
            self.sessions.insert(
                session,
                Record {
                    user,
                    last_seen: now,
                    activity: Activity::Active,
                    conn,
                    connected: true,
                    grace: None,
                },
            );
        }
        self.seen(user);
        Ok(())
    }

    fn heartbeat(&mut self, session: u64, activity: Activity) -> Result<(), Refusal> {
        let now = self.now;
        let r = self
            .sessions
            .get_mut(&session)
            .ok_or(Refusal::UnknownSession)?;
        r.last_seen = now;
        r.activity = activity;
        let user = r.user;
        self.seen(user);
        Ok(())
    }

    fn disconnect(&mut self, session: u64, conn: u64, kind: DisconnectKind) -> Result<(), Refusal> {
        let now = self.now;
        let r = self
            .sessions
            .get_mut(&session)
            .ok_or(Refusal::UnknownSession)?;
        if r.conn != conn {
            return Ok(());
        }
        let grace = match kind {
            DisconnectKind::Clean => LEAVE_GRACE,
            DisconnectKind::Lost => DISCONNECT_GRACE,
        };
        r.connected = false;
        r.grace = Some(r.grace.map_or(now + grace, |g| g.min(now + grace)));
        Ok(())
    }

    fn leave(&mut self, session: u64) -> Result<(), Refusal> {
        let now = self.now;
        let r = self
            .sessions
            .get_mut(&session)
            .ok_or(Refusal::UnknownSession)?;
        // The client is going: its connection counts as closed.
        r.connected = false;
        r.grace = Some(
            r.grace
                .map_or(now + LEAVE_GRACE, |g| g.min(now + LEAVE_GRACE)),
        );
        Ok(())
    }
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    Config {
        cases,
        max_shrink_iters: 20_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/model.txt"
        )))),
        ..Config::default()
    }
}

fn check_session_view(
    what: &str,
    view: Option<SessionView<u64>>,
    model: Option<&Record>,
    now: u64,
) -> Result<(), TestCaseError> {
    match (view, model) {
        (None, None) => Ok(()),
        (Some(v), Some(r)) => {
            prop_assert_eq!(v.user, r.user, "{}: owner", what);
            prop_assert_eq!(v.presence, r.presence(now), "{}: presence", what);
            prop_assert_eq!(v.activity, r.activity, "{}: activity", what);
            prop_assert_eq!(v.last_seen.as_millis(), r.last_seen, "{}: last_seen", what);
            prop_assert_eq!(
                v.connection,
                ConnectionId::from(r.conn),
                "{}: connection",
                what
            );
            prop_assert_eq!(v.connected, r.connected, "{}: connected", what);
            prop_assert_eq!(
                v.expires_at.as_millis(),
                r.expires_at(),
                "{}: expires_at",
                what
            );
            Ok(())
        }
        (v, r) => Err(TestCaseError::fail(format!(
            "{what}: tracker has {v:?}, model has {r:?} at {now}"
        ))),
    }
}

/// Every view the tracker gives at the model's time equals the model's, by the plain readers
/// (on the clock) and the `_at` readers.
fn check_views(tracker: &Tracker, model: &Model) -> Result<(), TestCaseError> {
    let now = model.now;
    let at = Timestamp::from_millis(now);
    prop_assert_eq!(
        tracker.now().as_millis(),
        now,
        "tracker time (high-water mark)"
    );
    for s in 0..SESSIONS {
        let r = model.live(s);
        check_session_view(&format!("session({s})"), tracker.session(&s), r, now)?;
        check_session_view(
            &format!("session_at({s})"),
            tracker.session_at(&s, at),
            r,
            now,
        )?;
    }
    let mut online = BTreeMap::new();
    for u in 0..USERS {
        let expected = model.user_presence(u);
        if expected != Presence::Offline {
            online.insert(u, expected);
        }
        let live: BTreeMap<u64, &Record> = model.live_sessions_of(u).collect();
        for view in [tracker.user(&u), tracker.user_at(&u, at)] {
            prop_assert_eq!(view.presence, expected, "user {} presence", u);
            prop_assert_eq!(view.sessions, live.len(), "user {} session count", u);
            let newest_live = live.values().map(|r| r.last_seen).max();
            let ever = model.ever_seen.get(&u).copied();
            match view.last_seen {
                Some(t) => {
                    let t = t.as_millis();
                    prop_assert!(
                        ever.is_some_and(|e| t <= e) && newest_live.is_none_or(|n| t >= n),
                        "user {} last_seen {} outside [{:?}, {:?}]",
                        u,
                        t,
                        newest_live,
                        ever
                    );
                }
                None => prop_assert!(
                    ever.is_none_or(|e| e + RETENTION <= now),
                    "user {} forgotten before its retention: last seen {:?}, now {}",
                    u,
                    ever,
                    now
                ),
            }
        }
        let sessions = tracker.user_sessions(&u);
        let ids: BTreeSet<u64> = sessions.iter().map(|(s, _)| *s).collect();
        prop_assert_eq!(
            &ids,
            &live.keys().copied().collect::<BTreeSet<_>>(),
            "user {} sessions",
            u
        );
        for (s, v) in &sessions {
            prop_assert_eq!(v.user, u);
            prop_assert_eq!(
                v.presence,
                live[s].presence(now),
                "user_sessions({}) of {}",
                u,
                s
            );
        }
        // (b) user presence is the max of its sessions.
        let max = sessions
            .iter()
            .map(|(_, v)| v.presence)
            .max()
            .unwrap_or(Presence::Offline);
        prop_assert_eq!(
            tracker.user(&u).presence,
            max,
            "user {} is not the max of its sessions",
            u
        );
    }
    for (what, list) in [
        ("online", tracker.online()),
        ("online_at", tracker.online_at(at)),
    ] {
        let got: BTreeMap<u64, Presence> = list.iter().map(|(u, v)| (*u, v.presence)).collect();
        prop_assert_eq!(got.len(), list.len(), "{} lists a user twice", what);
        prop_assert_eq!(&got, &online, "{}", what);
    }
    Ok(())
}

/// After a tick everything due is published: the replayed events give the current presences,
/// and the census counts them.
fn check_published(
    tracker: &Tracker,
    model: &Model,
    replay: &Replay<u64, u64>,
) -> Result<(), TestCaseError> {
    let now = model.now;
    let mut sessions = [0usize; 5];
    for s in 0..SESSIONS {
        match (model.live(s), replay.session(&s)) {
            (Some(r), Some((owner, published))) => {
                let p = r.presence(now);
                prop_assert_eq!(owner, r.user, "replayed owner of session {}", s);
                prop_assert_eq!(published, p, "replayed session {} after tick", s);
                sessions[p as usize] += 1;
            }
            (Some(r), None) => {
                return Err(TestCaseError::fail(format!(
                    "session {s} is live ({r:?}) but no event published it"
                )))
            }
            (None, Some((_, published))) => {
                prop_assert_eq!(
                    published,
                    Presence::Offline,
                    "session {} is gone but replays as",
                    s
                );
            }
            (None, None) => {}
        }
    }
    let mut users = [0usize; 5];
    for u in 0..USERS {
        let p = model.user_presence(u);
        prop_assert_eq!(replay.user(&u), p, "replayed user {} after tick", u);
        users[p as usize] += 1;
    }
    let census = tracker.census();
    for p in [
        Presence::Active,
        Presence::Idle,
        Presence::Away,
        Presence::Stale,
    ] {
        prop_assert_eq!(
            census.sessions.get(p),
            sessions[p as usize],
            "census of {:?} sessions",
            p
        );
        prop_assert_eq!(
            census.users.get(p),
            users[p as usize],
            "census of {:?} users",
            p
        );
    }
    prop_assert_eq!(census.sessions.offline, 0, "census counts offline sessions");
    Ok(())
}

/// A snapshot through JSON, restored into a fresh tracker on a clock at the same time, reads the same.
fn check_snapshot(tracker: &Tracker, model: &Model) -> Result<(), TestCaseError> {
    let json = serde_json::to_string(&tracker.snapshot())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let snapshot: Snapshot<u64, u64> =
        serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
    let clock = ManualClock::starting_at(Timestamp::from_millis(model.now));
    let restored = PresenceTracker::restore(snapshot, policy(), clock)
        .map_err(|e| TestCaseError::fail(format!("restore failed: {e}: {json}")))?;
    for s in 0..SESSIONS {
        prop_assert_eq!(
            restored.session(&s),
            tracker.session(&s),
            "restored session {}",
            s
        );
    }
    for u in 0..USERS {
        prop_assert_eq!(restored.user(&u), tracker.user(&u), "restored user {}", u);
        prop_assert_eq!(
            sorted(restored.user_sessions(&u)),
            sorted(tracker.user_sessions(&u)),
            "restored sessions of {}",
            u
        );
    }
    prop_assert_eq!(
        sorted(restored.online()),
        sorted(tracker.online()),
        "restored online"
    );
    prop_assert_eq!(restored.census(), tracker.census(), "restored census");
    Ok(())
}

fn sorted<K: Ord, V>(mut list: Vec<(K, V)>) -> Vec<(K, V)> {
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

fn snapshot_of_presences(
    tracker: &Tracker,
) -> (HashMap<u64, (u64, Presence)>, HashMap<u64, Presence>) {
    let sessions = (0..SESSIONS)
        .filter_map(|s| tracker.session(&s).map(|v| (s, (v.user, v.presence))))
        .collect();
    let users = (0..USERS).map(|u| (u, tracker.user(&u).presence)).collect();
    (sessions, users)
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let tracker: Tracker = PresenceTracker::with_clock(policy(), clock.clone());
    let mut model = Model::default();
    model.at(clock.now().as_millis());
    let mut replay = Replay::<u64, u64>::new();
    let mut before = snapshot_of_presences(&tracker);

    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Advance(d) => clock.advance(ms(*d)),
            Op::SetBack(d) => clock.set(clock.now().saturating_sub(ms(*d))),
            _ => {}
        }
        model.at(clock.now().as_millis());
        let now = Timestamp::from_millis(clock.now().as_millis());
        // A user offline for its whole retention may be forgotten, and its seq start again.
        for u in 0..USERS {
            if model.live_sessions_of(u).next().is_some() {
                replay.forbid_restart(&u);
            } else if model
                .ever_seen
                .get(&u)
                .is_some_and(|e| e + RETENTION <= model.now)
            {
                replay.allow_restart(&u);
            }
        }

        type R = Result<Vec<Event<u64, u64>>, Error>;
        let (got, expected, riser): (R, Result<(), Refusal>, Option<u64>) = match *op {
            Op::Connect {
                user,
                session,
                conn,
                explicit,
            } => {
                let got = if explicit {
                    tracker.connect_at(user, session, conn, now)
                } else {
                    tracker.connect(user, session, conn)
                };
                (got, model.connect(user, session, conn), Some(user))
            }
            Op::Heartbeat {
                session,
                activity,
                explicit,
            } => {
                let user = model.sessions.get(&session).map(|r| r.user);
                // Every third heartbeat goes through the batch path, as a batch of one.
                let got = if session % 3 == 0 {
                    let outcome = if explicit {
                        tracker.heartbeat_batch_at([(&session, activity)], now)
                    } else {
                        tracker.heartbeat_batch([(&session, activity)])
                    };
                    match outcome.errors.into_iter().next() {
                        Some((_, e)) => Err(e),
                        None => Ok(outcome.events),
                    }
                } else if explicit {
                    tracker.heartbeat_at(&session, activity, now)
                } else {
                    tracker.heartbeat(&session, activity)
                };
                (got, model.heartbeat(session, activity), user)
            }
            Op::Disconnect {
                session,
                conn,
                kind,
                explicit,
            } => {
                let conn = conn
                    .or_else(|| model.sessions.get(&session).map(|r| r.conn))
                    .unwrap_or(0);
                let got = if explicit {
                    tracker.disconnect_at(&session, conn, kind, now)
                } else {
                    tracker.disconnect(&session, conn, kind)
                };
                (got, model.disconnect(session, conn, kind), None)
            }
            Op::Leave { session, explicit } => {
                let got = if explicit {
                    tracker.leave_at(&session, now)
                } else {
                    tracker.leave(&session)
                };
                (got, model.leave(session), None)
            }
            Op::Advance(_) | Op::SetBack(_) => (Ok(Vec::new()), Ok(()), None),
            Op::Tick => (Ok(tracker.tick()), Ok(()), None),
        };
        let context = format!("step {step} {op:?} at {}", model.now);
        let events = match (got, expected) {
            (Ok(events), Ok(())) => events,
            (Err(e), Err(r)) if refusal(&e) == Some(r) => Vec::new(),
            (got, expected) => {
                return Err(TestCaseError::fail(format!(
                    "{context}: tracker returned {got:?}, model expects {expected:?}"
                )))
            }
        };
        for e in &events {
            prop_assert!(
                e.at.as_millis() <= model.now,
                "{}: event in the future {:?}",
                context,
                e
            );
            replay
                .apply(e)
                .map_err(|m| TestCaseError::fail(format!("{context}: {m}")))?;
        }
        if matches!(op, Op::Advance(_) | Op::SetBack(_)) {
            prop_assert!(events.is_empty());
        }

        // (a), (b)
        check_views(&tracker, &model)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        // (c)
        if matches!(op, Op::Tick) {
            check_published(&tracker, &model, &replay)
                .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        }
        // (d) Only the user of a successful connect or heartbeat may rise.
        let after = snapshot_of_presences(&tracker);
        let riser = riser.filter(|_| expected.is_ok());
        for (s, (owner, p)) in &after.0 {
            if Some(*owner) == riser {
                continue;
            }
            let was = before
                .0
                .get(s)
                .filter(|(o, _)| o == owner)
                .map_or(Presence::Offline, |(_, p)| *p);
            prop_assert!(
                *p <= was,
                "{}: session {} rose from {:?} to {:?} without a signal",
                context,
                s,
                was,
                p
            );
        }
        for (u, p) in &after.1 {
            if Some(*u) != riser {
                let was = before.1[u];
                prop_assert!(
                    *p <= was,
                    "{}: user {} rose from {:?} to {:?} without a signal",
                    context,
                    u,
                    was,
                    p
                );
            }
        }
        before = after;
        // (e)
        check_snapshot(&tracker, &model)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
    }
    // A final tick publishes everything.
    model.at(clock.now().as_millis());
    let events = tracker.tick();
    replay
        .apply_all(&events)
        .map_err(|m| TestCaseError::fail(format!("final tick: {m}")))?;
    check_published(&tracker, &model, &replay)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tracker_matches_brute_force_model(ops in prop::collection::vec(op(), 1..80)) {
        run(&ops)?;
    }
}

/// The model itself must be able to fail: a tracker that ignores the leave grace would differ.
#[test]
fn model_rules_sanity() {
    let mut m = Model::default();
    m.at(1_000_000);
    assert_eq!(m.connect(1, 1, 1), Ok(()));
    assert_eq!(m.connect(2, 1, 1), Err(Refusal::OwnedByOther));
    assert_eq!(m.heartbeat(9, Activity::Idle), Err(Refusal::UnknownSession));
    assert_eq!(m.user_presence(1), Presence::Active);
    m.at(1_000_000 + ACTIVE);
    assert_eq!(m.user_presence(1), Presence::Idle);
    assert_eq!(m.leave(1), Ok(()));
    m.at(1_000_000 + ACTIVE + LEAVE_GRACE - 1);
    assert_eq!(m.user_presence(1), Presence::Idle);
    m.at(1_000_000 + ACTIVE + LEAVE_GRACE);
    assert_eq!(m.user_presence(1), Presence::Offline);
    assert!(m.live(1).is_none());
    // Once expired, the id is free for anyone.
    assert_eq!(m.connect(2, 1, 3), Ok(()));
}
