//! The tracker against a brute-force model (tests/support/model.rs).
//!
//! proptest generates sequences of signals (several users, sessions drawn from a small pool so
//! they collide across users, connection ids from a small pool so disconnects and leaves go
//! stale) and clock moves (forward by sub-threshold to multi-minute amounts, sometimes
//! backwards). Each sequence runs on the tracker and on [`Model`], which keeps plain records and
//! recomputes every presence from scratch with the rules of DESIGN.md. After every step the test
//! compares every view, the aggregation rule, the event chains (replayed after every tick they
//! must give exactly the current presences), every event's session count and last-seen time,
//! the absence of any rise without a signal, and a snapshot restored through JSON into a fresh
//! tracker. tests/model_rooms.rs runs the same with rooms and metadata.

mod support;

use presence_tracker::{Activity, Presence};
use proptest::prelude::*;
use support::model::run::run;
use support::model::{config, session_op, Limits, Model, Refusal, ACTIVE, LEAVE_GRACE, TTL};

proptest! {
    #![proptest_config(config(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/proptest-regressions/model.txt"
    )))]

    #[test]
    fn tracker_matches_brute_force_model(ops in prop::collection::vec(session_op(), 1..80)) {
        run(&ops, Limits::default())?;
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
