//! The tracker against a brute-force model.
//!
//! proptest generates sequences of signals (several users, sessions drawn from a small pool so
//! they collide across users, connection ids from a small pool so disconnects and leaves go
//! stale) and clock moves (forward by sub-threshold to multi-minute amounts, sometimes
//! backwards). Each sequence runs on the tracker and on [`Model`], which keeps plain records and
//! recomputes every presence from scratch with the rules of DESIGN.md. After every step the test
//! compares every view, the aggregation rule, the event chains (replayed after every tick they
//! must give exactly the current presences), every event's session count and last-seen time,
//! the absence of any rise without a signal, and a snapshot restored through JSON into a fresh
//! tracker.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use presence_tracker::{
    Activity, ConnectionId, DisconnectKind, Error, Event, ManualClock, Policy, Presence,
    PresenceTracker, SessionView, Snapshot, Timestamp, Transitions,
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
    /// Every connect reports the client's activity, new session or re-attach.
    Connect {
        user: u64,
        session: u64,
        conn: u64,
        activity: Activity,
    },
    /// `owned`: through the batch path, the session id is passed by value rather than by
    /// reference.
    Heartbeat {
        session: u64,
        activity: Activity,
        owned: bool,
    },
    /// `conn: None` names the session's current connection; `Some` one from the pool, often stale.
    Disconnect {
        session: u64,
        conn: Option<u64>,
        kind: DisconnectKind,
    },
    /// Fenced like a disconnect: `conn` as there.
    Leave {
        session: u64,
        conn: Option<u64>,
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
    // Most clients connect in the foreground.
    let connect_activity = prop_oneof![
        2 => Just(Activity::Active),
        1 => Just(Activity::Idle),
        1 => Just(Activity::Background)
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
        4 => (0..USERS, 0..SESSIONS, 0..CONNECTIONS, connect_activity).prop_map(
            |(user, session, conn, activity)| Op::Connect { user, session, conn, activity }
        ),
        5 => (0..SESSIONS, activity, any::<bool>())
            .prop_map(|(session, activity, owned)| Op::Heartbeat { session, activity, owned }),
        3 => (0..SESSIONS, prop::option::weighted(0.5, 0..CONNECTIONS), kind)
            .prop_map(|(session, conn, kind)| Op::Disconnect { session, conn, kind }),
        1 => (0..SESSIONS, prop::option::weighted(0.5, 0..CONNECTIONS))
            .prop_map(|(session, conn)| Op::Leave { session, conn }),
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
        Error::UnknownSession => Some(Refusal::UnknownSession),
        Error::SessionOwnedByOtherUser => Some(Refusal::OwnedByOther),
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
    /// The latest time a signal or a tick saw: the tracker's high-water mark. Reads do not move
    /// it.
    high: u64,
    /// The time reads derive at: the clock's, or `high` if later. For a signal or a tick, `high`.
    now: u64,
    sessions: BTreeMap<u64, Record>,
    /// The last record of each session id that expired (what its offline event reports).
    ended: BTreeMap<u64, Record>,
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

    /// A signal or a tick with the clock at `clock`: moves the tracker's time (the high-water
    /// mark) and forgets the records expired at it, which once offline there stay offline
    /// whatever the clock does (for signals: time never goes back for them).
    fn at(&mut self, clock: u64) {
        self.high = self.high.max(clock);
        self.now = self.high;
        let now = self.now;
        let (live, ended): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.sessions)
            .into_iter()
            .partition(|(_, r)| r.presence(now) != Presence::Offline);
        self.sessions = live;
        self.ended.extend(ended);
    }

    /// Only the clock moved (no signal): reads derive at the clock's time, or the high-water
    /// mark if the clock is behind it. A read moves nothing, so a clock set back after an
    /// advance that no signal saw takes the reads back with it.
    fn read_at(&mut self, clock: u64) {
        self.now = clock.max(self.high);
    }

    fn seen(&mut self, user: u64) {
        let e = self.ever_seen.entry(user).or_insert(self.now);
        *e = (*e).max(self.now);
    }

    fn connect(
        &mut self,
        user: u64,
        session: u64,
        conn: u64,
        activity: Activity,
    ) -> Result<(), Refusal> {
        let now = self.now;
        if let Some(r) = self.sessions.get_mut(&session) {
            if r.user != user {
                return Err(Refusal::OwnedByOther);
            }
            r.conn = conn;
            r.connected = true;
            r.grace = None;
            r.last_seen = now;
            r.activity = activity;
        } else {
            if self.live_sessions_of(user).count() >= PER_USER {
                return Err(Refusal::TooManyForUser);
            }
            self.sessions.insert(
                session,
                Record {
                    user,
                    last_seen: now,
                    activity,
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

    fn leave(&mut self, session: u64, conn: u64) -> Result<(), Refusal> {
        let now = self.now;
        let r = self
            .sessions
            .get_mut(&session)
            .ok_or(Refusal::UnknownSession)?;
        // Fenced: the leave of a connection that is no longer the session's changes nothing.
        if r.conn != conn {
            return Ok(());
        }
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

/// Every view the tracker gives at the model's time equals the model's, read on the clock as
/// it is, and again with the clock set to that time (what the `_at` readers did before 0.1).
/// Reads move nothing: the tracker's time is the same after them.
fn check_views(tracker: &Tracker, model: &Model) -> Result<(), TestCaseError> {
    let now = model.now;
    prop_assert_eq!(
        tracker.now().as_millis(),
        now,
        "tracker time (the clock, or the high-water mark if behind)"
    );
    let clock = tracker.clock();
    let on_the_clock = clock.now();
    let mut at_now = Vec::new();
    for s in 0..SESSIONS {
        at_now.push(tracker.session(&s));
    }
    let users_at_now: Vec<_> = (0..USERS).map(|u| tracker.user(&u)).collect();
    let online_at_now = tracker.online();
    clock.set(Timestamp::from_millis(now));
    for s in 0..SESSIONS {
        let r = model.live(s);
        check_session_view(&format!("session({s})"), tracker.session(&s), r, now)?;
        check_session_view(
            &format!("session({s}) on the clock as it was"),
            at_now[s as usize].clone(),
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
        for view in [tracker.user(&u), users_at_now[u as usize]] {
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
        ("online on the clock as it was", online_at_now),
    ] {
        let got: BTreeMap<u64, Presence> = list.iter().map(|(u, v)| (*u, v.presence)).collect();
        prop_assert_eq!(got.len(), list.len(), "{} lists a user twice", what);
        prop_assert_eq!(&got, &online, "{}", what);
    }
    clock.set(on_the_clock);
    prop_assert_eq!(
        tracker.now().as_millis(),
        now,
        "a read moved the tracker's time"
    );
    Ok(())
}

/// Every event's `sessions` is its user's live session count once it is published, and its
/// `last_seen` the session's (for a session's event) or the user's, ended sessions included
/// (for a user's event): what the model says after the step. Except in a connect that re-makes
/// its user's own expired (not yet ticked) session: the events published before the new
/// session's (the old one's end) are as of before the connect.
fn check_event_fields(
    events: &[Event<u64, u64>],
    model: &Model,
    remade: Option<(u64, u64)>,
    ever_before: Option<u64>,
) -> Result<(), TestCaseError> {
    let remade_at = remade.and_then(|(_, session)| {
        events
            .iter()
            .position(|e| e.session() == Some(&session) && e.from == Presence::Offline)
    });
    for (i, e) in events.iter().enumerate() {
        let user = *e.user();
        let before_remake =
            remade.is_some_and(|(u, _)| u == user) && remade_at.is_some_and(|at| i < at);
        let live = model.live_sessions_of(user).count();
        let sessions = if before_remake { live - 1 } else { live };
        prop_assert_eq!(e.sessions, sessions, "sessions of {:?}", e);
        if e.is_user() && e.to == Presence::Offline {
            prop_assert_eq!(e.sessions, 0, "an offline user with sessions: {:?}", e);
        }
        let last_seen = match e.session() {
            None if before_remake => ever_before,
            None => model.ever_seen.get(&user).copied(),
            Some(s) if e.to == Presence::Offline => model
                .ended
                .get(s)
                .filter(|r| r.user == user)
                .map(|r| r.last_seen),
            Some(s) => model
                .sessions
                .get(s)
                .filter(|r| r.user == user)
                .map(|r| r.last_seen),
        };
        prop_assert_eq!(
            Some(e.last_seen.as_millis()),
            last_seen,
            "last_seen of {:?}",
            e
        );
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

    let mut read_before = model.now;

    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Advance(d) => clock.advance(ms(*d)),
            Op::SetBack(d) => clock.set(clock.now().saturating_sub(ms(*d))),
            _ => {}
        }
        // A signal or a tick takes the tracker's time from the clock; a clock move alone only
        // changes what reads see.
        if matches!(op, Op::Advance(_) | Op::SetBack(_)) {
            model.read_at(clock.now().as_millis());
        } else {
            model.at(clock.now().as_millis());
        }
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

        // A connect of a session that expired (but no tick freed it yet) for the same user
        // first publishes the old session's end, then makes it anew.
        let remade = match *op {
            Op::Connect { user, session, .. }
                if !model.sessions.contains_key(&session)
                    && replay
                        .session(&session)
                        .is_some_and(|(owner, p)| owner == user && p != Presence::Offline) =>
            {
                Some((user, session))
            }
            _ => None,
        };
        let ever_before = remade.and_then(|(user, _)| model.ever_seen.get(&user).copied());

        type R = Result<Transitions<u64, u64>, Error>;
        let (got, expected, riser): (R, Result<(), Refusal>, Option<u64>) = match *op {
            Op::Connect {
                user,
                session,
                conn,
                activity,
            } => {
                let got = tracker.connect(user, session, conn, activity);
                (
                    got,
                    model.connect(user, session, conn, activity),
                    Some(user),
                )
            }
            Op::Heartbeat {
                session,
                activity,
                owned,
            } => {
                let user = model.sessions.get(&session).map(|r| r.user);
                // Every third heartbeat goes through the batch path, as a batch of one.
                let got = if session % 3 == 0 {
                    let outcome = if owned {
                        tracker.heartbeat_batch(vec![(session, activity)])
                    } else {
                        tracker.heartbeat_batch([(&session, activity)])
                    };
                    match outcome.errors.into_iter().next() {
                        Some((_, e)) => Err(e),
                        None => Ok(outcome.events),
                    }
                } else {
                    tracker.heartbeat(&session, activity)
                };
                (got, model.heartbeat(session, activity), user)
            }
            Op::Disconnect {
                session,
                conn,
                kind,
            } => {
                let conn = conn
                    .or_else(|| model.sessions.get(&session).map(|r| r.conn))
                    .unwrap_or(0);
                let got = tracker.disconnect(&session, conn, kind);
                (got, model.disconnect(session, conn, kind), None)
            }
            Op::Leave { session, conn } => {
                let conn = conn
                    .or_else(|| model.sessions.get(&session).map(|r| r.conn))
                    .unwrap_or(0);
                let got = tracker.leave(&session, conn);
                (got, model.leave(session, conn), None)
            }
            Op::Advance(_) | Op::SetBack(_) => (Ok(Transitions::new()), Ok(()), None),
            Op::Tick => (Ok(tracker.tick()), Ok(()), None),
        };
        let context = format!("step {step} {op:?} at {}", model.now);
        let events = match (got, expected) {
            (Ok(events), Ok(())) => events.into_vec(),
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
        check_event_fields(&events, &model, remade, ever_before)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;

        // (a), (b)
        check_views(&tracker, &model)
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        // (c)
        if matches!(op, Op::Tick) {
            check_published(&tracker, &model, &replay)
                .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;
        }
        // (d) Only the user of a successful connect or heartbeat may rise. Reads move no time:
        // when the clock went back behind what the last reads saw (and no signal saw that),
        // reads go back with it, and may see presences that time since took away: compare only
        // reads that did not go back in time.
        let after = snapshot_of_presences(&tracker);
        let riser = riser.filter(|_| expected.is_ok());
        let forward = model.now >= read_before;
        read_before = model.now;
        for (s, (owner, p)) in after.0.iter().filter(|_| forward) {
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
        for (u, p) in after.1.iter().filter(|_| forward) {
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
    let events = tracker.tick().into_vec();
    replay
        .apply_all(&events)
        .map_err(|m| TestCaseError::fail(format!("final tick: {m}")))?;
    check_event_fields(&events, &model, None, None)
        .map_err(|e| TestCaseError::fail(format!("final tick: {e}")))?;
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
    assert_eq!(m.connect(1, 1, 1, Activity::Active), Ok(()));
    assert_eq!(
        m.connect(2, 1, 1, Activity::Active),
        Err(Refusal::OwnedByOther)
    );
    assert_eq!(m.heartbeat(9, Activity::Idle), Err(Refusal::UnknownSession));
    assert_eq!(m.user_presence(1), Presence::Active);
    m.at(1_000_000 + ACTIVE);
    assert_eq!(m.user_presence(1), Presence::Idle);
    // A leave naming a connection that is not the session's current one changes nothing.
    assert_eq!(m.leave(1, 2), Ok(()));
    assert!(m.live(1).is_some_and(|r| r.connected && r.grace.is_none()));
    assert_eq!(m.leave(1, 1), Ok(()));
    m.at(1_000_000 + ACTIVE + LEAVE_GRACE - 1);
    assert_eq!(m.user_presence(1), Presence::Idle);
    m.at(1_000_000 + ACTIVE + LEAVE_GRACE);
    assert_eq!(m.user_presence(1), Presence::Offline);
    assert!(m.live(1).is_none());
    // Once expired, the id is free for anyone.
    assert_eq!(m.connect(2, 1, 3, Activity::Active), Ok(()));
    // Reads follow a clock set back behind what no signal saw; signals do not.
    m.read_at(1_000_000 + TTL);
    assert_eq!(m.now, 1_000_000 + TTL);
    m.read_at(1_000_000);
    assert_eq!(m.now, m.high);
    assert_eq!(m.high, 1_000_000 + ACTIVE + LEAVE_GRACE);
}
