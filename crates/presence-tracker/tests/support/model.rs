//! The brute-force model the tracker runs against (tests/model.rs, tests/model_rooms.rs).
//!
//! proptest generates sequences of [`Op`]s: signals (several users, sessions drawn from a small
//! pool so they collide across users, connection ids from a small pool so disconnects and
//! leaves go stale), clock moves (forward by sub-threshold to multi-minute amounts, sometimes
//! backwards), ticks, and room joins, metadata updates and room leaves (a few rooms, short
//! string metadata, small limits). [`run`] runs each sequence on the tracker and on
//! [`Model`] (plain session records, every presence recomputed from scratch with the rules of
//! DESIGN.md) and [`RoomModel`] (a plain list of memberships, every room recomputed from it),
//! and after every step compares every view, every error and every event ([`run::run`]).

mod checks;
mod room_checks;
mod rooms;
pub(crate) mod run;
mod sessions;

use std::time::Duration;

use presence_tracker::{Activity, DisconnectKind, ManualClock, Policy, PresenceTracker};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

pub(crate) use rooms::RoomModel;
pub(crate) use sessions::{Model, Record, Refusal};

use super::ms;

/// The tracker the model drives: `u64` users and sessions, `u8` rooms, `String` metadata.
pub(crate) type ModelTracker = PresenceTracker<u64, u64, ManualClock, u8, String>;

pub(crate) const USERS: u64 = 4;
pub(crate) const SESSIONS: u64 = 7;
pub(crate) const CONNECTIONS: u64 = 4;
pub(crate) const ROOMS: u8 = 3;

// Small thresholds so that short sequences cross all of them.
pub(crate) const ACTIVE: u64 = 1_000;
pub(crate) const IDLE: u64 = 3_000;
pub(crate) const AWAY: u64 = 6_000;
pub(crate) const TTL: u64 = 10_000;
pub(crate) const DISCONNECT_GRACE: u64 = 4_000;
pub(crate) const LEAVE_GRACE: u64 = 1_000;
pub(crate) const RETENTION: u64 = 20_000;
pub(crate) const PER_USER: usize = 100;

/// The policy's room limits, which the room model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) rooms_per_session: usize,
    pub(crate) members_per_room: usize,
    pub(crate) metadata_bytes: usize,
    /// ms
    pub(crate) metadata_interval: u64,
}

impl Default for Limits {
    /// The default policy's.
    fn default() -> Self {
        let p = Policy::default();
        Limits {
            rooms_per_session: p.max_rooms_per_session(),
            members_per_room: p.max_members_per_room(),
            metadata_bytes: p.max_metadata_bytes(),
            metadata_interval: p.metadata_interval().as_millis() as u64,
        }
    }
}

/// Small room limits, so that short sequences reach them: at most `ROOMS` rooms a session,
/// `USERS` members a room, 6 bytes of metadata, a second between changes.
pub(crate) fn small_limits() -> impl Strategy<Value = Limits> {
    (
        1..=ROOMS as usize,
        1..=USERS as usize,
        2..=6usize,
        prop_oneof![2 => Just(1u64), 1 => Just(500), 1 => Just(1_000)],
    )
        .prop_map(
            |(rooms_per_session, members_per_room, metadata_bytes, metadata_interval)| Limits {
                rooms_per_session,
                members_per_room,
                metadata_bytes,
                metadata_interval,
            },
        )
}

pub(crate) fn policy(limits: Limits) -> Policy {
    Policy::builder()
        .active(ms(ACTIVE))
        .idle(ms(IDLE))
        .away(ms(AWAY))
        .ttl(ms(TTL))
        .disconnect_grace(ms(DISCONNECT_GRACE))
        .leave_grace(ms(LEAVE_GRACE))
        .retention(ms(RETENTION))
        .max_sessions_per_user(PER_USER)
        .max_rooms_per_session(limits.rooms_per_session)
        .max_members_per_room(limits.members_per_room)
        .max_metadata_bytes(limits.metadata_bytes)
        .metadata_interval(Duration::from_millis(limits.metadata_interval))
        .build()
        .expect("the model's policy is valid")
}

/// proptest's configuration: `PROPTEST_CASES` cases (1,000 by default), failures kept in
/// `proptest-regressions/<file>.txt`.
pub(crate) fn config(file: &'static str) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    Config {
        cases,
        max_shrink_iters: 20_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    }
}

/// One step of a generated sequence.
#[derive(Clone, Debug)]
pub(crate) enum Op {
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
    /// `rooms().join`.
    Join {
        target: Target,
        meta: String,
    },
    /// `rooms().update`.
    Update {
        target: Target,
        meta: String,
    },
    /// `rooms().leave`.
    LeaveRoom {
        target: Target,
    },
}

/// The session and room a room call names: an id from the pool (often not live, or not in
/// the room), or one of what the models hold when the call is made, so that most calls find
/// something to act on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    /// This session, this room.
    Id(u64, u8),
    /// The `i`-th live session (`i` modulo their number; `Id` if none is live), this room.
    Live(usize, u8),
    /// The `i`-th membership (modulo their number; `Live` if there is none).
    Member(usize),
}

impl Target {
    /// The session and room named, given what the models hold.
    pub(crate) fn resolve(self, sessions: &Model, rooms: &RoomModel) -> (u64, u8) {
        match self {
            Target::Id(session, room) => (session, room),
            Target::Live(i, room) => {
                let live: Vec<u64> = sessions
                    .sessions
                    .keys()
                    .copied()
                    .filter(|&s| sessions.live(s).is_some())
                    .collect();
                match live.len() {
                    0 => (i as u64 % SESSIONS, room),
                    n => (live[i % n], room),
                }
            }
            Target::Member(i) => match rooms.memberships.len() {
                0 => Target::Live(i, i as u8 % ROOMS).resolve(sessions, rooms),
                n => (
                    rooms.memberships[i % n].session,
                    rooms.memberships[i % n].room,
                ),
            },
        }
    }
}

impl Op {
    /// A room call: joins, updates and leaves publish no session or user event.
    pub(crate) fn is_room(&self) -> bool {
        matches!(
            self,
            Op::Join { .. } | Op::Update { .. } | Op::LeaveRoom { .. }
        )
    }
}

/// Signals, clock moves and ticks.
pub(crate) fn session_op() -> impl Strategy<Value = Op> {
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

/// Room joins, updates and leaves, with metadata of 0 to 7 bytes (over the limit of some).
pub(crate) fn room_op() -> impl Strategy<Value = Op> {
    let meta = prop_oneof![
        1 => Just(String::new()),
        2 => Just("a".to_string()),
        2 => Just("b".to_string()),
        2 => Just("cd".to_string()),
        1 => Just("efg".to_string()),
        1 => Just("hijk".to_string()),
        1 => Just("lmnopqr".to_string()),
    ];
    let target = |id, live, member| {
        prop_oneof![
            id => (0..SESSIONS, 0..ROOMS).prop_map(|(s, r)| Target::Id(s, r)),
            live => (0..8usize, 0..ROOMS).prop_map(|(i, r)| Target::Live(i, r)),
            member => (0..8usize).prop_map(Target::Member),
        ]
    };
    prop_oneof![
        4 => (target(1, 4, 1), meta.clone()).prop_map(|(target, meta)| Op::Join { target, meta }),
        2 => (target(1, 1, 4), meta).prop_map(|(target, meta)| Op::Update { target, meta }),
        2 => target(1, 1, 3).prop_map(|target| Op::LeaveRoom { target }),
    ]
}
